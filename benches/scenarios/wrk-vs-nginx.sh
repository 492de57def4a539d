#!/usr/bin/env bash
# The webhook's HTTP ceiling: wrk (2 threads, 32 connections) posts the same bodies to
# sluice (webhook → remap → blackhole, answered once the batch is acknowledged) and to
# nginx answering `return 200`, alternating, so each sluice figure has a baseline from
# the same minutes. Two workloads:
#   ndjson: 100 events of about 260 bytes per request (26 KB NDJSON);
#   alert:  one 316-byte alert object per request.
# Prints requests/s and events/s of both, their ratio per round and the median, p99
# latency, and sluice's peak RSS (VmHWM).
#
# Needs wrk and nginx (Debian packages) and a release build of sluice:
#   cargo build --release && bash benches/scenarios/wrk-vs-nginx.sh [rounds] [seconds]
# SLUICE_BIN overrides the binary; WORKLOADS="ndjson alert" picks the workloads.
set -euo pipefail
rounds=${1:-3}
seconds=${2:-10}
workloads=${WORKLOADS:-ndjson alert}
target=${CARGO_TARGET_DIR:-target}
bin=${SLUICE_BIN:-$target/release/sluice}
[[ -x "$bin" ]] || { echo "no sluice binary at $bin (cargo build --release, or set SLUICE_BIN)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
command -v nginx >/dev/null || { echo "nginx is not installed (apt-get install nginx)" >&2; exit 2; }

dir=$(mktemp -d)
cleanup() {
  [[ -f "$dir/nginx.pid" ]] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null
  [[ -n "${sluice_pid:-}" ]] && kill "$sluice_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port)
sluice_port=$(free_port)
api_port=$(free_port)

# One alert of 316 bytes, and an NDJSON body of 100 events of about 260 bytes each.
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
alert = {"status": "firing", "labels": {"alertname": "HighLatency", "service": "checkout",
         "severity": "critical", "instance": "10.0.3.17:9100", "job": "node"},
         "annotations": {"summary": "p99 latency above 2s for 5 minutes",
         "runbook_url": "https://runbooks.example.com/high-latency"},
         "startsAt": "2026-12-06T10:00:00Z", "fingerprint": "a3f9c2d17e4b5a60"}
alert["annotations"]["summary"] = ""
short = len(json.dumps(alert, separators=(",", ":")))
alert["annotations"]["summary"] = ("p99 latency above 2s for 5 minutes " * 4)[:316 - short]
text = json.dumps(alert, separators=(",", ":"))
assert len(text) == 316, len(text)
open(f"{d}/alert.json", "w").write(text)
lines = []
for i in range(100):
    e = {"level": "error" if i % 3 == 0 else "info", "service": f"svc-{i % 7}",
         "message": "request handled " + "m" * 160, "seq": i, "host": "web-01"}
    lines.append(json.dumps(e, separators=(",", ":")))
open(f"{d}/ndjson.txt", "w").write("\n".join(lines) + "\n")
PY

for w in alert ndjson; do
  content_type=application/json
  [[ $w == ndjson ]] && content_type=application/x-ndjson
  file=$dir/alert.json
  [[ $w == ndjson ]] && file=$dir/ndjson.txt
  cat > "$dir/$w.lua" <<LUA
wrk.method = "POST"
local f = io.open("$file", "rb")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "$content_type"
LUA
done

cat > "$dir/nginx.conf" <<NGINX
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/nginx-body;
  client_max_body_size 10m;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { return 200; }
  }
}
NGINX
nginx -c "$dir/nginx.conf" -p "$dir"

cat > "$dir/pipeline.yaml" <<YAML
sources:
  events:
    type: webhook
    address: 127.0.0.1:$sluice_port
    path: /events
transforms:
  stamp:
    type: remap
    inputs: [events]
    source: |
      .severity = if .level == "error" { "high" } else { "low" }
      .host = "bench"
sinks:
  out:
    type: blackhole
    inputs: [stamp]
YAML
"$bin" run -c "$dir/pipeline.yaml" --data-dir "$dir/data" --api-address "127.0.0.1:$api_port" \
  --no-watch >"$dir/sluice.log" 2>&1 &
sluice_pid=$!
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$api_port/health" && break
  sleep 0.1
done

# wrk's summary: requests/s, and p99 from --latency's distribution, in ms.
run_wrk() {
  local url=$1 workload=$2 out
  out=$(wrk -t2 -c32 -d"${seconds}s" --latency -s "$dir/$workload.lua" "$url")
  if grep -q "Non-2xx" <<<"$out"; then
    echo "wrk saw answers other than 2xx from $url:" >&2
    echo "$out" >&2
    exit 1
  fi
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/, "", v); v/=1000} else if (v ~ /ms$/) sub(/ms$/, "", v); else if (v ~ /s$/) {sub(/s$/, "", v); v*=1000}; print v}' <<<"$out")
  echo "$rps $p99"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

for w in $workloads; do
  per_request=1
  [[ $w == ndjson ]] && per_request=100
  # One short run of each to warm both servers.
  wrk -t2 -c32 -d2s -s "$dir/$w.lua" "http://127.0.0.1:$nginx_port/events" >/dev/null
  wrk -t2 -c32 -d2s -s "$dir/$w.lua" "http://127.0.0.1:$sluice_port/events" >/dev/null
  : > "$dir/ratios"
  for r in $(seq 1 "$rounds"); do
    read -r n_rps n_p99 < <(run_wrk "http://127.0.0.1:$nginx_port/events" "$w")
    read -r s_rps s_p99 < <(run_wrk "http://127.0.0.1:$sluice_port/events" "$w")
    ratio=$(awk -v a="$s_rps" -v b="$n_rps" 'BEGIN {printf "%.3f", a/b}')
    echo "$ratio" >> "$dir/ratios"
    printf '%s round %d: sluice %.0f req/s (%.0f events/s, p99 %s ms), nginx %.0f req/s (p99 %s ms): ratio %s\n' \
      "$w" "$r" "$s_rps" "$(awk -v a="$s_rps" -v n="$per_request" 'BEGIN {print a*n}')" "$s_p99" \
      "$n_rps" "$n_p99" "$ratio"
  done
  echo "$w: median ratio $(median < "$dir/ratios") over $rounds rounds"
done
echo "sluice peak RSS: $(awk '/^VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$sluice_pid/status")"
