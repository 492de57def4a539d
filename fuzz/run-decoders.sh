#!/usr/bin/env bash
# Fuzzes every decoder target for SECONDS each (default 600), seeded from the vendor
# fixtures the integration tests use. Findings land in fuzz/artifacts/<target>/.
#   fuzz/run-decoders.sh 600
# libFuzzer's -timeout makes an input that takes longer than TIMEOUT seconds (default 2)
# a finding, as a crash is: a decoder must stay linear, and the webhook source gives up
# on a body after decode_timeout (5 s). At the end it prints one row per target for the
# table in fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
timeout="${TIMEOUT:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-fuzz-target}"
fixtures=../tests/fixtures/webhooks
declare -A seeds=(
  [grafana]=grafana [alertmanager]=grafana [aws_sns]=aws [aws_eventbridge]=aws
  [gcp_monitoring]=gcp [azure_monitor]=azure [oci]=oci [cloudevents]=cloudevents
)
rows=()
for decoder in grafana alertmanager aws_sns aws_eventbridge gcp_monitoring azure_monitor oci cloudevents; do
  target="decode_$decoder"
  mkdir -p "corpus/$target"
  echo "== $target for ${seconds}s (-timeout=${timeout})"
  log="$(mktemp)"
  status=0
  cargo fuzz run "$target" -s none "corpus/$target" "$fixtures/${seeds[$decoder]}" -- \
    -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==|SUMMARY|Done)' "$log" || true
  runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')"
  result="no finding"
  if ((status != 0)); then result="finding (see fuzz/artifacts/$target)"; fi
  rows+=("| \`$target\` | $(date -u +%F) | ${seconds} s | ${runs} | ${timeout} s | ${result} |")
  rm -f "$log"
done
echo
echo "| target | date | time | runs | -timeout | result |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
