//! Baselines that are not the driver aimed at the receiver: `cat` of the file sluice
//! read, and a bare rdkafka consumer reading the topic sluice read.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::load::LoadError;

/// A throughput measured outside sluice.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Ceiling {
    pub(crate) what: String,
    pub(crate) events_per_sec: f64,
    pub(crate) mib_per_sec: f64,
}

/// `cat FILE` into a pipe that only counts lines.
pub(crate) fn cat(path: &Path) -> Result<Ceiling, LoadError> {
    let io = |e| LoadError::Io {
        what: format!("cat {}", path.display()),
        source: e,
    };
    let started = Instant::now();
    let mut child = Command::new("cat")
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(io)?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| LoadError::Driver("cat has no stdout".into()))?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut bytes) = (0u64, 0u64);
    loop {
        let n = out.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
    child.wait().map_err(io)?;
    let secs = started.elapsed().as_secs_f64();
    Ok(Ceiling {
        what: "cat of the same file into a pipe".into(),
        events_per_sec: lines as f64 / secs,
        mib_per_sec: bytes as f64 / secs / f64::from(1 << 20),
    })
}

/// A bare rdkafka consumer (no decoding, no acknowledgements) reading `count`
/// messages of `topic` from the start, timed from its first message to its last, as
/// sluice is.
pub(crate) fn kafka_consumer(
    bootstrap: &str,
    topic: &str,
    count: u64,
) -> Result<Ceiling, LoadError> {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("bench-baseline-{}", uuid::Uuid::new_v4()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| LoadError::Driver(format!("kafka consumer: {e}")))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| LoadError::Driver(format!("kafka subscribe: {e}")))?;
    let (mut read, mut bytes) = (0u64, 0u64);
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while read < count {
        if Instant::now() > deadline {
            return Err(LoadError::Driver(format!(
                "the bare consumer read {read} of {count} messages in 120 s"
            )));
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            started.get_or_insert_with(Instant::now);
            bytes += rdkafka::Message::payload(&m).map_or(0, <[u8]>::len) as u64;
            read += 1;
        }
    }
    let secs = started.map_or(1.0, |s| s.elapsed().as_secs_f64().max(1e-9));
    Ok(Ceiling {
        what: "a bare rdkafka consumer reading the same topic".into(),
        events_per_sec: read as f64 / secs,
        mib_per_sec: bytes as f64 / secs / f64::from(1 << 20),
    })
}
