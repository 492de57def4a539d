//! Inhibition: a firing alert matching `source_matchers` mutes the alerts matching
//! `target_matchers` that have the same values for every label of `equal` (a missing
//! label reads as the empty value, as in Alertmanager). An alert never inhibits
//! itself. Which alerts are sources is the caller's: in `alert_rule`, the alerts firing
//! in the same component at that evaluation, whether or not they are silenced
//! themselves.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::matchers::{self, Matcher};

/// One entry of `inhibit_rules`, as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InhibitConfig {
    /// Matchers an alert must satisfy to inhibit others (`alertname=NodeDown`).
    pub(crate) source_matchers: Vec<String>,
    /// Matchers an alert must satisfy to be inhibited.
    pub(crate) target_matchers: Vec<String>,
    /// Labels whose values source and target must share.
    #[serde(default)]
    pub(crate) equal: Vec<String>,
}

/// The rules of `inhibit_rules`, checked.
pub(crate) fn rules(configs: &[InhibitConfig]) -> Result<Vec<InhibitRule>, String> {
    configs
        .iter()
        .map(|i| InhibitRule::new(i).map_err(|e| format!("`inhibit_rules`: {e}")))
        .collect()
}

#[derive(Debug)]
pub(crate) struct InhibitRule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

impl InhibitRule {
    pub(crate) fn new(c: &InhibitConfig) -> Result<Self, String> {
        if c.source_matchers.is_empty() || c.target_matchers.is_empty() {
            return Err("`source_matchers` and `target_matchers` need a matcher each".into());
        }
        Ok(Self {
            source: matchers::parse_all_lenient(&c.source_matchers, "source_matchers")?,
            target: matchers::parse_all_lenient(&c.target_matchers, "target_matchers")?,
            equal: c.equal.clone(),
        })
    }

    pub(crate) fn is_source(&self, labels: &BTreeMap<String, String>) -> bool {
        self.source.iter().all(|m| m.matches_labels(labels))
    }

    /// Whether `source` (a firing alert on the source side) inhibits `target`, as
    /// Alertmanager decides: the target side matches `target` and the `equal` labels
    /// agree; and when `target` is on both sides, a source on both sides does not
    /// count, so such alerts do not inhibit each other.
    pub(crate) fn inhibits(
        &self,
        source: &BTreeMap<String, String>,
        target: &BTreeMap<String, String>,
    ) -> bool {
        let both_sides = |labels: &BTreeMap<String, String>| {
            self.is_source(labels) && self.target.iter().all(|m| m.matches_labels(labels))
        };
        self.mutes(source, target) && !(both_sides(target) && both_sides(source))
    }

    fn mutes(&self, source: &BTreeMap<String, String>, target: &BTreeMap<String, String>) -> bool {
        self.target.iter().all(|m| m.matches_labels(target))
            && self.equal.iter().all(|l| {
                // Alertmanager reads a missing label as the empty value.
                source.get(l).map_or("", String::as_str) == target.get(l).map_or("", String::as_str)
            })
    }
}

/// Whether `target` (with its fingerprint) is inhibited by one of `sources` (firing
/// alerts: fingerprint, labels, and the index of the inhibit rule they are a source of).
pub(crate) fn inhibited(
    rules: &[InhibitRule],
    sources: &[(String, BTreeMap<String, String>, usize)],
    fingerprint: &str,
    target: &BTreeMap<String, String>,
) -> bool {
    sources
        .iter()
        .any(|(fp, labels, rule)| fp != fingerprint && rules[*rule].inhibits(labels, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_source_mutes_targets_with_equal_labels() {
        let rule = InhibitRule::new(&InhibitConfig {
            source_matchers: vec!["alertname=HostDown".into()],
            target_matchers: vec!["severity=~warning|medium".into()],
            equal: vec!["host".into()],
        })
        .expect("valid");
        let down = labels(&[
            ("alertname", "HostDown"),
            ("host", "a"),
            ("severity", "critical"),
        ]);
        assert!(rule.is_source(&down));
        let sources = vec![("fp-down".to_string(), down, 0)];
        let rules = [rule];
        let cpu_a = labels(&[
            ("alertname", "HighCPU"),
            ("host", "a"),
            ("severity", "medium"),
        ]);
        let cpu_b = labels(&[
            ("alertname", "HighCPU"),
            ("host", "b"),
            ("severity", "medium"),
        ]);
        let crit_a = labels(&[
            ("alertname", "Disk"),
            ("host", "a"),
            ("severity", "critical"),
        ]);
        assert!(inhibited(&rules, &sources, "fp-cpu-a", &cpu_a));
        // An empty `host` and a missing one are the same value to Alertmanager.
        let no_host = labels(&[("alertname", "HostDown"), ("severity", "critical")]);
        let empty_host = labels(&[
            ("alertname", "HighCPU"),
            ("host", ""),
            ("severity", "medium"),
        ]);
        assert!(inhibited(
            &rules,
            &[("fp-none".to_string(), no_host, 0)],
            "fp-empty",
            &empty_host
        ));
        assert!(
            !inhibited(&rules, &sources, "fp-cpu-b", &cpu_b),
            "another host"
        );
        assert!(
            !inhibited(&rules, &sources, "fp-crit", &crit_a),
            "not a target"
        );
        assert!(
            !inhibited(&rules, &sources, "fp-down", &cpu_a),
            "not itself"
        );
        let e = InhibitRule::new(&InhibitConfig {
            source_matchers: vec!["x".into()],
            target_matchers: vec!["a=b".into()],
            equal: vec![],
        })
        .expect_err("bad matcher");
        assert!(e.contains("`source_matchers`"), "{e}");
    }

    #[test]
    fn alerts_on_both_sides_do_not_inhibit_each_other() {
        // Alertmanager's rule: a target that matches the source side too is only
        // inhibited by sources that do not match the target side.
        let rule = InhibitRule::new(&InhibitConfig {
            source_matchers: vec!["severity=critical".into()],
            target_matchers: vec!["team=db".into()],
            equal: vec![],
        })
        .expect("valid");
        let both = labels(&[("severity", "critical"), ("team", "db")]);
        let other_both = labels(&[("severity", "critical"), ("team", "db"), ("x", "1")]);
        let source_only = labels(&[("severity", "critical"), ("team", "web")]);
        let target_only = labels(&[("severity", "low"), ("team", "db")]);
        assert!(!rule.inhibits(&other_both, &both));
        assert!(rule.inhibits(&source_only, &both));
        assert!(rule.inhibits(&both, &target_only));
        // The same through `inhibited`, which alert_rule uses: two alerts on both
        // sides both notify (red team: alert_rule muted both).
        let rules = [rule];
        let sources = vec![
            ("fp-both".to_string(), both.clone(), 0),
            ("fp-other".to_string(), other_both.clone(), 0),
        ];
        assert!(!inhibited(&rules, &sources, "fp-both", &both));
        assert!(!inhibited(&rules, &sources, "fp-other", &other_both));
        assert!(inhibited(&rules, &sources, "fp-target", &target_only));
    }
}
