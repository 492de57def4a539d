//! One syslog message (RFC 5424, or RFC 3164 as real senders write it) into an event,
//! with `syslog_loose`, which never fails: text it cannot read as syslog becomes the
//! `message` as it is.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use syslog_loose::{IncompleteDate, ProcId, Protocol, Variant};
use vrl::value::{ObjectMap, Value};

/// The event of one message received at `now` from `peer`.
pub(crate) fn event_value(text: &str, now: DateTime<Utc>, peer: Option<&str>) -> Value {
    // RFC 3164 timestamps have no year: the one that puts the date closest before now
    // (a message of Dec 31 read on Jan 1 is last year's).
    let year = move |(month, day, hour, minute, second): IncompleteDate| {
        let this = now.year();
        let at = Utc
            .with_ymd_and_hms(this, month, day, hour, minute, second)
            .single();
        match at {
            Some(at) if at > now + chrono::Duration::days(1) => this - 1,
            _ => this,
        }
    };
    let mut m = syslog_loose::parse_message_with_year_tz(text, year, Some(Utc), Variant::Either);
    // A header the parser cannot read still starts with the PRI (appliances write
    // `<189>date=… devname=…`): keep its facility and severity.
    if m.facility.is_none()
        && m.severity.is_none()
        && let Some((facility, severity, rest)) = bare_pri(m.msg)
    {
        m.facility = facility;
        m.severity = severity;
        m.msg = rest;
    }
    let mut event = ObjectMap::new();
    let mut put = |key: &str, value: Value| {
        event.insert(key.into(), value);
    };
    // RFC 5424 allows a byte-order mark before a UTF-8 message.
    put("message", Value::from(m.msg.trim_start_matches('\u{feff}')));
    // A year outside 0000–9999 cannot be written back as RFC 5424 or RFC 3339.
    let timestamp = m
        .timestamp
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| (0..=9999).contains(&t.year()))
        .unwrap_or(now);
    put("timestamp", Value::Timestamp(timestamp));
    for (key, value) in [
        ("hostname", m.hostname),
        ("appname", m.appname),
        ("msgid", m.msgid),
    ] {
        if let Some(v) = value {
            put(key, Value::from(v));
        }
    }
    match m.procid {
        Some(ProcId::PID(pid)) => put("procid", Value::from(i64::from(pid))),
        Some(ProcId::Name(name)) => put("procid", Value::from(name)),
        None => {}
    }
    if let Some(f) = m.facility {
        put("facility", Value::from(f.as_str()));
    }
    if let Some(s) = m.severity {
        put("severity", Value::from(s.as_str()));
    }
    if let Protocol::RFC5424(version) = m.protocol {
        put("version", Value::from(i64::from(version)));
    }
    if !m.structured_data.is_empty() {
        let mut data = ObjectMap::new();
        for element in &m.structured_data {
            let mut params = ObjectMap::new();
            for (name, value) in element.params() {
                params.insert((*name).into(), Value::from(value));
            }
            data.insert(element.id.into(), Value::Object(params));
        }
        put("structured_data", Value::Object(data));
    }
    if let Some(peer) = peer {
        put("source_ip", Value::from(peer));
    }
    Value::Object(event)
}

/// `<PRI>` at the start of `text`: its facility, severity and the text after it.
fn bare_pri(
    text: &str,
) -> Option<(
    Option<syslog_loose::SyslogFacility>,
    Option<syslog_loose::SyslogSeverity>,
    &str,
)> {
    let rest = text.strip_prefix('<')?;
    let (digits, after) = rest.split_once('>')?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pri: u8 = digits.parse().ok().filter(|p| *p <= 191)?;
    let (facility, severity) = syslog_loose::decompose_pri(pri);
    Some((facility, severity, after.trim_start()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
        v.as_object()
            .and_then(|m| m.get(key))
            .unwrap_or(&Value::Null)
    }

    #[test]
    fn rfc5424_with_structured_data() {
        let now = Utc::now();
        let v = event_value(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] An application event log entry"#,
            now,
            Some("10.0.0.1"),
        );
        assert_eq!(
            get(&v, "message"),
            &Value::from("An application event log entry")
        );
        assert_eq!(get(&v, "hostname"), &Value::from("mymachine.example.com"));
        assert_eq!(get(&v, "appname"), &Value::from("evntslog"));
        assert_eq!(get(&v, "procid"), &Value::from(1234));
        assert_eq!(get(&v, "msgid"), &Value::from("ID47"));
        assert_eq!(get(&v, "facility"), &Value::from("local4"));
        assert_eq!(get(&v, "severity"), &Value::from("notice"));
        assert_eq!(get(&v, "version"), &Value::from(1));
        assert_eq!(get(&v, "source_ip"), &Value::from("10.0.0.1"));
        let sd = get(&v, "structured_data");
        assert_eq!(
            get(get(sd, "exampleSDID@32473"), "eventID"),
            &Value::from("1011")
        );
        assert_eq!(
            get(get(sd, "examplePriority@32473"), "class"),
            &Value::from("high")
        );
        let ts = "2003-10-11T22:14:15.003Z"
            .parse::<DateTime<Utc>>()
            .expect("ts");
        assert_eq!(get(&v, "timestamp"), &Value::Timestamp(ts));
    }

    #[test]
    fn rfc3164_takes_the_year_that_is_not_in_the_future() {
        let now = Utc
            .with_ymd_and_hms(2027, 1, 1, 0, 5, 0)
            .single()
            .expect("now");
        let v = event_value(
            "<34>Dec 31 23:59:00 mymachine su[230]: 'su root' failed for lonvick",
            now,
            None,
        );
        assert_eq!(get(&v, "appname"), &Value::from("su"));
        assert_eq!(get(&v, "procid"), &Value::from(230));
        assert_eq!(get(&v, "facility"), &Value::from("auth"));
        assert_eq!(get(&v, "severity"), &Value::from("crit"));
        let ts = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 0)
            .single()
            .expect("ts");
        assert_eq!(get(&v, "timestamp"), &Value::Timestamp(ts));
        assert_eq!(get(&v, "version"), &Value::Null);
    }

    #[test]
    fn a_pri_before_an_unreadable_header_is_kept() {
        let v = event_value(
            "<189>date=2026-12-06 devname=fw01 action=deny",
            Utc::now(),
            None,
        );
        assert_eq!(get(&v, "facility"), &Value::from("local7"));
        assert_eq!(get(&v, "severity"), &Value::from("notice"));
        assert_eq!(
            get(&v, "message"),
            &Value::from("date=2026-12-06 devname=fw01 action=deny")
        );
        let v = event_value("<11>disk failing", Utc::now(), None);
        assert_eq!(get(&v, "severity"), &Value::from("err"));
        let now = Utc::now();
        let far = event_value("<13>1 9999-12-31T23:59:59-10:00 h a - - - x", now, None);
        assert_eq!(
            get(&far, "timestamp"),
            &Value::Timestamp(now),
            "year 10000 is not kept"
        );
    }

    #[test]
    fn text_that_is_not_syslog_is_kept_as_the_message() {
        let now = Utc::now();
        let v = event_value("just words", now, None);
        assert_eq!(get(&v, "message"), &Value::from("just words"));
        assert_eq!(get(&v, "timestamp"), &Value::Timestamp(now));
    }
}
