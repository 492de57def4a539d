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
    /// Folders of VRL plugins (`decoders/*.vrl`, `formatters/*.vrl`) that override or add
    /// to the built-in ones; searched in order before `plugin_dirs` from the settings.
    #[arg(
        long = "plugin-dir",
        value_name = "DIR",
        env = "SLUICE_PLUGIN_DIRS",
        value_delimiter = ':'
    )]
    pub plugin_dirs: Vec<PathBuf>,
}

pub(crate) fn validate(args: &ValidateArgs) -> u8 {
    crate::plugins::set_dirs(args.plugin_dirs.clone());
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
