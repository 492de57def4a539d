//! Alertmanager's time intervals: named sets of times of day, weekdays, days of the
//! month, months and years, in a time zone. A route's `mute_time_intervals` mute it
//! while one of them holds; its `active_time_intervals` mute it while none does.
//!
//! Within one interval every field given must hold (an absent field always does);
//! ranges are inclusive, except times of day, whose end is exclusive (`17:00` to
//! `24:00` is the evening). Negative days of the month count from its end (`-1` is the
//! last day).

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use serde::Deserialize;

/// One named entry of `time_intervals`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimeIntervalConfig {
    /// The name routes refer to.
    pub(crate) name: String,
    /// The name holds while any of these does.
    pub(crate) time_intervals: Vec<IntervalConfig>,
}

/// One interval: every field given must hold.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IntervalConfig {
    /// Times of day, `{start_time: "09:00", end_time: "17:00"}` (end exclusive, up to
    /// `24:00`).
    #[serde(default)]
    pub(crate) times: Vec<TimeRangeConfig>,
    /// Days of the week, `monday:friday` or `sunday`.
    #[serde(default)]
    pub(crate) weekdays: Vec<String>,
    /// Days of the month, `1:7` or `-1` (the last day).
    #[serde(default)]
    pub(crate) days_of_month: Vec<String>,
    /// Months, `january:march` or `1:3`.
    #[serde(default)]
    pub(crate) months: Vec<String>,
    /// Years, `2026:2027`.
    #[serde(default)]
    pub(crate) years: Vec<String>,
    /// The time zone the fields are read in (an IANA name such as `Europe/Berlin`;
    /// default UTC).
    pub(crate) location: Option<String>,
}

/// A time-of-day range.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimeRangeConfig {
    /// `HH:MM`, inclusive.
    pub(crate) start_time: String,
    /// `HH:MM`, exclusive (`24:00` is the end of the day).
    pub(crate) end_time: String,
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// A compiled interval.
#[derive(Debug)]
pub(crate) struct Interval {
    /// Minutes of the day, end exclusive.
    times: Vec<(u32, u32)>,
    /// 0 is Sunday.
    weekdays: Vec<(u32, u32)>,
    days_of_month: Vec<(i32, i32)>,
    months: Vec<(u32, u32)>,
    years: Vec<(i32, i32)>,
    zone: chrono_tz::Tz,
}

impl Interval {
    pub(crate) fn compile(c: &IntervalConfig) -> Result<Self, String> {
        let times = c
            .times
            .iter()
            .map(|t| {
                let (start, end) = (minute(&t.start_time)?, minute(&t.end_time)?);
                if start >= end {
                    return Err(format!(
                        "`times`: `{}` is not before `{}`",
                        t.start_time, t.end_time
                    ));
                }
                Ok((start, end))
            })
            .collect::<Result<_, String>>()?;
        let named = |values: &[String], names: &[&str], option: &str| {
            values
                .iter()
                .map(|v| {
                    range(v, |s| {
                        let s = s.trim().to_ascii_lowercase();
                        names
                            .iter()
                            .position(|n| *n == s)
                            .map(|i| i as i64)
                            .or_else(|| s.parse::<i64>().ok().map(|n| n - 1))
                            .filter(|i| (0..names.len() as i64).contains(i))
                    })
                    .map(|(a, b)| (a as u32, b as u32))
                    .map_err(|e| format!("`{option}`: {e}"))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        // Weekdays are names only; months are names or 1-12.
        let weekdays = c
            .weekdays
            .iter()
            .map(|v| {
                range(v, |s| {
                    let s = s.trim().to_ascii_lowercase();
                    WEEKDAYS.iter().position(|n| *n == s).map(|i| i as i64)
                })
                .map(|(a, b)| (a as u32, b as u32))
                .map_err(|e| format!("`weekdays`: {e}"))
            })
            .collect::<Result<_, String>>()?;
        let months = named(&c.months, &MONTHS, "months")?
            .into_iter()
            .map(|(a, b)| (a + 1, b + 1))
            .collect();
        let days_of_month = c
            .days_of_month
            .iter()
            .map(|v| {
                let (a, b) = range_any_order(v, |s| {
                    s.trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|d| (1..=31).contains(&d.abs()))
                })
                .map_err(|e| format!("`days_of_month`: {e}"))?;
                Ok((a as i32, b as i32))
            })
            .collect::<Result<_, String>>()?;
        let years = c
            .years
            .iter()
            .map(|v| {
                range(v, |s| s.trim().parse::<i64>().ok().filter(|y| *y > 0))
                    .map(|(a, b)| (a as i32, b as i32))
                    .map_err(|e| format!("`years`: {e}"))
            })
            .collect::<Result<_, String>>()?;
        let zone = match &c.location {
            None => chrono_tz::UTC,
            Some(name) if name.eq_ignore_ascii_case("local") => {
                return Err("`location: Local` depends on the machine; name a zone".into());
            }
            Some(name) => name
                .parse::<chrono_tz::Tz>()
                .map_err(|_| format!("`location` `{name}` is not an IANA time zone"))?,
        };
        Ok(Self {
            times,
            weekdays,
            days_of_month,
            months,
            years,
            zone,
        })
    }

    /// Whether `at` falls in the interval.
    pub(crate) fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.zone);
        let minute = local.hour() * 60 + local.minute();
        let in_any = |ranges: &[(u32, u32)], v: u32| {
            ranges.is_empty() || ranges.iter().any(|(a, b)| *a <= v && v <= *b)
        };
        let days_in_month = days_in_month(local.year(), local.month());
        let day = local.day() as i32;
        let from_end = |d: i32| if d < 0 { days_in_month + d + 1 } else { d };
        (self.times.is_empty() || self.times.iter().any(|(a, b)| *a <= minute && minute < *b))
            && in_any(&self.weekdays, local.weekday().num_days_from_sunday())
            && (self.days_of_month.is_empty()
                || self
                    .days_of_month
                    .iter()
                    .any(|(a, b)| from_end(*a) <= day && day <= from_end(*b)))
            && in_any(&self.months, local.month())
            && (self.years.is_empty()
                || self
                    .years
                    .iter()
                    .any(|(a, b)| *a <= local.year() && local.year() <= *b))
    }
}

