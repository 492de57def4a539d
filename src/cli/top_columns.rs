//! The columns of `sluice top`, how their figures are written, and which of them fit: every column has a level, and the
//! table shows the highest level whose columns fit the terminal beside an id column of
//! at least [`ID_MIN`] cells. At 80 columns that is level 1: no header is ever cut.

use crate::telemetry::snapshot::{ComponentSnapshot, LatencySummary};

type Cell = fn(&ComponentSnapshot, Option<&ComponentRates>) -> String;

pub(super) struct Column {
    pub(super) header: &'static str,
    /// Cells, or 0 for the id column (sized to the ids and the room left).
    width: u16,
    /// Shown from this level up...
    from: u8,
    /// ...to this one (a compact column replaced by a wider one).
    to: u8,
    pub(super) cell: Cell,
}

/// The narrowest the id column gets.
const ID_MIN: u16 = 10;
const TOP_LEVEL: u8 = 2;

pub(super) const ALL: &[Column] = &[
    Column {
        header: "ID",
        width: 0,
        from: 0,
        to: TOP_LEVEL,
        cell: |c, _| c.id.clone(),
    },
    Column {
        header: "KIND",
        width: 9,
        from: 2,
        to: TOP_LEVEL,
        cell: |c, _| c.kind.clone(),
    },
    Column {
        header: "TYPE",
        width: 10,
        from: 0,
        to: TOP_LEVEL,
        cell: |c, _| c.type_name.clone(),
    },
    Column {
        header: "STATE",
        width: 8,
        from: 0,
        to: TOP_LEVEL,
        cell: |c, _| c.state.clone(),
    },
    Column {
        header: "IN/s",
        width: 6,
        from: 0,
        to: TOP_LEVEL,
        // A source takes nothing in from the pipeline: its bytes say what it read.
        cell: |c, r| rate(r.filter(|_| c.kind != "source").map(|r| r.received)),
    },
    Column {
        header: "OUT/s",
        width: 6,
        from: 0,
        to: TOP_LEVEL,
        cell: |_, r| rate(r.map(|r| r.sent)),
    },
    Column {
        header: "DISC/s",
        width: 6,
        from: 0,
        to: TOP_LEVEL,
        cell: |_, r| rate(r.map(|r| r.discarded)),
    },
    Column {
        header: "ERR/s",
        width: 5,
        from: 0,
        to: TOP_LEVEL,
        cell: |_, r| rate(r.map(|r| r.errors)),
    },
    Column {
        header: "ERRORS",
        width: 7,
        from: 2,
        to: TOP_LEVEL,
        cell: |c, _| c.errors.to_string(),
    },
    Column {
        header: "BYTES/s",
        width: 7,
        from: 0,
        to: TOP_LEVEL,
        // Read from the outside by a source, delivered to it by a sink.
        cell: |c, r| byte_rate(r.filter(|_| c.kind != "transform").map(|r| r.bytes)),
    },
    Column {
        header: "AGE p50",
        width: 8,
        from: 2,
        to: TOP_LEVEL,
        cell: |c, _| component_latency(&c.latency, c.latency.p50_seconds),
    },
    Column {
        header: "AGE p99",
        width: 7,
        from: 1,
        to: TOP_LEVEL,
        cell: |c, _| component_latency(&c.latency, c.latency.p99_seconds),
    },
    Column {
        header: "BUF",
        width: 4,
        from: 1,
        to: 1,
        cell: |c, _| match c.buffer {
            Some(b) if b.capacity > 0 => format!("{}%", b.events * 100 / b.capacity),
            _ => "-".into(),
        },
    },
    Column {
        header: "BUFFER",
        width: 16,
        from: 2,
        to: TOP_LEVEL,
        cell: |c, _| match c.buffer {
            Some(b) if b.capacity > 0 => format!(
                "{}/{} {:>3}%",
                b.events,
                b.capacity,
                b.events * 100 / b.capacity
            ),
            _ => "-".into(),
        },
    },
];

impl Column {
    pub(super) fn shown_at(&self, level: u8) -> bool {
        (self.from..=self.to).contains(&level)
    }

    /// The id column gets the longest id, within what `area` leaves it.
    pub(super) fn width(&self, components: &[ComponentSnapshot], area: u16) -> u16 {
        if self.width > 0 {
            return self.width;
        }
        let level = level_for(area);
        let room = inner(area).saturating_sub(fixed(level));
        let longest = components
            .iter()
            .map(|c| c.id.chars().count())
            .max()
            .unwrap_or(0);
        u16::try_from(longest)
            .unwrap_or(u16::MAX)
            .clamp(ID_MIN, room.max(ID_MIN))
    }
}

