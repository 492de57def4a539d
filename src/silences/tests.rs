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
    store.replace_origin(
        "rules",
        vec![Silence::new(spec, "s1".into(), "rules").expect("valid")],
    );
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

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t)
        .expect("time")
        .with_timezone(&Utc)
}

fn spec(matchers: &[&str], starts_at: &str, ends_at: &str) -> SilenceSpec {
    SilenceSpec {
        id: None,
        matchers: matchers.iter().map(|m| m.to_string()).collect(),
        starts_at: Some(starts_at.into()),
        ends_at: Some(ends_at.into()),
        comment: "maintenance".into(),
        created_by: "ops".into(),
    }
}

fn get(store: &SilenceStore, id: &str) -> Arc<Silence> {
    store
        .all()
        .iter()
        .find(|s| s.id == id)
        .cloned()
        .expect("listed")
}

const NOW: &str = "2026-06-01T12:00:00Z";

#[test]
fn expiring_ends_a_silence_now_keeps_it_listed_and_is_idempotent() {
    let store = SilenceStore::memory();
    let now = at(NOW);
    let active = store
        .set(spec(&["alertname=A"], NOW, "2026-06-01T14:00:00Z"), now)
        .expect("set");
    let pending = store
        .set(
            spec(
                &["alertname=B"],
                "2026-06-02T00:00:00Z",
                "2026-06-03T00:00:00Z",
            ),
            now,
        )
        .expect("set");
    let later = at("2026-06-01T12:30:00Z");
    assert_eq!(store.expire(&active, later), Ok(Expired::Now));
    let a = get(&store, &active);
    assert_eq!((a.state(later), a.ends_at), (State::Expired, Some(later)));
    assert_eq!(a.updated_at, later);
    assert_eq!(a.describe(later)["status"], "expired");
    assert!(!store.mutes(&labels(&[("alertname", "A")]), later));
    assert_eq!(store.expire(&active, later), Ok(Expired::Already));

    // A pending silence expired never becomes active.
    assert_eq!(store.expire(&pending, later), Ok(Expired::Now));
    let b = get(&store, &pending);
    assert_eq!((b.starts_at, b.ends_at), (Some(later), Some(later)));
    assert!(!store.mutes(&labels(&[("alertname", "B")]), at("2026-06-02T01:00:00Z")));

    assert_eq!(store.expire("nope", later), Err(ExpireError::NotFound));
    // Forgotten once RETENTION has passed since the end, on the next change.
    let much_later = later + RETENTION + chrono::TimeDelta::seconds(1);
    store
        .set(
            spec(&["alertname=C"], NOW, "2026-12-01T00:00:00Z"),
            much_later,
        )
        .expect("set");
    assert_eq!(store.all().len(), 1);
}

#[test]
fn the_api_refuses_what_alertmanager_refuses() {
    let store = SilenceStore::memory();
    let now = at(NOW);
    let set = |s: SilenceSpec| store.set(s, now);
    assert_eq!(
        set(spec(
            &["a=b"],
            "2026-05-01T00:00:00Z",
            "2026-05-02T00:00:00Z"
        )),
        Err(SetError::EndInPast)
    );
    assert_eq!(
        set(spec(
            &["a=b"],
            "2026-06-02T00:00:00Z",
            "2026-06-01T13:00:00Z"
        )),
        Err(SetError::StartAfterEnd)
    );
    let all_empty = set(spec(&["a=\"\"", "b=~\".*\""], NOW, "2026-06-02T00:00:00Z"));
    assert_eq!(
        all_empty.map_err(|e| e.to_string()),
        Err("silence invalid: at least one matcher must not match the empty string".into())
    );
    // A negative matcher never counts as matching the empty string.
    assert!(set(spec(&["a!=x"], NOW, "2026-06-02T00:00:00Z")).is_ok());
    let none: [&str; 0] = [];
    assert!(matches!(
        set(spec(&none, NOW, "2026-06-02T00:00:00Z")),
        Err(SetError::Invalid(_))
    ));
    let many: Vec<String> = (0..=MAX_MATCHERS).map(|n| format!("l{n}=v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(matches!(
        set(spec(&many, NOW, "2026-06-02T00:00:00Z")),
        Err(SetError::Invalid(_))
    ));
    let mut long = spec(&["a=b"], NOW, "2026-06-02T00:00:00Z");
    long.comment = "x".repeat(5000);
    assert!(matches!(set(long), Err(SetError::Invalid(_))));
    let mut unknown = spec(&["a=b"], NOW, "2026-06-02T00:00:00Z");
    unknown.id = Some("no-such-id".into());
    assert_eq!(set(unknown), Err(SetError::NotFound));

    // Silences from the pipeline file are changed there.
    store.replace_origin(
        "rules",
        vec![
            Silence::new(
                spec(&["a=b"], NOW, "2026-06-02T00:00:00Z"),
                "cfg".into(),
                "rules",
            )
            .expect("valid"),
        ],
    );
    assert!(matches!(
        store.expire("cfg", now),
        Err(ExpireError::FromConfig { .. })
    ));
    let mut change = spec(&["a=b"], NOW, "2026-06-03T00:00:00Z");
    change.id = Some("cfg".into());
    assert!(matches!(set(change), Err(SetError::FromConfig { .. })));
}

