//! `sluice bench`: load scenarios that drive a running sluice through its real
//! interfaces and measure what comes out the other side.
//!
//! A run starts sluice as a child process on the scenario's pipeline, sends marked
//! events with a [`driver`], records each mark's arrival at a [`receiver`] (the bench's
//! own HTTP server, or the Postgres table sluice writes), and measures a baseline in
//! the same run: the same driver aimed straight at the receiver for HTTP, `cat` for
//! files, a bare consumer and `COPY` for Kafka → Postgres ([`baseline`]). Figures are
//! end to end: from the moment a mark is handed to the interface to its arrival.
//!
//! Environment the pipelines read (set by the bench for the child):
//! `BENCH_SOURCE_ADDRESS`, `BENCH_RECEIVER`, `BENCH_FILE`,
//! `BENCH_KAFKA`, `BENCH_TOPIC`, `BENCH_GROUP`,
//! `BENCH_PG_URL`, `BENCH_PG_SCHEMA`.

pub(crate) mod baseline;
pub(crate) mod child;
pub(crate) mod driver;
pub(crate) mod forward;
pub(crate) mod marker;
pub(crate) mod noise;
pub(crate) mod postgres;
pub(crate) mod receiver;
pub(crate) mod report;
pub(crate) mod scenario;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cli::load::child::Sluice;
use crate::cli::load::driver::DriverOutcome;
use crate::cli::load::receiver::{HttpReceiver, Recorder, Tally};
use crate::cli::load::report::{Baseline, Figures, Percentiles, Report};
use crate::cli::load::scenario::{DriverConfig, Measure, ReceiverConfig, Scenario};
use crate::cli::progress::Progress;

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Scenario { file: String, message: String },
    #[error("driver: {0}")]
    Driver(String),
    #[error("{0}")]
    Sluice(String),
    #[error("postgres: {0}")]
    Postgres(String),
    #[error("{0}")]
    Unavailable(String),
}

/// Choices from the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// The scenario's `quick_count` (CI).
    pub(crate) quick: bool,
    /// Overrides the number of events.
    pub(crate) count: Option<u64>,
    /// Overrides the rate: `Some(None)` is flat out.
    pub(crate) rate: Option<Option<f64>>,
    /// The command line that reproduces the run, for the report.
    pub(crate) command: String,
}

/// Runs one scenario file.
pub(crate) async fn run(path: &Path, options: &Options) -> Result<Report, LoadError> {
    let scenario = Scenario::load(path)?;
    let count = options.count.unwrap_or(if options.quick {
        scenario.quick_count
    } else {
        scenario.count
    });
    let rate = options.rate.unwrap_or(scenario.rate);
    let mut report = Report {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        measure: scenario.measure,
        quick: options.quick,
        skipped: None,
        sent: 0,
        delivered: 0,
        duplicates: 0,
        failed: 0,
        retried: 0,
        rate,
        driver_events_per_sec: 0.0,
        sluice_peak_rss_mib: None,
        sluice_stages: Vec::new(),
        sluice: Figures::default(),
        baseline: Baseline {
            what: String::new(),
            figures: Figures::default(),
            parts: Vec::new(),
        },
        ratio: 0.0,
        machine: report::machine(),
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        command: options.command.clone(),
    };
    let run = Run {
        scenario: &scenario,
        count,
        rate,
    };
    let outcome = match (&scenario.driver, &scenario.receiver) {
        (
            DriverConfig::Webhook { .. } | DriverConfig::Ndjson { .. } | DriverConfig::Forward { .. },
            ReceiverConfig::Http { .. },
        ) => {
            run.http(&mut report).await
        }
        (DriverConfig::File { .. }, ReceiverConfig::Http { .. }) => run.file(&mut report).await,
        (DriverConfig::Kafka { .. }, ReceiverConfig::Postgres) => run.kafka(&mut report).await,
        _ => Err(LoadError::Scenario {
            file: path.display().to_string(),
            message: "this driver and receiver do not go together (webhook/ndjson/forward/file → http, kafka → postgres)".into(),
        }),
    };
    match outcome {
        Ok(()) => {}
        Err(LoadError::Unavailable(why)) if !crate::testing::kafka::in_ci() => {
            report.skipped = Some(why);
        }
        Err(e) => return Err(e),
    }
    report.compute_ratio();
    Ok(report)
}

struct Run<'a> {
    scenario: &'a Scenario,
    count: u64,
    rate: Option<f64>,
}

