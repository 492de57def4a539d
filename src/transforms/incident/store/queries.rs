//! The store's SQL: its tables, reads under lock, writes, and the API's queries.

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};
use tokio_postgres::types::Json as PgJson;
use tokio_postgres::{Client, Transaction};

use super::{
    CLAIM_LIMIT, Filter, Listed, Loaded, StoreError, Tables, Writes, db, incident_of, status_of,
    text_of, time,
};
use crate::alert::field;
use crate::transforms::incident::manual::{self, ChangeError, IncidentChange, NewIncident};
use crate::transforms::incident::state::{Incident, Timing};

pub(super) async fn create_tables(client: &Client, t: &Tables) -> Result<(), StoreError> {
    if let Some(events) = &t.source_events {
        let found = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[events])
            .await
            .map_err(db)?;
        if !found.get::<_, bool>(0) {
            tracing::warn!(events_table = %events, "the incident store's events_table does not exist (yet): timelines and /stats answer 503 until it does");
        }
    }
    let index = |suffix: &str| crate::postgres::index_name(&t.incidents, suffix);
    let ddl = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {incidents} (
           id TEXT PRIMARY KEY,
           key TEXT NOT NULL,
           title TEXT,
           description TEXT,
           severity TEXT NOT NULL,
           status TEXT NOT NULL CHECK (status IN ('open','investigating','resolved','closed')),
           assigned_to TEXT,
           root_cause TEXT,
           service TEXT,
           count BIGINT NOT NULL DEFAULT 0,
           created_at TIMESTAMPTZ NOT NULL,
           updated_at TIMESTAMPTZ NOT NULL,
           resolved_at TIMESTAMPTZ,
           due_at TIMESTAMPTZ,
           state JSONB NOT NULL);
         CREATE UNIQUE INDEX IF NOT EXISTS {idx_open_key} ON {incidents} (key)
           WHERE status IN ('open','investigating');
         CREATE INDEX IF NOT EXISTS {idx_live_key} ON {incidents} (key)
           WHERE status <> 'closed';
         CREATE INDEX IF NOT EXISTS {idx_due} ON {incidents} (due_at)
           WHERE status <> 'closed';
         CREATE INDEX IF NOT EXISTS {idx_created} ON {incidents} (created_at DESC);
         CREATE TABLE IF NOT EXISTS {events} (
           seq BIGSERIAL PRIMARY KEY,
           incident_id TEXT NOT NULL REFERENCES {incidents} (id) ON DELETE CASCADE,
           at TIMESTAMPTZ NOT NULL,
           kind TEXT NOT NULL,
           text TEXT,
           alert JSONB);
         CREATE INDEX IF NOT EXISTS {idx_events} ON {events} (incident_id, at)",
        schema = t.schema,
        idx_open_key = index("open_key"),
        idx_live_key = index("live_key"),
        idx_due = index("due"),
        idx_created = index("created"),
        idx_events = crate::postgres::index_name(&t.events, "incident"),
        incidents = t.incidents,
        events = t.events,
    );
    // Present already (the usual case): no DDL, so no catalog locks are taken.
    let present = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
            &[&t.incidents, &t.events],
        )
        .await
        .map_err(db)?;
    if present.get::<_, bool>(0) {
        return Ok(());
    }
    client
        .batch_execute(&crate::postgres::serialized_ddl(&t.schema, &ddl))
        .await
        .map_err(db)
}

/// Locks `keys` (advisory, in hash order) and reads their live incidents `FOR UPDATE`.
pub(super) async fn lock_keys(
    tx: &Transaction<'_>,
    t: &Tables,
    component: &str,
    keys: &[String],
) -> Result<Loaded, StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(h) FROM (
           SELECT DISTINCT hashtextextended($2 || k, 0) AS h FROM unnest($1::text[]) AS k
           ORDER BY h) AS locks",
        &[&keys, &t.lock_scope],
    )
    .await
    .map_err(db)?;
    let rows = tx
        .query(
            &format!(
                "SELECT key, state, id FROM {} WHERE key = ANY($1) AND status <> 'closed' FOR UPDATE",
                t.incidents
            ),
            &[&keys],
        )
        .await
        .map_err(db)?;
    loaded(tx, t, component, rows).await
}

/// Claims the live incidents whose timer is due at `now` that no one else holds.
pub(super) async fn claim_due(
    tx: &Transaction<'_>,
    t: &Tables,
    component: &str,
    now: i64,
) -> Result<Loaded, StoreError> {
    let rows = tx
        .query(
            &format!(
                "SELECT key, state, id FROM {} WHERE status <> 'closed' AND due_at <= $1
                 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                t.incidents
            ),
            &[&time(now), &CLAIM_LIMIT],
        )
        .await
        .map_err(db)?;
    loaded(tx, t, component, rows).await
}

