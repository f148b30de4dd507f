/*
 * audit.h: `gatekeeper audit`, run inside a jailed container to prove what
 * it can and cannot reach.
 *
 * It probes only what it is told: --expect-open HOST:PORT (a TCP connect
 * must succeed), --expect-closed HOST:PORT (it must not: no address, no
 * route, refused or timed out), --expect-no-dns NAME (the name must not
 * resolve). Names are resolved with c-ares from /etc/resolv.conf, the way
 * the proxy itself resolves. It prints one table row per check and exits 1
 * when anything differs from what was expected, 2 on bad arguments.
 */
#ifndef GK_AUDIT_H
#define GK_AUDIT_H

#include <stdio.h>

/* audit_main runs `gatekeeper audit` (argv[0] is "audit"), writing the table to out. */
int audit_main(int argc, char **argv, FILE *out);

#endif
