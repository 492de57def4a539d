//! The `sluice` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use sluice::api::ReloadRequest;
use sluice::config::Pipeline;
use sluice::reload::{self, FileWatcher};
use sluice::settings::{LogFormat, Overrides, Settings};
use sluice::telemetry::{ComponentState, Telemetry};
use sluice::topology::{self, Drained, TopologyOptions};

/// Exit code for an invalid pipeline or settings file (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Moves monitoring events: webhooks, feeds, Kafka and files in; HTTP, Postgres, PagerDuty, Slack, Kafka out."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run pipelines (the embedded default pipeline when no --config is given).
    Run(RunArgs),
    /// Check pipeline files without starting anything; lists every error.
    Validate(ValidateArgs),
    /// Run the unit tests declared under `tests:` in pipeline files.
    Test(ValidateArgs),
    /// Print events leaving the components of a running sluice, as NDJSON.
    Tap(TapArgs),
    /// Show a running sluice's components: events/s in and out, errors, buffer fill.
    Top(TopArgs),
    /// Print the JSON Schema of pipeline files (for editors and linters).
    Schema,
    /// List component types and their options.
    List,
    /// Write the component reference pages (Markdown) into a folder.
    Docs(DocsArgs),
    /// Run load scenarios against a real sluice: throughput, end-to-end latency and a
    /// baseline measured in the same run.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Scenario names (files in --dir) or scenario files; all of --dir when none.
    scenarios: Vec<String>,
    /// Folder of scenario files.
    #[arg(long, value_name = "DIR", default_value = "benches/scenarios")]
    dir: PathBuf,
    /// Small counts, so every scenario runs in seconds (what CI does).
    #[arg(long)]
    quick: bool,
    /// Print the reports as JSON on standard output (the table goes to standard error).
    #[arg(long)]
    json: bool,
    /// Events per scenario, instead of the scenario's `count`.
    #[arg(long)]
    count: Option<u64>,
    /// Events per second, or `max` for flat out, instead of the scenario's `rate`.
    #[arg(long)]
    rate: Option<String>,
    /// List the scenarios in --dir and exit.
    #[arg(long)]
    list: bool,
}

#[derive(Args)]
struct TopArgs {
    /// The API of the running sluice.
    #[arg(long, default_value = "127.0.0.1:8686")]
    api_address: String,
    /// Time between refreshes.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// The API's bearer token (`api.auth_token`), if the API asks for one.
    #[arg(long, env = "SLUICE_API__AUTH_TOKEN")]
    token: Option<String>,
}

#[derive(Args)]
struct DocsArgs {
    /// Folder to write into (`docs/reference` in the repository).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Example pipelines: a type used in one of them shows that entry as its example.
    #[arg(long, value_name = "DIR", default_value = "pipelines")]
    examples: PathBuf,
}

#[derive(Args)]
struct TapArgs {
    /// Component ids to tap (`*` wildcards allowed).
    #[arg(default_value = "*")]
    components: String,
    /// The API of the running sluice.
    #[arg(long, default_value = "127.0.0.1:8686")]
    api_address: String,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// Print one event in this many.
    #[arg(long, default_value_t = 1)]
    sample: u64,
    /// The API's bearer token (`api.auth_token`).
    #[arg(long, env = "SLUICE_API__AUTH_TOKEN")]
    token: Option<String>,
}

