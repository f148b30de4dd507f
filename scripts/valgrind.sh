#!/bin/bash
# valgrind.sh BUILD_DIR [PYTEST_ARGS...]: memcheck over a representative
# part of the integration suite. Every gatekeeper the tests start runs under
# valgrind (a wrapper named in GATEKEEPER_BIN), each with its own log; the
# run passes only when the tests pass and every log reports 0 errors and
# no definitely, indirectly or possibly lost bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: valgrind.sh BUILD_DIR [PYTEST_ARGS...]}
shift
logs=$(mktemp -d /tmp/gk-valgrind.XXXXXX)
wrapper=$logs/gatekeeper
cat >"$wrapper" <<WRAP
#!/bin/sh
exec valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \\
	--show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \\
	--track-fds=no --log-file=$logs/vg-%p.log $(pwd)/$build/gatekeeper "\$@"
WRAP
chmod +x "$wrapper"

# Relaying, HTTP mode, sniffing, PROXY protocol, DNS (and its faults),
# egress, reload, admin and shutdown. RSS bounds mean nothing under
# valgrind, and timeouts-driven tests only get slower: those are left out.
tests=(tests/integration/test_relay.py tests/integration/test_http.py
	tests/integration/test_sniff.py tests/integration/test_proxyproto.py
	tests/integration/test_dns.py tests/integration/test_dns_faults.py
	tests/integration/test_egress.py tests/integration/test_reload.py
	tests/integration/test_admin.py tests/integration/test_shutdown.py)
set +e
GATEKEEPER_BIN=$wrapper WHOAMI_BIN=$(pwd)/$build/whoami /usr/bin/python3 -m pytest -q \
	-p no:cacheprovider -k "not backpressure and not rss and not 64mib and not many_short" \
	"${tests[@]}" "$@"
rc=$?
set -e
n=$(ls "$logs"/vg-*.log 2>/dev/null | wc -l)
bad=0
for f in "$logs"/vg-*.log; do
	[ -e "$f" ] || continue
	if ! grep -q "ERROR SUMMARY: 0 errors" "$f" ||
		grep -qE "(definitely|indirectly|possibly) lost: [1-9]" "$f"; then
		bad=$((bad + 1))
		echo "== $f" >&2
		grep -E "ERROR SUMMARY|lost:|Invalid|uninitialised|at 0x|by 0x" "$f" | head -40 >&2
	fi
done
echo "valgrind: $n gatekeeper processes checked, $bad with errors or leaks (logs: $logs)"
[ "$rc" -eq 0 ] && [ "$bad" -eq 0 ] && [ "$n" -gt 0 ]
