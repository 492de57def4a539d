//! The `elasticsearch` sink against a loopback `_bulk` endpoint that enforces the bulk
//! API's contract (tests/common/elasticsearch.rs): per-item results decide each event's
//! fate, only busy items are sent again, refused ones are dead-lettered with
//! Elasticsearch's reason, `_id`s make resends idempotent, data streams get `create`
//! and `@timestamp`.

mod common;

use common::manual as options;

use common::elasticsearch::{Elasticsearch, PASSWORD, USER};
use common::{eventually, parse, start_with};
use serde_json::Value;
use sluice::testing::CaptureSink;

fn dead_letter(dead: &CaptureSink, i: usize) -> Value {
    serde_json::to_value(&dead.values()[i]).expect("json")["dead_letter"].clone()
}

#[tokio::test]
async fn busy_items_are_resent_alone_and_refused_ones_dead_lettered() {
    let es = Elasticsearch::default();
    es.state.lock().expect("lock").busy_items = 2;
    let port = es.start().await;
    // Six events in one batch: `n` is a number, except in the fifth (a mapping conflict).
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 6, batch_size: 6, format: '{{"n": {{{{seq}}}}, "fingerprint": "f{{{{seq}}}}", "timestamp": "2026-12-05T10:00:00Z"}}' }}
transforms:
  shape:
    type: remap
    inputs: [gen]
    source: |
      .timestamp = parse_timestamp!(.timestamp, "%+")
      if .n == 4 {{ .n = "four" }}
sinks:
  es: {{ type: elasticsearch, inputs: [shape], endpoint: "http://127.0.0.1:{port}", index: "alerts-%Y.%m.%d", id_field: fingerprint }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(&mut p, "dead", &["es.dead_letter"], 10);
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("the dead letter", || dead.values().len() == 1).await;
    let docs = es.docs("alerts-2026.12.05");
    let mut ns: Vec<i64> = docs.iter().filter_map(|d| d["n"].as_i64()).collect();
    ns.sort_unstable();
    assert_eq!(ns, [0, 1, 2, 3, 5], "every number once, none twice");
    assert_eq!(
        clock.sleeps().len(),
        1,
        "one pause before the busy items went again"
    );
    let state = es.state.lock().expect("lock");
    assert_eq!(
        state.requests, 2,
        "the second request carried only the busy items"
    );
    drop(state);
    let record = dead_letter(&dead, 0);
    assert_eq!(record["status"], 400);
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("document_parsing_exception")),
        "{record}"
    );
}

#[tokio::test]
async fn ids_make_resends_idempotent_and_data_streams_get_create_and_timestamp() {
    let es = Elasticsearch::default();
    let port = es.start().await;
    let pipeline = |n: usize| {
        parse(&format!(
            r#"
sources:
  gen: {{ type: generator, count: {n}, format: '{{"msg": "m{{{{seq}}}}", "fingerprint": "f{{{{seq}}}}", "service": "billing"}}' }}
sinks:
  idx: {{ type: elasticsearch, inputs: [gen], endpoint: "http://127.0.0.1:{port}/", index: "events-{{{{ service }}}}", id_field: fingerprint }}
  ds: {{ type: elasticsearch, inputs: [gen], endpoint: "http://127.0.0.1:{port}", index: "logs-{{{{ service }}}}-default", mode: data_stream, id_field: fingerprint }}
"#
        ))
    };
    for n in [3, 3] {
        let (_, options) = options();
        let (mut topo, _) = start_with(pipeline(n), options).await;
        topo.finished().await;
    }
    assert_eq!(
        es.docs("events-billing").len(),
        3,
        "the second run overwrote by _id"
    );
    let stream = es.docs("logs-billing-default");
    assert_eq!(
        stream.len(),
        3,
        "the second run's creates conflicted (409) and counted as delivered"
    );
    assert!(
        stream.iter().all(|d| d["@timestamp"].is_string()),
        "{stream:?}"
    );
}

#[tokio::test]
async fn gzip_and_basic_auth_and_a_wrong_password_is_not_retried() {
    let es = Elasticsearch::default();
    es.state.lock().expect("lock").require_auth = true;
    let port = es.start().await;
    let mut p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 2, format: '{{"msg": "hello"}}' }}
  bad: {{ type: generator, count: 1, format: '{{"msg": "x", "service": "Upper Case"}}' }}
