#!/bin/bash
# dockerd.sh: make sure a Docker engine answers, starting dockerd in the
# background when it is not running (CI containers have no init system).
set -euo pipefail
if docker info >/dev/null 2>&1; then
	exit 0
fi
log=${DOCKERD_LOG:-/var/log/gatekeeper-dockerd.log}
echo "dockerd: starting (log: $log)" >&2
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 60); do
	if docker info >/dev/null 2>&1; then
		exit 0
	fi
	sleep 1
done
echo "dockerd: the engine did not come up; last lines of $log:" >&2
tail -20 "$log" >&2
exit 1
