//! `POST /events` and `POST /metrics` (issue 24): events in the monitoring system's
//! shape enter the pipeline through its `api` source, are acknowledged like webhooks,
//! and round-trip through the postgres sink unchanged; bad ones are refused by name
//! and nothing of their request enters the pipeline.

mod common;

use std::time::Duration;

use common::postgres::{URL, database, drop_schema};
use common::{parse, start_with};
use serde_json::{Value, json};
use sluice::api::{Access, Role};
use sluice::testing::CaptureSink;
use sluice::topology::{Drained, TopologyOptions};
use tokio_util::sync::CancellationToken;

async fn post(address: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{address}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(address: &str, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{address}{path}"))
        .bearer_auth("tok-viewer")
        .send()
        .await
        .expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_events_and_metrics_enter_the_pipeline_and_bad_ones_are_refused_by_name() {
    sluice::net::install_crypto_provider();
    let Some((db, schema)) = database().await else {
        return;
    };
    let mut p = parse(&format!(
        r#"
sources:
  posted: {{ type: api }}
sinks:
  db: {{ type: postgres, inputs: [posted], url: "{URL}", schema: {schema} }}
"#
    ));
    let seen = CaptureSink::default();
    seen.attach(&mut p, "seen", &["posted"], 100);
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TopologyOptions {
        data_dir: dir.path().to_path_buf(),
        ..TopologyOptions::default()
    };
    let (topo, telemetry) = start_with(p, options).await;
    let stop = CancellationToken::new();
    let access = Access::open()
        .with_token("dashboards", "tok-viewer", Role::Viewer)
        .with_token("oncall", "tok-operator", Role::Operator);
    let (api, _) = sluice::api::serve("127.0.0.1:0", telemetry, None, access, stop.clone())
        .await
        .expect("API");
    let api = api.to_string();

    let event = json!({
        "event_type": "alert", "source": "billing", "message": "payment errors",
        "level": "error", "tags": {"region": "eu-west-1"},
        "payload": {"errors": 17, "window": "5m"}, "timestamp": "2026-12-01T09:30:00Z",
    });
    let (status, body) = post(&api, "/events", "tok-viewer", &event).await;
    assert_eq!(status, 403, "a viewer may not post: {body}");
    let (status, body) = post(&api, "/events", "tok-operator", &event).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);

    // A bad item refuses the whole request, by name.
    let (status, body) = post(
        &api,
        "/events",
        "tok-operator",
        &json!([{"event_type": "log", "source": "a"}, {"event_type": "audit", "source": "b"}]),
    )
    .await;
    assert_eq!(status, 400);
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("event 1") && error.contains("`audit`"),
        "{error}"
    );
    for (bad, names) in [
        (json!({"event_type": "log"}), "source"),
        (
            json!({"event_type": "log", "source": "a", "colour": "red"}),
            "colour",
        ),
        (
            json!({"event_type": "log", "source": "a", "timestamp": "yesterday"}),
            "yesterday",
        ),
        (
            json!({"event_type": "log", "source": "a", "id": "42"}),
            "UUID",
        ),
        (json!("text"), "object"),
    ] {
        let (status, body) = post(&api, "/events", "tok-operator", &bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(names),
            "{body}"
        );
    }
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"event_type": "log", "source": "a"}))
        .collect();
    let (status, _) = post(&api, "/events", "tok-operator", &Value::Array(many)).await;
    assert_eq!(status, 400, "at most 1000 per request");

    let sample = json!({"name": "queue_depth", "metric_type": "gauge", "value": 41.5, "labels": {"queue": "invoices"}});
    let (status, body) = post(&api, "/metrics", "tok-operator", &sample).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &api,
        "/metrics",
        "tok-operator",
        &json!({"name": "x", "metric_type": "meter", "value": 1}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`meter`")
    );
    let (status, _) = post(&api, "/metrics?source=other", "tok-operator", &sample).await;
    assert_eq!(status, 404, "no such api source");

    let values = seen.values();
    assert_eq!(
        values.len(),
        2,
        "only the accepted requests entered: {values:?}"
    );
    let metric = serde_json::to_value(&values[1]).expect("json");
    assert_eq!(metric["event_type"], "metric");
    assert_eq!(metric["name"], "queue_depth");
    assert_eq!(metric["value"], 41.5);
    assert_eq!(metric["labels"]["queue"], "invoices");

    // The posted event, as the monitoring system stores it.
    let row = db
        .query_one(
            &format!("SELECT event_type, source, message, level, tags, payload, timestamp = '2026-12-01T09:30:00Z'::timestamptz FROM {schema}.events WHERE source = 'billing'"),
            &[],
        )
        .await
        .expect("the posted row");
    assert_eq!(row.get::<_, String>(0), "alert");
    assert_eq!(row.get::<_, String>(2), "payment errors");
    assert_eq!(row.get::<_, String>(3), "error");
    assert_eq!(row.get::<_, Value>(4), event["tags"]);
    assert_eq!(row.get::<_, Value>(5), event["payload"]);
    assert!(row.get::<_, bool>(6));

    // Read back through the API, by a viewer.
    let (status, body) = get(&api, "/events?source=billing").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 1);
    let mut back = body["events"][0].clone();
    assert!(uuid::Uuid::parse_str(back["id"].as_str().unwrap_or_default()).is_ok());
    back.as_object_mut().expect("object").remove("id");
    let mut expected = event.clone();
    expected["timestamp"] = json!("2026-12-01T09:30:00+00:00");
    assert_eq!(back, expected, "the posted event, as it came");
    let (_, body) = get(&api, "/events?event_type=metric").await;
    assert_eq!(body["count"], 1);
    assert_eq!(body["events"][0]["payload"]["name"], "queue_depth");
    let (_, body) = get(
        &api,
        "/events?start_time=2026-12-01T09:30:01Z&source=billing",
    )
    .await;
    assert_eq!(body["count"], 0, "start_time filters");
    let (_, body) = get(&api, "/events?limit=1").await;
    assert_eq!(body["count"], 1, "limit holds");
    for bad in [
        "/events?event_type=audit",
        "/events?limit=5000",
        "/events?start_time=yesterday",
        "/events?offset=-1",
        "/metrics/query",
    ] {
        assert_eq!(get(&api, bad).await.0, 400, "{bad}");
    }
    assert_eq!(get(&api, "/events?sink=nope").await.0, 404);
    let (status, body) = get(&api, "/metrics/query?name=queue_depth").await;
    assert_eq!(status, 200, "{body}");
    let samples = body["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0]["value"], 41.5);
    assert_eq!(samples[0]["labels"]["queue"], "invoices");
    assert_eq!(samples[0]["metric_type"], "gauge");

    stop.cancel();
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    drop_schema(&db, &schema).await;
}
