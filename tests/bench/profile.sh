#!/bin/bash
# profile.sh: where gatekeeper's CPU goes under keep-alive load.
#
# Starts build/whoami on CPU 1, gatekeeper (tcp mode, or MODE=http) on CPU 0,
# drives it with wrk (64 connections, on CPU 1) while `perf record -g` samples
# gatekeeper, and prints the split by binary (kernel, libc, libevent,
# gatekeeper) and the top symbols. Traffic stays on 127.0.0.1.
#
#   tests/bench/profile.sh            # tcp mode, 8 s
#   MODE=http SECONDS_=5 tests/bench/profile.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${MODE:-tcp}
DURATION=${SECONDS_:-8}
scripts/deps.sh bench
for tool in perf wrk; do
	command -v "$tool" >/dev/null || { echo "profile.sh: $tool is not installed" >&2; exit 1; }
done
make -s all
dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend=$(port)
front=$(port)
taskset -c 1 build/whoami -l "127.0.0.1:$backend" >/dev/null 2>&1 &
pids+=($!)
taskset -c 0 build/gatekeeper --listen "127.0.0.1:$front" --upstream "127.0.0.1:$backend" \
	--mode "$MODE" --log-level warn --allow-root true 2>"$dir/gk.log" &
gk=$!
pids+=("$gk")
for _ in $(seq 50); do
	(exec 3<>"/dev/tcp/127.0.0.1/$front") 2>/dev/null && break
	sleep 0.1
done
taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$front/health" >/dev/null # warm-up
perf record -q -g -p "$gk" -o "$dir/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
rec=$!
sleep 0.2
taskset -c 1 wrk -t1 -c64 -d"$((DURATION - 1))s" "http://127.0.0.1:$front/health" | grep -E "Requests/sec"
wait "$rec" || true
echo "== CPU by binary ($MODE mode)"
perf report -i "$dir/perf.data" --no-children --sort dso -g none 2>/dev/null | grep '%' | head -8
echo "== top symbols"
perf report -i "$dir/perf.data" --no-children --sort dso,symbol -g none 2>/dev/null | grep '%' | head -20
