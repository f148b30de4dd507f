#!/bin/sh
# run-demo.sh BUILD_DIR: the demo behind `make run`.
#
# Starts the whoami backend on 127.0.0.1:8081 in the background, then runs
# gatekeeper in the foreground with conf/gatekeeper.yaml, which relays
# 127.0.0.1:8080 to it. gatekeeper keeps the terminal (Ctrl-C reaches it
# directly, so it drains as usual) and its exit status becomes ours; the
# backend is stopped whenever this script ends.
set -u

case "${1:-}" in
'') echo "usage: $0 BUILD_DIR" >&2; exit 2 ;;
/*) build=$1 ;;
*) build=$PWD/$1 ;;
esac
cd "$(dirname "$0")/.." || exit 1

for bin in whoami gatekeeper; do
	if [ ! -x "$build/$bin" ]; then
		echo "run-demo: $build/$bin is missing; build it with make" >&2
		exit 1
	fi
done

echo "gatekeeper: try  curl http://127.0.0.1:8080/"

# Wait for whoami's "listening ADDR:PORT" line through a FIFO, so that a
# busy port is reported here instead of as failed requests later.
tmp=$(mktemp -d) || exit 1
mkfifo "$tmp/ready" || { rmdir "$tmp"; exit 1; }
"$build/whoami" -l 127.0.0.1:8081 -n whoami >"$tmp/ready" &
whoami_pid=$!
stop_whoami() {
	kill "$whoami_pid" 2>/dev/null
	wait "$whoami_pid" 2>/dev/null
}
trap stop_whoami EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if ! read -r ready <"$tmp/ready"; then
	rm -rf "$tmp"
	echo "run-demo: whoami did not start" >&2
	exit 1
fi
rm -rf "$tmp"
echo "whoami: $ready"

"$build/gatekeeper" -c conf/gatekeeper.yaml
exit $?
