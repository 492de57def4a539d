//! Durations as Prometheus and Alertmanager write them (`1h30m`, `5m`, `1d`), in rule
//! files, PromQL ranges and `alertmanager.yml`: one or more `<n><unit>`, largest unit
//! first, with units y (365 days) w d h m s ms.

use std::time::Duration;

/// A Prometheus duration: one or more `<n><unit>` with units y w d h m s ms, largest
/// first (`1h30m`).
pub(crate) fn prometheus_duration(text: &str) -> Option<Duration> {
    const UNITS: [(&str, u64); 7] = [
        ("ms", 1),
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ];
    let mut rest = text;
    let mut total: u64 = 0;
    let mut last_rank = usize::MAX;
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, ms) = UNITS.iter().find(|(u, _)| rest.starts_with(u))?;
        // Units must come largest first, each at most once.
        let size_rank = ["y", "w", "d", "h", "m", "s", "ms"]
            .iter()
            .position(|u| u == unit)?;
        if last_rank != usize::MAX && size_rank <= last_rank {
            return None;
        }
        last_rank = size_rank;
        total = total.checked_add(n.checked_mul(*ms)?)?;
        rest = &rest[unit.len()..];
    }
    Some(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations_read_as_prometheus_reads_them() {
        let ms = |t: &str| prometheus_duration(t).map(|d| d.as_millis());
        assert_eq!(ms("1h30m"), Some(5_400_000));
        assert_eq!(ms("0"), Some(0));
        assert_eq!(ms("1y"), Some(365 * 86_400_000));
        assert_eq!(ms("1w2d"), Some(9 * 86_400_000));
        assert_eq!(ms("1s500ms"), Some(1_500));
        for refused in ["", "30m1h", "1h1h", "1 h", "1hour", "1.5h", "-1m", "5"] {
            assert_eq!(ms(refused), None, "{refused:?}");
        }
    }
}
