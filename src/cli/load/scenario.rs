//! A load scenario file (`benches/scenarios/*.yaml`): which pipeline to run, how to
//! drive it, where its output lands, and what to measure against.
//!
//! The pipeline is an ordinary pipeline file beside the scenario. It reads the
//! addresses the bench chooses from `BENCH_*` environment variables (listed in
//! [`crate::cli::load::env`]), so the same file runs unchanged on any machine.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::load::LoadError;

/// One scenario, as written in its YAML file.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Scenario {
    /// Short name, used in reports and on the command line.
    pub(crate) name: String,
    /// One line saying what is measured.
    pub(crate) description: String,
    /// The pipeline file, relative to the scenario file.
    pub(crate) pipeline: PathBuf,
    /// The figure the ratio is taken on.
    pub(crate) measure: Measure,
    pub(crate) driver: DriverConfig,
    /// Events per second; absent means flat out.
    pub(crate) rate: Option<f64>,
    /// Events sent in a full run.
    pub(crate) count: u64,
    /// Events sent under `--quick` (CI runs every scenario once this way).
    pub(crate) quick_count: u64,
    /// Requests in flight at once (HTTP drivers).
    #[serde(default = "default_concurrency")]
    pub(crate) concurrency: usize,
    pub(crate) receiver: ReceiverConfig,
    /// How long to wait for the last deliveries after the driver is done.
    #[serde(default = "default_drain", with = "humantime_serde")]
    #[schemars(schema_with = "crate::units::duration")]
    pub(crate) drain_timeout: std::time::Duration,
}

fn default_concurrency() -> usize {
    8
}

fn default_drain() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Measure {
    /// Events/s; ratio = sluice / baseline (higher is better).
    Throughput,
    /// End-to-end p50; ratio = sluice / baseline (lower is better).
    Latency,
}

/// What sends the events into sluice (and, for the baseline, into the receiver).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum DriverConfig {
    /// One vendor payload per request, POSTed to the webhook source; the mark goes into
    /// the JSON object at `mark_at` (a JSON pointer, e.g. an alert's labels).
    Webhook {
        /// Route on the source (and on the receiver for the baseline).
        path: String,
        /// The vendor payload, relative to the scenario file.
        fixture: PathBuf,
        /// JSON pointer to the object that receives the mark.
        mark_at: String,
        /// JSON pointer to an array cut down to its first element, so one request is
        /// one event.
        #[serde(default)]
        single: Option<String>,
    },
    /// NDJSON bodies of `batch` events POSTed to the webhook source.
    Ndjson {
        path: String,
        batch: usize,
        /// Approximate size of one event in bytes (padding in `message`).
        #[serde(default = "default_event_bytes")]
        event_bytes: usize,
    },
    /// PackedForward messages of `batch` events to the `fluent` source, each waiting
    /// for its ack; the baseline sends the same events as NDJSON over HTTP straight to
    /// the receiver.
    Forward {
        batch: usize,
        #[serde(default = "default_event_bytes")]
        event_bytes: usize,
    },
    /// Lines of JSON appended to the file the pipeline tails.
    File {
        #[serde(default = "default_event_bytes")]
        event_bytes: usize,
    },
    /// JSON messages produced to a Kafka topic.
    Kafka {
        partitions: u32,
        #[serde(default = "default_event_bytes")]
        event_bytes: usize,
        /// Fill the topic before sluice starts, and time sluice from its first
        /// delivery to its last, as the bare consumer is timed. A producer that waits
        /// for each acknowledgement is slower than the consumers, so producing while
        /// sluice reads would measure the producer. No latency is reported then: the
        /// messages waited in the topic on purpose.
        #[serde(default)]
        preload: bool,
    },
}

fn default_event_bytes() -> usize {
    200
}

/// Where sluice delivers: the bench's own HTTP receiver or a Postgres table.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum ReceiverConfig {
    /// A minimal HTTP server recording each mark's arrival. `pagerduty` answers as the
    /// Events API v2 does.
    Http {
        #[serde(default)]
        answer: Answer,
    },
    /// Rows in a table the bench creates; arrival is the row's `clock_timestamp()`.
    Postgres,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer {
    #[default]
    Ok,
    Pagerduty,
}

impl Scenario {
    /// Reads a scenario file; relative paths in it are resolved against its folder.
    pub(crate) fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io {
            what: path.display().to_string(),
            source: e,
        })?;
        let mut s: Self = serde_saphyr::from_str(&text).map_err(|e| LoadError::Scenario {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        s.pipeline = dir.join(&s.pipeline);
        if let DriverConfig::Webhook { fixture, .. } = &mut s.driver {
            *fixture = dir.join(&*fixture);
        }
        if s.count == 0 || s.quick_count == 0 || s.concurrency == 0 {
            return Err(LoadError::Scenario {
                file: path.display().to_string(),
                message: "`count`, `quick_count` and `concurrency` must be above 0".into(),
            });
        }
        if s.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
            return Err(LoadError::Scenario {
                file: path.display().to_string(),
                message: "`rate` must be above 0 (leave it out for flat out)".into(),
            });
        }
        Ok(s)
    }

    /// Finds a scenario by file path or by name in `dir`.
    pub(crate) fn find(name_or_path: &str, dir: &Path) -> Result<PathBuf, LoadError> {
        let direct = PathBuf::from(name_or_path);
        if direct.is_file() {
            return Ok(direct);
        }
        let named = dir.join(format!("{name_or_path}.yaml"));
        if named.is_file() {
            return Ok(named);
        }
        Err(LoadError::Scenario {
            file: name_or_path.into(),
            message: format!(
                "no such scenario file, nor {} (see `sluice bench --list`)",
                named.display()
            ),
        })
    }

    /// Every scenario file in `dir`, sorted by name.
    pub(crate) fn all_in(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
        let entries = std::fs::read_dir(dir).map_err(|e| LoadError::Io {
            what: dir.display().to_string(),
            source: e,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| e == "yaml")
                    && !p.to_string_lossy().ends_with(".pipeline.yaml")
            })
            .collect();
        files.sort();
        Ok(files)
    }
}
