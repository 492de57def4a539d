//! `sluice test`: run the unit tests declared under `tests:` in pipeline files.

use super::EXIT_CONFIG;
use super::validate::ValidateArgs;
use crate::reload;

pub(crate) fn test(args: &ValidateArgs) -> u8 {
    crate::plugins::set_dirs(args.plugins.dirs.clone());
    let pipeline = match reload::load_pipeline(&args.config) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            return EXIT_CONFIG;
        }
    };
    if pipeline.tests.is_empty() {
        println!(
            "no tests in {}",
            args.config
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
