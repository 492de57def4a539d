//! The transform toolbox end to end: route, sample, dedupe, throttle, aggregate,
//! flatten and unflatten (their round-trip property test lives next to the code).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{eventually, field, parse, start, start_with};
use sluice::clock::ManualClock;
use sluice::testing::CaptureSink;
use sluice::topology::{Drained, TopologyOptions};
use vrl::value::Value;

#[tokio::test]
async fn route_sends_to_every_matching_output_and_the_rest_to_unmatched() {
    let mut p = parse(
        r#"
sources:
  gen: { type: generator, count: 6, format: '{"n": {{seq}}}' }
transforms:
  r:
    type: route
    inputs: [gen]
    route:
      even: mod(to_int!(.n), 2) == 0
      big: to_int!(.n) >= 4
"#,
    );
    let (even, big, rest) = (
        CaptureSink::default(),
        CaptureSink::default(),
        CaptureSink::default(),
    );
    even.attach(&mut p, "even", &["r.even"], 100);
    big.attach(&mut p, "big", &["r.big"], 100);
    rest.attach(&mut p, "rest", &["r._unmatched"], 100);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let sorted = |s: &CaptureSink| {
        let mut v = s.ints("n");
        v.sort_unstable();
        v
    };
    assert_eq!(sorted(&even), vec![0, 2, 4]);
    assert_eq!(sorted(&big), vec![4, 5]);
    assert_eq!(sorted(&rest), vec![1, 3]);
}

#[tokio::test]
async fn sample_ratio_is_within_statistical_bounds_and_errors_are_always_kept() {
    let mut p = parse(
        r#"
sources:
  gen: { type: generator, count: 20000, batch_size: 1000, format: '{"n": {{seq}}, "level": "info"}' }
  errors: { type: generator, count: 100, format: '{"n": {{seq}}, "level": "error"}' }
transforms:
  s: { type: sample, inputs: [gen, errors], ratio: 0.1, always_keep: '.level == "error"' }
"#,
    );
    let out = CaptureSink::default();
    out.attach(&mut p, "out", &["s"], 30000);
    let (mut topo, telemetry) = start(p).await;
    topo.finished().await;
    let values = out.values();
    let errors = values
        .iter()
        .filter(|v| field(v, "level") == Value::from("error"))
        .count();
    let infos = values.len() - errors;
    assert_eq!(errors, 100, "errors are never sampled away");
    // Binomial(20000, 0.1): mean 2000, standard deviation 42.4; ±5σ.
    assert!(
        (1788..=2212).contains(&infos),
        "kept {infos} of 20000 at ratio 0.1"
    );
    let s = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "s")
        .expect("s");
    assert_eq!(s.discarded.load(Ordering::Relaxed) as usize, 20000 - infos);
}

#[tokio::test]
async fn sample_rate_keeps_one_in_n_and_keys_decide_consistently() {
    let mut p = parse(
        r#"
sources:
  gen: { type: generator, count: 1000, format: '{"n": {{seq}}, "host": "h{{seq}}"}' }
  again: { type: generator, count: 1000, format: '{"n": {{seq}}, "host": "h{{seq}}"}' }
transforms:
  every_tenth: { type: sample, inputs: [gen], rate: 10 }
  by_host: { type: sample, inputs: [gen, again], rate: 4, key_field: host }
"#,
    );
    let (tenth, hosts) = (CaptureSink::default(), CaptureSink::default());
    tenth.attach(&mut p, "tenth", &["every_tenth"], 2000);
    hosts.attach(&mut p, "hosts", &["by_host"], 2000);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    assert_eq!(tenth.values().len(), 100);
    let mut kept = hosts.ints("n");
    kept.sort_unstable();
    assert!(
        kept.chunks(2)
            .all(|pair| pair.len() == 2 && pair[0] == pair[1]),
        "a host is kept from both sources or from neither"
    );
    let distinct = kept.len() / 2;
    assert!(
        (150..=350).contains(&distinct),
        "about a quarter of 1000 hosts: {distinct}"
    );
}

