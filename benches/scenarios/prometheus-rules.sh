#!/usr/bin/env bash
# The baseline of `alert_rule/prometheus_rules_100k_series_50_rules`: a real Prometheus
# evaluates the same 50 rules over the same 100,000 series (scraped from a file the
# bench writes), and its evaluation time is printed beside sluice's, as a ratio.
# Needs `prometheus` (Debian package) and python3. Run from the repository root.
set -euo pipefail
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT

echo "== sluice: cargo bench (writes the rules and series to $dir)"
SLUICE_PROM_BENCH_DIR="$dir" cargo bench -q --bench alert_rule -- --noplot \
  'alert_rule/prometheus_rules' 2>&1 | tee "$dir/bench.txt" | grep -E "prometheus_rules|time:"
sluice_ms=$(grep -A1 "prometheus_rules_100k" "$dir/bench.txt" | grep -oE "time: +\[[^]]+\]" \
  | awk '{print $4, $5}' | awk '{v=$1; if ($2=="s") v*=1000; if ($2=="µs") v/=1000; print v}')

echo "== Prometheus: the same rules every 5s over the same series, scraped every 5s"
sed -i 's/interval: 1ms/interval: 5s/' "$dir/rules.yml"
port_web=$((42000 + RANDOM % 1000)); port_metrics=$((port_web + 1000))
(cd "$dir" && python3 -m http.server "$port_metrics" --bind 127.0.0.1 >/dev/null 2>&1) &
cat > "$dir/prometheus.yml" <<YAML
global: { scrape_interval: 5s, evaluation_interval: 5s }
rule_files: [rules.yml]
scrape_configs:
  - job_name: series
    honor_labels: true
    static_configs: [{ targets: ["127.0.0.1:$port_metrics"] }]
YAML
(cd "$dir" && prometheus --config.file=prometheus.yml --storage.tsdb.path=data \
  --web.listen-address="127.0.0.1:$port_web" >prometheus.log 2>&1) &
# Six scrapes, as the bench feeds six rounds, then the mean of the last evaluations.
sleep 40
samples=()
for _ in 1 2 3 4 5 6; do
  v=$(curl -s "http://127.0.0.1:$port_web/metrics" \
    | awk '/^prometheus_rule_group_last_duration_seconds/ {print $2}')
  samples+=("$v")
  sleep 5
done
prom_ms=$(printf '%s\n' "${samples[@]}" | awk '{s+=$1} END {printf "%.3f", s/NR*1000}')
echo "sluice: ${sluice_ms} ms per evaluation; Prometheus: ${prom_ms} ms per evaluation (mean of 6)"
awk -v a="$sluice_ms" -v b="$prom_ms" 'BEGIN {printf "ratio sluice/Prometheus: %.2f\n", a/b}'
