#!/bin/sh
# The workload: fetches each of $URLS every few seconds, one line per fetch
# and one per round (`docker-compose logs -f app`). An entry "proxy:URL"
# goes through the CONNECT door (gatekeeper:3128), any other by name.
# CURL_OPTS adds options (-k when the stand-in internet's servers play).
round=0
while :; do
	round=$((round + 1))
	ok=0
	fail=0
	for u in $URLS; do
		case $u in
		proxy:*) url=${u#proxy:} via="-x http://gatekeeper:3128" ;;
		*) url=$u via= ;;
		esac
		# shellcheck disable=SC2086
		if status=$(curl -sS --max-time 10 -o /tmp/body -w '%{http_code}' $CURL_OPTS $via "$url" 2>/tmp/err); then
			echo "round=$round ok url=$u status=$status got=\"$(head -c 100 /tmp/body | head -1)\""
			ok=$((ok + 1))
		else
			echo "round=$round fail url=$u error=\"$(head -1 /tmp/err)\""
			fail=$((fail + 1))
		fi
	done
	echo "round=$round done ok=$ok fail=$fail"
	sleep "${EVERY:-3}"
done
