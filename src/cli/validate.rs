//! `sluice validate`: check pipeline files, and the global settings `run` would use,
//! without starting anything.

use std::path::PathBuf;

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
}

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
            0
        }
        Err(code) => code,
    }
}
