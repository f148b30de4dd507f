#!/bin/bash
# instructions.sh [BIN...]: instructions gatekeeper executes per proxied
# connection, counted by callgrind, so the figure repeats whatever else the
# machine is doing (wall-clock benchmarks on 2 shared cores vary by 10-25%).
#
# For each binary (default build/gatekeeper) it runs gatekeeper in tcp mode
# under callgrind in front of a local echo server, twice: LOW and HIGH short
# connections (each: connect, 100 bytes echoed, close), and prints
# (total(HIGH) - total(LOW)) / (HIGH - LOW), which cancels start-up and
# shutdown. Give two binaries to compare two builds on the same workload.
# All traffic is on 127.0.0.1. Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
LOW=${LOW:-1000}
HIGH=${HIGH:-3000}
[ $# -gt 0 ] || set -- build/gatekeeper
work=$(mktemp -d /tmp/gk-instr.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

# The soak's echo server (asyncio, with back-pressure) prints its port first.
/usr/bin/python3 tests/soak/soak.py --echo-backend >"$work/echo.out" 2>"$work/echo.log" &
pids+=($!)
until [ "$(wc -l <"$work/echo.out")" -ge 1 ]; do
	kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/echo.log" >&2; exit 1; }
	sleep 0.1
done
echo_port=$(head -1 "$work/echo.out")

# total BIN N: callgrind's instruction total for one run of N connections.
total() {
	local bin=$1 n=$2 port out
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	out=$work/cg.$n.$RANDOM
	root=()
	[ "$(id -u)" -ne 0 ] || root=(--allow-root true)
	valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --listen "127.0.0.1:$port" \
		--upstream "127.0.0.1:$echo_port" --log-level warn "${root[@]}" 2>"$out.log" &
	local gk=$!
	python3 - "$port" "$n" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(600):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("gatekeeper did not start")
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port), timeout=30)
    c.sendall(b"x" * 100)
    got = b""
    while len(got) < 100:
        d = c.recv(100)
        if not d:
            sys.exit("connection closed early")
        got += d
    c.shutdown(socket.SHUT_WR)
    c.recv(10)
    c.close()
PY
	kill -TERM "$gk"
	wait "$gk" || true
	# The probe connection above counts too: n + 1 connections in all.
	awk '/^totals:/ {print $2}' "$out"
}

for bin in "$@"; do
	lo=$(total "$bin" "$LOW")
	hi=$(total "$bin" "$HIGH")
	echo "$bin: $(((hi - lo) / (HIGH - LOW))) instructions per connection ($LOW and $HIGH connections: $lo and $hi in all)"
done
