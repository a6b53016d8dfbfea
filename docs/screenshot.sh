#!/usr/bin/env bash
# Renders docs/report.png, the README's picture of the HTML report: 200,000
# generated logins from 3 servers over a week, reported by auditlogin and
# photographed by Debian's chromium, headless.
#   docs/screenshot.sh        (needs: apt-get install chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "chromium is needed: apt-get install chromium"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go run ./bench/gen -n 200000 -span 168h -servers 3 > "$tmp/audit_login.log"
go run ./cmd/auditlogin report --timezone UTC --format html -o "$tmp/report.html" "$tmp/audit_login.log"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
	--disable-component-update --disable-sync --user-data-dir="$tmp/profile" --hide-scrollbars \
	--window-size=1100,1500 --screenshot="$PWD/docs/report.png" "file://$tmp/report.html" 2>/dev/null
echo "docs/report.png written"
