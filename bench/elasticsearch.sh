#!/usr/bin/env bash
# Bulk ingestion: the agent ships N records (default 200000) with its default
# Elasticsearch settings into the Elasticsearch-API test server and into
# VictoriaLogs (a real third-party server with the bulk API), next to a
# minimal HTTP client posting the same events as pre-built bulk bodies (the
# ceiling); then into the test server refusing 0 %, 5 % and 30 % of bulk
# items with 429, as a cluster under pressure does. Prints events/s, the
# ratio to the ceiling or to the run without refusals, CPU seconds per
# million events, peak RSS, and checks that the index holds every event
# exactly once (create actions only, no overwrite).
#   bench/elasticsearch.sh [N]
set -euo pipefail
N=${1:-200000}
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"
out=bench/out/es
rm -rf "$out" && mkdir -p "$out"
CGO_ENABLED=0 go build -trimpath -o "$out/auditlogin" ./cmd/auditlogin
go build -o "$out/estest" ./bench/estest
go build -o "$out/bulkpost" ./bench/bulkpost
go run ./bench/gen -n "$N" > "$out/audit_login.log"
"$out/auditlogin" parse --timezone UTC "$out/audit_login.log" > "$out/events.ndjson"
events=$(wc -l < "$out/events.ndjson")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# agent NAME URL [extra yaml]: ships the log with the default settings; prints "seconds cpu rss"
agent() {
	mkdir -p "$out/$1" # each run's own registry, spool and seen sources
	cat > "$out/run-$1.yaml" <<YAML
inputs: [{paths: ["$PWD/$out/audit_login.log"], timezone: UTC}]
registry: {path: "$PWD/$out/$1/registry.json"}
outputs:
  elasticsearch: {hosts: ["$2"]${3:-}}
log: {level: warn}
YAML
	/usr/bin/time -f "%e %U %S %M" -o "$out/time" "$out/auditlogin" run --once --config "$out/run-$1.yaml"
	read -r s u sy rss < "$out/time"
	echo "$s $(echo "$u $sy" | awk '{print $1+$2}') $rss"
}
# estest REFUSE: starts a test server; sets url and estest_pid
estest() {
	rm -f "$out/estest.url" # else the loop below may read the last server's URL, or the file truncated
	"$out/estest" -refuse "$1" > "$out/estest.url" 2> "$out/estest.err" & estest_pid=$!
	pids+=($estest_pid)
	for _ in $(seq 50); do [ -s "$out/estest.url" ] && break; sleep 0.1; done
	url=$(cat "$out/estest.url")
}
# stop_estest: stops it and checks exactly once
stop_estest() {
	kill "$estest_pid"; wait "$estest_pid" 2>/dev/null || true
	docs=$(sed -n 's/^estest: \([0-9]*\) documents.*/\1/p' "$out/estest.err")
	grep -q "actions map\[create:[0-9]*\], 0 overwrites" "$out/estest.err" ||
		{ echo "not create-only: $(cat "$out/estest.err")"; exit 1; }
	[ "$docs" -eq "$events" ] || { echo "the index holds $docs documents for $events events"; exit 1; }
}
row() { # label seconds cpu rss base-seconds
	awk -v l="$1" -v e="$events" -v s="$2" -v c="$3" -v rss="$4" -v b="$5" 'BEGIN {
		printf "%-52s %8.2f %10.0f %7.2f %9.2f %6.1f MB\n", l, s, e/s, (b > 0 ? b/s : 1), c/(e/1e6), rss/1024 }'
}

printf '\n%d events, default settings (bulks of 512 events: pipeline.batch_size; 4 requests in flight), this machine (%s cores)\n' "$events" "$(nproc)"
printf '%-52s %8s %10s %7s %9s %9s\n' run seconds events/s ratio CPU-s/1M "peak RSS"
estest 0
read -r n ceiling < <("$out/bulkpost" -url "$url" -batch 1000 "$out/events.ndjson")
kill "$estest_pid"; wait "$estest_pid" 2>/dev/null || true
printf '%-52s %8.2f %10.0f %7s\n' "test server: minimal client, pre-built bodies" "$ceiling" "$(echo "$events $ceiling" | awk '{print $1/$2}')" "1.00"
if command -v victoria-logs >/dev/null; then
	vport=$(freeport)
	victoria-logs -storageDataPath="$out/vl" -httpListenAddr="127.0.0.1:$vport" -loggerLevel=ERROR -retentionPeriod=100y & pids+=($!)
	for _ in $(seq 50); do curl -sf "http://127.0.0.1:$vport/health" >/dev/null && break; sleep 0.1; done
	read -r s c rss < <(agent vl "http://127.0.0.1:$vport/insert/elasticsearch" ", headers: {VL-Msg-Field: type}")
	read -r n vceiling < <("$out/bulkpost" -url "http://127.0.0.1:$vport/insert/elasticsearch" -batch 1000 "$out/events.ndjson")
	printf '%-52s %8.2f %10.0f %7s\n' "victoria-logs: minimal client, pre-built bodies" "$vceiling" "$(echo "$events $vceiling" | awk '{print $1/$2}')" "1.00"
	row "victoria-logs: auditlogin (ratio to its ceiling)" "$s" "$c" "$rss" "$vceiling"
fi
base=0
for refuse in 0 0.05 0.30; do
	estest "$refuse"
	read -r s c rss < <(agent "refuse-$refuse" "$url")
	stop_estest
	[ "$base" = 0 ] && base=$s
	label=$(awk -v r="$refuse" 'BEGIN { printf "test server, %d %% of items refused (429)", r*100 }')
	if [ "$refuse" = 0 ]; then
		row "$label (ratio to the ceiling)" "$s" "$c" "$rss" "$ceiling"
	else
		row "$label (ratio to 0 %)" "$s" "$c" "$rss" "$base"
	fi
done
echo "every run: each event exactly once in the index, create actions only"
