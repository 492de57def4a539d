//! `sluice bench`: load scenarios against a real sluice, each with a baseline measured in
//! the same run (see [`super::load`]).

use std::path::{Path, PathBuf};

use clap::Args;
use tracing_subscriber::EnvFilter;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Scenario names (files in --dir) or scenario files; all of --dir when none.
    pub(crate) scenarios: Vec<String>,
    /// Folder of scenario files (default: `benches/scenarios` when it exists here, else
    /// the scenarios built into sluice).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Small counts, so every scenario runs in seconds (what CI does).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Print the reports as JSON on standard output (the table goes to standard error).
    #[arg(long)]
    pub(crate) json: bool,
    /// Events per scenario, instead of the scenario's `count`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Events per second, or `max` for flat out, instead of the scenario's `rate`.
    #[arg(long)]
    pub(crate) rate: Option<String>,
    /// List the scenarios in --dir and exit.
    #[arg(long)]
    pub(crate) list: bool,
}

/// Where the scenarios are in a checkout.
const CHECKOUT_SCENARIOS: &str = "benches/scenarios";

pub(crate) fn bench(args: &BenchArgs) -> u8 {
    use super::load::{self, scenario::Scenario};
    crate::net::install_crypto_provider();
    // Quiet by default: the report is the output; RUST_LOG shows the bench's own logs.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rate = match args.rate.as_deref() {
        None => None,
        Some("max") => Some(None),
        Some(r) => match r.parse::<f64>() {
            Ok(r) if r > 0.0 => Some(Some(r)),
            _ => {
                eprintln!("error: --rate takes events per second above 0, or `max`");
                return 2;
            }
        },
    };
    // Outside a checkout the built-in scenarios are written to a folder that lives as
    // long as the run.
    let mut extracted = None;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None if Path::new(CHECKOUT_SCENARIOS).is_dir() => PathBuf::from(CHECKOUT_SCENARIOS),
        None => {
            let written = tempfile::tempdir().and_then(|tmp| {
                super::embedded::extract(super::embedded::SCENARIOS, tmp.path())?;
                Ok(tmp)
            });
            match written {
                Ok(tmp) => extracted.insert(tmp).path().join(CHECKOUT_SCENARIOS),
                Err(e) => {
                    eprintln!(
                        "error: cannot write the built-in scenarios to a temporary folder: {e}"
                    );
                    return 1;
                }
            }
        }
    };
    let files = if args.scenarios.is_empty() {
        Scenario::all_in(&dir)
    } else {
        args.scenarios
            .iter()
            .map(|s| {
                Scenario::find(s, &dir).map_err(|e| match &extracted {
                    // The temporary folder means nothing to the reader.
                    Some(_) => super::load::LoadError::Scenario {
                        file: s.clone(),
                        message: "no such built-in scenario, nor a file of that name (see `sluice bench --list`)".into(),
                    },
                    None => e,
                })
            })
            .collect()
    };
    let files = match files {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if args.list {
        for f in &files {
            match Scenario::load(f) {
                Ok(s) => println!("{:<28} {}", s.name, s.description),
                Err(e) => println!("{}: {e}", f.display()),
            }
        }
        return 0;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let mut reports = Vec::new();
    let mut failed = false;
    for file in &files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut command = format!("sluice bench {name}");
        if args.quick {
            command.push_str(" --quick");
        }
        if let Some(c) = args.count {
            command.push_str(&format!(" --count {c}"));
        }
        if let Some(r) = &args.rate {
            command.push_str(&format!(" --rate {r}"));
        }
        let options = load::Options {
            quick: args.quick,
            count: args.count,
            rate,
            command,
        };
        match runtime.block_on(load::run(file, &options)) {
            Ok(report) => {
                if report.skipped.is_none() && report.delivered != report.sent {
                    eprintln!(
                        "error: {}: {} of {} events delivered",
                        report.scenario, report.delivered, report.sent
                    );
                    failed = true;
                }
                reports.push(report);
            }
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                failed = true;
            }
        }
    }
    let table = load::report::table(&reports);
    if args.json {
        eprint!("{table}");
        match serde_json::to_string_pretty(&reports) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    } else {
        print!("{table}");
    }
    u8::from(failed)
}
