//! Files that `sluice bench` and `sluice docs` read, built into the binary so both work
//! outside a checkout: the load scenarios with their pipelines and the vendor payload
//! they post, and the shipped example pipelines. A test keeps these lists equal to the
//! folders.

use std::path::Path;

/// `(path relative to the repository, contents)`.
type Files = &'static [(&'static str, &'static str)];

macro_rules! files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path)))),*]
    };
}

/// The load scenarios (`benches/scenarios`) and the fixture one of them posts.
pub(crate) const SCENARIOS: Files = files![
    "benches/scenarios/file-to-http.pipeline.yaml",
    "benches/scenarios/file-to-http.yaml",
    "benches/scenarios/forward-to-http.pipeline.yaml",
    "benches/scenarios/forward-to-http.yaml",
    "benches/scenarios/kafka-to-postgres.pipeline.yaml",
    "benches/scenarios/kafka-to-postgres.yaml",
    "benches/scenarios/ndjson-fields-to-http.pipeline.yaml",
    "benches/scenarios/ndjson-fields-to-http.yaml",
    "benches/scenarios/ndjson-filter-to-http.pipeline.yaml",
    "benches/scenarios/ndjson-filter-to-http.yaml",
    "benches/scenarios/ndjson-remap-to-http.pipeline.yaml",
    "benches/scenarios/ndjson-remap-to-http.yaml",
    "benches/scenarios/ndjson-to-http.pipeline.yaml",
    "benches/scenarios/ndjson-to-http.yaml",
    "benches/scenarios/webhook-alert-to-pagerduty.pipeline.yaml",
    "benches/scenarios/webhook-alert-to-pagerduty.yaml",
    "tests/fixtures/webhooks/grafana/alertmanager_oncall-example_firing_2alerts.json",
];

/// The example pipelines (`pipelines`).
pub(crate) const PIPELINES: Files = files![
    "pipelines/agent-to-kafka.yaml",
    "pipelines/alerts-to-opsgenie-teams-email.yaml",
    "pipelines/alerts-webhook.yaml",
    "pipelines/fluentd-proxy.yaml",
    "pipelines/incidents.yaml",
    "pipelines/kafka-aggregator.yaml",
    "pipelines/load-generator.yaml",
    "pipelines/metrics-to-oncall.yaml",
    "pipelines/otel-to-datadog.yaml",
    "pipelines/prometheus-native.yaml",
    "pipelines/status-pages-to-slack.yaml",
    "pipelines/stdin-errors.yaml",
    "pipelines/syslog-relay.yaml",
    "pipelines/tail-to-http.yaml",
    "pipelines/webhooks-to-console.yaml",
    "pipelines/webhooks-to-postgres.yaml",
];

/// Writes `files` under `root`, keeping their relative paths (a scenario names its
/// fixture as `../../tests/fixtures/…`).
pub(crate) fn extract(files: Files, root: &Path) -> std::io::Result<()> {
    for (path, text) in files {
        let target = root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml_in(folder: &str) -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .map(|n| format!("{folder}/{n}"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn embedded_lists_match_the_folders() {
        let scenarios: Vec<String> = SCENARIOS
            .iter()
            .map(|(p, _)| (*p).to_owned())
            .filter(|p| p.starts_with("benches/"))
            .collect();
        assert_eq!(scenarios, yaml_in("benches/scenarios"));
        let pipelines: Vec<String> = PIPELINES.iter().map(|(p, _)| (*p).to_owned()).collect();
        assert_eq!(pipelines, yaml_in("pipelines"));
    }

    #[test]
    fn extracted_scenarios_resolve_their_pipelines_and_fixtures() {
        let dir = tempfile::tempdir().expect("tempdir");
        extract(SCENARIOS, dir.path()).expect("extract");
        let folder = dir.path().join("benches/scenarios");
        let files = crate::cli::load::scenario::Scenario::all_in(&folder).expect("list");
        assert_eq!(files.len(), 8, "{files:?}");
        for f in files {
            let s = crate::cli::load::scenario::Scenario::load(&f).expect("every scenario loads");
            assert!(s.pipeline.is_file(), "{}", s.pipeline.display());
            if let crate::cli::load::scenario::DriverConfig::Webhook { fixture, .. } = &s.driver {
                assert!(fixture.is_file(), "{}", fixture.display());
            }
        }
    }
}
