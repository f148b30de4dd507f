/*
 * privilege.c: switch from root to the configured user and group after
 * binding, the way nginx, HAProxy and OpenBSD daemons do, and refuse to keep
 * running as root unless the config says so.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