#[derive(Args, Clone, Default)]
struct RunArgs {
    /// Pipeline files; several are merged into one pipeline.
    #[arg(long = "config", short = 'c', value_name = "FILE")]
    config: Vec<PathBuf>,
    /// Global settings file (overrides the embedded config/default.yaml).
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Overrides `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Overrides `api.address`.
    #[arg(long, value_name = "HOST:PORT")]
    api_address: Option<String>,
    /// Do not reload when a pipeline file (or a file a component reads) changes.
    /// SIGHUP and `POST /reload` still reload.
    #[arg(long)]
    no_watch: bool,
    /// Folders of VRL plugins (`decoders/*.vrl`, `formatters/*.vrl`) that override or add
    /// to the built-in ones; searched in order before `plugin_dirs` from the settings.
    #[arg(
        long = "plugin-dir",
        value_name = "DIR",
        env = "SLUICE_PLUGIN_DIRS",
        value_delimiter = ':'
    )]
    plugin_dirs: Vec<PathBuf>,
}

#[derive(Args)]
struct ValidateArgs {
    /// Pipeline files; several are merged into one pipeline.
    #[arg(long = "config", short = 'c', value_name = "FILE", required = true)]
    config: Vec<PathBuf>,
    /// Folders of VRL plugins (`decoders/*.vrl`, `formatters/*.vrl`) that override or add
    /// to the built-in ones; searched in order before `plugin_dirs` from the settings.
    #[arg(
        long = "plugin-dir",
        value_name = "DIR",
        env = "SLUICE_PLUGIN_DIRS",
        value_delimiter = ':'
    )]
    plugin_dirs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Validate(args)) => validate(&args),
        Some(Command::Test(args)) => test(&args),
        Some(Command::Tap(args)) => tap(&args),
        Some(Command::Top(args)) => top(&args),
        Some(Command::Schema) => schema(),
        Some(Command::List) => list(),
        Some(Command::Docs(args)) => docs(&args),
        Some(Command::Bench(args)) => bench(&args),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    };
    // Standard input is read on a blocking thread that cannot be interrupted; leave
    // without waiting for it. Everything was flushed and settled before this point.
    std::process::exit(i32::from(code));
}

fn validate(args: &ValidateArgs) -> u8 {
    sluice::plugins::set_dirs(args.plugin_dirs.clone());
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

fn test(args: &ValidateArgs) -> u8 {
    sluice::plugins::set_dirs(args.plugin_dirs.clone());
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
    let progress = sluice::progress::Progress::new(pipeline.tests.len() as u64, "tests");
    let reports: Vec<_> = pipeline
        .tests
        .iter()
        .map(|t| {
            let report = sluice::pipeline_tests::run_test(&pipeline, t);
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

fn top(args: &TopArgs) -> u8 {
    sluice::delivery::install_crypto_provider();
    if args.interval.is_zero() {
        eprintln!("error: --interval must be more than 0");
        return 2;
    }
    match sluice::top::run(&args.api_address, args.interval, args.token.as_deref()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn schema() -> u8 {
    match serde_json::to_string_pretty(&sluice::schema::pipeline_schema()) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn list() -> u8 {
    let catalog = sluice::schema::catalog();
    let mut kind = None;
    for t in &catalog.types {
        if kind != Some(t.kind) {
            kind = Some(t.kind);
            println!("{}s:", t.kind.as_str());
        }
        println!("  {}", t.type_name);
        for o in sluice::schema::options(t, &catalog.defs) {
            let mut line = format!("    {} ({})", o.name, o.type_label);
            if o.required {
                line.push_str(" required");
            }
            if let Some(d) = &o.default {
                line.push_str(&format!(" default {d}"));
            }
            if !o.summary().is_empty() {
                line.push_str(&format!(": {}", o.summary()));
            }
            println!("{line}");
        }
    }
    0
}

fn docs(args: &DocsArgs) -> u8 {
    // Sorted, so the pages do not depend on directory order.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.examples)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    let folder = args
        .examples
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shipped: Vec<(String, String)> = files
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some((format!("{folder}/{name}"), text))
        })
        .collect();
    let pages = sluice::schema::reference_pages(&shipped);
    let progress = sluice::progress::Progress::new(pages.len() as u64, "pages");
    for (path, text) in &pages {
        let path = args.out.join(path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text));
        if let Err(e) = written {
            eprintln!("error: cannot write {}: {e}", path.display());
            return 1;
        }
        progress.step(&path.display().to_string());
    }
    progress.finish();
    println!("wrote {} pages to {}", pages.len(), args.out.display());
    0
}

fn bench(args: &BenchArgs) -> u8 {
    use sluice::load::{self, scenario::Scenario};
    sluice::delivery::install_crypto_provider();
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
    let files = if args.scenarios.is_empty() {
        Scenario::all_in(&args.dir)
    } else {
        args.scenarios
            .iter()
            .map(|s| Scenario::find(s, &args.dir))
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

fn tap(args: &TapArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(stream_tap(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn stream_tap(args: &TapArgs) -> anyhow::Result<()> {
    use std::io::Write;
    sluice::delivery::install_crypto_provider();
    let mut params = vec![
        ("components", args.components.clone()),
        ("sample", args.sample.to_string()),
    ];
    if let Some(limit) = args.limit {
        params.push(("limit", limit.to_string()));
    }
    let url = reqwest::Url::parse_with_params(&format!("http://{}/tap", args.api_address), &params)
        .context("invalid --api-address")?;
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = args.token.as_deref().filter(|t| !t.is_empty()) {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .with_context(|| format!("cannot reach sluice's API at {}", args.api_address))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("the API answered {status}: {}", body.trim());
    }
    let stdout = std::io::stdout();
    while let Some(chunk) = response.chunk().await.context("the tap stream broke")? {
        let mut out = stdout.lock();
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(())
}

fn run(args: RunArgs) -> u8 {
    let overrides = Overrides {
        data_dir: args.data_dir.clone(),
        api_address: args.api_address.clone(),
    };
    let settings = match Settings::load(args.settings.as_deref(), &overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_CONFIG;
        }
    };
    let bars = sluice::progress::terminal_bars();
    if let Err(e) = init_logging(&settings, bars.clone()) {
        eprintln!("error: {e:#}");
        return EXIT_CONFIG;
    }
    for name in &settings.ignored_env {
        tracing::debug!(variable = %name, "ignoring an environment variable that names no setting");
    }
    if settings.api.enabled && settings.api.token().is_none() && !settings.api.is_loopback() {
        tracing::warn!(
            address = %settings.api.address,
            "the API listens beyond loopback without a token (api.allow_unauthenticated): \
             anyone who reaches it can reload the pipeline, read events through /tap and \
             add silences"
        );
    }
    let mut plugin_dirs = args.plugin_dirs.clone();
    plugin_dirs.extend(settings.plugin_dirs.iter().cloned());
    sluice::plugins::set_dirs(plugin_dirs);
    let pipeline = match reload::load_pipeline(&args.config) {
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
    match runtime.block_on(serve(pipeline, settings, args, bars)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}

async fn serve(
    pipeline: Pipeline,
    settings: Settings,
    args: RunArgs,
    bars: Option<indicatif::MultiProgress>,
) -> anyhow::Result<u8> {
    let telemetry = Telemetry::new();
    if let Some(multi) = bars {
        tokio::spawn(show_backfills(multi, Arc::clone(&telemetry)));
    }
    // Silences added through the API persist even before any alert_rule runs.
    if let Err(e) = sluice::transforms::alert_rule::silences::attach_dir(&settings.data_dir) {
        tracing::warn!(error = %e, "cannot load the saved silences");
    }
    let api_shutdown = CancellationToken::new();
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let api = if settings.api.enabled {
        let (address, handle) = sluice::api::serve(
            &settings.api.address,
            telemetry.clone(),
            Some(reload_tx),
            settings.api.auth_token.clone(),
            api_shutdown.clone(),
        )
        .await
        .with_context(|| format!("cannot start the API on {}", settings.api.address))?;
        tracing::info!(%address, "API listening");
        Some(handle)
    } else {
        drop(reload_tx);
        None
    };

    let options = TopologyOptions {
        data_dir: settings.data_dir.clone(),
        drain_timeout: settings.reload_drain_timeout,
        memory_budget: settings
            .memory_limit
            .filter(|l| l.0 > 0)
            .map(|l| sluice::buffer::MemoryBudget::new(usize::try_from(l.0).unwrap_or(usize::MAX))),
        ..TopologyOptions::default()
    };
    // Watch before starting: an edit made while the pipeline starts must not be missed
    // (its notification waits in the channel and triggers a reload once running).
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel();
    let mut watcher = if args.no_watch {
        None
    } else {
        let mut w = FileWatcher::new(changed_tx).context("cannot start the file watcher")?;
        w.set_files(&pipeline.watched_files());
        Some(w)
    };
    let components = pipeline.sources.len() + pipeline.transforms.len() + pipeline.sinks.len();
    let hash = pipeline.hash;
    let mut running = topology::start(pipeline, telemetry.clone(), &options)
        .await
        .context("the pipeline could not start")?;
    telemetry.config_applied(hash, None);
    telemetry.set_pipeline_running(true);
    tracing::info!(components, "pipeline running");

    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    // Editors write a file in several steps: reload once things are quiet.
    let mut file_change_at: Option<tokio::time::Instant> = None;
    let files = args.config.clone();

    let signal_name = loop {
        let trigger = tokio::select! {
            _ = term.recv() => break Some("SIGTERM"),
            _ = int.recv() => break Some("SIGINT"),
            () = running.finished() => break None,
            _ = hup.recv() => Trigger::Signal,
            Some(reply) = reload_rx.recv() => Trigger::Api(reply),
            Some(()) = changed_rx.recv() => {
                file_change_at = Some(tokio::time::Instant::now() + FILE_DEBOUNCE);
                continue;
            }
            () = sleep_until_some(file_change_at) => {
                file_change_at = None;
                Trigger::Files
            }
        };
        let name = trigger.name();
        let outcome = reload::reload(&mut running, &telemetry, &files, name).await;
        if outcome.is_ok()
            && let Some(w) = watcher.as_mut()
        {
            w.set_files(&running.pipeline().watched_files());
        }
        if let Trigger::Api(reply) = trigger {
            let _ = reply.send(outcome.map(|c| {
                serde_json::json!({
                    "added": c.added, "changed": c.changed, "removed": c.removed, "aborted": c.aborted,
                })
            }));
        }
    };

    let code = match signal_name {
        Some(name) => {
            tracing::info!(signal = name, timeout = ?settings.shutdown_timeout, "shutting down: draining in-flight events");
            telemetry.set_pipeline_running(false);
            match running.stop(settings.shutdown_timeout).await {
                Drained::Complete => {
                    tracing::info!("all events drained; bye");
                    0
                }
                Drained::TimedOut(left) => {
                    tracing::error!(components = ?left, "shutdown timeout reached; events still in flight were not delivered");
                    1
                }
            }
        }
        None => {
            telemetry.set_pipeline_running(false);
            tracing::info!("every source finished and everything drained; bye");
            0
        }
    };
    let failed: Vec<String> = telemetry
        .components()
        .iter()
        .filter(|c| matches!(c.state(), ComponentState::Failed(_)))
        .map(|c| c.id.clone())
        .collect();
    let code = if failed.is_empty() {
        code
    } else {
        tracing::error!(components = ?failed, "exiting with failed components");
        code.max(1)
    };
    api_shutdown.cancel();
    if let Some(handle) = api {
        let _ = handle.await;
    }
    Ok(code)
}

const FILE_DEBOUNCE: Duration = Duration::from_millis(200);

enum Trigger {
    Signal,
    Api(ReloadRequest),
    Files,
}

impl Trigger {
    fn name(&self) -> &'static str {
        match self {
            Self::Signal => "SIGHUP",
            Self::Api(_) => "POST /reload",
            Self::Files => "file change",
        }
    }
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Draws a bar per running backfill until the process ends.
async fn show_backfills(multi: indicatif::MultiProgress, telemetry: Arc<Telemetry>) {
    let mut bars = sluice::progress::BackfillBars::new(multi);
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
        Some(multi) => BoxMakeWriter::new(sluice::progress::LogWriter(multi)),
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
