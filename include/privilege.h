/*
 * privilege.h: giving up root once everything that needs it (binding the
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

#endif
