/*
 * main.c: command line, the process, signals and reload orchestration.
 *
 * Loads the config (file, or quick mode from flags and GATEKEEPER_*
 * variables), opens every worker (worker.h) with every listener bound
 * before serving anything (a listener that cannot bind stops start-up),
 * then runs the first worker's loop on this thread and the others on
 * their own. Signals arrive through that loop (libevent runs their
 * callbacks as ordinary events, not in signal context), so the handlers
 * below may do real work: SIGTERM/SIGINT drain every worker, a second one
 * exits at once; SIGHUP builds the new config and hands it to the workers,
 * keeping the old one when it does not load.
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "admin.h"
#include "audit.h"
#include "clock.h"
#include "config.h"
#include "learn.h"
#include "log.h"
#include "net.h"
#include "observed.h"
#include "pool.h"
#include "privilege.h"
#include "worker.h"

#define DEFAULT_CONFIG "/etc/gatekeeper/gatekeeper.yaml"

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: gatekeeper [-c FILE] [-t | -T]\n"
		"       gatekeeper --listen ADDR:PORT --upstream HOST:PORT [options]\n"
		"       gatekeeper --version\n"
		"\n"
		"  -c FILE   run with this config (default: $GATEKEEPER_CONFIG, else %s)\n"
		"  -t        check the config and exit\n"
		"  -T        check the config and print it normalized\n"
		"\n"
		"quick mode (no file; each option also reads GATEKEEPER_<NAME>, e.g.\n"
		"GATEKEEPER_UPSTREAM; a flag beats its environment variable; lists are\n"
		"comma-separated):\n",
		DEFAULT_CONFIG);
	config_usage(out);
	fprintf(
	    out,
	    "\n"
	    "gatekeeper health [ADDR:PORT]   exit 0 when the admin endpoint's /healthz\n"
	    "                                answers (default: admin.listen of the config)\n"
	    "gatekeeper observed [ADDR:PORT] [--listener NAME] [--format yaml|json] [--collapse "
	    "N]\n"
	    "                                what action: report let through, as an allow\n"
	    "                                list to paste (from the admin endpoint)\n"
	    "gatekeeper audit --expect-open|--expect-closed HOST:PORT --expect-no-dns NAME\n"
	    "                 --expect-dns NAME=ADDR --docker ...\n"
	    "                                check what this container can reach; exit 1\n"
	    "                                when reality differs\n");
}

struct flag {
	const char *setting;
	const char *value;
};

/*
 * quick_config builds the one-listener config: environment first, then the
 * flags on top, so a flag wins. Each bad value is reported with where it
 * came from (the variable or the flag). Returns NULL after printing errors.
 */
