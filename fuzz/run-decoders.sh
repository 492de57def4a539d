#!/usr/bin/env bash
# Fuzzes every decoder target for SECONDS each (default 600), seeded from the vendor
# fixtures the integration tests use. Findings land in fuzz/artifacts/<target>/.
#   fuzz/run-decoders.sh 600
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-fuzz-target}"
fixtures=../tests/fixtures/webhooks
declare -A seeds=(
  [grafana]=grafana [alertmanager]=grafana [aws_sns]=aws [aws_eventbridge]=aws
  [gcp_monitoring]=gcp [azure_monitor]=azure [oci]=oci [cloudevents]=cloudevents
)
for decoder in grafana alertmanager aws_sns aws_eventbridge gcp_monitoring azure_monitor oci cloudevents; do
  target="decode_$decoder"
  mkdir -p "corpus/$target"
  echo "== $target for ${seconds}s"
  cargo fuzz run "$target" -s none "corpus/$target" "$fixtures/${seeds[$decoder]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 2>&1 | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==|SUMMARY|Done)' || true
done
