//! Notification timing per group (Alertmanager's): the first change of a new group
//! waits `group_wait` for others to join it; after a notification, the group's next
//! one goes out no sooner than `group_interval` later. A group is forgotten when none
//! of its incidents is left, so a later one waits `group_wait` again.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct GroupClock {
    pub(crate) last_flush: Option<i64>,
    pub(crate) next_flush: Option<i64>,
}

/// `group_wait` and `group_interval` in ms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) group_wait: i64,
    pub(crate) group_interval: i64,
}

impl Policy {
    /// A change happened in the group at `now`: when its notification is due.
    pub(crate) fn schedule(&self, g: &mut GroupClock, now: i64) -> i64 {
        *g.next_flush.get_or_insert(match g.last_flush {
            None => now.saturating_add(self.group_wait),
            Some(last) => now.max(last.saturating_add(self.group_interval)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_group_waits_and_a_notified_one_keeps_its_interval() {
        let p = Policy {
            group_wait: 30,
            group_interval: 300,
        };
        let mut g = GroupClock::default();
        assert_eq!(p.schedule(&mut g, 100), 130);
        assert_eq!(
            p.schedule(&mut g, 120),
            130,
            "joins the scheduled notification"
        );
        g.last_flush = g.next_flush.take();
        assert_eq!(p.schedule(&mut g, 200), 430);
        g.last_flush = g.next_flush.take();
        assert_eq!(
            p.schedule(&mut g, 2000),
            2000,
            "the interval passed: at once"
        );
    }
}
