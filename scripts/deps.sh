#!/bin/sh
# Install the Debian packages gatekeeper needs for a given purpose, skipping
# those already present, so `make run` and `make test` work on a fresh
# Debian 12 machine with nothing installed by hand.
#
#   scripts/deps.sh build   compiler, pkg-config and the -dev libraries
#   scripts/deps.sh test    build + cmocka, pytest, dnsmasq, openssl, curl, clang-format
#   scripts/deps.sh format  clang-format (make format, make format-check)
#   scripts/deps.sh bench   test + nginx, HAProxy, wrk and dnsperf
#   scripts/deps.sh fuzz    build + clang (libFuzzer)
#   scripts/deps.sh valgrind  test + valgrind (memcheck over the integration tests)
#   scripts/deps.sh docker  Docker engine, docker-compose, debootstrap (the image)
set -eu

build="gcc make pkg-config libc6-dev libevent-dev libyaml-dev libc-ares-dev libhttp-parser-dev"
format="clang-format"
test="$build $format libcmocka-dev python3 python3-pytest dnsmasq-base openssl curl iproute2 haproxy prometheus faketime bind9-dnsutils"
bench="$test nginx-light libnginx-mod-stream wrk linux-perf dnsperf"
fuzz="$build clang libclang-rt-14-dev"
docker="docker.io docker-compose debootstrap"
valgrind="$test valgrind"

case "${1:-build}" in
build) want=$build ;;
test) want=$test ;;
format) want=$format ;;
bench) want=$bench ;;
fuzz) want=$fuzz ;;
docker) want=$docker ;;
valgrind) want=$valgrind ;;
*) echo "usage: $0 build|test|format|bench|fuzz|docker|valgrind" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
