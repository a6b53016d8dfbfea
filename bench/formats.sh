#!/usr/bin/env bash
# Parse throughput of every format, in one run: each format's samples
# (parser/testdata/FORMAT/*.log) repeated to about N lines (default 500000),
# timed through `auditlogin parse --format FORMAT`, next to the audit_login
# parser on its own realistic file (bench/gen) and `cat` of each file.
#   bench/formats.sh [N]
set -euo pipefail
N=${1:-500000}
cd "$(dirname "$0")/.."
out=bench/out/formats
rm -rf "$out" && mkdir -p "$out"
CGO_ENABLED=0 go build -trimpath -o "$out/auditlogin" ./cmd/auditlogin
go run ./bench/gen -n "$N" > "$out/audit_login.log"
for dir in parser/testdata/*/; do
	f=$(basename "$dir")
	[ "$f" = audit_login ] && continue
	sample=$(cat "$dir"*.log)
	per=$(printf '%s\n' "$sample" | wc -l)
	reps=$(( N / per + 1 ))
	for _ in $(seq "$reps"); do printf '%s\n' "$sample"; done > "$out/$f.log"
done
printf '%-24s %10s %8s %12s %8s\n' format lines seconds lines/s "x cat"
for f in "$out"/*.log; do
	fmt=$(basename "$f" .log)
	lines=$(wc -l < "$f")
	/usr/bin/time -f "%e" -o "$out/cat.time" cat "$f" > /dev/null
	/usr/bin/time -f "%e" -o "$out/parse.time" "$out/auditlogin" parse --format "$fmt" --timezone UTC --myhost bench "$f" > /dev/null 2>&1 || true
	awk -v f="$fmt" -v l="$lines" -v c="$(cat "$out/cat.time")" -v p="$(cat "$out/parse.time")" 'BEGIN {
		if (p < 0.01) p = 0.01; if (c < 0.01) c = 0.01
		printf "%-24s %10d %8.2f %12.0f %8.1f\n", f, l, p, l/p, p/c }'
done
