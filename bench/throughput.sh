#!/usr/bin/env bash
# Throughput of the audit_login path, measured against floors in the same run:
# generates N realistic records (default 2 million), then times on the same
# file `cat` and `wc -l` (the floor: reading the bytes), `auditlogin parse`
# (parse + id + JSON) and `auditlogin run --once` into the file output (the
# whole agent: tailer, pipeline, file output, registry commit). Prints lines/s,
# MB/s, the ratio of each to `cat`, and peak RSS.
#   bench/throughput.sh [N]
set -euo pipefail
N=${1:-2000000}
cd "$(dirname "$0")/.."
out=bench/out
rm -rf "$out" && mkdir -p "$out"
CGO_ENABLED=0 go build -trimpath -o "$out/auditlogin" ./cmd/auditlogin
go run ./bench/gen -n "$N" > "$out/audit_login.log"
log="$out/audit_login.log"
bytes=$(stat -c %s "$log")
lines=$(wc -l < "$log")
cat > "$out/run.yaml" <<YAML
inputs:
  - paths: ["$PWD/$log"]
    timezone: UTC
registry: {path: "$PWD/$out/registry.json"}
outputs:
  file: {path: "$PWD/$out/events.ndjson", max_size: 100GiB}
log: {level: warn}
YAML

measure() { # name, command...
	local name=$1; shift
	sync; cat "$log" > /dev/null # same page-cache state for everyone
	/usr/bin/time -f "%e %M" -o "$out/time" "$@" > /dev/null 2> "$out/stderr" || { cat "$out/stderr"; exit 1; }
	read -r secs rss < "$out/time"
	results+=("$name|$secs|$rss")
}
results=()
measure "cat > /dev/null" cat "$log"
measure "wc -l" wc -l "$log"
measure "auditlogin parse" "$out/auditlogin" parse --timezone UTC "$log"
rm -f "$out/registry.json" "$out/events.ndjson"
measure "auditlogin run --once (file)" "$out/auditlogin" run --once --config "$out/run.yaml"
shipped=$(wc -l < "$out/events.ndjson")

printf '%s\n' "${results[@]}" | awk -F'|' -v lines="$lines" -v bytes="$bytes" -v shipped="$shipped" '
BEGIN {
	printf "\n%d lines (%d records shipped by run), %.0f MB, one file, one run\n", lines, shipped, bytes/1e6
	printf "%-30s %8s %12s %9s %9s %10s\n", "step", "seconds", "lines/s", "MB/s", "x cat", "peak RSS"
}
{
	s = ($2 < 0.01) ? 0.01 : $2   # /usr/bin/time resolution
	if (NR == 1) c = s
	printf "%-30s %8.2f %12.0f %9.1f %9.1f %7.1f MB\n", $1, $2, lines/s, bytes/1e6/s, s/c, $3/1024
}'