sinks:
  es: {{ type: elasticsearch, inputs: [gen], endpoint: "http://127.0.0.1:{port}", index: plain, compression: gzip, auth: {{ user: {USER}, password: "{PASSWORD}" }} }}
  named: {{ type: elasticsearch, inputs: [bad], endpoint: "http://127.0.0.1:{port}", index: "x-{{{{ service }}}}", auth: {{ user: {USER}, password: "{PASSWORD}" }} }}
  wrong: {{ type: elasticsearch, inputs: [gen], endpoint: "http://127.0.0.1:{port}", index: other, auth: {{ user: {USER}, password: "not-the-Password" }} }}
"#
    ));
    let dead = CaptureSink::default();
    dead.attach(
        &mut p,
        "dead",
        &["wrong.dead_letter", "named.dead_letter"],
        10,
    );
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    eventually("three dead letters", || dead.values().len() == 3).await;
    assert_eq!(es.docs("plain").len(), 2);
    assert_eq!(es.indices(), ["plain"]);
    assert!(
        clock.sleeps().is_empty(),
        "401 and a bad index name are not retried"
    );
    let records: Vec<Value> = (0..3).map(|i| dead_letter(&dead, i)).collect();
    assert_eq!(records.iter().filter(|r| r["status"] == 401).count(), 2);
    let named = records
        .iter()
        .find(|r| r["status"] != 401)
        .expect("the bad name");
    assert!(
        named["error"]
            .as_str()
            .is_some_and(|e| e.contains(r#"index name "x-Upper Case""#)),
        "{named}"
    );
    assert!(
        !serde_json::to_string(&records)
            .expect("json")
            .contains("not-the-Password")
    );
}

#[tokio::test]
async fn an_unavailable_cluster_is_retried_whole() {
    let es = Elasticsearch::default();
    es.state.lock().expect("lock").unavailable = 2;
    let port = es.start().await;
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 4, batch_size: 4, format: '{{"n": {{{{seq}}}}}}' }}
sinks:
  es: {{ type: elasticsearch, inputs: [gen], endpoint: "http://127.0.0.1:{port}", index: a, batch: {{ max_events: 3 }} }}
"#
    ));
    let (clock, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    assert_eq!(es.docs("a").len(), 4);
    assert_eq!(clock.sleeps().len(), 2);
    assert_eq!(
        es.state.lock().expect("lock").requests,
        4,
        "two 503s, then requests of 3 and 1"
    );
}

#[tokio::test]
async fn text_timestamps_date_the_index_and_ids_may_be_paths() {
    let es = Elasticsearch::default();
    let port = es.start().await;
    let p = parse(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 2, format: '{{"timestamp": "2020-03-04T05:06:07Z", "labels": {{"fp": "same"}}}}' }}
sinks:
  es: {{ type: elasticsearch, inputs: [gen], endpoint: "http://127.0.0.1:{port}/?pipeline=enrich", index: "old-%Y.%m", id_field: labels.fp }}
  ds: {{ type: elasticsearch, inputs: [gen], endpoint: "http://127.0.0.1:{port}", index: logs-old-default, mode: data_stream }}
"#
    ));
    let (_, options) = options();
    let (mut topo, _) = start_with(p, options).await;
    topo.finished().await;
    assert_eq!(
        es.docs("old-2020.03").len(),
        1,
        "both events had _id `same`"
    );
    let stream = es.docs("logs-old-default");
    assert_eq!(stream.len(), 2);
    assert!(
        stream
            .iter()
            .all(|d| d["@timestamp"] == "2020-03-04T05:06:07Z"),
        "{stream:?}"
    );
}

#[test]
fn endpoints_with_credentials_or_bulk_are_refused() {
    for (endpoint, says) in [
        ("http://u:pw@127.0.0.1:9200", "give them in `auth`"),
        ("http://127.0.0.1:9200/_bulk", "without `/_bulk`"),
    ] {
        let mut p = parse(&format!(
            "sources:\n  g: {{ type: generator, count: 1 }}\nsinks:\n  es: {{ type: elasticsearch, inputs: [g], endpoint: \"{endpoint}\" }}\n"
        ));
        let err = p
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(says), "{endpoint}: {err}");
    }
}