impl Run<'_> {
    fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn temp_dir() -> Result<std::path::PathBuf, LoadError> {
        let dir = std::env::temp_dir().join(format!("sluice-bench-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| LoadError::Io {
            what: dir.display().to_string(),
            source: e,
        })?;
        Ok(dir)
    }

    /// Webhook, NDJSON or Forward into sluice, out to the HTTP receiver; the baseline is
    /// the same driver aimed at the receiver (for Forward: the same events as NDJSON).
    async fn http(&self, report: &mut Report) -> Result<(), LoadError> {
        let ReceiverConfig::Http { answer } = self.scenario.receiver else {
            unreachable!("checked by the caller");
        };
        let (path, maker, batch): (String, Arc<dyn driver::BodyMaker>, u64) =
            match &self.scenario.driver {
                DriverConfig::Webhook {
                    path,
                    fixture,
                    mark_at,
                    single,
                } => (
                    path.clone(),
                    Arc::new(driver::Fixture::load(fixture, mark_at, single.as_deref())?),
                    1,
                ),
                DriverConfig::Ndjson {
                    path,
                    batch,
                    event_bytes,
                } => (
                    path.clone(),
                    Arc::new(driver::Ndjson {
                        event_bytes: *event_bytes,
                    }),
                    *batch as u64,
                ),
                // The baseline: the same events as NDJSON over HTTP.
                DriverConfig::Forward { batch, event_bytes } => (
                    "/ingest".into(),
                    Arc::new(driver::Ndjson {
                        event_bytes: *event_bytes,
                    }),
                    *batch as u64,
                ),
                _ => unreachable!("checked by the caller"),
            };
        let recorder = Recorder::new(self.count);
        let receiver = HttpReceiver::start(recorder.clone(), answer).await?;

        let drive = |url: String, label: &'static str| {
            let (maker, recorder) = (maker.clone(), recorder.clone());
            async move {
                let sent = Arc::new(AtomicU64::new(0));
                let progress = Watch::start(label, self.count, sent.clone(), recorder.clone());
                let outcome = driver::http(
                    url,
                    maker,
                    self.count,
                    batch,
                    self.rate,
                    self.scenario.concurrency,
                    sent,
                )
                .await?;
                wait_delivered(&recorder, outcome.sent, self.scenario.drain_timeout).await;
                progress.finish();
                Ok::<_, LoadError>(outcome)
            }
        };

        // A timer thread takes CPU, so it watches for stalls only where latency is measured.
        let timer = self.scenario.measure == Measure::Latency;
        let watch = noise::Watch::start(timer);
        let direct = drive(format!("{}{path}", receiver.url()), "baseline").await?;
        let baseline_noise = watch.finish();
        let driver = match self.scenario.driver {
            DriverConfig::Forward { .. } => "the same events as NDJSON over HTTP",
            _ => "the same driver",
        };
        report.baseline.what = format!(
            "{driver} straight into the bench's receiver ({} requests in flight)",
            self.scenario.concurrency
        );
        report.baseline.figures = figures(&direct, &recorder.tally(), false);
        report.baseline.figures.noise = Some(baseline_noise);
        recorder.reset(self.count);

        let dir = Self::temp_dir()?;
        let sluice = Sluice::start(
            &self.scenario.pipeline,
            &dir,
            &Self::env(&[("BENCH_RECEIVER", receiver.url())]),
            Some("BENCH_SOURCE_ADDRESS"),
        )
        .await?;
        let source = sluice.listen_address().to_owned();
        let watch = noise::Watch::start(timer);
        let outcome = match self.scenario.driver {
            DriverConfig::Forward { event_bytes, .. } => {
                let sent = Arc::new(AtomicU64::new(0));
                let progress = Watch::start("sluice", self.count, sent.clone(), recorder.clone());
                let concurrency = self.scenario.concurrency;
                let outcome = forward::forward(
                    source,
                    self.count,
                    batch,
                    event_bytes,
                    self.rate,
                    concurrency,
                    sent,
                )
                .await;
                if let Ok(o) = &outcome {
                    wait_delivered(&recorder, o.sent, self.scenario.drain_timeout).await;
                }
                progress.finish();
                outcome
            }
            _ => drive(format!("http://{source}{path}"), "sluice").await,
        };
        let sluice_noise = watch.finish();
        report.sluice_peak_rss_mib = sluice.peak_rss_mib();
        report.sluice_stages = sluice.stages().await;
        let stopped = sluice.stop();
        let outcome = outcome?;
        stopped?;
        let _ = std::fs::remove_dir_all(&dir);
        fill(report, &outcome, &recorder.tally(), false);
        report.sluice.noise = Some(sluice_noise);
        Ok(())
    }

    /// Lines appended to a file sluice tails, delivered to the HTTP receiver; the
    /// baseline is `cat` of the finished file.
    async fn file(&self, report: &mut Report) -> Result<(), LoadError> {
        let DriverConfig::File { event_bytes } = self.scenario.driver else {
            unreachable!("checked by the caller");
        };
        let recorder = Recorder::new(self.count);
        let receiver = HttpReceiver::start(recorder.clone(), Default::default()).await?;
        let dir = Self::temp_dir()?;
        let input = dir.join("input");
        std::fs::create_dir_all(&input).map_err(|e| LoadError::Io {
            what: input.display().to_string(),
            source: e,
        })?;
        let file = input.join("bench.log");
        std::fs::write(&file, b"").map_err(|e| LoadError::Io {
            what: file.display().to_string(),
            source: e,
        })?;
        let sluice = Sluice::start(
            &self.scenario.pipeline,
            &dir,
            &Self::env(&[
                ("BENCH_FILE", file.display().to_string()),
                ("BENCH_RECEIVER", receiver.url()),
            ]),
            None,
        )
        .await?;
        let sent = Arc::new(AtomicU64::new(0));
        let progress = Watch::start("sluice", self.count, sent.clone(), recorder.clone());
        let (count, rate, path) = (self.count, self.rate, file.clone());
        let counter = sent.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            driver::file(&path, count, event_bytes, rate, &counter)
        })
        .await
        .map_err(|e| LoadError::Driver(e.to_string()))?;
        if let Ok(o) = &outcome {
            wait_delivered(&recorder, o.sent, self.scenario.drain_timeout).await;
        }
        progress.finish();
        report.sluice_peak_rss_mib = sluice.peak_rss_mib();
        let stopped = sluice.stop();
        let outcome = outcome?;
        stopped?;
        fill(report, &outcome, &recorder.tally(), false);
        let ceiling = baseline::cat(&file)?;
        report.baseline.what = ceiling.what.clone();
        report.baseline.figures = Figures {
            events_per_sec: ceiling.events_per_sec,
            mib_per_sec: ceiling.mib_per_sec,
            elapsed_s: 0.0,
            latency_ms: None,
            slowest: Vec::new(),
            noise: None,
        };
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// Messages produced to Kafka, written by sluice into Postgres; the baseline is the
    /// slower of a bare consumer reading the topic and `COPY` of the same rows.
    async fn kafka(&self, report: &mut Report) -> Result<(), LoadError> {
        let DriverConfig::Kafka {
            partitions,
            event_bytes,
            preload,
        } = self.scenario.driver
        else {
            unreachable!("checked by the caller");
        };
        let store = match postgres::Store::create().await {
            Ok(s) => s,
            Err(e) => {
                return Err(LoadError::Unavailable(format!(
                    "PostgreSQL unreachable: {e}"
                )));
            }
        };
        let broker = Broker::start()?;
        let topic = "bench";
        broker.create_topic(topic, partitions)?;
        let bootstrap = broker.bootstrap();
        let recorder = Recorder::new(self.count);
        let dir = Self::temp_dir()?;
        let sent = Arc::new(AtomicU64::new(0));
        let produce = || {
            driver::kafka(
                &bootstrap,
                topic,
                partitions,
                self.count,
                event_bytes,
                self.rate,
                sent.clone(),
            )
        };
        let preloaded = if preload {
            Some(produce().await?)
        } else {
            None
        };
        let sluice = Sluice::start(
            &self.scenario.pipeline,
            &dir,
            &Self::env(&[
                ("BENCH_KAFKA", bootstrap.clone()),
                ("BENCH_TOPIC", topic.to_owned()),
                ("BENCH_GROUP", format!("bench-{}", uuid::Uuid::new_v4())),
                ("BENCH_PG_URL", postgres::url()),
                ("BENCH_PG_SCHEMA", store.schema.clone()),
            ]),
            None,
        )
        .await?;
        let progress = Watch::start("sluice", self.count, sent.clone(), recorder.clone());
        let outcome = match preloaded {
            Some(o) => Ok(o),
            None => produce().await,
        };
        if let Ok(o) = &outcome {
            store.wait_for(o.sent, self.scenario.drain_timeout).await?;
        }
        progress.finish();
        report.sluice_peak_rss_mib = sluice.peak_rss_mib();
        let stopped = sluice.stop();
        let outcome = outcome?;
        stopped?;
        store.record(&recorder).await?;
        fill(report, &outcome, &recorder.tally(), preload);
        // Throughput in bytes means the message payloads for every side here.
        let consumer = tokio::task::block_in_place(|| {
            baseline::kafka_consumer(&bootstrap, topic, outcome.sent)
        })?;
        let copy_rate = store.copy_baseline(outcome.sent).await?;
        let per_event = outcome.bytes as f64 / outcome.sent.max(1) as f64;
        let copy = baseline::Ceiling {
            what: "COPY of the same rows into a twin table".into(),
            events_per_sec: copy_rate,
            mib_per_sec: copy_rate * per_event / f64::from(1 << 20),
        };
        let slower = if consumer.events_per_sec <= copy.events_per_sec {
            &consumer
        } else {
            &copy
        };
        report.baseline.what = format!(
            "the slower of a bare consumer and COPY ({}; broker: {})",
            slower.what,
            broker.name()
        );
        report.baseline.figures = Figures {
            events_per_sec: slower.events_per_sec,
            mib_per_sec: slower.mib_per_sec,
            elapsed_s: 0.0,
            latency_ms: None,
            slowest: Vec::new(),
            noise: None,
        };
        report.baseline.parts = vec![consumer, copy];
        store.drop_schema().await?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}

