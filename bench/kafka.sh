#!/usr/bin/env bash
# Kafka throughput: the agent ships N records (default 1 million) from a log
# file into an in-process Kafka-protocol broker (kfake, 3 partitions), next to
# kcat -P producing the agent's own NDJSON lines into the same broker, in the
# same run: events/s, the agent's ratio to kcat, CPU seconds per million
# lines and peak RSS, for the default configuration (enrichment on) and for
# a tuned one. A second kcat row sends the messages as the agent does by
# default (the event id as key, so spread over the partitions), to show
# what that shape costs a producer by itself. The agent's rows end
# with how long its reading waited for acknowledgements (back-pressure).
# The last column is the CPU the broker took for the run (kfake shares the
# two cores: when it is slow, everyone's rate is). A row with no broker (the
# default config into the stdout output, > /dev/null) is the agent's own
# work: the most its default Kafka run can reach.
# Every run uses acks=all and no compression; each is checked to have
# delivered every event.
# DELAY (a duration such as 20ms) makes the broker answer that much later,
# as a remote one does (kfake -delay).
# SEGMENT_BYTES (environment; default 16 MiB) is the broker's
# log.segment.bytes. kfake holds a partition's segment in memory and grows
# it by doubling and copying it: at its own default (100 MiB; 0 here) the
# last doublings stall it for 20-200 ms at a time, answering nothing, where
# a real broker appends to a file. Those stalls made the agent's reading
# wait 0.43-0.73 s of its 1.7-2.0 s (a Go execution trace: 4 stalls of
# 19-197 ms were 291 of the 304 ms it waited in 0.93 s); kcat, which
# queues up to 100,000 messages (librdkafka's default), reads on through
# them. 16 MiB bounds them to a few ms (the longest wait in a trace: 6 ms).
#   SEGMENT_BYTES=0 bench/kafka.sh [N] [RUNS] [DELAY]
set -euo pipefail
N=${1:-1000000}
RUNS=${2:-1}
DELAY=${3:-0s}
SEGMENT_BYTES=${SEGMENT_BYTES:-16777216}
cd "$(dirname "$0")/.."
command -v kcat >/dev/null || { echo "kcat is needed: apt-get install kcat"; exit 1; }
out=bench/out/kafka
rm -rf "$out" && mkdir -p "$out"
CGO_ENABLED=0 go build -trimpath -o "$out/auditlogin" ./cmd/auditlogin
go build -o "$out/kfake" ./bench/kfake
go run ./bench/gen -n "$N" > "$out/audit_login.log"
"$out/auditlogin" parse --timezone UTC "$out/audit_login.log" > "$out/events.ndjson"
events=$(wc -l < "$out/events.ndjson")
# The same lines as the Kafka messages the agent sends them by default: the
# event id as key (hashed to a partition; no headers, outputs.kafka.headers
# adds them): kcat's rate for the agent's own messages.
sed -E 's/^(.*"id":"([0-9a-f]+)".*)$/\2\t\1/' "$out/events.ndjson" > "$out/keyed.ndjson"
[ "$(wc -l < "$out/keyed.ndjson")" -eq "$events" ] || { echo "keyed.ndjson: not every line has an id"; exit 1; }
bytes=$(stat -c %s "$out/events.ndjson")

# A fresh broker for every measured run: kfake keeps every message in memory,
# and a broker holding millions from earlier runs slows the next one (GC).
kfake_pid=
trap 'kill $kfake_pid 2>/dev/null || true' EXIT
fresh_broker() { # topic
	[ -n "$kfake_pid" ] && { kill "$kfake_pid" 2>/dev/null; wait "$kfake_pid" 2>/dev/null || true; }
	local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	rm -f "$out/kfake.addr"
	"$out/kfake" -port "$port" -topics "$1" -delay "$DELAY" -segment-bytes "$SEGMENT_BYTES" > "$out/kfake.addr" &
	kfake_pid=$!
	for _ in $(seq 50); do [ -s "$out/kfake.addr" ] && break; sleep 0.1; done
	broker=$(cat "$out/kfake.addr")
}

config() { # name topic extra-kafka-yaml extra-yaml; topic "-": the stdout output instead
	# Each run its own directory beside the registry (spool, dead-letter
	# file, seen sources): no run starts with what an earlier one learned.
	mkdir -p "$out/$1"
	local output="kafka: {brokers: [\"$broker\"], topic: $2, required_acks: all, compression: none$3}"
	[ "$2" = - ] && output="stdout: {}"
	cat > "$out/$1.yaml" <<YAML
inputs:
  - paths: ["$PWD/$out/audit_login.log"]
    timezone: UTC
registry: {path: "$PWD/$out/$1/registry.json"}
outputs:
  $output
log: {level: info}
$4
YAML
}

# time -f: elapsed, user+system CPU seconds, peak RSS (KiB)
timed() { /usr/bin/time -f "%e %U %S %M" -o "$1" "${@:2}"; }
# broker_cpu FILE: the broker's CPU seconds so far (before counting reads it).
broker_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$kfake_pid/stat" > "$1"; }
count() { kcat -C -b "$broker" -t "$1" -o beginning -e -q -f '%k\n' | wc -l; }

printf '\n%d events, %.0f MB of NDJSON, into one kfake broker (3 partitions, answers %s late, log.segment.bytes %s) on this machine (%s cores), acks=all, no compression\n' \
	"$events" "$(echo "$bytes" | awk '{print $1/1e6}')" "$DELAY" "$([ "$SEGMENT_BYTES" = 0 ] && echo "kfake's default" || echo "$SEGMENT_BYTES")" "$(nproc)"