/// The incidents of `rows`, and how many are open in the store.
async fn loaded(
    tx: &Transaction<'_>,
    t: &Tables,
    component: &str,
    rows: Vec<tokio_postgres::Row>,
) -> Result<Loaded, StoreError> {
    let open = open_count(tx, t).await?;
    Ok(Loaded {
        incidents: read_rows(tx, t, component, rows).await?,
        open,
    })
}

async fn open_count(tx: &Transaction<'_>, t: &Tables) -> Result<i64, StoreError> {
    let row = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM {} WHERE status IN ('open','investigating')",
                t.incidents
            ),
            &[],
        )
        .await
        .map_err(db)?;
    Ok(row.get(0))
}

/// Incidents of `(key, state, id)` rows; unreadable ones are closed.
async fn read_rows(
    tx: &Transaction<'_>,
    t: &Tables,
    component: &str,
    rows: Vec<tokio_postgres::Row>,
) -> Result<Vec<(String, Incident)>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let key: String = row.get(0);
        let PgJson(state): PgJson<Json> = row.get(1);
        match incident_of(component, &key, state) {
            Some(i) => out.push((key, i)),
            None => {
                let id: String = row.get(2);
                tx.execute(
                    &format!(
                        "UPDATE {} SET status = 'closed', due_at = NULL WHERE id = $1",
                        t.incidents
                    ),
                    &[&id],
                )
                .await
                .map_err(db)?;
            }
        }
    }
    Ok(out)
}

pub(super) async fn write(tx: &Transaction<'_>, t: &Tables, w: Writes) -> Result<(), StoreError> {
    if !w.closed.is_empty() {
        tx.execute(
            &format!(
                "UPDATE {} SET status = 'closed', due_at = NULL, updated_at = now() WHERE id = ANY($1)",
                t.incidents
            ),
            &[&w.closed],
        )
        .await
        .map_err(db)?;
    }
    let upsert = tx
        .prepare(&format!(
            "INSERT INTO {} (id, key, title, description, severity, status, assigned_to,
               root_cause, service, count, created_at, updated_at, resolved_at, due_at, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now(), $12, $13, $14)
             ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, title = EXCLUDED.title,
               description = EXCLUDED.description, severity = EXCLUDED.severity,
               status = EXCLUDED.status, assigned_to = EXCLUDED.assigned_to,
               root_cause = EXCLUDED.root_cause, service = EXCLUDED.service,
               count = EXCLUDED.count, updated_at = now(),
               resolved_at = EXCLUDED.resolved_at, due_at = EXCLUDED.due_at,
               state = EXCLUDED.state",
            t.incidents
        ))
        .await
        .map_err(db)?;
    for row in &w.rows {
        let i = &row.incident;
        let mut state = serde_json::to_value(i)
            .map_err(|e| StoreError::Database(format!("incident {} as JSON: {e}", i.id)))?;
        no_nul(&mut state);
        let count = i64::try_from(i.count).unwrap_or(i64::MAX);
        let text = |s: Option<String>| s.map(|s| clean(&s));
        tx.execute(
            &upsert,
            &[
                &clean(&i.id),
                &clean(&row.key),
                &text(text_of(i, field::SUMMARY).or_else(|| Some(row.key.clone()))),
                &text(text_of(i, field::DESCRIPTION)),
                &clean(&i.severity),
                &row.status,
                &text(i.assigned_to.clone()),
                &text(i.root_cause.clone()),
                &text(text_of(i, field::SERVICE)),
                &count,
                &time(i.first_seen),
                &i.resolved_at.map(time),
                &row.due.map(time),
                &PgJson(state),
            ],
        )
        .await
        .map_err(db)?;
    }
    if !w.timeline.is_empty() {
        let mut rows: Vec<Json> = w
            .timeline
            .iter()
            .map(|e| {
                json!({
                    "incident_id": e.incident,
                    "at": time(e.at).to_rfc3339(),
                    "kind": e.kind,
                    "text": e.text,
                    "alert": e.alert,
                })
            })
            .collect();
        rows.iter_mut().for_each(no_nul);
        tx.execute(
            &format!(
                "INSERT INTO {events} (incident_id, at, kind, text, alert)
                 SELECT incident_id, at, kind, text, alert
                 FROM jsonb_to_recordset($1) AS r(incident_id text, at timestamptz, kind text, text text, alert jsonb)",
                events = t.events
            ),
            &[&PgJson(Json::Array(rows))],
        )
        .await
        .map_err(db)?;
    }
    Ok(())
}

fn listed(component: &str, row: &tokio_postgres::Row) -> Option<Listed> {
    let key: String = row.get(0);
    let PgJson(state): PgJson<Json> = row.get(1);
    let status: String = row.get(2);
    incident_of(component, &key, state).map(|i| (key, i, status))
}