#[tokio::test]
async fn dedupe_drops_repeats_until_the_ttl_and_respects_the_cache_size() {
    let clock = ManualClock::default();
    let hook = common::free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
transforms:
  d: {{ type: dedupe, inputs: [hook], ttl: 1h, cache_size: 2 }}
  f: {{ type: dedupe, inputs: [hook], fields: [host, check] }}
"#
    ));
    let (by_fp, by_fields) = (CaptureSink::default(), CaptureSink::default());
    by_fp.attach(&mut p, "by_fp", &["d"], 100);
    by_fields.attach(&mut p, "by_fields", &["f"], 100);
    let options = TopologyOptions {
        clock: Arc::new(clock.clone()),
        ..TopologyOptions::default()
    };
    let (topo, _) = start_with(p, options).await;
    common::wait_for_port(hook).await;
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("http://127.0.0.1:{hook}/"))
                .json(&body)
                .send()
                .await
                .expect("POST");
            assert_eq!(r.status(), 200, "duplicates count as delivered");
        }
    };
    let alert = |fp: &str, n: i64| serde_json::json!({"fingerprint": fp, "n": n, "host": "db1", "check": fp});
    post(serde_json::json!([
        alert("a", 1),
        alert("a", 2),
        alert("b", 3)
    ]))
    .await;
    clock.advance(Duration::from_secs(3601));
    post(serde_json::json!([alert("a", 4)])).await; // past the TTL: passes again
    post(serde_json::json!([
        alert("c", 5),
        alert("d", 6),
        alert("b", 7)
    ]))
    .await; // cache_size 2: b was evicted
    assert_eq!(by_fp.ints("n"), vec![1, 3, 4, 5, 6, 7]);
    assert_eq!(
        by_fields.ints("n"),
        vec![1, 3, 5, 6],
        "fields identity, no TTL"
    );
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
}

#[tokio::test]
async fn throttle_caps_each_key_under_concurrent_input() {
    let mut p = parse(
        r#"
sources:
  one: { type: generator, count: 300, batch_size: 7, format: '{"n": {{seq}}, "team": "t{{seq}}"}' }
  two: { type: generator, count: 300, batch_size: 5, format: '{"n": {{seq}}, "team": "t{{seq}}"}' }
transforms:
  cap:
    type: remap
    inputs: [one, two]
    source: .team = "t" + to_string(mod(to_int!(.n), 3))
  t: { type: throttle, inputs: [cap], threshold: 10, window: 1h, key_field: team }
"#,
    );
    let (passed, dropped) = (CaptureSink::default(), CaptureSink::default());
    passed.attach(&mut p, "passed", &["t"], 1000);
    dropped.attach(&mut p, "dropped", &["t.dropped"], 1000);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let passed = passed.values();
    assert_eq!(passed.len(), 30, "10 per team, 3 teams");
    for team in ["t0", "t1", "t2"] {
        assert_eq!(
            passed
                .iter()
                .filter(|v| field(v, "team") == Value::from(team))
                .count(),
            10,
            "{team}"
        );
    }
    assert_eq!(dropped.values().len(), 570);
}

#[tokio::test]
async fn aggregate_groups_and_loses_nothing_at_shutdown() {
    let hook = common::free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
transforms:
  agg: {{ type: aggregate, inputs: [hook], interval: 1h, group_by: [service], fields: [latency], name: http_requests }}
"#
    ));
    let out = CaptureSink::default();
    out.attach(&mut p, "out", &["agg"], 100);
    let (topo, _) = start(p).await;
    common::wait_for_port(hook).await;
    let body = serde_json::json!([
        {"service": "api", "latency": 10}, {"service": "api", "latency": 30.5},
        {"service": "db", "latency": 2}, {"service": "api", "latency": "n/a"}, {"other": true}
    ]);
    let client = reqwest::Client::new();
    let request = tokio::spawn(async move {
        client
            .post(format!("http://127.0.0.1:{hook}/"))
            .json(&body)
            .send()
            .await
            .expect("POST")
            .status()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !request.is_finished(),
        "held until the aggregate is emitted"
    );
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    assert_eq!(
        request.await.expect("joined"),
        200,
        "settled once flushed at shutdown"
    );
    let mut values = out.values();
    values.sort_by_key(|v| field(v, "service").to_string_lossy().into_owned());
    let total: i64 = values
        .iter()
        .map(|v| match field(v, "count") {
            Value::Integer(i) => i,
            _ => 0,
        })
        .sum();
    assert_eq!(total, 5, "every input event is counted");
    let api = values
        .iter()
        .find(|v| field(v, "service") == Value::from("api"))
        .expect("api group");
    assert_eq!(field(api, "name"), Value::from("http_requests"));
    assert_eq!(field(api, "count"), Value::from(3));
    let lat = serde_json::to_value(field(api, "latency")).expect("json");
    assert_eq!(
        lat,
        serde_json::json!({"sum": 40.5, "min": 10.0, "max": 30.5, "avg": 20.25})
    );
}

