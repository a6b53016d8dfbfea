#!/usr/bin/env bash
# auditlogin report over N events (default 10 million) of the agent's NDJSON
# from a 20-server fleet: events/s, MB/s and peak RSS, next to `wc -l` on the
# same file (the floor) in the same run. RSS stays flat as N grows: the report
# streams, memory follows the distinct servers, hours, sources and accounts.
#   bench/report.sh [N]
set -euo pipefail
N=${1:-10000000}
cd "$(dirname "$0")/.."
out=bench/out/report
rm -rf "$out" && mkdir -p "$out"
CGO_ENABLED=0 go build -trimpath -o "$out/auditlogin" ./cmd/auditlogin
go run ./bench/gen -n "$N" -servers 20 | "$out/auditlogin" parse --timezone UTC > "$out/events.ndjson"
events=$(wc -l < "$out/events.ndjson")
bytes=$(stat -c %s "$out/events.ndjson")
/usr/bin/time -f "%e %M" -o "$out/wc.time" wc -l "$out/events.ndjson" > /dev/null
/usr/bin/time -f "%e %M" -o "$out/report.time" "$out/auditlogin" report --format json "$out/events.ndjson" > "$out/report.json"
grep -q "\"connections\": $events" "$out/report.json" || { echo "report does not count $events connections"; exit 1; }
read -r ws wrss < "$out/wc.time"
read -r rs rrss < "$out/report.time"
awk -v e="$events" -v b="$bytes" -v ws="$ws" -v rs="$rs" -v rrss="$rrss" 'BEGIN {
	if (ws < 0.01) ws = 0.01
	printf "\n%d events (%.0f MB of NDJSON, 20 servers), one file, one run\n", e, b/1e6
	printf "%-26s %8s %12s %8s %10s\n", "step", "seconds", "events/s", "MB/s", "peak RSS"
	printf "%-26s %8.2f %12.0f %8.1f\n", "wc -l", ws, e/ws, b/1e6/ws
	printf "%-26s %8.2f %12.0f %8.1f %7.1f MB\n", "auditlogin report", rs, e/rs, b/1e6/rs, rrss/1024
}'
