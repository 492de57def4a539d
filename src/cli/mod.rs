//! The `sluice` command: one file per subcommand, and the tools that are not the engine
//! (the load harness, `top`, progress bars, pipeline unit tests, reference pages).

mod bench;
mod ctl;
mod docs;
mod docs_pages;
mod embedded;
mod graph;
pub(crate) mod load;
mod pipeline_tests;
mod progress;
mod run;
mod schema;
mod show_config;
mod tap;
mod test;
pub mod top;
mod top_columns;
mod validate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit code for an invalid pipeline or settings file (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// `--plugin-dir`, taken by every command that loads a pipeline.
#[derive(Args, Clone, Default)]
pub(crate) struct PluginDirs {
    /// Folders of VRL plugins (`decoders/*.vrl`, `formatters/*.vrl`) that override or add
    /// to the built-in ones; searched in order before `plugin_dirs` from the settings.
    #[arg(
        long = "plugin-dir",
        value_name = "DIR",
        env = "SLUICE_PLUGIN_DIRS",
        value_delimiter = ':'
    )]
    pub(crate) dirs: Vec<PathBuf>,
}

#[derive(Parser)]
#[command(
    // `sluice -c x validate` would otherwise validate the default pipeline: options of
    // `run` given before a subcommand are refused, not ignored.
    args_conflicts_with_subcommands = true,
    name = "sluice",
    version = crate::build_info::LONG,
    about = "Moves monitoring events: webhooks, feeds, Kafka and files in; HTTP, Postgres, PagerDuty, Slack, Kafka out."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: run::RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run pipelines (the embedded default pipeline when no --config is given).
    Run(run::RunArgs),
    /// Check pipeline files without starting anything; lists every error.
    Validate(validate::ValidateArgs),
    /// Run the unit tests declared under `tests:` in pipeline files.
    Test(validate::ValidateArgs),
    /// Print the pipeline as `run` would take it: files merged, variables filled in,
    /// secrets redacted (JSON, which is YAML too).
    Config(validate::ValidateArgs),
    /// Print the pipeline's graph as Graphviz DOT (`| dot -Tsvg`) or a Mermaid flowchart.
    Graph(graph::GraphArgs),
    /// Print events leaving the components of a running sluice, as NDJSON.
    Tap(tap::TapArgs),
    /// Show a running sluice's components: events/s in and out, errors, buffer fill.
    Top(top::TopArgs),
    /// Print the JSON Schema of pipeline files (for editors and linters).
    Schema,
    /// List component types and their options.
    List,
    /// Write the component reference pages (Markdown) into a folder.
    Docs(docs::DocsArgs),
    /// Run load scenarios against a real sluice: throughput, end-to-end latency and a
    /// baseline measured in the same run.
    Bench(bench::BenchArgs),
    /// Manage a running sluice's subscriptions: list, show, add, delete, test, events.
    Subscriptions(ctl::SubscriptionsArgs),
    /// A running sluice's outage monitoring: status, check, stop, start, history.
    Outages(ctl::OutagesArgs),
    /// Query the events a running sluice stored.
    Events(ctl::EventsArgs),
    /// A running sluice's silences: list, add, delete.
    Silences(ctl::SilencesArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `sluice completions bash > /etc/bash_completion.d/sluice`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `sluice man > /usr/local/share/man/man1/sluice.1`;
    /// with `--out DIR`, write it and a page per subcommand (`sluice-run.1`, …) there.
    Man {
        /// A folder to write `sluice.1` and the subcommands' pages into.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// `--config` and `--config-dir`, taken by every command that loads a pipeline.
#[derive(Args, Clone, Default)]
pub(crate) struct PipelineFiles {
    /// Pipeline files, folders (their `*.yaml` and `*.yml`) or glob patterns, merged
    /// into one pipeline (none: the embedded default pipeline). Without any,
    /// `SLUICE_CONFIG` (paths separated by commas) names them.
    #[arg(long = "config", short = 'c', value_name = "PATH")]
    pub(crate) config: Vec<PathBuf>,
    /// Folders whose `*.yaml` and `*.yml` files are pipeline files (under `run`, files
    /// added later are picked up by the watcher).
    #[arg(long = "config-dir", value_name = "DIR")]
    pub(crate) config_dir: Vec<PathBuf>,
}

impl PipelineFiles {
    /// What was given: `--config` and `--config-dir`, or else `SLUICE_CONFIG` split at
    /// its commas (a comma in a path given with `--config` is just a comma).
    pub(crate) fn specs(&self) -> Vec<PathBuf> {
        let given: Vec<PathBuf> = self
            .config
            .iter()
            .chain(&self.config_dir)
            .cloned()
            .collect();
        if !given.is_empty() {
            return given;
        }
        std::env::var_os("SLUICE_CONFIG")
            .map(|v| {
                v.to_string_lossy()
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The manual page on standard output; or, into `out`, it and one page per
/// subcommand, named as the main page refers to them (`sluice-run(1)`).
fn man_pages(out: Option<&std::path::Path>) -> std::io::Result<()> {
    let command = <Cli as clap::CommandFactory>::command();
    let Some(dir) = out else {
        return clap_mangen::Man::new(command).render(&mut std::io::stdout());
    };
    std::fs::create_dir_all(dir)?;
    let mut file = std::fs::File::create(dir.join("sluice.1"))?;
    clap_mangen::Man::new(command.clone()).render(&mut file)?;
    for sub in command.get_subcommands() {
        let name = format!("sluice-{}", sub.get_name());
        let mut file = std::fs::File::create(dir.join(format!("{name}.1")))?;
        clap_mangen::Man::new(sub.clone())
            .title(name)
            .render(&mut file)?;
    }
    Ok(())
}

/// A single-threaded runtime for the commands that talk to a running sluice; `None`,
/// with the reason on stderr, when it cannot start.
fn small_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Runs the command line `args`; the process exit code.
pub fn main() -> u8 {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Validate(args)) => validate::validate(&args),
        Some(Command::Test(args)) => test::test(&args),
        Some(Command::Config(args)) => show_config::config(&args),
        Some(Command::Graph(args)) => graph::graph(&args),
        Some(Command::Tap(args)) => tap::tap(&args),
        Some(Command::Top(args)) => top::top(&args),
        Some(Command::Schema) => schema::schema(),
        Some(Command::List) => schema::list(),
        Some(Command::Docs(args)) => docs::docs(&args),
        Some(Command::Bench(args)) => bench::bench(&args),
        Some(Command::Subscriptions(args)) => ctl::subscriptions(&args),
        Some(Command::Outages(args)) => ctl::outages(&args),
        Some(Command::Events(args)) => ctl::events(&args),
        Some(Command::Silences(args)) => ctl::silences(&args),
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "sluice", &mut std::io::stdout());
            0
        }
        Some(Command::Man { out }) => match man_pages(out.as_deref()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: cannot write the manual pages: {e}");
                1
            }
        },
        Some(Command::Run(args)) => run::run(args),
        None => run::run(cli.run),
    }
}