static struct config *
quick_config(const struct flag *flags, size_t nflags)
{
	struct config *cfg = config_quick_new();
	const struct config_option *o;
	char err[512];
	int errors = 0;

	if (cfg == NULL) {
		fprintf(stderr, "gatekeeper: out of memory\n");
		return NULL;
	}
	for (size_t i = 0; (o = config_option(i)) != NULL; i++) {
		const char *v;
		if ((v = getenv(o->env)) == NULL || *v == '\0')
			continue;
		for (size_t j = 0; j < nflags; j++)
			if (strcmp(flags[j].setting, o->flag) == 0)
				v = NULL;
		if (v != NULL && config_quick_set(cfg, o->flag, v, err, sizeof(err)) != 0) {
			fprintf(stderr, "%s: %s\n", o->env, err);
			errors++;
		}
	}
	for (size_t j = 0; j < nflags; j++) {
		if (config_quick_set(cfg, flags[j].setting, flags[j].value, err, sizeof(err)) !=
		    0) {
			fprintf(stderr, "--%s: %s\n", flags[j].setting, err);
			errors++;
		}
	}
	if (errors || config_quick_finish(cfg, stderr) == -1) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

/*
 * quick_env_present: is any GATEKEEPER_* setting variable set? A passive
 * one (GATEKEEPER_PORT, which container platforms set for a service of
 * that name) counts only next to another.
 */
static int
quick_env_present(void)
{
	const struct config_option *o;
	const char *v;

	for (size_t i = 0; (o = config_option(i)) != NULL; i++)
		if (!o->passive && (v = getenv(o->env)) != NULL && *v != '\0')
			return 1;
	return 0;
}

/*
 * long_options builds getopt's table: every quick-mode option of the key
 * table, then --version, --help and --config. The caller frees it.
 */
static struct option *
long_options(void)
{
	static const struct option fixed[] = {
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {"config", required_argument, NULL, 'c'},
	};
	size_t n = 0, nfixed = sizeof(fixed) / sizeof(fixed[0]);
	const struct config_option *o;
	struct option *opts;

	while (config_option(n) != NULL)
		n++;
	if ((opts = calloc(n + nfixed + 1, sizeof(*opts))) == NULL)
		return NULL;
	for (size_t i = 0; (o = config_option(i)) != NULL; i++)
		opts[i] = (struct option){o->flag, required_argument, NULL, 0};
	memcpy(opts + n, fixed, sizeof(fixed));
	return opts;
}

/*
 * suggest_option follows getopt's message about argument at with a
 * did-you-mean when it is a misspelt long option.
 */
static void
suggest_option(char **argv, int at)
{
	const char *arg = argv[at], *hint;
	char name[64];
	size_t len;

	if (strncmp(arg, "--", 2) != 0)
		return;
	len = strcspn(arg + 2, "=");
	snprintf(name, sizeof(name), "%.*s", (int)(len < sizeof(name) ? len : sizeof(name) - 1),
		 arg + 2);
	if ((hint = config_option_suggest(name)) != NULL && strcmp(hint, name) != 0)
		fprintf(stderr, "gatekeeper: did you mean '--%s'?\n", hint);
}

struct process {
	struct gk *workers;
	size_t n;
	pthread_t *threads;
	struct admin *admin;
	struct config *cfg; /* in force (a reference) */
	int reloadable;	    /* started from a file: SIGHUP reads it again */
	pthread_mutex_t listeners_lock;
};

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct process *p = arg;

	(void)what;
	if (worker_draining(&p->workers[0])) {
		log_kv(LOG_LEVEL_WARN, "second signal, exiting now", LOG_NUM("signal", sig));
		exit(1);
	}
	log_kv(LOG_LEVEL_DEBUG, "stop signal", LOG_NUM("signal", sig));
	/* First, while every worker is whole: /metrics reads them all. */
	admin_free(p->admin);
	p->admin = NULL;
	for (size_t i = 1; i < p->n; i++)
		if (worker_ask_drain(&p->workers[i]) == -1)
			log_warn("cannot ask worker %zu to drain", i);
	worker_drain(&p->workers[0]);
}

static int worker_count(const struct config *cfg);

