#!/usr/bin/env bash
# Fuzzes every decoder target (or the decoders named after SECONDS) for SECONDS each
# (default 600), seeded from the vendor fixtures the integration tests use. Findings
# land in fuzz/artifacts/<target>/. Two runs with disjoint names use both cores:
#   fuzz/run-decoders.sh 600
#   fuzz/run-decoders.sh 600 grafana alertmanager aws_sns aws_eventbridge &
#   fuzz/run-decoders.sh 600 gcp_monitoring azure_monitor oci cloudevents json
# libFuzzer's -timeout makes an input that takes longer than TIMEOUT seconds (default 2)
# a finding, as a crash is: a decoder must stay linear, and the webhook source gives up
# on a body after decode_timeout (5 s). At the end it prints one row per target for the
# table in fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
decoders=("$@")
if ((${#decoders[@]} == 0)); then
  decoders=(grafana alertmanager aws_sns aws_eventbridge gcp_monitoring azure_monitor oci cloudevents json)
fi
timeout="${TIMEOUT:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-fuzz-target}"
fixtures=../tests/fixtures/webhooks
declare -A seeds=(
  [grafana]=grafana [alertmanager]=grafana [aws_sns]=aws [aws_eventbridge]=aws
  [gcp_monitoring]=gcp [azure_monitor]=azure [oci]=oci [cloudevents]=cloudevents
  [json]=json
)
# The json decoder's target reads a first byte (the request's event bound) and then the
# body: its seeds are the fixtures as NDJSON lines and as arrays, one line per object,
# which is what the kept-text path takes.
json_seeds="$(mktemp -d)"
trap 'rm -rf "$json_seeds"' EXIT
python3 - "$fixtures" "$json_seeds" <<'PY'
import json, pathlib, sys
docs = []
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.json")):
    try:
        docs.append(json.loads(path.read_text()))
    except ValueError:
        pass
out = pathlib.Path(sys.argv[2])
for i, doc in enumerate(docs):
    one = json.dumps(doc, separators=(",", ":"))
    (out / f"line-{i}").write_bytes(b"\x7f" + (one + "\n" + one + "\r\n").encode())
    (out / f"array-{i}").write_bytes(b"\x85" + f"[{one},{one}]".encode())
PY
rows=()
for decoder in "${decoders[@]}"; do
  if [[ -z "${seeds[$decoder]:-}" ]]; then
    echo "unknown decoder: $decoder (known: ${!seeds[*]})" >&2
    exit 2
  fi
  target="decode_$decoder"
  mkdir -p "corpus/$target"
  echo "== $target for ${seconds}s (-timeout=${timeout})"
  log="$(mktemp)"
  status=0
  seed_dir="$fixtures/${seeds[$decoder]}"
  if [[ "$decoder" == json ]]; then seed_dir="$json_seeds"; fi
  cargo fuzz run "$target" -s none "corpus/$target" "$seed_dir" -- \
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
