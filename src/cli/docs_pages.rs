//! Reference pages beyond the components: the metrics (from the telemetry catalogue),
//! the VRL functions sluice adds (from their own descriptions), and the plugin contract
//! (from the decoders' README and each formatter's header), so each page follows the
//! code it documents.

use crate::telemetry::catalog;

/// `docs/reference/metrics.md`.
pub(crate) fn metrics_page(generated: &str) -> String {
    let mut out = format!(
        "{generated}# Metrics\n\n`GET /metrics` on the API address (`api.address`, default `127.0.0.1:8686`) serves these in the Prometheus text format; `promtool check metrics` passes on it. Every series of a component carries `component_id`, `component_kind` (`source`, `transform`, `sink`) and `component_type`; the labels column lists the others.\n\n| metric | type | exported by | labels | meaning |\n|---|---|---|---|---|\n"
    );
    for m in catalog::ALL {
        let labels = if m.labels.is_empty() {
            String::new()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {labels} | {} |\n",
            m.name,
            m.kind.as_str(),
            m.from,
            m.help.replace('|', "\\|")
        ));
    }
    out.push_str("\n## Error types\n\n`sluice_component_errors_total` counts each error once, under one `error_type` and the `stage` where it happened (`receiving`, `processing` or `sending`). A series appears at its first error, so write alerts as `sum(rate(sluice_component_errors_total[5m])) by (component_id) > 0`.\n\n| error_type | meaning |\n|---|---|\n");
    for (name, meaning) in crate::telemetry::ErrorType::all() {
        out.push_str(&format!("| `{name}` | {meaning} |\n"));
    }
    let buckets: Vec<String> = catalog::LATENCY_BUCKETS
        .iter()
        .map(f64::to_string)
        .collect();
    out.push_str(&format!(
        "\n## Labels and buckets\n\n- `output` of `sluice_component_sent_events_total`: the output's name, `_default` for a component's default output. A sink's series without `output` counts what it delivered; its `dead_letter` output, what it gave up on.\n- `intentional` of `sluice_component_discarded_events_total`: `true` for events dropped on purpose, `false` for events lost to overload (alert on it).\n- The histograms' buckets (`le`, in seconds): {}. They are built from an hdrhistogram with 1 % precision, and aggregate across instances: `histogram_quantile(0.99, sum by (le, component_id) (rate(sluice_component_latency_seconds_bucket[5m])))`.\n",
        buckets.join(", ")
    ));
    out
}

/// `docs/reference/vrl-functions.md`.
pub(crate) fn vrl_page(generated: &str) -> String {
    let mut out = format!(
        "{generated}# VRL functions added by sluice\n\nEvery VRL program in sluice (`remap`, `filter`, conditions, decoder and formatter plugins) has the [VRL standard library](https://vrl.dev/functions/) and these.\n"
    );
    for f in crate::program::added_functions() {
        out.push_str(&format!(
            "\n## `{}`\n\n{}\n\n- category: {}\n- returns: {}\n",
            f.identifier(),
            f.usage(),
            f.category(),
            kinds(f.return_kind())
        ));
        out.push_str("\n| parameter | type | required | meaning |\n|---|---|---|---|\n");
        for p in f.parameters() {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                p.keyword,
                kinds(p.kind),
                if p.required { "yes" } else { "no" },
                p.description
            ));
        }
        if !f.internal_failure_reasons().is_empty() {
            out.push_str("\nFails when:\n\n");
            for reason in f.internal_failure_reasons() {
                out.push_str(&format!("- {reason}\n"));
            }
        }
        for e in f.examples() {
            out.push_str(&format!("\n{}:\n\n```coffee\n{}\n```\n", e.title, e.source));
            match e.result {
                Ok(result) => out.push_str(&format!("\nreturns\n\n```json\n{result}\n```\n")),
                Err(error) => out.push_str(&format!("\nfails with `{error}`\n")),
            }
        }
    }
    out
}

/// VRL type bits as words (`string or null`).
fn kinds(bits: u16) -> String {
    use vrl::compiler::value::kind;
    if bits & kind::ANY == kind::ANY {
        return "any".into();
    }
    let names = [
        (kind::BYTES, "string"),
        (kind::INTEGER, "integer"),
        (kind::FLOAT, "float"),
        (kind::BOOLEAN, "boolean"),
        (kind::OBJECT, "object"),
        (kind::ARRAY, "array"),
        (kind::TIMESTAMP, "timestamp"),
        (kind::REGEX, "regex"),
        (kind::NULL, "null"),
    ];
    let words: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    words.join(" or ")
}

/// `docs/reference/plugins.md`.
pub(crate) fn plugins_page(generated: &str) -> String {
    const DECODERS: &str = include_str!("../../plugins/decoders/README.md");
    let mut out = format!(
        "{generated}# Plugins\n\nVendor knowledge lives in VRL programs, not in Rust: a decoder turns one vendor's webhook body into normalized alerts, a formatter shapes what a sink sends. The built-ins are compiled into the binary. A folder in `plugin_dirs` (settings) or `--plugin-dir` with `decoders/<name>.vrl` or `formatters/<name>.vrl` replaces a built-in of that name or adds a new one; `sluice validate` compiles every plugin a pipeline uses and names the file of one that does not compile.\n\n| kind | name | built-in file |\n|---|---|---|\n"
    );
    for (kind, name, _) in crate::plugins::builtins() {
        out.push_str(&format!(
            "| {} | `{name}` | `plugins/{}/{name}.vrl` |\n",
            kind.folder().trim_end_matches('s'),
            kind.folder()
        ));
    }
    // The README's own title is replaced by this page's; its sections move one level
    // down, under "Decoders".
    let body = DECODERS
        .split_once('\n')
        .map_or(DECODERS, |(_, rest)| rest)
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("#{l}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    out.push_str(&format!("\n## Decoders\n{body}\n\n## Formatters\n"));
    for (kind, name, text) in crate::plugins::builtins() {
        if kind != crate::plugins::Kind::Formatter {
            continue;
        }
        // A formatter's contract is the comment block it opens with.
        let header: Vec<&str> = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim())
            .collect();
        out.push_str(&format!("\n### `{name}`\n\n{}\n", header.join("\n")));
    }
    out
}
