//! The notification policy and the alert events it sends.
//!
//! An alert group is one rule and one set of `group_by` values, so it holds one alert.
//! Its first notification goes out `group_wait` after it fired; a change (resolution)
//! goes out no sooner than `group_interval` after the previous notification; a still-
//! firing alert is sent again every `repeat_interval`. A resolution is sent only when
//! `send_resolved` is on and its firing was notified. A muted alert (silenced or
//! inhibited) sends nothing and records nothing, so when the mute ends the alert is
//! notified at the next evaluation if its state was never sent; a resolution that
//! happens under a mute is not sent. Decisions are taken at evaluations, so every
//! delay is rounded up to the `evaluation_interval`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use vrl::value::{KeyString, ObjectMap, Value};

use super::config::Rule;
use super::lifecycle::Alert;
use crate::alert::{Status, field};
use crate::event::{Event, SourceId};

/// Delays in ms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) group_wait: i64,
    pub(crate) group_interval: i64,
    pub(crate) repeat_interval: i64,
    pub(crate) send_resolved: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Wait,
    Send,
    /// Forget the alert without sending (a resolution nobody needs to hear about).
    Forget,
}

impl Policy {
    pub(crate) fn decide(&self, alert: &Alert, now: i64, muted: bool) -> Decision {
        match (alert.status, alert.last_sent) {
            (Status::Firing, _) if muted => Decision::Wait,
            (Status::Firing, None) => due(now >= alert.starts_at.saturating_add(self.group_wait)),
            (Status::Firing, Some((Status::Firing, at))) => {
                due(now >= at.saturating_add(self.repeat_interval))
            }
            (Status::Firing, Some((Status::Resolved, at))) => {
                due(now >= at.saturating_add(self.group_interval))
            }
            (Status::Resolved, None | Some((Status::Resolved, _))) => Decision::Forget,
            (Status::Resolved, Some((Status::Firing, _))) if muted || !self.send_resolved => {
                Decision::Forget
            }
            // Saturating: durations up to years, and times read back from a snapshot.
            (Status::Resolved, Some((Status::Firing, at))) => {
                due(now >= at.saturating_add(self.group_interval))
            }
        }
    }
}

fn due(yes: bool) -> Decision {
    if yes { Decision::Send } else { Decision::Wait }
}

/// An alert's labels: the `group_by` values (empty ones left out), the rule's labels and
/// `alertname`.
pub(crate) fn labels(rule: &Rule, key: &[String]) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = rule
        .group_by
        .iter()
        .zip(key)
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &rule.labels {
        l.insert(k.clone(), v.clone());
    }
    l.insert("alertname".into(), rule.name.clone());
    l
}

/// What silences and inhibition match against: the labels plus `severity`.
pub(crate) fn match_labels(
    labels: &BTreeMap<String, String>,
    severity: &str,
) -> BTreeMap<String, String> {
    let mut m = labels.clone();
    m.entry(field::SEVERITY.into())
        .or_insert_with(|| severity.to_owned());
    m
}

/// What templates see: `value`, `alertname`, `labels` (the input event's, with the
/// alert's own over them) and, once known, `severity`.
fn scope(
    component: SourceId,
    rule: &Rule,
    labels: &BTreeMap<String, String>,
    inputs: &BTreeMap<String, String>,
    value: Option<f64>,
    severity: Option<&str>,
) -> Event {
    let all: ObjectMap = inputs
        .iter()
        .chain(labels.iter())
        .map(|(k, v)| (KeyString::from(k.as_str()), Value::from(v.as_str())))
        .collect();
    let mut scope = ObjectMap::new();
    scope.insert("value".into(), number(value));
    scope.insert("labels".into(), Value::Object(all));
    scope.insert("alertname".into(), Value::from(rule.name.as_str()));
    if let Some(s) = severity {
        scope.insert("severity".into(), Value::from(s));
    }
    Event::new(Value::Object(scope), component, Utc::now())
}

/// The alert's severity: the rule's, or its template rendered (a rendering outside the
/// normalized set is the default, medium).
pub(crate) fn severity<'r>(
    component: SourceId,
    rule: &'r Rule,
    labels: &BTreeMap<String, String>,
    inputs: &BTreeMap<String, String>,
    value: Option<f64>,
) -> Cow<'r, str> {
    // Evaluated per label set per evaluation: a static severity is only borrowed.
    let Some(t) = &rule.severity_template else {
        return Cow::Borrowed(&rule.severity);
    };
    let rendered = t
        .render(&scope(component, rule, labels, inputs, value, None))
        .map(|s| s.trim().to_ascii_lowercase());
    match rendered {
        Ok(s) if crate::alert::SEVERITIES.contains(&s.as_str()) => Cow::Owned(s),
        other => {
            tracing::debug!(rule = %rule.name, rendered = ?other, "severity template gave no known severity; using medium");
            Cow::Borrowed(&rule.severity)
        }
    }
}

/// Stable across firing and resolved, restarts and hosts: SHA-256 of the rule name and
/// the sorted labels, 16 bytes in hex.
pub(crate) fn fingerprint(rule_name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut text = String::from(rule_name);
    for (k, v) in labels {
        text.push('\u{1f}');
        text.push_str(k);
        text.push('\u{1e}');
        text.push_str(v);
    }
    crate::hashing::fingerprint_hex(&text)
}

use crate::event::timestamp_ms as time;

