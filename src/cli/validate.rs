//! `sluice validate`: check pipeline files, and the global settings `run` would use,
//! without starting anything.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::EXIT_CONFIG;
use crate::config::Pipeline;
use crate::reload;
use crate::settings::{Overrides, Settings};

#[derive(Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub(crate) files: super::PipelineFiles,
    /// Global settings file, checked as `run` would read it (over the embedded
    /// config/default.yaml, under the `SLUICE_*` environment variables, which are
    /// checked either way).
    #[arg(long, value_name = "FILE")]
    pub(crate) settings: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) plugins: super::PluginDirs,
    /// Fail (exit 78) on warnings too, such as an output that nobody reads.
    #[arg(long)]
    pub(crate) deny_warnings: bool,
    /// Also reach what every sink delivers to, the way it does: name resolution,
    /// connection and TLS, then the credentials where a cheap probe exists (an HTTP
    /// `HEAD` with the sink's headers, an OAuth2 token, a PostgreSQL login and INSERT
    /// privilege, Kafka metadata and the topic, the Forward handshake, a writable
    /// folder). Exit 69 when one fails.
    #[arg(long)]
    pub(crate) check_sinks: bool,
    /// How long each sink's check may take.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        value_parser = positive_duration,
        requires = "check_sinks"
    )]
    pub(crate) check_timeout: Duration,
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Exit code when a sink cannot be reached (sysexits' EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: u8 = 69;

/// The settings and the pipeline as `run` would load them (plugin folders from the
/// flag, then from the settings); every error printed, and the exit code on failure.
pub(crate) fn load(args: &ValidateArgs) -> Result<Pipeline, u8> {
    let settings =
        Settings::load(args.settings.as_deref(), &Overrides::default()).map_err(|e| {
            eprintln!("error: {e}");
            EXIT_CONFIG
        })?;
    let mut plugin_dirs = args.plugins.dirs.clone();
    plugin_dirs.extend(settings.plugin_dirs.iter().cloned());
    crate::plugins::set_dirs(plugin_dirs);
    let specs = args.files.specs();
    reload::load_pipeline(&specs).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("error: {e}");
        }
        eprintln!("{} error(s); the pipeline is invalid", errors.0.len());
        EXIT_CONFIG
    })
}

pub(crate) fn validate(args: &ValidateArgs) -> u8 {
    match load(args) {
        Ok(pipeline) => {
            for w in &pipeline.warnings {
                eprintln!("warning: {w}");
            }
            if args.deny_warnings && !pipeline.warnings.is_empty() {
                eprintln!(
                    "{} warning(s) and --deny-warnings; the pipeline is refused",
                    pipeline.warnings.len()
                );
                return EXIT_CONFIG;
            }
            println!(
                "valid: {} sources, {} transforms, {} sinks",
                pipeline.sources.len(),
                pipeline.transforms.len(),
                pipeline.sinks.len()
            );
            if args.check_sinks {
                return check_sinks(&pipeline, args.check_timeout);
            }
            0
        }
        Err(code) => code,
    }
}

/// Runs every sink's healthcheck at once, each within `timeout`, and prints one line
/// per sink in the order of the file.
fn check_sinks(pipeline: &Pipeline, timeout: Duration) -> u8 {
    crate::net::install_crypto_provider();
    let Some(runtime) = super::small_runtime() else {
        return 1;
    };
    let checks = pipeline.sinks.iter().map(|(id, def)| async move {
        let outcome =
            match def.config.healthcheck(timeout) {
                None => None,
                Some(check) => Some(tokio::time::timeout(timeout, check).await.unwrap_or_else(
                    |_| {
                        Err(format!(
                            "no answer within {}",
                            humantime::format_duration(timeout)
                        ))
                    },
                )),
            };
        (id, def.config.type_name(), outcome)
    });
    let results = runtime.block_on(futures_util::future::join_all(checks));
    // A check that ran out of time may still block a thread (librdkafka's metadata
    // call): the answer does not wait for it.
    runtime.shutdown_background();
    let mut failed = 0;
    for (id, type_name, outcome) in results {
        match outcome {
            None => println!("sink `{id}` ({type_name}): nothing outside sluice to reach"),
            Some(Ok(said)) => println!(
                "sink `{id}` ({type_name}): reachable: {}",
                crate::redact::redact(&said)
            ),
            Some(Err(e)) => {
                failed += 1;
                eprintln!(
                    "error: sink `{id}` ({type_name}): {}",
                    crate::redact::redact(&e)
                );
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "{failed} of {} sink(s) cannot be reached",
            pipeline.sinks.len()
        );
        return EXIT_UNAVAILABLE;
    }
    0
}
