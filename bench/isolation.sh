#!/usr/bin/env bash
# One output down does not slow the others: the agent ships N records
# (default 300000) into Kafka (an in-process kfake broker) alone, then into
# Kafka and an Elasticsearch that is down (nothing listens at its address;
# its events go to its spool), then Kafka and a working Elasticsearch (the
# test server). Prints, side by side, the seconds until Kafka held every
# event, Kafka's events/s and its ratio to the Kafka-only run, and the spool's
# size at that moment (from the agent's own metrics).
#   bench/isolation.sh [N]
set -euo pipefail
N=${1:-300000}
cd "$(dirname "$0")/.."
out=bench/out/isolation
rm -rf "$out" && mkdir -p "$out"
CGO_ENABLED=0 go build -trimpath -o "$out/auditlogin" ./cmd/auditlogin
go build -o "$out/kfake" ./bench/kfake
go build -o "$out/estest" ./bench/estest
go run ./bench/gen -n "$N" > "$out/audit_login.log"
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$out/kfake" -port "$(freeport)" -topics iso-kafka,iso-down,iso-up > "$out/kfake.addr" &
pids+=($!)
"$out/estest" > "$out/estest.url" 2> /dev/null &
pids+=($!)
for _ in $(seq 50); do [ -s "$out/kfake.addr" ] && [ -s "$out/estest.url" ] && break; sleep 0.1; done
esurl=$(cat "$out/estest.url")
broker=$(cat "$out/kfake.addr")
down=$(freeport) # nothing listens here

metric() { # port name label
	curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" -v l="$3" '$1 == n"{output=\""l"\"}" {print $2; exit}'
}

# run NAME TOPIC [elasticsearch yaml]: seconds until kafka holds N events, and the spool's bytes then
run() {
	local port; port=$(freeport)
	cat > "$out/$1.yaml" <<YAML
inputs: [{paths: ["$PWD/$out/audit_login.log"], timezone: UTC}]
registry: {path: "$PWD/$out/$1/registry.json"}
outputs:
  kafka: {brokers: ["$broker"], topic: $2}
${3:-}
metrics: {listen: "127.0.0.1:$port"}
log: {level: warn}
YAML
	local start; start=$(date +%s.%N)
	"$out/auditlogin" run --config "$out/$1.yaml" 2> "$out/$1.log" &
	local pid=$!
	local shipped=0
	for _ in $(seq 6000); do
		shipped=$(metric "$port" auditlogin_events_shipped_total kafka || true)
		[ "${shipped:-0}" = "$N" ] && break
		[ "$(echo "${shipped:-0} >= $N" | bc)" = 1 ] && break
		sleep 0.05
	done
	local end; end=$(date +%s.%N)
	local spool; spool=$(metric "$port" auditlogin_output_spool_bytes elasticsearch || true)
	kill "$pid"; wait "$pid" 2>/dev/null || true
	echo "$(echo "$end - $start" | bc) ${spool:-0}"
}

read -r s0 _ < <(run kafka iso-kafka)
read -r s1 b1 < <(run down iso-down "  elasticsearch: {hosts: [\"http://127.0.0.1:$down\"]}")
read -r s2 b2 < <(run up iso-up "  elasticsearch: {hosts: [\"$esurl\"]}")
printf '\n%d events into kfake (3 partitions) on this machine (%s cores); Kafka-only run = 1\n' "$N" "$(nproc)"
printf '%-44s %8s %12s %8s %14s\n' run seconds "kafka ev/s" ratio "spool (MB)"
row() { awk -v l="$1" -v s="$2" -v n="$N" -v b="$3" -v s0="$s0" 'BEGIN { printf "%-44s %8.2f %12.0f %8.2f %14.1f\n", l, s, n/s, s0/s, b/1e6 }'; }
row "kafka only" "$s0" 0
row "kafka + elasticsearch down (spooled)" "$s1" "$b1"
row "kafka + elasticsearch up (test server)" "$s2" "$b2"