fn number(v: Option<f64>) -> Value {
    // Values are finite (evaluation drops the others).
    v.map_or(Value::Null, Value::from_f64_or_zero)
}

/// The normalized alert event of one notification.
pub(crate) fn alert_event(
    component: SourceId,
    rule: &Rule,
    (labels, inputs): (&BTreeMap<String, String>, &BTreeMap<String, String>),
    severity: &str,
    alert: &Alert,
    now: DateTime<Utc>,
) -> Event {
    let scope = scope(component, rule, labels, inputs, alert.value, Some(severity));
    let annotations = rule.annotations.iter().map(|(name, source, template)| {
        // A template naming something the alert lacks is shown as written rather than
        // losing the whole notification.
        let text = template.render(&scope).unwrap_or_else(|e| {
            tracing::debug!(rule = %rule.name, annotation = %name, error = %e, "annotation left unrendered");
            source.clone()
        });
        (name.as_str(), text)
    });
    let head = Head {
        component,
        name: &rule.name,
        labels,
        severity,
    };
    notification(&head, alert, annotations, now)
}

/// Who an alert event is from and what it is about.
pub(crate) struct Head<'a> {
    pub(crate) component: SourceId,
    /// The rule's name (`alertname`).
    pub(crate) name: &'a str,
    pub(crate) labels: &'a BTreeMap<String, String>,
    pub(crate) severity: &'a str,
}

/// The normalized alert event of one notification: `summary` and `description` at the
/// top, the other annotations under `annotations`.
pub(crate) fn notification<'a>(
    head: &Head<'_>,
    alert: &Alert,
    annotations: impl Iterator<Item = (&'a str, String)>,
    now: DateTime<Utc>,
) -> Event {
    let label_map: ObjectMap = head
        .labels
        .iter()
        .map(|(k, v)| (KeyString::from(k.as_str()), Value::from(v.as_str())))
        .collect();
    let mut m = ObjectMap::new();
    m.insert("id".into(), uuid::Uuid::new_v4().to_string().into());
    m.insert("time".into(), Value::Timestamp(now));
    m.insert("event_type".into(), "alert".into());
    m.insert("source".into(), Value::from(head.component.as_str()));
    m.insert("kind".into(), "alert_rule".into());
    m.insert(field::STATUS.into(), alert.status.as_str().into());
    m.insert(field::SEVERITY.into(), Value::from(head.severity));
    m.insert(
        field::FINGERPRINT.into(),
        fingerprint(head.name, head.labels).into(),
    );
    m.insert(field::STARTS_AT.into(), time(alert.starts_at));
    if let Some(end) = alert.ends_at {
        m.insert(field::ENDS_AT.into(), time(end));
    }
    m.insert("value".into(), number(alert.value));
    let mut extra = ObjectMap::new();
    for (name, text) in annotations {
        match name {
            "summary" | "description" => {
                m.insert(KeyString::from(name), text.into());
            }
            _ => {
                extra.insert(KeyString::from(name), text.into());
            }
        }
    }
    if !extra.is_empty() {
        m.insert("annotations".into(), Value::Object(extra));
    }
    m.insert("labels".into(), Value::Object(label_map));
    Event::new(Value::Object(m), head.component, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        group_wait: 10,
        group_interval: 100,
        repeat_interval: 1000,
        send_resolved: true,
    };

    fn alert(status: Status, last_sent: Option<(Status, i64)>) -> Alert {
        Alert {
            status,
            starts_at: 0,
            ends_at: None,
            value: None,
            last_sent,
        }
    }

    #[test]
    fn group_wait_repeat_and_group_interval() {
        let new = alert(Status::Firing, None);
        assert_eq!(P.decide(&new, 9, false), Decision::Wait);
        assert_eq!(P.decide(&new, 10, false), Decision::Send);
        assert_eq!(P.decide(&new, 10, true), Decision::Wait, "muted");
        let sent = alert(Status::Firing, Some((Status::Firing, 10)));
        assert_eq!(P.decide(&sent, 1009, false), Decision::Wait);
        assert_eq!(P.decide(&sent, 1010, false), Decision::Send, "repeat");
        let resolved = alert(Status::Resolved, Some((Status::Firing, 10)));
        assert_eq!(P.decide(&resolved, 109, false), Decision::Wait);
        assert_eq!(
            P.decide(&resolved, 110, false),
            Decision::Send,
            "group_interval"
        );
        assert_eq!(P.decide(&resolved, 110, true), Decision::Forget, "muted");
        let quiet = Policy {
            send_resolved: false,
            ..P
        };
        assert_eq!(quiet.decide(&resolved, 110, false), Decision::Forget);
        let unseen = alert(Status::Resolved, None);
        assert_eq!(
            P.decide(&unseen, 5, false),
            Decision::Forget,
            "never notified"
        );
    }

    #[test]
    fn fingerprints_depend_on_rule_and_labels_only() {
        let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let a = fingerprint("R", &l(&[("host", "a"), ("env", "prod")]));
        assert_eq!(a, fingerprint("R", &l(&[("env", "prod"), ("host", "a")])));
        assert_eq!(a.len(), 32);
        assert_ne!(a, fingerprint("R", &l(&[("host", "b"), ("env", "prod")])));
        assert_ne!(a, fingerprint("S", &l(&[("host", "a"), ("env", "prod")])));
    }
}