fn days_in_month(year: i32, month: u32) -> i32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|first| first.pred_opt())
        .map_or(31, |last| last.day() as i32)
}

/// `HH:MM` as minutes of the day, `24:00` included.
fn minute(text: &str) -> Result<u32, String> {
    let bad = || format!("time `{text}` is not HH:MM between 00:00 and 24:00");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `a:b` or `a`, each side read by `value`; `a` must not be after `b`.
fn range(text: &str, value: impl Fn(&str) -> Option<i64>) -> Result<(i64, i64), String> {
    let (a, b) = range_any_order(text, value)?;
    if a > b {
        return Err(format!("`{text}`: the start is after the end"));
    }
    Ok((a, b))
}

fn range_any_order(text: &str, value: impl Fn(&str) -> Option<i64>) -> Result<(i64, i64), String> {
    let unknown = |s: &str| format!("`{s}` in `{text}` is not a valid value");
    let (a, b) = text.split_once(':').unwrap_or((text, text));
    let a = value(a).ok_or_else(|| unknown(a))?;
    let b = value(b).ok_or_else(|| unknown(b))?;
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn interval(yaml: serde_json::Value) -> Interval {
        Interval::compile(&serde_json::from_value(yaml).expect("config")).expect("valid")
    }

    #[test]
    fn business_hours_in_a_time_zone() {
        let office = interval(serde_json::json!({
            "times": [{"start_time": "09:00", "end_time": "17:00"}],
            "weekdays": ["monday:friday"],
            "location": "Europe/Berlin",
        }));
        // Friday 2026-12-04, 08:30 UTC is 09:30 in Berlin (UTC+1 in winter).
        assert!(office.contains(at(2026, 12, 4, 8, 30)));
        // 16:00 UTC is 17:00 in Berlin: the end is exclusive.
        assert!(!office.contains(at(2026, 12, 4, 16, 0)));
        assert!(office.contains(at(2026, 12, 4, 15, 59)));
        // Saturday.
        assert!(!office.contains(at(2026, 12, 5, 9, 0)));
    }

    #[test]
    fn days_from_the_end_of_the_month_months_and_years() {
        let month_end = interval(serde_json::json!({"days_of_month": ["-3:-1"]}));
        assert!(month_end.contains(at(2026, 2, 26, 0, 0)));
        assert!(!month_end.contains(at(2026, 2, 25, 23, 59)));
        assert!(month_end.contains(at(2026, 12, 29, 0, 0)));
        let q1 = interval(serde_json::json!({"months": ["january:march"], "years": ["2026"]}));
        assert!(q1.contains(at(2026, 3, 31, 23, 0)));
        assert!(!q1.contains(at(2026, 4, 1, 0, 0)));
        assert!(!q1.contains(at(2027, 1, 1, 0, 0)));
        let numeric = interval(
            serde_json::json!({"months": ["12"], "times": [{"start_time": "22:00", "end_time": "24:00"}]}),
        );
        assert!(numeric.contains(at(2026, 12, 31, 23, 59)));
    }

    #[test]
    fn bad_intervals_say_which_field() {
        for (yaml, says) in [
            (serde_json::json!({"weekdays": ["funday"]}), "`weekdays`"),
            (
                serde_json::json!({"weekdays": ["friday:monday"]}),
                "start is after",
            ),
            (serde_json::json!({"months": ["13"]}), "`months`"),
            (
                serde_json::json!({"days_of_month": ["0"]}),
                "`days_of_month`",
            ),
            (
                serde_json::json!({"times": [{"start_time": "17:00", "end_time": "09:00"}]}),
                "not before",
            ),
            (
                serde_json::json!({"times": [{"start_time": "25:00", "end_time": "26:00"}]}),
                "HH:MM",
            ),
            (serde_json::json!({"location": "Mars/Olympus"}), "IANA"),
        ] {
            let config: IntervalConfig = serde_json::from_value(yaml.clone()).expect("config");
            let err = Interval::compile(&config).expect_err("refused");
            assert!(err.contains(says), "{yaml}: {err}");
        }
    }
}