#[test]
fn updates_keep_the_id_only_when_alertmanager_would() {
    let store = SilenceStore::memory();
    let now = at(NOW);
    // A new silence that starts in the past starts now.
    let id = store
        .set(
            spec(
                &["alertname=A"],
                "2026-06-01T11:00:00Z",
                "2026-06-01T14:00:00Z",
            ),
            now,
        )
        .expect("set");
    assert_eq!(get(&store, &id).starts_at, Some(now));

    // Same matchers and start: a longer end, in place.
    let mut longer = spec(&["alertname=A"], NOW, "2026-06-01T18:00:00Z");
    longer.id = Some(id.clone());
    longer.comment = "longer".into();
    let later = at("2026-06-01T12:10:00Z");
    assert_eq!(store.set(longer, later).as_deref(), Ok(id.as_str()));
    let s = get(&store, &id);
    assert_eq!((s.spec.comment.as_str(), s.updated_at), ("longer", later));
    assert_eq!(store.all().len(), 1);

    // Other matchers: the old one is expired, a new one made.
    let mut other = spec(&["alertname=B"], NOW, "2026-06-01T18:00:00Z");
    other.id = Some(id.clone());
    let new = store.set(other, later).expect("set");
    assert_ne!(new, id);
    assert_eq!(get(&store, &id).state(later), State::Expired);
    assert_eq!(get(&store, &new).state(later), State::Active);

    // A moved start of an active silence: also a new one.
    let mut moved = spec(
        &["alertname=B"],
        "2026-06-01T12:05:00Z",
        "2026-06-01T18:00:00Z",
    );
    moved.id = Some(new.clone());
    let newer = store.set(moved, later).expect("set");
    assert_ne!(newer, new);

    // A pending silence may move its start forward in place.
    let pending = store
        .set(
            spec(
                &["alertname=P"],
                "2026-06-02T00:00:00Z",
                "2026-06-03T00:00:00Z",
            ),
            later,
        )
        .expect("set");
    let mut forward = spec(
        &["alertname=P"],
        "2026-06-02T06:00:00Z",
        "2026-06-03T00:00:00Z",
    );
    forward.id = Some(pending.clone());
    assert_eq!(store.set(forward, later).as_deref(), Ok(pending.as_str()));

    // An expired silence is never revived: a new id.
    store.expire(&pending, later).expect("expire");
    let mut revive = spec(
        &["alertname=P"],
        "2026-06-02T06:00:00Z",
        "2026-06-03T00:00:00Z",
    );
    revive.id = Some(pending.clone());
    assert_ne!(store.set(revive, later).expect("set"), pending);
}

#[test]
fn saved_silences_keep_their_update_time_and_old_files_still_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = chrono::Utc::now();
    let store = SilenceStore::memory();
    store.attach_dir(dir.path()).expect("attach");
    let ends = rfc3339(now + chrono::TimeDelta::hours(1));
    let id = store
        .set(spec(&["alertname=A"], &rfc3339(now), &ends), now)
        .expect("set");
    let again = SilenceStore::memory();
    again.attach_dir(dir.path()).expect("attach");
    assert_eq!(get(&again, &id).updated_at, get(&store, &id).updated_at);

    let old = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        old.path().join("silences.json"),
        format!(r#"[{{"origin":"api","id":"old","matchers":["a=b"],"ends_at":"{ends}"}}]"#),
    )
    .expect("write");
    let loaded = SilenceStore::memory();
    loaded.attach_dir(old.path()).expect("attach");
    assert_eq!(get(&loaded, "old").state(now), State::Active);
}
