#!/usr/bin/env bash
# Login overhead of the audit_login plugin on the local MariaDB: N logins
# (mariadb-slap, one query per connection over TCP) with 1 and 16 clients,
# without the plugin, with the plugin as built from REV (default: the
# previous commit that changed plugin/), and with the working tree's
# plugin, interleaved over ROUNDS rounds so that load changes hit all
# alike. Prints logins/s (median) and the overhead against no plugin.
# It installs and uninstalls the plugin (as auditlogin_bench) and leaves
# the server's globals as they were.
#   bench/plugin.sh [N] [ROUNDS] [REV]
set -euo pipefail
N=${1:-4000}
ROUNDS=${2:-3}
cd "$(dirname "$0")/.."
REV=${3:-$(git log -n 2 --format=%H -- plugin/audit_login.c | tail -1)}
out=bench/out/plugin
rm -rf "$out" && mkdir -p "$out/old"
make -C plugin >/dev/null
cp plugin/audit_login.so "$out/new.so"
git show "$REV:plugin/audit_login.c" > "$out/old/audit_login.c"
cc -O2 -fPIC -shared -DMYSQL_DYNAMIC_PLUGIN -Iplugin/.deps/usr/include/mariadb/server -Iplugin/.deps/usr/include/mariadb/server/private \
	-o "$out/old.so" "$out/old/audit_login.c" -lpthread
sql() { mariadb -uroot -h127.0.0.1 -N -e "$1"; }
plugin_dir=$(sql "SELECT @@plugin_dir")
log=$(mktemp -d)/audit_login.log
chmod 777 "$(dirname "$log")"
install() { # so-file or "none"
	sql "UNINSTALL SONAME 'auditlogin_bench'" 2>/dev/null || true
	[ "$1" = none ] && return
	cp "$1" "$plugin_dir/auditlogin_bench.so"
	sql "INSTALL SONAME 'auditlogin_bench'"
	sql "SET GLOBAL audit_login_file='$log'"
}
cleanup() { sql "UNINSTALL SONAME 'auditlogin_bench'" 2>/dev/null || true; rm -f "$plugin_dir/auditlogin_bench.so"; }
trap cleanup EXIT
sql "CREATE USER IF NOT EXISTS 'bench_login'@'%' IDENTIFIED BY 'pw'; CREATE DATABASE IF NOT EXISTS auditlogin_bench; GRANT ALL ON auditlogin_bench.* TO 'bench_login'@'%'"
rate() { # clients -> logins/s
	local c=$1 s
	s=$(mariadb-slap -ubench_login -ppw -h127.0.0.1 --protocol=tcp --concurrency="$c" --number-of-queries="$N" \
		--detach=1 --query="SELECT 1" --create-schema=auditlogin_bench --iterations=1 2>/dev/null |
		awk '/Average number of seconds/ {print $(NF-1)}')
	awk -v n="$N" -v s="$s" 'BEGIN { printf "%.0f\n", n/s }'
}
declare -A results
for r in $(seq "$ROUNDS"); do
	for variant in none old new; do
		case $variant in none) install none ;; old) install "$out/old.so" ;; new) install "$out/new.so" ;; esac
		for c in 1 16; do results[$variant-$c]+="$(rate "$c") "; done
	done
done
sql "DROP USER IF EXISTS 'bench_login'@'%'; DROP DATABASE IF EXISTS auditlogin_bench"
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '\n%d logins (TCP, one query each), median of %d interleaved rounds; plugin before = %s\n' "$N" "$ROUNDS" "${REV:0:12}"
printf '%-28s %14s %10s %14s %10s\n' "" "1 client /s" overhead "16 clients /s" overhead
for variant in none old new; do
	one=$(echo "${results[$variant-1]}" | median)
	six=$(echo "${results[$variant-16]}" | median)
	b1=$(echo "${results[none-1]}" | median)
	b16=$(echo "${results[none-16]}" | median)
	label=$variant; [ "$variant" = none ] && label="no plugin"; [ "$variant" = old ] && label="plugin before"; [ "$variant" = new ] && label="plugin now"
	awk -v l="$label" -v a="$one" -v b="$six" -v b1="$b1" -v b16="$b16" 'BEGIN {
		printf "%-28s %14d %9.1f%% %14d %9.1f%%\n", l, a, (b1/a-1)*100, b, (b16/b-1)*100 }'
done
