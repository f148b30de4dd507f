#!/bin/bash
# image.sh [TAG]: build the gatekeeper image (default gatekeeper:latest)
# with a local Docker engine, offline when no registry can be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-gatekeeper:latest}
scripts/deps.sh docker
scripts/dockerd.sh
scripts/base-image.sh debian:12 bookworm
docker build --build-arg BASE=debian:12 -t "$tag" .
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "image: $tag, $((size / 1024)) KiB" >&2
