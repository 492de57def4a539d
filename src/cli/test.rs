//! `sluice test`: run the unit tests declared under `tests:` in pipeline files.

use super::validate::ValidateArgs;

pub(crate) fn test(args: &ValidateArgs) -> u8 {
    let pipeline = match super::validate::load(args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if pipeline.tests.is_empty() {
        println!(
            "no tests in {}",
            args.files
                .specs()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return 0;
    }
    let progress = super::progress::Progress::new(pipeline.tests.len() as u64, "tests");
    let reports: Vec<_> = pipeline
        .tests
        .iter()
        .map(|t| {
            let report = super::pipeline_tests::run_test(&pipeline, t);
            progress.step(&t.name);
            report
        })
        .collect();
    progress.finish();
    let failed = reports.iter().filter(|r| !r.failures.is_empty()).count();
    for r in &reports {
        if r.failures.is_empty() {
            println!("test {} ... ok", r.name);
        } else {
            println!("test {} ... FAILED", r.name);
            for f in &r.failures {
                println!("  {f}");
            }
        }
    }
    println!("{} passed, {} failed", reports.len() - failed, failed);
    u8::from(failed > 0)
}