printf '%-64s %8s %10s %8s %10s %9s %8s %8s\n' run seconds events/s "x kcat" "CPU-s/1M" "peak RSS" "waited" "broker"
# waited: how long the agent's reading waited for Kafka's acknowledgements
# (back-pressure, from the summary it logs at the end of a one-shot run).
row() { # label timefile kcat-seconds [agent log]
	read -r s u sy rss < "$2"
	local b; b=$(cat "${2%.time}.broker")
	local w=-
	[ -n "${4:-}" ] && w=$(grep -o '"reading_blocked":"[^"]*"' "$4" | cut -d'"' -f4 | awk '{ v = $1
		if (v ~ /ms$/) { sub(/ms$/, "", v); v /= 1000 } else if (v ~ /[0-9]s$/) { sub(/s$/, "", v) } else v = 0
		printf "%.2f", v }')
	awk -v l="$1" -v e="$events" -v s="$s" -v u="$u" -v sy="$sy" -v rss="$rss" -v k="$3" -v w="${w:--}" -v b="$b" 'BEGIN {
		printf "%-64s %8.2f %10.0f %8.2f %10.2f %6.1f MB %8s %8s\n", l, s, e/s, (k > 0 ? k/s : 1), (u+sy)/(e/1e6), rss/1024, w, b }'
}
for r in $(seq "$RUNS"); do
	fresh_broker "bench-kcat-$r"
	timed "$out/kcat.time" kcat -P -b "$broker" -t "bench-kcat-$r" -X acks=all -l "$out/events.ndjson"
	broker_cpu "$out/kcat.broker"
	read -r ks _ < "$out/kcat.time"
	fresh_broker "bench-kcatkeyed-$r"
	timed "$out/kcatkeyed.time" kcat -P -b "$broker" -t "bench-kcatkeyed-$r" -X acks=all -K '\t' -l "$out/keyed.ndjson"
	broker_cpu "$out/kcatkeyed.broker"
	got=$(count "bench-kcatkeyed-$r")
	[ "$got" -ge "$events" ] || { echo "topic bench-kcatkeyed-$r holds $got messages, want $events"; exit 1; }
	fresh_broker "bench-default-$r"
	config "default-$r" "bench-default-$r" "" ""
	timed "$out/default.time" "$out/auditlogin" run --once --config "$out/default-$r.yaml" 2> "$out/default-$r.log"
	broker_cpu "$out/default.broker"
	got=$(count "bench-default-$r")
	[ "$got" -ge "$events" ] || { echo "topic bench-default-$r holds $got messages, want $events"; exit 1; }
	# The agent's own work, with no broker: the same default run into the
	# stdout output (> /dev/null). On one core (the default) this is the
	# most the Kafka runs can reach; the broker's row shows what it adds.
	config "floor-$r" - "" ""
	timed "$out/floor.time" "$out/auditlogin" run --once --config "$out/floor-$r.yaml" > /dev/null 2> "$out/floor-$r.log"
	echo - > "$out/floor.broker"
	got=$(grep -o '"shipped":{"stdout":[0-9]*' "$out/floor-$r.log" | grep -o '[0-9]*$' || echo 0)
	[ "$got" -ge "$events" ] || { echo "the no-broker run shipped $got events, want $events"; exit 1; }
	fresh_broker "bench-tuned-$r"
	config "tuned-$r" "bench-tuned-$r" ", workers: 8, batch_bytes: 1MB" "pipeline: {batch_size: 4096, max_in_flight_bytes: 16MiB, max_procs: 0}
enrich: {enabled: false}"
	timed "$out/tuned.time" "$out/auditlogin" run --once --config "$out/tuned-$r.yaml" 2> "$out/tuned-$r.log"
	broker_cpu "$out/tuned.broker"
	got=$(count "bench-tuned-$r")
	[ "$got" -ge "$events" ] || { echo "topic bench-tuned-$r holds $got messages, want $events"; exit 1; }
	row "kcat -P of the same NDJSON (run $r)" "$out/kcat.time" 0 | tee -a "$out/rows"
	row "kcat -P, keyed by id: the agent's messages" "$out/kcatkeyed.time" "$ks" | tee -a "$out/rows"
	row "auditlogin, default config (run $r)" "$out/default.time" "$ks" "$out/default-$r.log" | tee -a "$out/rows"
	row "auditlogin, default config, no broker (stdout > /dev/null)" "$out/floor.time" "$ks" | tee -a "$out/rows"
	row "auditlogin, tuned: every core, workers 8, batch 4096, no enrich" "$out/tuned.time" "$ks" "$out/tuned-$r.log" | tee -a "$out/rows"
done
# Medians over the runs (this machine's speed varies from one run to the
# next: each ratio is to the kcat run just before it).
if [ "$RUNS" -gt 1 ]; then
	echo "medians over $RUNS runs:"
	for what in "kcat -P of:kcat -P" "kcat -P, keyed:kcat -P, the agent's messages" "auditlogin, default config (:auditlogin, default" "auditlogin, default config, no:auditlogin, default, no broker" "auditlogin, tuned:auditlogin, tuned"; do
		grep "^${what%%:*}" "$out/rows" | awk -v l="${what#*:}" '{ n++; s[n]=$(NF-7); e[n]=$(NF-6); x[n]=$(NF-5); c[n]=$(NF-4); r[n]=$(NF-3); w[n]=$(NF-1); b[n]=$NF }
		function med(a,  i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
		END { printf "%-64s %8.2f %10.0f %8.2f %10.2f %6.1f MB %8s %8s\n", l, med(s), med(e), med(x), med(c), med(r), (w[1] == "-" ? "-" : sprintf("%.2f", med(w))), (b[1] == "-" ? "-" : sprintf("%.2f", med(b))) }'
	done
fi
