use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn silences_are_active_between_their_times_and_persist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SilenceStore::memory();
    store.attach_dir(dir.path()).expect("attach");
    let spec = SilenceSpec {
        id: None,
        matchers: vec!["alertname=HighCPU".into()],
        starts_at: Some("2026-01-01T00:00:00Z".into()),
        ends_at: Some("2026-01-01T01:00:00Z".into()),
        comment: "maintenance".into(),
        created_by: "ops".into(),
    };
    let id = store.add(Silence::new(spec, "s1".into(), "api").expect("valid"));
    assert_eq!(id, "s1");
    let l = labels(&[("alertname", "HighCPU")]);
    let at = |t: &str| {
        DateTime::parse_from_rfc3339(t)
            .expect("time")
            .with_timezone(&Utc)
    };
    assert!(!store.mutes(&l, at("2025-12-31T23:59:59Z")));
    assert!(store.mutes(&l, at("2026-01-01T00:30:00Z")));
    assert!(
        !store.mutes(&l, at("2026-01-01T01:00:00Z")),
        "ends_at is exclusive"
    );
    // Another store reading the same directory sees it.
    let again = SilenceStore::memory();
    again.attach_dir(dir.path()).expect("attach");
    assert_eq!(again.all().len(), 1);
    assert_eq!(again.all()[0].spec.comment, "maintenance");
    assert!(again.remove("s1"));
    assert!(!again.remove("s1"));
    let third = SilenceStore::memory();
    third.attach_dir(dir.path()).expect("attach");
    assert!(third.all().is_empty());
    let bad = SilenceSpec {
        ends_at: Some("yesterday".into()),
        ..SilenceSpec {
            id: None,
            matchers: vec!["a=b".into()],
            starts_at: None,
            ends_at: None,
            comment: String::new(),
            created_by: String::new(),
        }
    };
    let e = Silence::new(bad, "x".into(), "api").expect_err("bad time");
    assert!(e.contains("`ends_at`"), "{e}");
}