pub(super) async fn list(
    c: &mut Client,
    t: &Tables,
    component: &str,
    f: &Filter,
) -> Result<(Vec<Listed>, i64), StoreError> {
    let rows = c
        .query(
            &format!(
                "SELECT key, state, status, count(*) OVER () FROM {}
                 WHERE ($1::text IS NULL OR status = $1)
                   AND ($2::text IS NULL OR severity = $2)
                   AND ($3::text IS NULL OR service = $3)
                 ORDER BY created_at DESC, id LIMIT $4 OFFSET $5",
                t.incidents
            ),
            &[&f.status, &f.severity, &f.service, &f.limit, &f.offset],
        )
        .await
        .map_err(db)?;
    let total = rows.first().map_or(0, |r| r.get::<_, i64>(3));
    let total = if rows.is_empty() {
        // Past the end: the window gave no count.
        let row = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}
                     WHERE ($1::text IS NULL OR status = $1)
                       AND ($2::text IS NULL OR severity = $2)
                       AND ($3::text IS NULL OR service = $3)",
                    t.incidents
                ),
                &[&f.status, &f.severity, &f.service],
            )
            .await
            .map_err(db)?;
        row.get(0)
    } else {
        total
    };
    Ok((
        rows.iter().filter_map(|r| listed(component, r)).collect(),
        total,
    ))
}

pub(super) async fn find(
    c: &mut Client,
    t: &Tables,
    component: &str,
    id: &str,
) -> Result<Option<Listed>, StoreError> {
    let row = c
        .query_opt(
            &format!(
                "SELECT key, state, status FROM {} WHERE id = $1",
                t.incidents
            ),
            &[&id],
        )
        .await
        .map_err(db)?;
    Ok(row.as_ref().and_then(|r| listed(component, r)))
}

pub(super) async fn timeline(
    c: &mut Client,
    t: &Tables,
    id: &str,
    limit: i64,
) -> Result<Option<Vec<Json>>, StoreError> {
    let Some(head) = c
        .query_opt(
            &format!(
                "SELECT service, created_at, coalesce(resolved_at, now()) FROM {} WHERE id = $1",
                t.incidents
            ),
            &[&id],
        )
        .await
        .map_err(db)?
    else {
        return Ok(None);
    };
    let service: Option<String> = head.get(0);
    let from: DateTime<Utc> = head.get(1);
    let to: DateTime<Utc> = head.get(2);
    let own = format!(
        "SELECT at, 'incident' AS origin, kind, text, alert AS detail, seq FROM {events} WHERE incident_id = $1",
        events = t.events
    );
    let rows = match (&t.source_events, &service) {
        (Some(events), Some(service)) => {
            let sql = format!(
                "SELECT * FROM (
                   {own}
                   UNION ALL
                   SELECT timestamp, 'event', event_type, message,
                          jsonb_build_object('source', source, 'level', level, 'id', id::text), 0
                   FROM {events}
                   WHERE payload->>'service' = $2
                     AND timestamp >= $3::timestamptz - interval '1 hour' AND timestamp <= $4
                 ) AS t ORDER BY at DESC, seq DESC LIMIT $5"
            );
            c.query(&sql, &[&id, service, &from, &to, &limit]).await
        }
        _ => {
            let sql = format!("SELECT * FROM ({own}) AS t ORDER BY at DESC, seq DESC LIMIT $2");
            c.query(&sql, &[&id, &limit]).await
        }
    }
    .map_err(db)?;
    let mut entries: Vec<Json> = rows
        .iter()
        .map(|r| {
            let at: DateTime<Utc> = r.get(0);
            let origin: String = r.get(1);
            let kind: String = r.get(2);
            let text: Option<String> = r.get(3);
            let detail: Option<PgJson<Json>> = r.get(4);
            json!({
                "time": at.to_rfc3339(),
                "origin": origin,
                "what": kind,
                "text": text,
                "detail": detail.map(|d| d.0),
            })
        })
        .collect();
    // The newest `limit`, oldest first.
    entries.reverse();
    Ok(Some(entries))
}

pub(super) async fn create(
    c: &mut Client,
    t: &Tables,
    timing: &Timing,
    spec: &NewIncident,
    now: i64,
) -> Result<Result<String, String>, StoreError> {
    let (key, mut incident) = match manual::new_incident(spec, now) {
        Ok(made) => made,
        Err(e) => return Ok(Err(e)),
    };
    let key = stored_key(key);
    incident.notify_at = Some(now);
    let tx = c.transaction().await.map_err(db)?;
    let loaded = lock_keys(&tx, t, "api", std::slice::from_ref(&key)).await?;
    let mut writes = Writes::default();
    if let Some((_, old)) = loaded.incidents.first() {
        if old.is_open() {
            return Ok(Err(format!("an open incident already has the key `{key}`")));
        }
        if old.pending.is_some() || old.unconfirmed.is_some() {
            return Ok(Err(format!(
                "the incident of key `{key}` has a notification still going out; retry in a minute"
            )));
        }
        writes.close(&old.id);
    }
    let id = incident.id.clone();
    writes.incident(&key, &incident, 0, false, timing);
    write(&tx, t, writes).await?;
    tx.commit().await.map_err(db)?;
    Ok(Ok(id))
}

