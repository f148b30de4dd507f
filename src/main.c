/*
 * main.c: command line, start-up, signals and shutdown.
 *
 * Builds the one struct gk, loads the config (file, or quick mode from
 * flags and GATEKEEPER_* variables), opens every listener before serving
 * anything (a listener that cannot bind stops start-up), then runs the
 * loop. Signals arrive through the loop (libevent runs their callbacks as
 * ordinary events, not in signal context), so the handlers below may do
 * real work: SIGTERM/SIGINT start a drain, a second one exits at once.
 */
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "audit.h"
#include "clock.h"
#include "config.h"
#include "gk.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "privilege.h"
#include "resolver.h"
#include "session.h"

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
	    "GATEKEEPER_UPSTREAM; a flag beats its environment variable):\n"
	    "  --listen ADDR:PORT         --upstream HOST:PORT       --mode tcp|tls|http\n"
	    "  --name NAME                --connect-timeout 5s       --idle-timeout 5m\n"
	    "  --max-connections N        --log-level info           --log-format logfmt|json\n"
	    "  --nameservers IP[:PORT],.. --refresh 30s              --min-ttl 1s\n"
	    "  --drain-timeout 8s         --sniff-timeout 5s         --splice auto|on|off\n"
	    "  --workers auto|N           --admin ADDR:PORT\n"
	    "  --user NAME|UID            --group NAME|GID           --allow-root true|false\n"
	    "\n"
	    "gatekeeper health [ADDR:PORT]   exit 0 when the admin endpoint's /healthz\n"
	    "                                answers (default: admin.listen of the config)\n"
	    "gatekeeper audit --expect-open|--expect-closed HOST:PORT --expect-no-dns NAME ...\n"
	    "                                check what this container can reach; exit 1\n"
	    "                                when reality differs\n",
	    DEFAULT_CONFIG);
}

/* env_name turns "connect-timeout" into "GATEKEEPER_CONNECT_TIMEOUT". */
static void
env_name(const char *setting, char *buf, size_t len)
{
	size_t n = (size_t)snprintf(buf, len, "GATEKEEPER_");

	for (; *setting && n + 1 < len; setting++)
		buf[n++] = *setting == '-' ? '_' : (char)toupper((unsigned char)*setting);
	buf[n] = '\0';
}

struct flag {
	const char *setting;
	const char *value;
};

/*
 * quick_config builds the one-listener config: environment first, then the
 * flags on top, so a flag wins. Returns NULL after printing errors.
 */
