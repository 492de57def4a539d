//! The disk buffer end to end: durability before acknowledgement, replay after a
//! restart, redelivery, segment deletion, back-pressure and damage.

use std::time::Duration;

use super::*;
use crate::buffer::WhenFull;
use crate::event::{BatchAck, Event, EventBatch, EventStatus, settle_all};
use crate::telemetry::{ComponentKind, Telemetry};
use chrono::Utc;
use vrl::value::Value;

fn metrics() -> Arc<ComponentMetrics> {
    Telemetry::new().component("out", ComponentKind::Sink, "http")
}

fn limits() -> Limits {
    Limits {
        max_events: usize::MAX,
        max_bytes: Some(1 << 20),
        when_full: WhenFull::Block,
        sync_every: None,
    }
}

/// `n` events numbered from `from`, and the receiver of their acknowledgement.
fn numbered(from: i64, n: i64) -> (EventBatch, crate::event::BatchReceiver) {
    let (ack, done) = BatchAck::with_receiver(n as usize, None);
    let src = crate::event::SourceId::intern("hook");
    let batch = (from..from + n)
        .map(|i| {
            let mut e = Event::new(Value::Object(Default::default()), src, Utc::now());
            e.insert("n", i);
            e.insert("pad", "x".repeat(200));
            e.with_ack(ack.event_ack())
        })
        .collect();
    (batch, done)
}

fn numbers(batch: &EventBatch) -> Vec<i64> {
    batch
        .iter()
        .map(|e| match e.get("n") {
            Some(Value::Integer(i)) => *i,
            other => panic!("no number: {other:?}"),
        })
        .collect()
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn acknowledges_once_durable_and_replays_only_what_was_not_settled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, mut rx, probe) = open(dir.path(), "out", &limits(), metrics()).expect("open");
    let (a, a_done) = numbered(0, 10);
    tx.send(a).await.expect("written");
    assert_eq!(
        a_done.wait().await,
        EventStatus::Delivered,
        "acknowledged once on disk"
    );
    let got = rx.recv().await.expect("batch");
    assert_eq!(numbers(&got), (0..10).collect::<Vec<_>>());
    settle_all(got, EventStatus::Delivered);
    until("the first batch is settled", || probe.is_empty()).await;

    let (b, b_done) = numbered(10, 10);
    tx.send(b).await.expect("written");
    assert_eq!(b_done.wait().await, EventStatus::Delivered);
    let in_flight = rx.recv().await.expect("batch");
    assert_eq!(in_flight.len(), 10);
    // The sink stops with the second batch in flight: it is not settled as done.
    drop(in_flight);
    drop((tx, rx, probe));
    until("the buffer is closed", || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("buffers/out/lock"))
            .is_ok_and(|f| f.try_lock().is_ok())
    })
    .await;

    let (_tx, mut rx, probe) = open(dir.path(), "out", &limits(), metrics()).expect("reopen");
    assert_eq!(probe.len(), 10, "only the unsettled batch is left");
    let replayed = rx.recv().await.expect("replayed");
    assert_eq!(numbers(&replayed), (10..20).collect::<Vec<_>>());
    assert_eq!(&*replayed[0].meta.source_id, "hook");
}

#[tokio::test]
async fn events_lost_downstream_by_accident_are_read_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, mut rx, _probe) = open(dir.path(), "out", &limits(), metrics()).expect("open");
    let (a, _) = numbered(0, 5);
    tx.send(a).await.expect("written");
    let got = rx.recv().await.expect("batch");
    settle_all(got, EventStatus::Errored);
    let again = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("read again")
        .expect("batch");
    assert_eq!(numbers(&again), vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn finished_segments_are_deleted_once_every_record_is_settled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = Limits {
        max_bytes: Some(512 << 10),
        ..limits()
    };
    let (tx, mut rx, probe) = open(dir.path(), "out", &small, metrics()).expect("open");
    let buffer_dir = dir.path().join("buffers/out");
    for i in 0..100 {
        let (b, _) = numbered(i * 10, 10);
        tx.send(b).await.expect("written");
    }
    assert!(
        segment::list(&buffer_dir).expect("list").len() > 3,
        "several 64 KiB segments"
    );
    let mut seen = Vec::new();
    while seen.len() < 1000 {
        let b = rx.recv().await.expect("batch");
        seen.extend(numbers(&b));
        settle_all(b, EventStatus::Delivered);
    }
    assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    assert!(rx.try_recv().is_none(), "all read");
    until("finished segments are removed", || {
        probe.is_empty() && segment::list(&buffer_dir).map(|l| l.len()).unwrap_or(0) == 1
    })
    .await;
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(buffer_dir.join("ledger.json")).expect("ledger"))
            .expect("json");
    assert_eq!(ledger["acked_below"], 1000);
}

#[tokio::test]
async fn a_full_buffer_holds_senders_until_records_are_settled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let few = Limits {
        max_events: 10,
        ..limits()
    };
    let (tx, mut rx, _probe) = open(dir.path(), "out", &few, metrics()).expect("open");
    let (a, _) = numbered(0, 10);
    tx.send(a).await.expect("written");
    let blocked = tokio::spawn({
        let tx = tx.clone();
        async move {
            let (b, _) = numbered(10, 1);
            tx.send(b).await.is_ok()
        }
    });
    let got = rx.recv().await.expect("batch");
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!blocked.is_finished(), "read but not settled: still held");
    settle_all(got, EventStatus::Delivered);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .expect("room")
            .expect("joined")
    );
}

#[tokio::test]
async fn a_damaged_record_is_skipped_counted_and_its_segment_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = metrics();
    {
        let (tx, _rx, _p) = open(dir.path(), "out", &limits(), Arc::clone(&m)).expect("open");
        for i in 0..3 {
            let (b, _) = numbered(i, 1);
            tx.send(b).await.expect("written");
        }
    }
    let buffer_dir = dir.path().join("buffers/out");
    let seg = segment::path(&buffer_dir, 1);
    let mut bytes = std::fs::read(&seg).expect("segment");
    let second = memchr::memmem::find_iter(&bytes, &segment::MAGIC)
        .nth(1)
        .expect("a second record");
    bytes[second + segment::HEADER + 30] ^= 0xff;
    std::fs::write(&seg, &bytes).expect("damage it");

    let (_tx, mut rx, probe) = open(dir.path(), "out", &limits(), Arc::clone(&m)).expect("starts");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let b = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("intact records")
            .expect("batch");
        seen.extend(numbers(&b));
        settle_all(b, EventStatus::Delivered);
    }
    assert_eq!(seen, vec![0, 2]);
    assert!(rx.try_recv().is_none(), "nothing else is intact");
    let damaged = m
        .labeled_counters()
        .into_iter()
        .find(|c| c.name == "sluice_buffer_damaged_records_total")
        .map(|c| c.get());
    assert_eq!(damaged, Some(1));
    until("the damaged segment is quarantined", || {
        probe.is_empty()
            && buffer_dir
                .join("quarantine")
                .join(format!("{:020}.seg", 1))
                .exists()
    })
    .await;
}
