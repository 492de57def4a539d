//! Drivers: send `count` marked events through a real interface, at a fixed rate or
//! flat out. Each event's mark is stamped as it is handed to the interface, so the
//! latency a receiver computes includes any time sluice's backpressure held the sender.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::cli::load::LoadError;
use crate::cli::load::marker::{self, FIELD, Mark};

/// Shared progress counter: events handed over so far.
pub(crate) type Sent = Arc<AtomicU64>;

/// What a driver did.
#[derive(Debug, Clone, Default)]
pub(crate) struct DriverOutcome {
    /// Events accepted by the interface (2xx, written, acknowledged by the broker).
    pub(crate) sent: u64,
    /// Events the interface refused for good.
    pub(crate) failed: u64,
    /// Requests answered 429/503 and sent again (backpressure).
    pub(crate) retried: u64,
    /// Payload bytes handed over.
    pub(crate) bytes: u64,
    /// When the first event was sent (Unix ns).
    pub(crate) started_ns: u64,
    /// When the driver finished.
    pub(crate) finished_ns: u64,
}

/// When event `id` is due: `id / rate` after the start, or now when flat out.
pub(crate) fn due(start: Instant, id: u64, rate: Option<f64>) -> Option<Instant> {
    rate.map(|r| start + Duration::from_secs_f64(id as f64 / r))
}

/// One JSON line of about `size` bytes carrying `mark`.
pub(crate) fn json_event(mark: Mark, size: usize) -> String {
    let mut line = format!(
        "{{\"{FIELD}\":\"{}\",\"n\":{},\"event_type\":\"log\",\"service\":\"checkout\",\"severity\":\"high\",\"region\":\"eu-west-1\",\"message\":\"",
        mark.value(),
        mark.id
    );
    let pad = size.saturating_sub(line.len() + 2);
    line.extend(std::iter::repeat_n('x', pad));
    line.push_str("\"}");
    line
}

/// Builds one request body for events `first..first + n`.
pub(crate) trait BodyMaker: Send + Sync + 'static {
    fn body(&self, first: u64, n: u64) -> Vec<u8>;
}

/// NDJSON of generated events.
pub(crate) struct Ndjson {
    pub(crate) event_bytes: usize,
}

impl BodyMaker for Ndjson {
    fn body(&self, first: u64, n: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity((self.event_bytes + 1) * n as usize);
        for id in first..first + n {
            out.extend_from_slice(json_event(Mark::now(id), self.event_bytes).as_bytes());
            out.push(b'\n');
        }
        out
    }
}

/// A vendor payload with the mark inserted into one of its objects.
pub(crate) struct Fixture {
    doc: serde_json::Value,
    mark_at: String,
}

impl Fixture {
    pub(crate) fn load(
        path: &Path,
        mark_at: &str,
        single: Option<&str>,
    ) -> Result<Self, LoadError> {
        let text = std::fs::read(path).map_err(|e| LoadError::Io {
            what: path.display().to_string(),
            source: e,
        })?;
        let mut doc: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| LoadError::Scenario {
                file: path.display().to_string(),
                message: format!("the fixture is not JSON: {e}"),
            })?;
        if let Some(pointer) = single {
            match doc.pointer_mut(pointer) {
                Some(serde_json::Value::Array(items)) if !items.is_empty() => items.truncate(1),
                _ => {
                    return Err(LoadError::Scenario {
                        file: path.display().to_string(),
                        message: format!("`single: {pointer}` is not a non-empty array"),
                    });
                }
            }
        }
        if !doc
            .pointer(mark_at)
            .is_some_and(serde_json::Value::is_object)
        {
            return Err(LoadError::Scenario {
                file: path.display().to_string(),
                message: format!("`mark_at: {mark_at}` is not an object in the fixture"),
            });
        }
        Ok(Self {
            doc,
            mark_at: mark_at.to_owned(),
        })
    }
}