static struct config *
quick_config(const struct flag *flags, size_t nflags)
{
	struct config *cfg = config_quick_new();
	char err[512], var[64];
	int errors = 0;

	if (cfg == NULL) {
		fprintf(stderr, "gatekeeper: out of memory\n");
		return NULL;
	}
	for (size_t i = 0; config_quick_settings[i] != NULL; i++) {
		const char *v;
		env_name(config_quick_settings[i], var, sizeof(var));
		if ((v = getenv(var)) == NULL || *v == '\0')
			continue;
		for (size_t j = 0; j < nflags; j++)
			if (strcmp(flags[j].setting, config_quick_settings[i]) == 0)
				v = NULL;
		if (v != NULL && config_quick_set(cfg, config_quick_settings[i], v, err,
				     sizeof(err)) != 0) {
			fprintf(stderr, "%s: %s\n", var, err);
			errors++;
		}
	}
	for (size_t j = 0; j < nflags; j++) {
		if (config_quick_set(cfg, flags[j].setting, flags[j].value, err, sizeof(err)) != 0) {
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

/* quick_env_present: is any GATEKEEPER_<setting> variable set? */
static int
quick_env_present(void)
{
	char var[64];
	const char *v;

	for (size_t i = 0; config_quick_settings[i] != NULL; i++) {
		env_name(config_quick_settings[i], var, sizeof(var));
		if ((v = getenv(var)) != NULL && *v != '\0')
			return 1;
	}
	return 0;
}

void
gk_session_ended(struct gk *gk)
{
	if (gk->draining && gk->n_sessions == 0)
		event_base_loopexit(gk->base, NULL);
}

static void
close_listeners(struct gk *gk)
{
	for (size_t i = 0; i < gk->n_listeners; i++)
		listener_close(gk->listeners[i]);
	gk->n_listeners = 0;
}

static void
on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct gk *gk = arg;

	(void)fd;
	(void)what;
	log_kv(LOG_LEVEL_WARN, "drain timeout, closing sessions", LOG_NUM("worker", gk->worker),
	    LOG_NUM("sessions", gk->n_sessions));
	session_close_all(gk, REASON_SHUTDOWN);
	event_base_loopexit(gk->base, NULL);
}

/*
 * drain stops one worker from accepting and lets its sessions finish
 * within drain_timeout; its loop ends when the last one is gone.
 */
static void
drain(struct gk *gk)
{
	struct timeval tv = clock_tv(gk->cfg->defaults.drain_timeout);

	if (gk->draining)
		return;
	gk->draining = 1;
	/* Listeners first: once the line is out, new connections are refused. */
	close_listeners(gk);
	log_kv(LOG_LEVEL_INFO, "draining", LOG_NUM("worker", gk->worker),
	    LOG_NUM("sessions", gk->n_sessions),
	    LOG_NUM("drain_timeout_ms", gk->cfg->defaults.drain_timeout));
	if (gk->n_sessions == 0) {
		event_base_loopexit(gk->base, NULL);
		return;
	}
	gk->drain_timer = evtimer_new(gk->base, on_drain_timeout, gk);
	if (gk->drain_timer == NULL || evtimer_add(gk->drain_timer, &tv) == -1)
		on_drain_timeout(-1, 0, gk);
}

static void
reload_free(struct gk_reload *r)
{
	if (r == NULL)
		return;
	config_unref(r->cfg);
	free(r->bound);
	free(r);
}

static int
same_listen(const struct config_listener *a, const struct config_listener *b)
{
	return a->listen.len == b->listen.len &&
	    net_sockaddr_equal((const struct sockaddr *)&a->listen.ss,
		(const struct sockaddr *)&b->listen.ss);
}

/*
 * worker_apply moves one worker to cfg. A listener whose address is in
 * both configs keeps its socket and takes its new settings; the others
 * open or close (closed ones stop accepting, their sessions finish). New
 * sockets are opened first, so when one cannot be (the first worker: an
 * address in use), nothing has changed and -1 is returned. bound gives,
 * for later workers, the addresses the first one bound.
 */
static int
worker_apply(struct gk *gk, struct config *cfg, const struct sockaddr_storage *bound,
    size_t *added, size_t *kept, size_t *removed)
{
	size_t n = cfg->n_listeners, old_n = gk->n_listeners;
	struct listener **fresh = calloc(n ? n : 1, sizeof(*fresh)), **old = gk->listeners;
	int *match = malloc((n ? n : 1) * sizeof(*match));
	char *taken = calloc(old_n ? old_n : 1, 1);

	if (fresh == NULL || match == NULL || taken == NULL)
		goto fail;
	/*
	 * Same address and same name first (several "IP:0" listeners stay
	 * who they were), then same address alone (a renamed listener).
	 */
	for (int by_name = 1; by_name >= 0; by_name--)
		for (size_t i = 0; i < n; i++) {
			if (by_name)
				match[i] = -1;
			for (size_t j = 0; j < old_n && match[i] < 0; j++)
				if (old[j] != NULL && !taken[j] &&
				    same_listen(listener_conf(old[j]), &cfg->listeners[i]) &&
				    (!by_name ||
					strcmp(listener_conf(old[j])->name, cfg->listeners[i].name) == 0)) {
					match[i] = (int)j;
					taken[j] = 1;
				}
		}
	for (size_t i = 0; i < n; i++) {
		if (match[i] >= 0)
			continue;
		fresh[i] = listener_new(gk, cfg, &cfg->listeners[i],
		    bound ? (const struct sockaddr *)&bound[i] : NULL);
		if (fresh[i] == NULL && gk->worker == 0)
			goto fail;
	}
	*added = *kept = *removed = 0;
	for (size_t i = 0; i < n; i++) {
		if (match[i] < 0) {
			*added += 1;
			continue;
		}
		fresh[i] = old[match[i]];
		if (listener_update(fresh[i], cfg, &cfg->listeners[i]) == -1)
			log_kv(LOG_LEVEL_ERROR, "reload: listener keeps its old settings",
			    LOG_STR("listener", cfg->listeners[i].name), LOG_STR("error", "out of memory"));
		*kept += 1;
	}
	pthread_mutex_lock(gk->listeners_lock);
	gk->listeners = fresh;
	gk->n_listeners = n;
	pthread_mutex_unlock(gk->listeners_lock);
	for (size_t j = 0; j < old_n; j++)
		if (!taken[j] && old[j] != NULL) {
			listener_close(old[j]);
			*removed += 1;
		}
	free(old);
	free(match);
	free(taken);
	config_unref(gk->cfg);
	gk->cfg = config_ref(cfg);
	return 0;
fail:
	for (size_t i = 0; fresh != NULL && i < n; i++)
		if (match != NULL && match[i] < 0)
			listener_close(fresh[i]);
	free(fresh);
	free(match);
	free(taken);
	return -1;
}

/* A worker's notify pipe became readable: "d" asks it to drain, "r" to reload. */
static void
on_notify(evutil_socket_t fd, short what, void *arg)
{
	struct gk *gk = arg;
	struct gk_reload *r;
	int stop = 0;
	char c;
	size_t added, kept, removed;

	(void)what;
	while (read(fd, &c, 1) > 0)
		stop |= c == 'd';
	if (stop) {
		drain(gk);
		return;
	}
	r = __atomic_exchange_n(&gk->reload, NULL, __ATOMIC_ACQ_REL);
	if (r != NULL && !gk->draining)
		worker_apply(gk, r->cfg, r->bound, &added, &kept, &removed);
	reload_free(r);
}

struct process {
	struct gk *workers;
	size_t n;
	pthread_t *threads;
	struct admin *admin;
	struct config *cfg;  /* in force (a reference) */
	int reloadable;      /* started from a file: SIGHUP reads it again */
	pthread_mutex_t listeners_lock;
};

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct process *p = arg;

	(void)what;
	if (p->workers[0].draining) {
		log_kv(LOG_LEVEL_WARN, "second signal, exiting now", LOG_NUM("signal", sig));
		exit(1);
	}
	log_kv(LOG_LEVEL_DEBUG, "stop signal", LOG_NUM("signal", sig));
	/* First, while every worker is whole: /metrics reads them all. */
	admin_free(p->admin);
	p->admin = NULL;
	for (size_t i = 1; i < p->n; i++)
		if (write(p->workers[i].notify[1], "d", 1) == -1)
			log_warn("cannot ask worker %zu to drain", i);
	drain(&p->workers[0]);
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

	for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		log_kv(LOG_LEVEL_ERROR, msg, LOG_STR("error", line));
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
	struct sockaddr_storage *bound;
	char *errs = NULL;
	size_t errlen = 0, added, kept, removed;
	FILE *mem;

	if (first->draining)
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
		__atomic_fetch_add(&first->reloads_failed, 1, __ATOMIC_RELAXED);
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
		__atomic_fetch_add(&first->reloads_failed, 1, __ATOMIC_RELAXED);
		config_unref(cfg);
		return;
	}
	log_setup(cfg->log.level, cfg->log.format);
	/* The other workers bind what the first one bound (port 0 included). */
	for (size_t i = 1; i < p->n; i++) {
		struct gk_reload *r = calloc(1, sizeof(*r)), *prev;
		bound = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*bound));
		if (r == NULL || bound == NULL) {
			free(r);
			free(bound);
			log_warnx("reload: worker %zu keeps the old config (out of memory)", i);
			continue;
		}
		for (size_t k = 0; k < cfg->n_listeners; k++)
			memcpy(&bound[k], listener_bound(first->listeners[k]), sizeof(bound[k]));
		r->cfg = config_ref(cfg);
		r->bound = bound;
		prev = __atomic_exchange_n(&p->workers[i].reload, r, __ATOMIC_ACQ_REL);
		reload_free(prev);
		if (write(p->workers[i].notify[1], "r", 1) == -1)
			log_warn("cannot ask worker %zu to reload", i);
	}
	if (cfg->admin_listen.len != old->admin_listen.len ||
	    memcmp(&cfg->admin_listen.ss, &old->admin_listen.ss, cfg->admin_listen.len) != 0) {
		char err[256];
		admin_free(p->admin);
		p->admin = NULL;
		if (cfg->admin_listen.len > 0 &&
		    (p->admin = admin_new((struct sockaddr *)&cfg->admin_listen.ss,
			 cfg->admin_listen.len, p->workers, (int)p->n, err, sizeof(err))) == NULL)
			log_kv(LOG_LEVEL_ERROR, "admin endpoint", LOG_STR("error", err));
	}
	p->cfg = cfg; /* load's reference */
	config_unref(old);
	__atomic_fetch_add(&first->reloads_ok, 1, __ATOMIC_RELAXED);
	log_kv(LOG_LEVEL_INFO, "reloaded", LOG_STR("config", cfg->path),
	    LOG_NUM("listeners", cfg->n_listeners), LOG_NUM("added", added), LOG_NUM("kept", kept),
	    LOG_NUM("removed", removed));
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	reload(arg);
}