#[tokio::test]
async fn aggregate_flushes_on_its_interval_and_on_reload() {
    let yaml = |name: &str| {
        format!(
            r#"
sources:
  gen: {{ type: generator, rate: 2000, batch_size: 20, format: '{{"v": 1}}' }}
transforms:
  agg: {{ type: aggregate, inputs: [gen], interval: 100ms, fields: [v], name: {name} }}
"#
        )
    };
    let out = CaptureSink::default();
    let mut p = parse(&yaml("first"));
    out.attach(&mut p, "out", &["agg"], 1000);
    let (mut topo, telemetry) = start(p).await;
    eventually("an interval flush", || !out.values().is_empty()).await;
    let mut next = parse(&yaml("second"));
    out.attach(&mut next, "out", &["agg"], 1000);
    next.validate().expect("valid");
    let changes = topo.apply(next).await.expect("reload");
    assert_eq!(changes.changed, vec!["agg".to_string()]);
    eventually("the replacement flushes", || {
        out.values()
            .iter()
            .any(|v| field(v, "name") == Value::from("second"))
    })
    .await;
    assert_eq!(topo.stop(Duration::from_secs(5)).await, Drained::Complete);
    let counted: i64 = out
        .values()
        .iter()
        .map(|v| match field(v, "count") {
            Value::Integer(i) => i,
            _ => 0,
        })
        .sum();
    let emitted = telemetry
        .components()
        .into_iter()
        .find(|c| c.id == "gen")
        .expect("gen")
        .sent
        .load(Ordering::Relaxed);
    assert_eq!(
        counted as u64, emitted,
        "every event generated is in exactly one aggregate, across the reload"
    );
}

#[tokio::test]
async fn flatten_then_unflatten_in_a_pipeline() {
    let mut p = parse(
        r#"
sources:
  gen: { type: generator, count: 1, format: '{"a": {"b": {"c": 1}}, "l": [1, {"x": 2}]}' }
transforms:
  flat: { type: flatten, inputs: [gen], separator: "_", arrays: index }
  back: { type: unflatten, inputs: [flat], separator: "_" }
"#,
    );
    let (flat, back) = (CaptureSink::default(), CaptureSink::default());
    flat.attach(&mut p, "flat_out", &["flat"], 10);
    back.attach(&mut p, "back_out", &["back"], 10);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    assert_eq!(
        serde_json::to_string(&flat.values()[0]).expect("json"),
        r#"{"a_b_c":1,"l_0":1,"l_1_x":2}"#
    );
    assert_eq!(
        serde_json::to_string(&back.values()[0]).expect("json"),
        r#"{"a":{"b":{"c":1}},"l":[1,{"x":2}]}"#
    );
}

