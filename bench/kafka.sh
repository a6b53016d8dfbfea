#!/usr/bin/env bash
# Kafka throughput: the agent ships N records (default 1 million) from a log
# file into an in-process Kafka-protocol broker (kfake), next to kcat -P
# producing the same NDJSON lines into the same broker, in the same run:
# events/s, MB/s, the agent's ratio to kcat, and peak RSS. Both use acks=all
# and no compression.
#   bench/kafka.sh [N]
set -euo pipefail
N=${1:-1000000}
cd "$(dirname "$0")/.."
command -v kcat >/dev/null || { echo "kcat is needed: apt-get install kcat"; exit 1; }
out=bench/out/kafka
rm -rf "$out" && mkdir -p "$out"
CGO_ENABLED=0 go build -trimpath -o "$out/auditlogin" ./cmd/auditlogin
go build -o "$out/kfake" ./bench/kfake
go run ./bench/gen -n "$N" > "$out/audit_login.log"
"$out/auditlogin" parse --timezone UTC "$out/audit_login.log" > "$out/events.ndjson"
events=$(wc -l < "$out/events.ndjson")
bytes=$(stat -c %s "$out/events.ndjson")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$out/kfake" -port "$port" -topics bench-agent,bench-kcat > "$out/kfake.addr" &
kfake_pid=$!
trap 'kill $kfake_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$out/kfake.addr" ] && break; sleep 0.1; done
broker=$(cat "$out/kfake.addr")

cat > "$out/run.yaml" <<YAML
inputs:
  - paths: ["$PWD/$out/audit_login.log"]
    timezone: UTC
registry: {path: "$PWD/$out/registry.json"}
outputs:
  kafka: {brokers: ["$broker"], topic: bench-agent, required_acks: all, compression: none}
pipeline: {batch_size: 4096, max_in_flight: 65536}
log: {level: warn}
YAML

/usr/bin/time -f "%e %M" -o "$out/kcat.time" kcat -P -b "$broker" -t bench-kcat -X acks=all -l "$out/events.ndjson"
/usr/bin/time -f "%e %M" -o "$out/agent.time" "$out/auditlogin" run --once --config "$out/run.yaml"
got=$(kcat -C -b "$broker" -t bench-agent -o beginning -e -q -f '%k\n' | wc -l)
[ "$got" -eq "$events" ] || { echo "the agent's topic holds $got messages, want $events"; exit 1; }

read -r ks krss < "$out/kcat.time"
read -r as arss < "$out/agent.time"
awk -v e="$events" -v b="$bytes" -v ks="$ks" -v krss="$krss" -v as="$as" -v arss="$arss" 'BEGIN {
	printf "\n%d events, %.0f MB of NDJSON, into one kfake broker (3 partitions), acks=all\n", e, b/1e6
	printf "%-34s %8s %12s %8s %10s\n", "producer", "seconds", "events/s", "MB/s", "peak RSS"
	printf "%-34s %8.2f %12.0f %8.1f %7.1f MB\n", "kcat -P (the same NDJSON lines)", ks, e/ks, b/1e6/ks, krss/1024
	printf "%-34s %8.2f %12.0f %8.1f %7.1f MB\n", "auditlogin run --once (from the log)", as, e/as, b/1e6/as, arss/1024
	printf "agent / kcat throughput: %.2f\n", ks/as
}'
