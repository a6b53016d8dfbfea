#!/usr/bin/env bash
# Bulk ingestion: the agent ships N records (default 200000) into
# VictoriaLogs (a real third-party server with the Elasticsearch bulk API)
# and into the Elasticsearch-API test server, with bulk requests of 1000
# events, next to a minimal HTTP client posting the same events as
# pre-built bulk bodies to the same server in the same run (the ceiling).
# Prints events/s, the agent's ratio to the ceiling, and its peak RSS.
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

"$out/estest" > "$out/estest.url" & pids+=($!)
if command -v victoria-logs >/dev/null; then
	vport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	victoria-logs -storageDataPath="$out/vl" -httpListenAddr="127.0.0.1:$vport" -loggerLevel=ERROR -retentionPeriod=100y & pids+=($!)
fi
for _ in $(seq 50); do [ -s "$out/estest.url" ] && break; sleep 0.1; done
sleep 1
targets=("estest|$(cat "$out/estest.url")")
[ -n "${vport:-}" ] && targets+=("victoria-logs|http://127.0.0.1:$vport/insert/elasticsearch")

printf '\n%d events, bulk requests of 1000, one run\n' "$events"
printf '%-15s %-38s %8s %12s %10s\n' server client seconds events/s "peak RSS"
for t in "${targets[@]}"; do
	name=${t%%|*}; url=${t#*|}
	read -r n secs < <("$out/bulkpost" -url "$url" -batch 1000 "$out/events.ndjson")
	printf '%-15s %-38s %8.2f %12.0f\n' "$name" "minimal client, pre-built bodies" "$secs" "$(echo "$n $secs" | awk '{print $1/$2}')"
	cat > "$out/run-$name.yaml" <<YAML
inputs: [{paths: ["$PWD/$out/audit_login.log"], timezone: UTC}]
registry: {path: "$PWD/$out/registry-$name.json"}
outputs:
  elasticsearch: {hosts: ["$url"], bulk_max_events: 1000, headers: {VL-Msg-Field: type}}
pipeline: {batch_size: 1000}
enrich: {enabled: false}
log: {level: warn}
YAML
	/usr/bin/time -f "%e %M" -o "$out/time" "$out/auditlogin" run --once --config "$out/run-$name.yaml"
	read -r as arss < "$out/time"
	printf '%-15s %-38s %8.2f %12.0f %7.1f MB\n' "$name" "auditlogin run --once (from the log)" "$as" "$(echo "$events $as" | awk '{print $1/$2}')" "$(echo "$arss" | awk '{print $1/1024}')"
	awk -v c="$secs" -v a="$as" -v s="$name" 'BEGIN { printf "%-15s agent / ceiling throughput: %.2f\n", s, c/a }'
done