/// The width inside the table's border.
fn inner(area: u16) -> u16 {
    area.saturating_sub(2)
}

/// Cells taken by the fixed-width columns of `level` and the gaps between all columns.
fn fixed(level: u8) -> u16 {
    let shown = ALL.iter().filter(|c| c.shown_at(level));
    shown.map(|c| c.width + 1).sum::<u16>().saturating_sub(1)
}

/// The highest level that fits `area` cells with the id column at least [`ID_MIN`].
pub(super) fn level_for(area: u16) -> u8 {
    (0..=TOP_LEVEL)
        .rev()
        .find(|&l| fixed(l) + ID_MIN <= inner(area))
        .unwrap_or(0)
}

/// Per-second figures of one component between two polls.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ComponentRates {
    pub received: f64,
    pub(crate) sent: f64,
    pub(crate) errors: f64,
    pub(crate) discarded: f64,
    /// Bytes read from the outside (a source) or delivered to it (a sink).
    pub(crate) bytes: f64,
}

pub(crate) fn rate(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 10_000_000.0 => format!("{:.0}M", v / 1e6),
        Some(v) if v >= 1_000_000.0 => format!("{:.1}M", v / 1e6),
        Some(v) if v >= 10_000.0 => format!("{:.1}k", v / 1000.0),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// Bytes per second in at most 7 characters (`1023B`, `12.3KiB`, `1.2GiB`).
pub(crate) fn byte_rate(v: Option<f64>) -> String {
    let Some(mut v) = v else {
        return "-".into();
    };
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if v < 1024.0 || unit == "GiB" {
            return if unit == "B" {
                format!("{v:.0}B")
            } else if v >= 100.0 {
                format!("{v:.0}{unit}")
            } else {
                format!("{v:.1}{unit}")
            };
        }
        v /= 1024.0;
    }
    unreachable!("the loop returns at GiB")
}

/// A duration in at most 7 characters, its unit always shown (`850µs`, `12.5ms`,
/// `1.50s`, `1011s`, `4.2h`). Each range starts where the one below would round up to
/// four digits, so `999.97ms` shows as `1.00s`, never `1000.0ms`.
pub(super) fn latency(seconds: f64) -> String {
    if seconds >= 99_999.5 {
        format!("{:.1}h", seconds / 3600.0)
    } else if seconds >= 99.995 {
        format!("{seconds:.0}s")
    } else if seconds >= 0.99995 {
        format!("{seconds:.2}s")
    } else if seconds >= 0.09995 {
        format!("{:.0}ms", seconds * 1e3)
    } else if seconds >= 0.0009995 {
        format!("{:.1}ms", seconds * 1e3)
    } else {
        format!("{:.0}µs", seconds * 1e6)
    }
}

/// A component's latency figure, `-` before it timed anything.
fn component_latency(l: &LatencySummary, seconds: f64) -> String {
    if l.count == 0 {
        "-".into()
    } else {
        latency(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighty_columns_fit_level_one_and_wide_terminals_get_everything() {
        assert_eq!(level_for(80), 1);
        assert!(fixed(1) + ID_MIN <= 78, "{}", fixed(1));
        assert_eq!(level_for(60), 0);
        assert_eq!(level_for(160), TOP_LEVEL);
        // Every header fits its column.
        for c in ALL.iter().filter(|c| c.width > 0) {
            assert!(c.header.len() <= usize::from(c.width), "{}", c.header);
        }
    }

    #[test]
    fn byte_rates_fit_seven_cells() {
        assert_eq!(byte_rate(Some(1023.0)), "1023B");
        assert_eq!(byte_rate(Some(1536.0)), "1.5KiB");
        assert_eq!(byte_rate(Some(500.0 * 1024.0)), "500KiB");
        assert_eq!(byte_rate(Some(3.0 * 1024.0 * 1024.0 * 1024.0)), "3.0GiB");
        assert_eq!(byte_rate(None), "-");
        assert_eq!(rate(Some(2_500_000.0)), "2.5M");
    }

    #[test]
    fn latencies_keep_their_unit_within_seven_characters() {
        for (seconds, shown) in [
            (0.000_85, "850µs"),
            (0.0125, "12.5ms"),
            (0.25, "250ms"),
            (0.999_97, "1.00s"),
            (1.5, "1.50s"),
            (1010.83, "1011s"),
            (360_000.0, "100.0h"),
        ] {
            assert_eq!(latency(seconds), shown);
            assert!(latency(seconds).chars().count() <= 7, "{shown}");
        }
    }
}