/// A Kafka-protocol broker on loopback: tansu when installed (required under CI), else
/// librdkafka's mock cluster, which speaks the same protocol over TCP.
enum Broker {
    Tansu(crate::testing::kafka::Tansu),
    Mock(rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
}

impl Broker {
    fn start() -> Result<Self, LoadError> {
        if crate::testing::kafka::tansu_path().is_some() || crate::testing::kafka::in_ci() {
            return crate::testing::kafka::Tansu::start()
                .map(Self::Tansu)
                .ok_or_else(|| LoadError::Unavailable("tansu is not installed".into()));
        }
        rdkafka::mocking::MockCluster::new(1)
            .map(Self::Mock)
            .map_err(|e| LoadError::Unavailable(format!("mock Kafka cluster: {e}")))
    }

    fn bootstrap(&self) -> String {
        match self {
            Self::Tansu(t) => t.bootstrap.clone(),
            Self::Mock(m) => m.bootstrap_servers(),
        }
    }

    fn create_topic(&self, name: &str, partitions: u32) -> Result<(), LoadError> {
        match self {
            Self::Tansu(t) => {
                t.create_topic(name, partitions);
                Ok(())
            }
            Self::Mock(m) => m
                .create_topic(name, i32::try_from(partitions).unwrap_or(1), 1)
                .map_err(|e| LoadError::Driver(format!("creating the topic: {e}"))),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Tansu(_) => "tansu, memory storage",
            Self::Mock(_) => "librdkafka mock cluster",
        }
    }
}

/// Throughput from the first send (or, for a preloaded backlog, the first arrival) to
/// the last arrival, and the latency percentiles (none for a backlog).
fn figures(outcome: &DriverOutcome, tally: &Tally, backlog: bool) -> Figures {
    let from = if backlog {
        tally.first_arrival_ns
    } else {
        outcome.started_ns
    };
    let elapsed_ns = tally.last_arrival_ns.saturating_sub(from).max(1);
    let secs = elapsed_ns as f64 / 1e9;
    let share = tally.delivered as f64 / outcome.sent.max(1) as f64;
    Figures {
        events_per_sec: tally.delivered as f64 / secs,
        mib_per_sec: outcome.bytes as f64 * share / secs / f64::from(1 << 20),
        elapsed_s: secs,
        latency_ms: if backlog {
            None
        } else {
            Percentiles::of(&tally.latency_us)
        },
        slowest: if backlog {
            Vec::new()
        } else {
            tally.slowest.clone()
        },
        noise: None,
    }
}

fn fill(report: &mut Report, outcome: &DriverOutcome, tally: &Tally, backlog: bool) {
    let driver_ns = outcome
        .finished_ns
        .saturating_sub(outcome.started_ns)
        .max(1);
    report.driver_events_per_sec = outcome.sent as f64 / (driver_ns as f64 / 1e9);
    report.sent = outcome.sent;
    report.failed = outcome.failed;
    report.retried = outcome.retried;
    report.delivered = tally.delivered;
    report.duplicates = tally.duplicates + tally.unknown;
    report.sluice = figures(outcome, tally, backlog);
}

/// Waits until `sent` marks arrived, or `idle` passed without a new one.
async fn wait_delivered(recorder: &Recorder, sent: u64, idle: Duration) {
    let (mut last, mut changed) = (0, Instant::now());
    loop {
        let n = recorder.delivered();
        if n >= sent {
            return;
        }
        if n != last {
            (last, changed) = (n, Instant::now());
        } else if changed.elapsed() > idle {
            tracing::warn!(delivered = n, sent, "gave up waiting for deliveries");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A progress bar (on a terminal) of events sent, with deliveries in its message.
struct Watch {
    stop: tokio_util::sync::CancellationToken,
}

impl Watch {
    fn start(
        label: &'static str,
        count: u64,
        sent: Arc<AtomicU64>,
        recorder: Arc<Recorder>,
    ) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let bar = Progress::new(count, label);
        if !bar.is_hidden() {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tick.tick() => {
                            bar.set_position(sent.load(Ordering::Relaxed));
                            bar.set_message(&format!("{label}: {} delivered", recorder.delivered()));
                        }
                    }
                }
                bar.finish();
            });
        }
        Self { stop }
    }

    fn finish(self) {
        self.stop.cancel();
    }
}
