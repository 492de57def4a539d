//! `sluice validate`: check pipeline files without starting anything.

use std::path::PathBuf;

use clap::Args;

use super::EXIT_CONFIG;
use crate::reload;

#[derive(Args)]
pub struct ValidateArgs {
    /// Pipeline files; several are merged into one pipeline.
    #[arg(long = "config", short = 'c', value_name = "FILE", required = true)]
    pub config: Vec<PathBuf>,
    #[command(flatten)]
    pub plugins: super::PluginDirs,
}

pub(crate) fn validate(args: &ValidateArgs) -> u8 {
    crate::plugins::set_dirs(args.plugins.dirs.clone());
    match reload::load_pipeline(&args.config) {
        Ok(pipeline) => {
            for w in &pipeline.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "valid: {} sources, {} transforms, {} sinks",
                pipeline.sources.len(),
                pipeline.transforms.len(),
                pipeline.sinks.len()
            );
            0
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s); the pipeline is invalid", errors.0.len());
            EXIT_CONFIG
        }
    }
}