/*
 * worker_open builds one worker: its loop, resolver and listeners. Workers
 * after the first bind the addresses the first one got, so "port 0" is one
 * port for all. Returns 0, or -1 after logging.
 */
static int
worker_open(struct gk *gk, struct config *cfg, int index, int n, const struct gk *first)
{
	memset(gk, 0, sizeof(*gk));
	TAILQ_INIT(&gk->sessions);
	pool_init(&gk->session_pool, session_size());
	pool_init(&gk->http_pool, http_stream_size());
	gk->cfg = config_ref(cfg);
	gk->worker = index;
	gk->n_workers = n;
	gk->notify[0] = gk->notify[1] = -1;
	if ((gk->base = event_base_new()) == NULL) {
		log_error("cannot create an event loop");
		return -1;
	}
	if ((gk->resolver = resolver_new(gk->base, &cfg->resolver)) == NULL)
		return -1;
	if ((gk->listeners = calloc(cfg->n_listeners, sizeof(*gk->listeners))) == NULL)
		return -1;
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct sockaddr *addr = first ? listener_bound(first->listeners[i]) : NULL;
		if ((gk->listeners[i] = listener_new(gk, cfg, &cfg->listeners[i], addr)) == NULL)
			return -1;
		gk->n_listeners++;
	}
	if (index > 0) {
		if (pipe2(gk->notify, O_NONBLOCK | O_CLOEXEC) == -1)
			return -1;
		gk->notify_ev = event_new(gk->base, gk->notify[0], EV_READ | EV_PERSIST, on_notify,
		    gk);
		if (gk->notify_ev == NULL || event_add(gk->notify_ev, NULL) == -1)
			return -1;
	}
	return 0;
}