/* same_text: two optional strings are equal (both unset counts). */
static int
same_text(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* log_errors logs each line of a failed load's report. */
static void
log_errors(const char *msg, char *text)
{
	char *save = NULL;

	for (char *line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		log_kv(LOG_LEVEL_ERROR, msg, LOG_STR("error", line));
}

/* fd_limit: the soft descriptor limit in force (0 when it cannot be read). */
static unsigned long
fd_limit(void)
{
	struct rlimit rl;

	return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long)rl.rlim_cur : 0;
}

/*
 * reload is SIGHUP: read the file again; when it is valid, move every
 * worker to it (the first one here, the others through their notify
 * pipes); when it is not, keep the config in force and say why, line by
 * line with FILE:LINE:COL.
 */
static void
reload(struct process *p)
{
	struct gk *first = &p->workers[0];
	struct config *cfg, *old = p->cfg;
	char *errs = NULL;
	size_t errlen = 0, added, kept, removed;
	FILE *mem;

	if (worker_draining(first))
		return;
	if (!p->reloadable) {
		log_warnx("SIGHUP: quick mode has no file to reload; restart to change settings");
		return;
	}
	if ((mem = open_memstream(&errs, &errlen)) == NULL) {
		log_warn("reload: cannot start");
		return;
	}
	cfg = config_load(old->path, mem);
	fclose(mem);
	if (cfg == NULL) {
		log_errors("reload failed, the running config stays", errs);
		free(errs);
		worker_count_reload(first, 0);
		return;
	}
	free(errs);
	if (worker_count(cfg) != worker_count(old))
		log_warnx("reload: 'workers' changes on restart only");
	if (memcmp(&cfg->resolver, &old->resolver, sizeof(cfg->resolver)) != 0 &&
	    (cfg->resolver.refresh != old->resolver.refresh ||
	     cfg->resolver.min_ttl != old->resolver.min_ttl ||
	     cfg->resolver.timeout != old->resolver.timeout ||
	     cfg->resolver.nameservers.n != old->resolver.nameservers.n))
		log_warnx("reload: 'resolver' settings change on restart only");
	if (!same_text(cfg->user, old->user) || !same_text(cfg->group, old->group) ||
	    cfg->allow_root != old->allow_root)
		log_warnx("reload: 'user', 'group' and 'allow_root' change on restart only");
	if (worker_apply(first, cfg, NULL, &added, &kept, &removed) == -1) {
		log_kv(LOG_LEVEL_ERROR, "reload failed, the running config stays",
		       LOG_STR("error", "a new listener could not be opened"));
		worker_count_reload(first, 0);
		config_unref(cfg);
		return;
	}
	log_setup(cfg->log.level, cfg->log.format);
	observed_set_max((size_t)cfg->observed_max);
	/* The other workers bind what the first one bound (port 0 included). */
	for (size_t i = 1; i < p->n; i++)
		worker_ask_reload(&p->workers[i], cfg, first);
	if (cfg->admin_listen.len != old->admin_listen.len ||
	    memcmp(&cfg->admin_listen.ss, &old->admin_listen.ss, cfg->admin_listen.len) != 0) {
		char err[256];
		admin_free(p->admin);
		p->admin = NULL;
		if (cfg->admin_listen.len > 0 &&
		    (p->admin =
			 admin_new((struct sockaddr *)&cfg->admin_listen.ss, cfg->admin_listen.len,
				   p->workers, (int)p->n, err, sizeof(err))) == NULL)
			log_kv(LOG_LEVEL_ERROR, "admin endpoint", LOG_STR("error", err));
	}
	p->cfg = cfg; /* load's reference */
	config_unref(old);
	privilege_fd_budget(cfg, fd_limit(), (int)p->n);
	worker_count_reload(first, 1);
	log_kv(LOG_LEVEL_INFO, "reloaded", LOG_STR("config", cfg->path),
	       LOG_NUM("listeners", cfg->n_listeners), LOG_NUM("added", added),
	       LOG_NUM("kept", kept), LOG_NUM("removed", removed));
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	reload(arg);
}

/*
 * Every HEAP_TRIM_INTERVAL_MS, when malloc holds at least HEAP_TRIM_FREE
 * bytes free, they go back to the kernel: glibc returns only the top of
 * its heap by itself, so after a burst the freed middle would stay
 * resident. Sessions themselves are in pools (pool.h); this covers the
 * rest (sniffed heads, queued bytes, lookups).
 */
#define HEAP_TRIM_INTERVAL_MS 5000
#define HEAP_TRIM_FREE	      (1024 * 1024)

static void
on_heap_trim(evutil_socket_t fd, short what, void *arg)
{
	size_t free_bytes = pool_heap_trim(HEAP_TRIM_FREE);

	(void)fd;
	(void)what;
	(void)arg;
	if (free_bytes >= HEAP_TRIM_FREE)
		log_kv(LOG_LEVEL_DEBUG, "heap trimmed", LOG_NUM("free_bytes", free_bytes));
}

/* worker_thread runs a later worker's loop on its own thread. */
static void *
worker_thread(void *arg)
{
	worker_run(arg);
	return NULL;
}

static int
worker_count(const struct config *cfg)
{
	long n = cfg->workers;

	if (n == 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/*
 * run starts every worker: the first runs on the main thread, which also
 * owns the signals; the others get a thread each, with signals blocked so
 * they all arrive here. Returns the exit status.
 */
static int
run(struct config *cfg, int reloadable)
{
	struct process p;
	struct event *sigs[3] = {NULL, NULL, NULL}, *trim;
	struct timeval trim_every = clock_tv(HEAP_TRIM_INTERVAL_MS);
	sigset_t block, old;
	size_t started = 1, opened;
	char err[256] = "";
	int rc = 0;

	p.n = (size_t)worker_count(cfg);
	observed_set_max((size_t)cfg->observed_max);
	/* Before anything opens a descriptor: the soft limit up to the hard one. */
	privilege_fd_budget(cfg, privilege_raise_fd_limit(), (int)p.n);
	p.admin = NULL;
	p.cfg = cfg;
	p.reloadable = reloadable;
	pthread_mutex_init(&p.listeners_lock, NULL);
	p.workers = calloc(p.n, sizeof(*p.workers));
	p.threads = calloc(p.n, sizeof(*p.threads));
	if (p.workers == NULL || p.threads == NULL)
		fatal("out of memory");
	for (opened = 0; opened < p.n; opened++) {
		if (worker_open(&p.workers[opened], cfg, (int)opened, (int)p.n,
				opened ? &p.workers[0] : NULL, &p.listeners_lock) == -1) {
			opened++; /* worker_close undoes a partial open too */
			goto cannot_start;
		}
	}
	if (cfg->admin_listen.len > 0) {
		p.admin = admin_new((struct sockaddr *)&cfg->admin_listen.ss, cfg->admin_listen.len,
				    p.workers, (int)p.n, err, sizeof(err));
		if (p.admin == NULL) {
			log_kv(LOG_LEVEL_ERROR, "admin endpoint", LOG_STR("error", err));
			goto cannot_start;
		}
	}
	/* Everything that may need root (binding) is done; give it up. */
	if (privilege_drop(cfg, err, sizeof(err)) == -1) {
		log_kv(LOG_LEVEL_ERROR, "cannot start", LOG_STR("error", err));
		goto cannot_start;
	}
	sigs[0] = evsignal_new(worker_base(&p.workers[0]), SIGTERM, on_stop_signal, &p);
	sigs[1] = evsignal_new(worker_base(&p.workers[0]), SIGINT, on_stop_signal, &p);
	sigs[2] = evsignal_new(worker_base(&p.workers[0]), SIGHUP, on_hup, &p);
	for (int i = 0; i < 3; i++)
		if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) == -1)
			fatal("cannot install signal handlers");
	trim = event_new(worker_base(&p.workers[0]), -1, EV_PERSIST, on_heap_trim, NULL);
	if (trim == NULL || event_add(trim, &trim_every) == -1)
		fatal("cannot start the heap trim timer");
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (; started < p.n; started++) {
		if (pthread_create(&p.threads[started], NULL, worker_thread, &p.workers[started]) !=
		    0) {
			log_error("cannot start worker %zu", started);
			rc = 1;
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0) {
		log_kv(LOG_LEVEL_INFO, "ready", LOG_STR("version", GK_VERSION),
		       LOG_NUM("listeners", cfg->n_listeners), LOG_NUM("workers", p.n),
		       LOG_STR("config", cfg->path));
		if (worker_run(&p.workers[0]) == -1)
			rc = 1;
	} else {
		for (size_t i = 1; i < started; i++)
			if (worker_ask_drain(&p.workers[i]) == -1)
				log_warn("cannot stop worker %zu", i);
	}
	for (size_t i = 1; i < started; i++)
		pthread_join(p.threads[i], NULL);
	admin_free(p.admin);
	for (int i = 0; i < 3; i++)
		if (sigs[i])
			event_free(sigs[i]);
	event_free(trim);
	/* Freed here, one after another: c-ares' library counters are not thread-safe. */
	for (size_t i = 0; i < p.n; i++)
		worker_close(&p.workers[i]);
	free(p.workers);
	free(p.threads);
	config_unref(p.cfg);
	pthread_mutex_destroy(&p.listeners_lock);
	return rc;

cannot_start:
	admin_free(p.admin);
	for (size_t j = 0; j < opened; j++)
		worker_close(&p.workers[j]);
	free(p.workers);
	free(p.threads);
	config_unref(p.cfg);
	pthread_mutex_destroy(&p.listeners_lock);
	return 1;
}

/*
 * admin_address finds the admin endpoint a client command talks to: addr
 * when given ("IP:PORT" or ":PORT"), else GATEKEEPER_ADMIN, else the
 * admin.listen of the config `gatekeeper` would run with
 * ($GATEKEEPER_CONFIG or the default file). Returns 0, or -1 after saying
 * why on stderr, as cmd.
 */
static int
admin_address(const char *cmd, const char *addr, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[NET_HOSTMAX + 1], err[256];
	uint16_t port;

	*len = 0;
	if (addr == NULL || *addr == '\0')
		addr = getenv("GATEKEEPER_ADMIN");
	if (addr != NULL && *addr != '\0') {
		if (net_split_hostport(addr, host, sizeof(host), &port, err, sizeof(err)) == -1 ||
		    net_parse_ip(host[0] ? host : "127.0.0.1", port, ss, len) == -1 || port == 0) {
			fprintf(stderr, "gatekeeper %s: '%s' is not IP:PORT\n", cmd, addr);
			return -1;
		}
		return 0;
	}
	{
		const char *path = getenv("GATEKEEPER_CONFIG");
		FILE *quiet = fopen("/dev/null", "w");
		struct config *cfg =
		    config_load(path && *path ? path : DEFAULT_CONFIG, quiet ? quiet : stderr);
		if (quiet)
			fclose(quiet);
		if (cfg != NULL && cfg->admin_listen.len > 0) {
			memcpy(ss, &cfg->admin_listen.ss, sizeof(*ss));
			*len = cfg->admin_listen.len;
		}
		config_free(cfg);
	}
	if (*len == 0) {
		fprintf(stderr,
			"gatekeeper %s: no admin address (give ADDR:PORT, or set admin.listen in "
			"the config)\n",
			cmd);
		return -1;
	}
	return 0;
}

/*
 * health is `gatekeeper health [ADDR]`: the HEALTHCHECK of an image with
 * no shell. Exit 0 when /healthz answers 200, 1 otherwise.
 */
static int
health(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char why[320];

	if (argc > 3) {
		fprintf(stderr, "usage: gatekeeper health [ADDR:PORT]\n");
		return 1;
	}
	if (admin_address("health", argc > 2 ? argv[2] : NULL, &ss, &len) == -1)
		return 1;
	if (admin_health((struct sockaddr *)&ss, len, 3000, why, sizeof(why)) == -1) {
		fprintf(stderr, "gatekeeper health: %s\n", why);
		return 1;
	}
	return 0;
}

#define OBSERVED_USAGE                                                                             \
	"usage: gatekeeper observed [ADDR:PORT] [--listener NAME] [--format yaml|json] "           \
	"[--collapse N]\n"

/*
 * observed is `gatekeeper observed ...`: what report mode let through,
 * fetched from the admin endpoint's /observed, as an allow list to paste
 * (or as JSON). Exit 0, or 1 with a message.
 */
static int
observed(int argc, char **argv)
{
	struct learn_options o = {NULL, LEARN_YAML, 0};
	struct sockaddr_storage ss;
	socklen_t len;
	const char *addr = NULL;
	char why[320], *body = NULL;
	int status, rc;

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = strchr(a, '=');
		size_t klen = v ? (size_t)(v - a) : strlen(a);
		if (strncmp(a, "--", 2) != 0) {
			if (addr != NULL) {
				fprintf(stderr, OBSERVED_USAGE);
				return 1;
			}
			addr = a;
			continue;
		}
		if (v == NULL) {
			if (i + 1 >= argc) {
				fprintf(stderr,
					"gatekeeper observed: %s needs a value\n" OBSERVED_USAGE,
					a);
				return 1;
			}
			v = argv[++i];
		} else {
			v++;
		}
		if (klen == 10 && strncmp(a, "--listener", klen) == 0) {
			o.listener = v;
		} else if (klen == 8 && strncmp(a, "--format", klen) == 0 &&
			   (strcmp(v, "yaml") == 0 || strcmp(v, "json") == 0)) {
			o.format = strcmp(v, "json") == 0 ? LEARN_JSON : LEARN_YAML;
		} else if (klen == 10 && strncmp(a, "--collapse", klen) == 0 && v[0] >= '0' &&
			   v[0] <= '9' && strspn(v, "0123456789") == strlen(v) && strlen(v) < 6) {
			o.collapse = (unsigned)atoi(v);
		} else {
			fprintf(stderr, "gatekeeper observed: bad option '%s'\n" OBSERVED_USAGE, a);
			return 1;
		}
	}
	if (admin_address("observed", addr, &ss, &len) == -1)
		return 1;
	status = admin_get((struct sockaddr *)&ss, len, "/observed", 5000, &body, why, sizeof(why));
	if (status != 200) {
		if (status == -1)
			fprintf(stderr, "gatekeeper observed: %s\n", why);
		else
			fprintf(stderr, "gatekeeper observed: /observed answered %d\n", status);
		free(body);
		return 1;
	}
	rc = learn_print(body, strlen(body), &o, stdout, why, sizeof(why));
	free(body);
	if (rc == -1) {
		fprintf(stderr, "gatekeeper observed: %s\n", why);
		return 1;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	/* Static: reachable until exit, whichever way main ends. */
	static struct option *longopts;
	static struct flag *flags;
	const char *path = NULL;
	int check = 0, dump = 0, ch, idx, rc;
	size_t nflags = 0;
	struct config *cfg;

	if (argc > 1 && strcmp(argv[1], "health") == 0)
		return health(argc, argv);
	if (argc > 1 && strcmp(argv[1], "observed") == 0)
		return observed(argc, argv);
	if (argc > 1 && strcmp(argv[1], "audit") == 0)
		return audit_main(argc - 1, argv + 1, stdout);
	/* One flag per argument at most; getopt's table comes from the key table. */
	longopts = long_options();
	flags = calloc((size_t)argc, sizeof(*flags));
	if (longopts == NULL || flags == NULL) {
		fprintf(stderr, "gatekeeper: out of memory\n");
		return 1;
	}
	while ((ch = getopt_long(argc, argv, "c:tThV", longopts, &idx)) != -1) {
		switch (ch) {
		case 0:
			for (size_t j = 0; j < nflags; j++)
				if (strcmp(flags[j].setting, longopts[idx].name) == 0)
					flags[j].setting = "";
			flags[nflags].setting = longopts[idx].name;
			flags[nflags++].value = optarg;
			break;
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'T':
			check = dump = 1;
			break;
		case 'V':
			printf("gatekeeper %s\n", GK_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case '?':
			/* getopt said what was wrong; add a suggestion for a misspelt option. */
			if (optind > 1 && optind - 1 < argc)
				suggest_option(argv, optind - 1);
			usage(stderr);
			return 1;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "gatekeeper: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 1;
	}
	/* A repeated flag: the last one wins; drop the earlier ones. */
	{
		size_t k = 0;
		for (size_t j = 0; j < nflags; j++)
			if (flags[j].setting[0] != '\0')
				flags[k++] = flags[j];
		nflags = k;
	}

	if (path != NULL && nflags > 0) {
		fprintf(stderr,
			"gatekeeper: -c and quick-mode flags (--%s) cannot be combined; "
			"put the settings in the file\n",
			flags[0].setting);
		return 1;
	}
	if (path == NULL && nflags == 0 && !quick_env_present()) {
		path = getenv("GATEKEEPER_CONFIG");
		if (path == NULL || *path == '\0')
			path = DEFAULT_CONFIG;
	}
	cfg = path ? config_load(path, stderr) : quick_config(flags, nflags);
	if (cfg == NULL)
		return 1;
	if (check) {
		if (dump)
			config_dump(cfg, stdout);
		fprintf(stderr, "%s: configuration ok\n", cfg->path);
		config_free(cfg);
		return 0;
	}

	log_setup(cfg->log.level, cfg->log.format);
	signal(SIGPIPE, SIG_IGN);
	rc = run(cfg, path != NULL); /* run owns cfg now */
	if (rc == 0)
		log_kv(LOG_LEVEL_INFO, "exit", LOG_NUM("status", rc));
	return rc;
}
