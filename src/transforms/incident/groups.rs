//! Notification timing per group (Alertmanager's): the first change of a new group
//! waits `group_wait` for others to join it; after a notification, the group's next
//! one goes out no sooner than `group_interval` later. A group is forgotten when none
//! of its incidents is left, so a later one waits `group_wait` again.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct GroupClock {
    pub(crate) last_flush: Option<i64>,
    pub(crate) next_flush: Option<i64>,
    /// The group's own timing (its alerts' `alertmanager_route`), else the incident's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy: Option<Policy>,
}

/// `group_wait` and `group_interval` in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Policy {
    pub(crate) group_wait: i64,
    pub(crate) group_interval: i64,
}

impl Policy {
    /// A change happened in the group at `now`: when its notification is due.
    pub(crate) fn schedule(&self, g: &mut GroupClock, now: i64) -> i64 {
        let p = g.policy.unwrap_or(*self);
        *g.next_flush.get_or_insert(match g.last_flush {
            None => now.saturating_add(p.group_wait),
            Some(last) => now.max(last.saturating_add(p.group_interval)),
        })
    }

    /// How long after its last notification an idle group is forgotten.
    pub(crate) fn idle_after(&self, g: &GroupClock) -> i64 {
        let p = g.policy.unwrap_or(*self);
        p.group_interval.max(p.group_wait)
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
