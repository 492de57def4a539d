//! The bench's receiving end: a minimal HTTP server on loopback that notes when each
//! mark arrives. The same server is the baseline's target, so its own ceiling is part of
//! both figures.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::load::LoadError;
use crate::cli::load::marker::{self, Mark};
use crate::cli::load::scenario::Answer;

/// Arrivals of marked events: first arrivals, duplicates, latency and the last one's
/// time. Shared by the HTTP receiver and the Postgres reader.
pub(crate) struct Recorder {
    inner: Mutex<Inner>,
}

struct Inner {
    seen: Vec<bool>,
    delivered: u64,
    duplicates: u64,
    unknown: u64,
    latency_us: Histogram<u64>,
    first_arrival_ns: u64,
    last_arrival_ns: u64,
    slowest: Vec<Slow>,
}

/// What the recorder holds at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    /// Marks with ids that were never sent.
    pub(crate) unknown: u64,
    pub(crate) latency_us: Histogram<u64>,
    pub(crate) first_arrival_ns: u64,
    pub(crate) last_arrival_ns: u64,
    /// The slowest events, slowest first.
    pub(crate) slowest: Vec<Slow>,
}

/// One slow event.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Slow {
    pub(crate) id: u64,
    /// When the driver sent it, ms since the Unix epoch.
    pub(crate) sent_unix_ms: u64,
    pub(crate) latency_ms: f64,
}

/// How many of the slowest events a run names.
const SLOWEST: usize = 5;

impl Recorder {
    /// A recorder for ids `0..expected`.
    pub(crate) fn new(expected: u64) -> Arc<Self> {
        let len = usize::try_from(expected).unwrap_or(usize::MAX);
        Arc::new(Self {
            inner: Mutex::new(Inner {
                seen: vec![false; len],
                delivered: 0,
                duplicates: 0,
                unknown: 0,
                latency_us: latency_histogram(),
                first_arrival_ns: 0,
                last_arrival_ns: 0,
                slowest: Vec::new(),
            }),
        })
    }

    /// Starts over for ids `0..expected` (the baseline and sluice share one receiver).
    pub(crate) fn reset(&self, expected: u64) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.seen = vec![false; usize::try_from(expected).unwrap_or(usize::MAX)];
        g.delivered = 0;
        g.duplicates = 0;
        g.unknown = 0;
        g.latency_us.reset();
        g.first_arrival_ns = 0;
        g.last_arrival_ns = 0;
        g.slowest.clear();
    }

    /// Records every mark in one body that arrived at `arrived_ns`.
    pub(crate) fn body(&self, body: &[u8], arrived_ns: u64) {
        let mut marks = Vec::new();
        marker::scan(body, |m| marks.push(m));
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for m in marks {
            g.mark(m, arrived_ns);
        }
    }

    /// Records one mark that arrived at `arrived_ns`.
    pub(crate) fn arrived(&self, mark: Mark, arrived_ns: u64) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .mark(mark, arrived_ns);
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .delivered
    }

    pub(crate) fn tally(&self) -> Tally {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Tally {
            delivered: g.delivered,
            duplicates: g.duplicates,
            unknown: g.unknown,
            latency_us: g.latency_us.clone(),
            first_arrival_ns: g.first_arrival_ns,
            last_arrival_ns: g.last_arrival_ns,
            slowest: g.slowest.clone(),
        }
    }
}

impl Inner {
    /// Keeps the [`SLOWEST`] events, slowest first: a linear look at 5 entries, and
    /// only for an event slower than the fifth.
    fn keep_if_slow(&mut self, m: Mark, us: u64) {
        let latency_ms = us as f64 / 1e3;
        if self.slowest.len() == SLOWEST
            && self
                .slowest
                .last()
                .is_some_and(|s| s.latency_ms >= latency_ms)
        {
            return;
        }
        let at = self
            .slowest
            .iter()
            .position(|s| s.latency_ms < latency_ms)
            .unwrap_or(self.slowest.len());
        self.slowest.insert(
            at,
            Slow {
                id: m.id,
                sent_unix_ms: m.sent_ns / 1_000_000,
                latency_ms,
            },
        );
        self.slowest.truncate(SLOWEST);
    }

