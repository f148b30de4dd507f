/*
 * privilege.c: what the process may do. At start, raise the descriptor
 * limit to the hard one and check it against the listeners' limits; after
 * binding, switch from root to the configured user and group, the way
 * nginx, HAProxy and OpenBSD daemons do, and refuse to keep running as
 * root unless the config says so.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "privilege.h"

/* numeric: text is a whole decimal number that fits an id. */
static int
numeric(const char *text, unsigned long *out)
{
	char *end;

	if (text[0] < '0' || text[0] > '9')
		return 0;
	errno = 0;
	*out = strtoul(text, &end, 10);
	return errno == 0 && *end == '\0' && *out < 0xffffffffUL;
}

/* find_user resolves a name or a number; *gid is the user's primary group
 * (for a number with no passwd entry, the same number, as Docker does). */
static int
find_user(const char *user, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
	unsigned long n;
	struct passwd *pw;

	if (numeric(user, &n)) {
		*uid = (uid_t)n;
		pw = getpwuid(*uid);
		*gid = pw != NULL ? pw->pw_gid : (gid_t)n;
		return 0;
	}
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(err, errlen,
			 "unknown user '%s' (use a name from /etc/passwd, or a numeric "
			 "uid such as 65534)",
			 user);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

static int
find_group(const char *group, gid_t *gid, char *err, size_t errlen)
{
	unsigned long n;
	struct group *gr;

	if (numeric(group, &n)) {
		*gid = (gid_t)n;
		return 0;
	}
	if ((gr = getgrnam(group)) == NULL) {
		snprintf(err, errlen,
			 "unknown group '%s' (use a name from /etc/group, or a numeric "
			 "gid such as 65534)",
			 group);
		return -1;
	}
	*gid = gr->gr_gid;
	return 0;
}

int
privilege_drop(const struct config *cfg, char *err, size_t errlen)
{
	uid_t uid;
	gid_t gid;

	if (geteuid() != 0) {
		if (cfg->user != NULL)
			log_kv(LOG_LEVEL_WARN, "'user' ignored: not started as root",
			       LOG_STR("user", cfg->user), LOG_NUM("uid", geteuid()));
		return 0;
	}
	if (cfg->user != NULL && find_user(cfg->user, &uid, &gid, err, errlen) == -1)
		return -1;
	if (cfg->user == NULL || uid == 0) {
		if (cfg->allow_root) {
			log_kv(LOG_LEVEL_WARN, "running as root", LOG_STR("allow_root", "true"));
			return 0;
		}
		snprintf(err, errlen,
			 "refusing to run as root: set 'user' (e.g. user: nobody) to "
			 "drop privileges once the listeners are bound, or 'allow_root: "
			 "true' to keep them");
		return -1;
	}
	if (cfg->group != NULL && find_group(cfg->group, &gid, err, errlen) == -1)
		return -1;
	if (setgroups(1, &gid) == -1 || setgid(gid) == -1 || setuid(uid) == -1) {
		snprintf(err, errlen, "cannot switch to uid %lu gid %lu: %s", (unsigned long)uid,
			 (unsigned long)gid, strerror(errno));
		return -1;
	}
	if (setuid(0) != -1 || geteuid() == 0 || getegid() != gid) {
		snprintf(err, errlen, "privileges were not dropped (root could be regained)");
		return -1;
	}
	log_kv(LOG_LEVEL_INFO, "privileges dropped", LOG_STR("user", cfg->user),
	       LOG_NUM("uid", uid), LOG_NUM("gid", gid));
	return 0;
}

/* ---- the descriptor limit ---- */

/* Descriptors a worker holds besides its sessions: loop, pipes, resolver, timers. */
#define FDS_PER_WORKER 8
/* And the process: stdio, the admin endpoint and its clients, the config file. */
#define FDS_PROCESS 32

/* nr_open: the most descriptors the kernel lets a process have (fs.nr_open). */
static rlim_t
nr_open(void)
{
	unsigned long n = 0;
	FILE *f = fopen("/proc/sys/fs/nr_open", "r");

	if (f != NULL) {
		if (fscanf(f, "%lu", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n > 0 ? (rlim_t)n : 1048576;
}

unsigned long
privilege_raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_kv(LOG_LEVEL_WARN, "cannot read the file descriptor limit",
		       LOG_STR("error", strerror(errno)));
		return 0;
	}
	was = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (rl.rlim_max == RLIM_INFINITY)
			rl.rlim_cur = nr_open(); /* the kernel's ceiling: "unlimited" is refused */
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			log_kv(LOG_LEVEL_WARN, "cannot raise the file descriptor limit",
			       LOG_NUM("limit", was), LOG_NUM("hard", rl.rlim_max),
			       LOG_STR("error", strerror(errno)));
			rl.rlim_cur = was;
		}
	}
	log_kv(LOG_LEVEL_INFO, "file descriptor limit", LOG_NUM("limit", rl.rlim_cur),
	       LOG_NUM("was", was), LOG_NUM("hard", rl.rlim_max));
	return (unsigned long)rl.rlim_cur;
}

int
privilege_fd_budget(const struct config *cfg, unsigned long limit, int workers)
{
	unsigned long need = FDS_PROCESS, unlimited = 0;

	if (limit == 0)
		return 1;
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		need += (unsigned long)workers; /* a listening socket per worker */
		if (l->max_connections > 0)
			need += 2 * (unsigned long)l->max_connections;
		else
			unlimited++;
	}
	need += FDS_PER_WORKER * (unsigned long)workers;
	if (need > limit) {
		log_kv(
		    LOG_LEVEL_WARN,
		    "file descriptor limit below what max_connections needs (two per connection); "
		    "raise it (compose: ulimits: nofile:) or lower max_connections",
		    LOG_NUM("limit", limit), LOG_NUM("needed", need));
		return 0;
	}
	if (unlimited > 0)
		log_kv(LOG_LEVEL_INFO,
		       "listeners without max_connections are capped by the file descriptor limit",
		       LOG_NUM("listeners", unlimited), LOG_NUM("limit", limit),
		       LOG_NUM("connections", (limit - need) / 2));
	return 1;
}