#[tokio::test]
async fn enrich_adds_fields_metadata_and_table_rows_and_vrl_can_look_tables_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let owners = dir.path().join("owners.csv");
    std::fs::write(
        &owners,
        "service,team,pager\napi,web,#web-oncall\ndb,data,#data-oncall\n",
    )
    .expect("write");
    let regions = dir.path().join("regions.json");
    std::fs::write(
        &regions,
        r#"{"eu-west-1": {"name": "Ireland"}, "us-east-1": {"name": "Virginia"}}"#,
    )
    .expect("write");
    let yaml = format!(
        r#"
sources:
  gen: {{ type: generator, count: 2, format: '{{"service": "db", "zone": "eu-west-1", "n": {{{{seq}}}}}}' }}
transforms:
  e:
    type: enrich
    inputs: [gen]
    fields: {{ pipeline: alerts, version: 2 }}
    extra_args: "source=legacy,owner=sre"
    metadata: {{ cluster: prod-1, region: eu, tenant: acme }}
    host: true
    tables:
      owners: {{ file: "{}", key: service }}
      regions: {{ file: "{}", key: code, field: zone, target: region_info }}
  v:
    type: remap
    inputs: [e]
    source: '.pager = get!(lookup_table!("owners", .service), ["pager"])'
"#,
        owners.display(),
        regions.display()
    );
    let mut p = parse(&yaml);
    let out = CaptureSink::default();
    out.attach(&mut p, "out", &["v"], 10);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let v = serde_json::to_value(&out.values()[0]).expect("json");
    assert_eq!(v["pipeline"], "alerts");
    assert_eq!(v["version"], 2);
    assert_eq!(v["source"], "legacy");
    assert_eq!(v["owner"], "sre");
    assert_eq!(
        v["metadata"],
        serde_json::json!({"cluster": "prod-1", "region": "eu", "tenant": "acme"})
    );
    assert!(v["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(v["owners"]["team"], "data");
    assert_eq!(v["region_info"]["name"], "Ireland");
    assert_eq!(v["pager"], "#data-oncall", "lookup_table from VRL");
}

#[tokio::test]
async fn a_changed_table_file_is_swapped_in_by_a_reload_without_rebuilding_vrl_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = dir.path().join("swap_owners.csv");
    std::fs::write(&table, "service,team\ndb,old-team\n").expect("write");
    let yaml = format!(
        r#"
sources:
  gen: {{ type: generator, rate: 500, batch_size: 5, format: '{{"service": "db"}}' }}
transforms:
  e: {{ type: enrich, inputs: [gen], tables: {{ swap_owners: {{ file: "{}", key: service }} }} }}
  v: {{ type: remap, inputs: [e], source: '.via_vrl = get!(lookup_table!("swap_owners", "db"), ["team"])' }}
"#,
        table.display()
    );
    let out = CaptureSink::default();
    let pipeline = || {
        let mut p = parse(&yaml);
        out.attach(&mut p, "out", &["v"], 1000);
        p.validate().expect("valid");
        p
    };
    let (mut topo, _) = start(pipeline()).await;
    eventually("old rows", || !out.values().is_empty()).await;
    std::fs::write(&table, "service,team\ndb,new-team\n").expect("write");
    let changes = topo.apply(pipeline()).await.expect("reload");
    assert_eq!(
        changes.changed,
        vec!["e".to_string()],
        "only the enrich that reads the file"
    );
    let latest = |field: &str| {
        out.values()
            .last()
            .map(|v| serde_json::to_value(v).expect("json")[field].clone())
    };
    eventually("new rows", || {
        latest("via_vrl") == Some(serde_json::json!("new-team"))
    })
    .await;
    assert_eq!(
        latest("swap_owners").map(|o| o["team"].clone()),
        Some(serde_json::json!("new-team"))
    );
    topo.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn dedupe_passes_each_fingerprint_once_under_concurrent_input() {
    let mut p = parse(
        r#"
sources:
  one: { type: generator, count: 500, batch_size: 7, format: '{"fingerprint": "fp{{seq}}", "from": 1}' }
  two: { type: generator, count: 500, batch_size: 3, format: '{"fingerprint": "fp{{seq}}", "from": 2}' }
transforms:
  d: { type: dedupe, inputs: [one, two], cache_size: 1000 }
"#,
    );
    let out = CaptureSink::default();
    out.attach(&mut p, "out", &["d"], 2000);
    let (mut topo, _) = start(p).await;
    topo.finished().await;
    let mut fps: Vec<String> = out
        .values()
        .iter()
        .map(|v| field(v, "fingerprint").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        fps.len(),
        500,
        "each of 500 fingerprints once, from whichever source came first"
    );
    fps.sort();
    fps.dedup();
    assert_eq!(fps.len(), 500);
}

mod properties {
    use std::path::PathBuf;
    use std::sync::Arc;

    use proptest::prelude::*;
    use sluice::component::{Transform, TransformContext, TransformOutputs};
    use sluice::event::{Event, SourceId};
    use sluice::telemetry::{ComponentKind, Telemetry};
    use vrl::value::Value;

    fn transform(yaml: &str) -> Box<dyn Transform> {
        let text = format!("sources:\n  in: {{ type: generator }}\ntransforms:\n  t: {yaml}\n");
        let p = sluice::config::parse_texts(&[(PathBuf::from("p.yaml"), text)], |_| None)
            .expect("parses");
        let def = &p.transforms["t"];
        let cx = TransformContext {
            file_notices: Default::default(),
            id: Arc::from("t"),
            metrics: Telemetry::new().component(
                "t",
                ComponentKind::Transform,
                def.config.type_name(),
            ),
            clock: Arc::new(sluice::clock::TokioClock),
            data_dir: None,
        };
        def.config.build(&cx).expect("builds")
    }

    fn events(keys: &[u8], field: &str) -> Vec<Event> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                let json = format!(r#"{{"{field}": "k{k}", "i": {i}}}"#);
                Event::new(
                    serde_json::from_str::<Value>(&json).expect("json"),
                    SourceId::intern("p"),
                    chrono::Utc::now(),
                )
            })
            .collect()
    }

    fn ints(out: &[Event], name: &str) -> Vec<i64> {
        out.iter()
            .filter_map(|e| match e.get(name) {
                Some(Value::Integer(i)) => Some(*i),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dedupe_last_state_passes_only_changes_of_each_identity() {
        let mut t =
            transform("{ type: dedupe, inputs: [in], mode: last_state, fields: [fingerprint] }");
        let seq = [
            ("a", "resolved"), // a stray resolve: new identity, passes
            ("a", "firing"),
            ("a", "firing"),
            ("b", "firing"),
            ("a", "resolved"),
            ("a", "resolved"),
            ("b", "firing"),
            ("a", "firing"),
        ];
        let events: Vec<Event> = seq
            .iter()
            .enumerate()
            .map(|(i, (fp, status))| {
                let json = format!(r#"{{"fingerprint": "{fp}", "status": "{status}", "i": {i}}}"#);
                Event::new(
                    serde_json::from_str::<Value>(&json).expect("json"),
                    SourceId::intern("p"),
                    chrono::Utc::now(),
                )
            })
            .collect();
        let mut out = TransformOutputs::new(0);
        t.process(events, &mut out);
        assert_eq!(ints(&out.default, "i"), vec![0, 1, 3, 4, 7]);
    }

    proptest! {
        #[test]
        fn dedupe_keeps_exactly_the_first_occurrences(keys in prop::collection::vec(0u8..20, 0..200)) {
            let mut t = transform("{ type: dedupe, inputs: [in], cache_size: 100 }");
            let mut out = TransformOutputs::new(0);
            t.process(events(&keys, "fingerprint"), &mut out);
            let mut seen = std::collections::HashSet::new();
            let want: Vec<i64> = keys.iter().enumerate().filter(|(_, k)| seen.insert(**k)).map(|(i, _)| i as i64).collect();
            prop_assert_eq!(ints(&out.default, "i"), want);
        }

        #[test]
        fn keyed_sampling_decides_once_per_key(keys in prop::collection::vec(0u8..50, 1..300)) {
            let mut t = transform("{ type: sample, inputs: [in], ratio: 0.5, key_field: host }");
            let mut out = TransformOutputs::new(0);
            t.process(events(&keys, "host"), &mut out);
            let kept: std::collections::HashSet<usize> = ints(&out.default, "i").into_iter().map(|i| i as usize).collect();
            let mut decision = std::collections::HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                let d = kept.contains(&i);
                prop_assert_eq!(*decision.entry(*k).or_insert(d), d, "key k{} decided both ways", k);
            }
        }
    }
}

#[tokio::test]
async fn an_aggregate_rejected_downstream_fails_the_requests_it_came_from() {
    let hook = common::free_port();
    let mut p = parse(&format!(
        r#"
sources:
  hook: {{ type: webhook, address: "127.0.0.1:{hook}" }}
transforms:
  agg: {{ type: aggregate, inputs: [hook], interval: 50ms }}
"#
    ));
    let out = CaptureSink {
        status: sluice::event::EventStatus::Rejected,
        ..CaptureSink::default()
    };
    out.attach(&mut p, "out", &["agg"], 100);
    let (topo, _) = start(p).await;
    common::wait_for_port(hook).await;
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{hook}/"))
        .body(r#"[{"a": 1}, {"a": 2}]"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(
        r.status(),
        500,
        "the aggregate was rejected, so were its inputs"
    );
    assert_eq!(field(&out.values()[0], "count"), Value::from(2));
    topo.stop(Duration::from_secs(5)).await;
}
