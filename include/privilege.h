/*
 * privilege.h: what the process may do: the descriptor limit it runs
 * with, and giving up root once everything that needs it (binding the
 * listeners and the admin endpoint) is done.
 */
#ifndef GK_PRIVILEGE_H
#define GK_PRIVILEGE_H

#include <stddef.h>

#include "config.h"

/*
 * privilege_drop runs once, before the worker threads start. Started as
 * root with `user` set, it switches to that user and group (supplementary
 * groups cleared) and checks that root cannot be regained. Still root
 * afterwards (no `user`, or `user` is root) is refused unless `allow_root`
 * is true. Not started as root, it changes nothing (a `user` that differs
 * is logged and ignored). Returns 0, or -1 with the reason in err.
 */
int privilege_drop(const struct config *cfg, char *err, size_t errlen);

/*
 * privilege_raise_fd_limit raises the soft RLIMIT_NOFILE to the hard one
 * (Docker 29 starts containers at a soft 1024, which caps a relay at
 * about 500 connections) and logs the figure. Run once at start, before
 * anything opens descriptors. Returns the soft limit now in force (0 when
 * it cannot be read).
 */
unsigned long privilege_raise_fd_limit(void);

/*
 * privilege_fd_budget says whether the descriptor limit covers what cfg
 * may need: two per connection of every listener's max_connections, plus
 * the listening sockets, the loops and the resolver of every worker.
 * Warns when it does not, and says so too when a listener has no
 * max_connections (the limit is then its real cap). Returns 1 when
 * covered, else 0.
 */
int privilege_fd_budget(const struct config *cfg, unsigned long limit, int workers);

#endif