    fn mark(&mut self, m: Mark, arrived_ns: u64) {
        let Some(seen) = usize::try_from(m.id)
            .ok()
            .and_then(|i| self.seen.get_mut(i))
        else {
            self.unknown += 1;
            return;
        };
        if *seen {
            self.duplicates += 1;
            return;
        }
        *seen = true;
        self.delivered += 1;
        // Clocks are the same machine's; a mark can still look a hair early when the
        // sender stamped it after a coarser clock read, so clamp at 1 µs.
        let us = arrived_ns.saturating_sub(m.sent_ns) / 1_000;
        self.latency_us.saturating_record(us.max(1));
        self.keep_if_slow(m, us);
        self.last_arrival_ns = self.last_arrival_ns.max(arrived_ns);
        if self.first_arrival_ns == 0 || arrived_ns < self.first_arrival_ns {
            self.first_arrival_ns = arrived_ns;
        }
    }
}

/// Microseconds from 1 µs to 10 minutes, 3 significant digits.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// A running HTTP receiver; stops when dropped.
pub(crate) struct HttpReceiver {
    pub(crate) addr: SocketAddr,
    stop: CancellationToken,
}

impl HttpReceiver {
    /// Listens on a free loopback port; every POST (any path) is scanned for marks.
    pub(crate) async fn start(recorder: Arc<Recorder>, answer: Answer) -> Result<Self, LoadError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| LoadError::Io {
                what: "binding the receiver".into(),
                source: e,
            })?;
        let addr = listener.local_addr().map_err(|e| LoadError::Io {
            what: "the receiver's address".into(),
            source: e,
        })?;
        let app = axum::Router::new()
            .fallback(move |body: Bytes| {
                let recorder = recorder.clone();
                async move {
                    recorder.body(&body, marker::unix_ns());
                    reply(answer)
                }
            })
            .layer(axum::extract::DefaultBodyLimit::max(256 << 20));
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(Self { addr, stop })
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn reply(answer: Answer) -> Response {
    match answer {
        Answer::Ok => StatusCode::OK.into_response(),
        // What the Events API v2 answers to an accepted event.
        Answer::Pagerduty => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({
                "status": "success",
                "message": "Event processed",
                "dedup_key": "bench"
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_slowest_events_slowest_first() {
        let r = Recorder::new(20);
        // Event i was sent at 1 s and arrived (i * 7 % 20) ms later.
        for i in 0..20u64 {
            let sent_ns = 1_000_000_000;
            r.arrived(Mark { id: i, sent_ns }, sent_ns + (i * 7 % 20) * 1_000_000);
        }
        let slowest = r.tally().slowest;
        let ids: Vec<u64> = slowest.iter().map(|s| s.id).collect();
        // 19 ms is event 17 (119 % 20), then 18 ms event 14, 17 ms event 11, 16 ms
        // event 8, 15 ms event 5.
        assert_eq!(ids, [17, 14, 11, 8, 5]);
        assert_eq!(slowest[0].latency_ms, 19.0);
        assert_eq!(slowest[0].sent_unix_ms, 1_000);
        r.reset(20);
        assert!(r.tally().slowest.is_empty());
    }

    #[test]
    fn counts_first_arrivals_duplicates_and_strangers() {
        let r = Recorder::new(3);
        r.body(
            br#"{"sluice_bench":"0-1000"}{"sluice_bench":"1-2000"}"#,
            11_000,
        );
        r.body(
            br#"{"sluice_bench":"0-1000"}{"sluice_bench":"9-1"}"#,
            12_000,
        );
        let t = r.tally();
        assert_eq!((t.delivered, t.duplicates, t.unknown), (2, 1, 1));
        assert_eq!(t.latency_us.len(), 2);
        assert_eq!(t.latency_us.max(), 10);
        assert_eq!(t.last_arrival_ns, 11_000);
        assert_eq!(t.first_arrival_ns, 11_000);
        r.reset(3);
        assert_eq!(r.delivered(), 0);
    }
}
