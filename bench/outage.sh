#!/usr/bin/env bash
# An Elasticsearch outage: the agent (default settings, Elasticsearch output
# only) follows a log written at a steady RATE (default 1000 lines/s) while
# the Elasticsearch-API test server answers every request with 503 for
# DOWN seconds (default 600), so that every event goes to the output's
# spool. Prints the agent's RSS every 15 s during the outage (it must stay
# flat: the backlog is on disk, not in memory), the spool's size, the
# seconds from the server's return until the first new documents and until
# the index holds every event, and checks each event is there exactly once.
#   bench/outage.sh [DOWN] [RATE]
set -euo pipefail
DOWN=${1:-600}
RATE=${2:-1000}
cd "$(dirname "$0")/.."
out=bench/out/outage
rm -rf "$out" && mkdir -p "$out"
CGO_ENABLED=0 go build -trimpath -o "$out/auditlogin" ./cmd/auditlogin
go build -o "$out/estest" ./bench/estest
go run ./bench/gen -n $((DOWN * RATE)) > "$out/source.log"
"$out/auditlogin" parse --timezone UTC "$out/source.log" > "$out/events.ndjson"
events=$(wc -l < "$out/events.ndjson")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

"$out/estest" -down-for "${DOWN}s" > "$out/estest.url" 2> "$out/estest.err" & estest_pid=$!
pids+=($estest_pid)
for _ in $(seq 50); do [ -s "$out/estest.url" ] && break; sleep 0.1; done
url=$(cat "$out/estest.url")
start=$(date +%s.%N)
cat > "$out/agent.yaml" <<YAML
inputs: [{paths: ["$PWD/$out/audit_login.log"], timezone: UTC}]
registry: {path: "$PWD/$out/registry.json"}
outputs:
  elasticsearch: {hosts: ["$url"]}
log: {level: warn}
YAML
: > "$out/audit_login.log"
"$out/auditlogin" run --config "$out/agent.yaml" 2> "$out/agent.err" & agent_pid=$!
pids+=($agent_pid)

# The writer: RATE lines a second, whole lines, for DOWN seconds.
python3 - "$out/source.log" "$out/audit_login.log" "$RATE" <<'PY' & writer_pid=$!
import sys, time
src, dst, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(src, "rb").read().split(b"\n")[:-1]
with open(dst, "ab") as f:
    t0 = time.monotonic()
    for i in range(0, len(lines), rate):
        f.write(b"\n".join(lines[i:i + rate]) + b"\n")
        f.flush()
        wait = t0 + (i // rate + 1) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
PY
pids+=($writer_pid)

printf '\n%d events written at %d lines/s; Elasticsearch answers 503 for %d s (this machine, %s cores)\n' "$events" "$RATE" "$DOWN" "$(nproc)"
printf '%8s %10s %12s\n' "t (s)" "RSS (MB)" "spool (MB)"
rss() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$agent_pid/status"; }
spool() { du -sm "$out/spool" 2>/dev/null | cut -f1 || echo 0; }
min= max=
while :; do
	t=$(echo "$(date +%s.%N) $start" | awk '{printf "%.0f", $1-$2}')
	[ "$t" -ge "$DOWN" ] && break
	r=$(rss)
	printf '%8s %10s %12s\n' "$t" "$r" "$(spool)"
	if [ "$t" -ge 30 ]; then # after the start-up
		min=$(echo "${min:-$r} $r" | awk '{print ($2 < $1 ? $2 : $1)}')
		max=$(echo "${max:-$r} $r" | awk '{print ($2 > $1 ? $2 : $1)}')
	fi
	sleep 15
done
wait "$writer_pid"
for _ in $(seq 100); do grep -q "estest: up" "$out/estest.err" && break; sleep 0.1; done
up=$(date -d "$(sed -n 's/^estest: up at //p' "$out/estest.err")" +%s.%N) # the server's return, by its clock
count() { curl -s "$url/auditlogin-*/_count" | sed -n 's/.*"count":\([0-9]*\).*/\1/p'; }
first=
while :; do
	n=$(count)
	now=$(date +%s.%N)
	[ -z "$first" ] && [ "${n:-0}" -gt 0 ] && first=$(echo "$now $up" | awk '{printf "%.1f", $1-$2}')
	[ "${n:-0}" -ge "$events" ] && break
	if [ "$(echo "$now $up" | awk '{print ($1-$2 > 600)}')" = 1 ]; then echo "the index holds ${n:-0} of $events events 600 s after the return"; exit 1; fi
	sleep 0.2
done
all=$(echo "$(date +%s.%N) $up" | awk '{printf "%.1f", $1-$2}')
# the server's own clock for the first document (polling _count adds its delay)
first=$(sed -n 's/^estest: first document \([0-9.]*\) s after up/\1/p' "$out/estest.err" | awk '{printf "%.1f", $1}')
hwm=$(awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$agent_pid/status")
kill -TERM "$agent_pid"; wait "$agent_pid" || true
kill "$estest_pid"; wait "$estest_pid" 2>/dev/null || true
docs=$(sed -n 's/^estest: \([0-9]*\) documents.*/\1/p' "$out/estest.err")
grep -q "actions map\[create:[0-9]*\], 0 overwrites" "$out/estest.err" || { echo "not create-only: $(cat "$out/estest.err")"; exit 1; }
[ "$docs" -eq "$events" ] || { echo "the index holds $docs documents for $events events"; exit 1; }
printf 'RSS during the outage (after 30 s): %s-%s MB; peak RSS of the whole run %s MB\n' "$min" "$max" "$hwm"
printf 'after the return: first documents in %s s, all %d in %s s; each exactly once, create actions only\n' "$first" "$events" "$all"
