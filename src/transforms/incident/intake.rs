//! Alerts taken in, in total and per minute of the last hour (`GET /stats` without
//! an events table).

const MINUTE: i64 = 60_000;

#[derive(Debug, Clone)]
pub(crate) struct Intake {
    total: u64,
    /// (minute since the epoch, alerts in it), by minute modulo 60.
    minutes: [(i64, u64); 60],
}

impl Default for Intake {
    fn default() -> Self {
        Self {
            total: 0,
            minutes: [(i64::MIN, 0); 60],
        }
    }
}

impl Intake {
    pub(crate) fn add(&mut self, now_ms: i64, n: u64) {
        self.total += n;
        let minute = now_ms.div_euclid(MINUTE);
        let slot = &mut self.minutes[minute.rem_euclid(60) as usize];
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 += n;
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Alerts of the last 60 minutes (the current one included).
    pub(crate) fn last_hour(&self, now_ms: i64) -> u64 {
        let minute = now_ms.div_euclid(MINUTE);
        self.minutes
            .iter()
            .filter(|(m, _)| *m > minute - 60 && *m <= minute)
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_hour_forgets_older_minutes() {
        let mut i = Intake::default();
        i.add(0, 5);
        i.add(30 * MINUTE, 2);
        assert_eq!(i.last_hour(30 * MINUTE), 7);
        assert_eq!(i.last_hour(61 * MINUTE), 2);
        i.add(90 * MINUTE, 1);
        assert_eq!((i.last_hour(90 * MINUTE), i.total()), (1, 8));
    }
}