impl BodyMaker for Fixture {
    fn body(&self, first: u64, _n: u64) -> Vec<u8> {
        let mut doc = self.doc.clone();
        if let Some(serde_json::Value::Object(o)) = doc.pointer_mut(&self.mark_at) {
            o.insert(FIELD.into(), Mark::now(first).value().into());
        }
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

/// POSTs `count` events to `url`, `batch` per request, `concurrency` requests at once.
pub(crate) async fn http(
    url: String,
    maker: Arc<dyn BodyMaker>,
    count: u64,
    batch: u64,
    rate: Option<f64>,
    concurrency: usize,
    sent: Sent,
) -> Result<DriverOutcome, LoadError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| LoadError::Driver(format!("HTTP client: {e}")))?;
    let permits = Arc::new(Semaphore::new(concurrency));
    let failed = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let started_ns = marker::unix_ns();
    let mut tasks = tokio::task::JoinSet::new();
    let mut first = 0;
    while first < count {
        let n = batch.min(count - first);
        if let Some(at) = due(start, first, rate) {
            tokio::time::sleep_until(at.into()).await;
        }
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| LoadError::Driver(e.to_string()))?;
        let (client, url, maker) = (client.clone(), url.clone(), maker.clone());
        let (failed, retried, bytes, sent) =
            (failed.clone(), retried.clone(), bytes.clone(), sent.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let body = bytes::Bytes::from(maker.body(first, n));
            loop {
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match answer.map(|r| r.status().as_u16()) {
                    Ok(200..=299) => {
                        bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                        sent.fetch_add(n, Ordering::Relaxed);
                        return;
                    }
                    // Backpressure: the same events again, marks unchanged.
                    Ok(429 | 503) => {
                        retried.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Ok(status) => {
                        tracing::warn!(status, "the target refused a request");
                        failed.fetch_add(n, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "request failed");
                        failed.fetch_add(n, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
        // Reap finished tasks so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
        first += n;
    }
    while tasks.join_next().await.is_some() {}
    Ok(DriverOutcome {
        sent: sent.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        retried: retried.load(Ordering::Relaxed),
        bytes: bytes.load(Ordering::Relaxed),
        started_ns,
        finished_ns: marker::unix_ns(),
    })
}

/// Appends `count` JSON lines to `path`, in chunks of up to 1,000 lines (each chunk one
/// write, as a logging library flushing its buffer would).
pub(crate) fn file(
    path: &Path,
    count: u64,
    event_bytes: usize,
    rate: Option<f64>,
    sent: &AtomicU64,
) -> Result<DriverOutcome, LoadError> {
    use std::io::Write;
    let io = |e| LoadError::Io {
        what: path.display().to_string(),
        source: e,
    };
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(io)?;
    let start = Instant::now();
    let started_ns = marker::unix_ns();
    let mut bytes = 0u64;
    let mut first = 0;
    let mut chunk = Vec::new();
    while first < count {
        let n = match rate {
            // Lines due by now, at least one: wait for the next one when none is.
            Some(r) => {
                let due_now = (start.elapsed().as_secs_f64() * r) as u64;
                if due_now <= first {
                    if let Some(at) = due(start, first, rate) {
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    }
                    1
                } else {
                    (due_now - first).min(1_000)
                }
            }
            None => 1_000,
        }
        .min(count - first);
        chunk.clear();
        for id in first..first + n {
            chunk.extend_from_slice(json_event(Mark::now(id), event_bytes).as_bytes());
            chunk.push(b'\n');
        }
        out.write_all(&chunk).map_err(io)?;
        bytes += chunk.len() as u64;
        first += n;
        sent.store(first, Ordering::Relaxed);
    }
    out.flush().map_err(io)?;
    Ok(DriverOutcome {
        sent: count,
        failed: 0,
        retried: 0,
        bytes,
        started_ns,
        finished_ns: marker::unix_ns(),
    })
}

/// Produces `count` JSON messages round-robin over `partitions`, each awaited for the
/// broker's acknowledgement (in windows of 10,000 so memory stays bounded).
pub(crate) async fn kafka(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    count: u64,
    event_bytes: usize,
    rate: Option<f64>,
    sent: Sent,
) -> Result<DriverOutcome, LoadError> {
    use rdkafka::producer::FutureRecord;
    let producer = crate::testing::kafka::producer(bootstrap);
    let start = Instant::now();
    let started_ns = marker::unix_ns();
    let mut pending = Vec::with_capacity(10_000);
    let (mut failed, mut bytes) = (0u64, 0u64);
    let settle = |pending: &mut Vec<_>| {
        let batch: Vec<_> = std::mem::take(pending);
        async move {
            let mut bad = 0u64;
            for f in batch {
                let f: rdkafka::producer::DeliveryFuture = f;
                if !matches!(f.await, Ok(Ok(_))) {
                    bad += 1;
                }
            }
            bad
        }
    };
    for id in 0..count {
        if let Some(at) = due(start, id, rate) {
            tokio::time::sleep_until(at.into()).await;
        }
        let payload = json_event(Mark::now(id), event_bytes);
        bytes += payload.len() as u64;
        let record = FutureRecord::<(), _>::to(topic)
            .payload(&payload)
            .partition((id % u64::from(partitions.max(1))) as i32);
        match producer.send_result(record) {
            Ok(f) => pending.push(f),
            Err((e, _)) => {
                tracing::warn!(error = %e, "produce failed");
                failed += 1;
            }
        }
        if pending.len() == 10_000 {
            failed += settle(&mut pending).await;
        }
        sent.store(id + 1 - failed, Ordering::Relaxed);
    }
    failed += settle(&mut pending).await;
    sent.store(count - failed, Ordering::Relaxed);
    Ok(DriverOutcome {
        sent: count - failed,
        failed,
        retried: 0,
        bytes,
        started_ns,
        finished_ns: marker::unix_ns(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_events_are_json_of_the_asked_size_with_their_mark() {
        let m = Mark { id: 3, sent_ns: 99 };
        let line = json_event(m, 200);
        assert_eq!(line.len(), 200);
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v[FIELD], "3-99");
    }

    #[test]
    fn fixture_gets_one_alert_and_the_mark_in_its_labels() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/webhooks/grafana/alertmanager_oncall-example_firing_2alerts.json"
        ));
        let f = Fixture::load(path, "/alerts/0/labels", Some("/alerts")).expect("fixture");
        let body: serde_json::Value = serde_json::from_slice(&f.body(5, 1)).expect("json");
        assert_eq!(body["alerts"].as_array().map(Vec::len), Some(1));
        let mark = body["alerts"][0]["labels"][FIELD].as_str().expect("mark");
        assert_eq!(Mark::parse(mark).map(|m| m.id), Some(5));
    }
}