/* worker_close frees what worker_open built; the loop has stopped. */
static void
worker_close(struct gk *gk)
{
	close_listeners(gk);
	session_close_all(gk, REASON_SHUTDOWN);
	pool_destroy(&gk->session_pool);
	pool_destroy(&gk->http_pool);
	if (gk->drain_timer)
		event_free(gk->drain_timer);
	if (gk->notify_ev)
		event_free(gk->notify_ev);
	for (int i = 0; i < 2; i++)
		if (gk->notify[i] >= 0)
			close(gk->notify[i]);
	resolver_free(gk->resolver);
	free(gk->listeners);
	reload_free(gk->reload);
	config_unref(gk->cfg);
	if (gk->base)
		event_base_free(gk->base);
}

/*
 * Every HEAP_TRIM_INTERVAL_MS, when malloc holds at least HEAP_TRIM_FREE
 * bytes free, they go back to the kernel: glibc returns only the top of
 * its heap by itself, so after a burst the freed middle would stay
 * resident. Sessions themselves are in pools (pool.h); this covers the
 * rest (sniffed heads, queued bytes, lookups).
 */
#define HEAP_TRIM_INTERVAL_MS 5000
#define HEAP_TRIM_FREE        (1024 * 1024)

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

static void *
worker_run(void *arg)
{
	struct gk *gk = arg;

	event_base_dispatch(gk->base);
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
			opened ? &p.workers[0] : NULL) == -1) {
			opened++; /* worker_close undoes a partial open too */
			goto cannot_start;
		}
		p.workers[opened].listeners_lock = &p.listeners_lock;
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
	sigs[0] = evsignal_new(p.workers[0].base, SIGTERM, on_stop_signal, &p);
	sigs[1] = evsignal_new(p.workers[0].base, SIGINT, on_stop_signal, &p);
	sigs[2] = evsignal_new(p.workers[0].base, SIGHUP, on_hup, &p);
	for (int i = 0; i < 3; i++)
		if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) == -1)
			fatal("cannot install signal handlers");
	trim = event_new(p.workers[0].base, -1, EV_PERSIST, on_heap_trim, NULL);
	if (trim == NULL || event_add(trim, &trim_every) == -1)
		fatal("cannot start the heap trim timer");
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (; started < p.n; started++) {
		if (pthread_create(&p.threads[started], NULL, worker_run, &p.workers[started]) != 0) {
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
		if (event_base_dispatch(p.workers[0].base) == -1)
			rc = 1;
	} else {
		for (size_t i = 1; i < started; i++)
			if (write(p.workers[i].notify[1], "d", 1) == -1)
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
 * health is `gatekeeper health [ADDR]`: the HEALTHCHECK of an image with
 * no shell. Without ADDR the admin address comes from the config that
 * `gatekeeper` would run with ($GATEKEEPER_CONFIG, the default file, or
 * GATEKEEPER_ADMIN). Exit 0 when /healthz answers 200, 1 otherwise.
 */
static int
health(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char host[NET_HOSTMAX + 1], err[256], why[320];
	const char *addr = argc > 2 ? argv[2] : getenv("GATEKEEPER_ADMIN");
	uint16_t port;

	if (argc > 3) {
		fprintf(stderr, "usage: gatekeeper health [ADDR:PORT]\n");
		return 1;
	}
	if (addr != NULL && *addr != '\0') {
		if (net_split_hostport(addr, host, sizeof(host), &port, err, sizeof(err)) == -1 ||
		    net_parse_ip(host[0] ? host : "127.0.0.1", port, &ss, &len) == -1 || port == 0) {
			fprintf(stderr, "gatekeeper health: '%s' is not IP:PORT\n", addr);
			return 1;
		}
	} else {
		const char *path = getenv("GATEKEEPER_CONFIG");
		FILE *quiet = fopen("/dev/null", "w");
		struct config *cfg = config_load(path && *path ? path : DEFAULT_CONFIG,
		    quiet ? quiet : stderr);
		if (quiet)
			fclose(quiet);
		if (cfg != NULL && cfg->admin_listen.len > 0) {
			memcpy(&ss, &cfg->admin_listen.ss, sizeof(ss));
			len = cfg->admin_listen.len;
		}
		config_free(cfg);
		if (len == 0) {
			fprintf(stderr, "gatekeeper health: no admin address (give ADDR:PORT, or set "
					"admin.listen in the config)\n");
			return 1;
		}
	}
	if (admin_health((struct sockaddr *)&ss, len, 3000, why, sizeof(why)) == -1) {
		fprintf(stderr, "gatekeeper health: %s\n", why);
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"listen", required_argument, NULL, 0},
	    {"upstream", required_argument, NULL, 0},
	    {"mode", required_argument, NULL, 0},
	    {"name", required_argument, NULL, 0},
	    {"connect-timeout", required_argument, NULL, 0},
	    {"idle-timeout", required_argument, NULL, 0},
	    {"max-connections", required_argument, NULL, 0},
	    {"log-level", required_argument, NULL, 0},
	    {"log-format", required_argument, NULL, 0},
	    {"nameservers", required_argument, NULL, 0},
	    {"refresh", required_argument, NULL, 0},
	    {"min-ttl", required_argument, NULL, 0},
	    {"drain-timeout", required_argument, NULL, 0},
	    {"sniff-timeout", required_argument, NULL, 0},
	    {"splice", required_argument, NULL, 0},
	    {"workers", required_argument, NULL, 0},
	    {"admin", required_argument, NULL, 0},
	    {"user", required_argument, NULL, 0},
	    {"group", required_argument, NULL, 0},
	    {"allow-root", required_argument, NULL, 0},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {"config", required_argument, NULL, 'c'},
	    {NULL, 0, NULL, 0},
	};
	struct flag flags[sizeof(longopts) / sizeof(longopts[0])];
	const char *path = NULL;
	int check = 0, dump = 0, ch, idx, rc;
	size_t nflags = 0;
	struct config *cfg;

	if (argc > 1 && strcmp(argv[1], "health") == 0)
		return health(argc, argv);
	if (argc > 1 && strcmp(argv[1], "audit") == 0)
		return audit_main(argc - 1, argv + 1, stdout);
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
		fprintf(stderr, "gatekeeper: -c and quick-mode flags (--%s) cannot be combined; "
				"put the settings in the file\n", flags[0].setting);
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