pub(super) async fn change_incident(
    c: &mut Client,
    t: &Tables,
    component: &str,
    timing: &Timing,
    id: &str,
    change: &IncidentChange,
    now: i64,
) -> Result<Result<Listed, ChangeError>, StoreError> {
    if let Err(e) = manual::check_change(change) {
        return Ok(Err(e));
    }
    let tx = c.transaction().await.map_err(db)?;
    let Some(row) = tx
        .query_opt(
            &format!("SELECT key, status FROM {} WHERE id = $1", t.incidents),
            &[&id],
        )
        .await
        .map_err(db)?
    else {
        return Ok(Err(ChangeError::NotFound));
    };
    let key: String = row.get(0);
    let status: String = row.get(1);
    if status == "closed" {
        return Ok(Err(ChangeError::Invalid(
            "a closed incident cannot be changed".into(),
        )));
    }
    let loaded = lock_keys(&tx, t, component, std::slice::from_ref(&key)).await?;
    let Some((_, mut incident)) = loaded.incidents.into_iter().find(|(_, i)| i.id == id) else {
        return Ok(Err(ChangeError::NotFound));
    };
    let before = incident.recorded;
    if let Err(e) = manual::apply(&mut incident, change, now) {
        return Ok(Err(e));
    }
    if incident.pending.is_some() {
        incident.notify_at = Some(now);
    }
    // `closed` by hand closes a resolved incident whose resolve went out (its key can
    // no longer reopen it); one still to announce closes later, by itself.
    let close = change
        .status
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("closed"))
        && !incident.is_open()
        && incident.pending.is_none();
    let mut writes = Writes::default();
    writes.incident(&key, &incident, before, close, timing);
    write(&tx, t, writes).await?;
    tx.commit().await.map_err(db)?;
    let status = status_of(&incident, close).to_owned();
    Ok(Ok((key, incident, status)))
}

pub(super) async fn stats(c: &mut Client, t: &Tables) -> Result<Json, StoreError> {
    let row = c
        .query_one(
            &format!(
                "SELECT count(*),
                        coalesce(sum(greatest(coalesce(jsonb_array_length(state->'firing'), 0), 1)), 0)::bigint
                 FROM {} WHERE status IN ('open','investigating')",
                t.incidents
            ),
            &[],
        )
        .await
        .map_err(db)?;
    let open: i64 = row.get(0);
    let active: i64 = row.get(1);
    let (total, last_hour) = match &t.source_events {
        Some(events) => {
            let row = c
                .query_one(
                    &format!(
                        "SELECT count(*), count(*) FILTER (WHERE timestamp > now() - interval '1 hour' AND timestamp <= now()) FROM {events}"
                    ),
                    &[],
                )
                .await
                .map_err(db)?;
            (json!(row.get::<_, i64>(0)), json!(row.get::<_, i64>(1)))
        }
        None => (Json::Null, Json::Null),
    };
    Ok(json!({
        "total_events": total,
        "events_last_hour": last_hour,
        "active_alerts": active,
        "open_incidents": open,
    }))
}

/// A correlation key as the store holds it: PostgreSQL text cannot hold NUL, so U+FFFD
/// escapes (NUL becomes U+FFFD `0`, U+FFFD itself is doubled); keys with neither stay
/// as they are, and two keys never become one.
pub(crate) fn stored_key(key: String) -> String {
    if !key.contains(['\0', '\u{fffd}']) {
        return key;
    }
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        match c {
            '\0' => out.push_str("\u{fffd}0"),
            '\u{fffd}' => out.push_str("\u{fffd}\u{fffd}"),
            c => out.push(c),
        }
    }
    out
}

/// `s` without NUL characters, which PostgreSQL's text cannot hold (each becomes U+FFFD).
pub(super) fn clean(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

/// Every string and key of `v` through [`clean`].
fn no_nul(v: &mut Json) {
    match v {
        Json::String(s) if s.contains('\0') => *s = clean(s),
        Json::Array(a) => a.iter_mut().for_each(no_nul),
        Json::Object(o) if o.keys().any(|k| k.contains('\0')) => {
            let taken = std::mem::take(o);
            for (k, mut v) in taken {
                no_nul(&mut v);
                o.insert(clean(&k), v);
            }
        }
        Json::Object(o) => o.values_mut().for_each(no_nul),
        _ => {}
    }
}
