#!/bin/bash
# base-image.sh TAG SUITE: make sure the Docker image TAG (e.g. debian:12)
# exists locally. It is used as it is when present, pulled when a registry
# answers, and otherwise built from Debian's package mirror with debootstrap
# (minbase) and `docker import` under the same tag: the air-gapped path, for
# CI without a registry and for machines that reach only the mirror.
set -euo pipefail
tag=${1:-debian:12}
suite=${2:-bookworm}
mirror=${DEBIAN_MIRROR:-}

if docker image inspect "$tag" >/dev/null 2>&1; then
	exit 0
fi
if timeout 60 docker pull -q "$tag" >/dev/null 2>&1; then
	echo "base-image: pulled $tag" >&2
	exit 0
fi
if [ -z "$mirror" ]; then
	# The mirror this machine's apt uses (deb822 or one-line sources).
	mirror=$(grep -hoE '^URIs: *\S+/debian$|^deb +\S+/debian ' /etc/apt/sources.list.d/*.sources \
		/etc/apt/sources.list 2>/dev/null | head -1 | sed -E 's/^URIs: *//; s/^deb +//; s/ +$//' || true)
	mirror=${mirror:-http://deb.debian.org/debian}
fi
echo "base-image: no registry: building $tag from $mirror ($suite, debootstrap)" >&2
root=$(mktemp -d /var/tmp/gk-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase "$suite" "$root" "$mirror" >&2
# What `docker pull debian` would also leave out: apt lists and caches.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import - "$tag" >/dev/null
echo "base-image: imported $tag" >&2
