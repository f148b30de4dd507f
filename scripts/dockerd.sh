#!/bin/bash
# dockerd.sh: make sure a Docker engine answers, starting dockerd in the
# background when it is not running (CI containers have no init system).
# Exits 1, with the reason, when there is no engine and none can be started.
set -euo pipefail
if ! command -v docker >/dev/null; then
	echo "dockerd: no docker client (scripts/deps.sh docker installs docker.io)" >&2
	exit 1
fi
if docker info >/dev/null 2>&1; then
	exit 0
fi
if ! command -v dockerd >/dev/null; then
	echo "dockerd: the engine is not running and there is no dockerd to start" >&2
	exit 1
fi
log=${DOCKERD_LOG:-/var/log/gatekeeper-dockerd.log}
echo "dockerd: starting (log: $log)" >&2
nohup dockerd >"$log" 2>&1 &
pid=$!
for _ in $(seq 60); do
	if docker info >/dev/null 2>&1; then
		exit 0
	fi
	if ! kill -0 "$pid" 2>/dev/null; then
		break # it gave up (no privileges, no iptables, ...)
	fi
	sleep 1
done
echo "dockerd: the engine did not come up; last lines of $log:" >&2
tail -20 "$log" >&2
exit 1
