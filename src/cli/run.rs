//! `sluice run` (and `sluice` alone): load settings and the pipeline, set up logging,
//! then hand over to the application controller ([`crate::app`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use super::EXIT_CONFIG;
use crate::reload;
use crate::settings::{LogFormat, Overrides, Settings};
use crate::telemetry::Telemetry;

#[derive(Args, Clone, Default)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) files: super::PipelineFiles,
    /// Global settings file (overrides the embedded config/default.yaml).
    #[arg(long, value_name = "FILE")]
    pub(crate) settings: Option<PathBuf>,
    /// Overrides `data_dir`.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Overrides `api.address`.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) api_address: Option<String>,
    /// Do not reload when a pipeline file (or a file a component reads) changes.
    /// SIGHUP and `POST /reload` still reload.
    #[arg(long)]
    pub(crate) no_watch: bool,
    #[command(flatten)]
    pub(crate) plugins: super::PluginDirs,
    /// More logging: -v logs sluice at debug, -vv everything at trace (over `log.level`).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,
    /// Less logging: -q warnings and errors only, -qq errors only (over `log.level`).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub(crate) quiet: u8,
}

impl RunArgs {
    /// The log level `-v`/`-q` ask for, if they were given.
    fn log_level(&self) -> Option<&'static str> {
        match (self.verbose, self.quiet) {
            (0, 0) => None,
            (1, _) => Some("info,sluice=debug"),
            (_, 0) => Some("trace"),
            (_, 1) => Some("warn"),
            _ => Some("error"),
        }
    }
}

pub(crate) fn run(args: RunArgs) -> u8 {
    let overrides = Overrides {
        data_dir: args.data_dir.clone(),
        api_address: args.api_address.clone(),
    };
    let mut settings = match Settings::load(args.settings.as_deref(), &overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    if let Some(level) = args.log_level() {
        settings.log.level = level.to_owned();
    }
    let bars = super::progress::terminal_bars();
    if let Err(e) = init_logging(&settings, bars.clone()) {
        eprintln!("error: {e:#}");
        return EXIT_CONFIG;
    }
    for name in &settings.ignored_env {
        tracing::debug!(variable = %name, "ignoring an environment variable that names no setting");
    }
    if settings.api.enabled && !settings.api.has_tokens() && !settings.api.is_loopback() {
        tracing::warn!(
            address = %settings.api.address,
            "the API listens beyond loopback without a token (api.allow_unauthenticated): \
             anyone who reaches it can reload the pipeline, read events through /tap and \
             add silences"
        );
    }
    let mut plugin_dirs = args.plugins.dirs.clone();
    plugin_dirs.extend(settings.plugin_dirs.iter().cloned());
    crate::plugins::set_dirs(plugin_dirs);
    let specs = args.files.specs();
    let pipeline = match reload::load_pipeline(&specs) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!("{e}");
            }
            return EXIT_CONFIG;
        }
    };
    for w in &pipeline.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return 1;
        }
    };
    let telemetry = Telemetry::new();
    let run = crate::app::Run {
        pipeline,
        files: specs,
        settings,
        watch: !args.no_watch,
        telemetry: Arc::clone(&telemetry),
    };
    let served = runtime.block_on(async move {
        if let Some(multi) = bars {
            tokio::spawn(show_backfills(multi, telemetry));
        }
        crate::app::serve(run).await
    });
    // `serve` drained and settled everything; a blocking read nothing can interrupt
    // (the stdin source waiting on a terminal or pipe still open) must not keep the
    // process alive after it: dropping the runtime would wait for it for ever.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match served {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}

/// Draws a bar per running backfill until the process ends.
async fn show_backfills(multi: indicatif::MultiProgress, telemetry: Arc<Telemetry>) {
    let mut bars = super::progress::BackfillBars::new(multi);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        bars.update_from(&telemetry);
    }
}

/// Logs to standard error; through the bars' writer when bars may be drawn there.
fn init_logging(settings: &Settings, bars: Option<indicatif::MultiProgress>) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&settings.log.level)
        .with_context(|| format!("invalid log.level `{}`", settings.log.level))?;
    let writer = match bars {
        Some(multi) => BoxMakeWriter::new(super::progress::LogWriter(multi)),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match settings.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
