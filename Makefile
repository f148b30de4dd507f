# gatekeeper: one plain Makefile.
#
#   make            build build/gatekeeper and build/whoami (the demo backend)
#   make run        install missing packages, build, run the demo (conf/gatekeeper.yaml)
#   make test       install missing packages, build, run everything CI runs: the
#                   format check, unit tests, unit + integration under ASan/UBSan, a short run of
#                   every fuzz target, the Docker scenarios (skipped when no
#                   engine starts)
#   make integration  the integration tests on the plain build
#   make asan       the whole suite under AddressSanitizer + UBSan (build-asan/)
#   make fuzz       every libFuzzer target for FUZZ_SECONDS each, or FUZZ_RUNS
#                   executions each (build-fuzz/)
#   make valgrind   memcheck over the integration tests (0 errors, 0 leaks)
#   make soak       10k concurrent, 100k short, then mixed traffic; fds and heap back to baseline
#   make static     build/gatekeeper-static (the image's) and build/whoami-static
#   make test-docker the image and its scenarios end to end in a real Docker engine
#   make format     clang-format the C sources (make format-check: only check)
#   make clean
#
# Warnings are errors when CI=true or WERROR=1.

B        ?= build
CC       ?= cc
PKGS      = libevent libcares yaml-0.1
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN      = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wcast-qual -Wsign-compare -Wformat=2
ifneq ($(filter 1 true,$(WERROR) $(CI)),)
WARN     += -Werror
endif
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SAN_FLAGS) -Iinclude $(PKG_CFLAGS) -MMD -MP
LDLIBS    = $(PKG_LIBS) -lhttp_parser -lm
ifeq ($(SAN),1)
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

SRCS      = $(wildcard src/*.c)
LIB_OBJS  = $(patsubst src/%.c,$(B)/obj/%.o,$(filter-out src/main.c,$(SRCS)))
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRCS))
PYTEST   ?= /usr/bin/python3 -m pytest

FUZZ_SRCS   = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS   = $(patsubst tests/fuzz/%.c,build-fuzz/%,$(FUZZ_SRCS))
FUZZ_SECONDS ?= 30
FUZZ_RUNS    ?=
FUZZ_FLAGS  = -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined

.PHONY: all deps run test format-check format unit integration asan fuzz valgrind soak bench static test-docker docker-suite clean
all: $(B)/gatekeeper $(B)/whoami

deps:
	@scripts/deps.sh build

$(B)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/libgk.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(B)/gatekeeper: $(B)/obj/main.o $(B)/libgk.a
	$(CC) $(SAN_FLAGS) -o $@ $^ $(LDLIBS)

# Static glibc: gatekeeper resolves names only through c-ares, so none of
# glibc's NSS lookups that static linking warns about are used at run time.
static: $(B)/gatekeeper-static $(B)/whoami-static
$(B)/gatekeeper-static: $(B)/obj/main.o $(B)/libgk.a
	$(CC) -static -s -Wl,--no-warnings -o $@ $^ $(LDLIBS) -lpthread
# The demo backend too: the Docker tests run it in a scratch image.
$(B)/whoami-static: demo/whoami.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -static -s -Wl,--no-warnings -o $@ $< $(LDLIBS) -lpthread

$(B)/whoami: demo/whoami.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

# A unit test links libgk.a, unless it names the objects it links in
# <test>_OBJS: test_listener is the worker of listener.c and session.c (a
# fake one), so it links them and the leaves below them, never worker.o;
# test_worker links the real one over them.
test_listener_OBJS = listener session door dns policy observed relay http sniff_tls sniff_http proxyproto route \
                     resolver config config_keys config_value config_quick reason net log pool
# the policy is pure: the module and the two leaves it reads names and addresses with
test_policy_OBJS   = policy route net
# the DNS messages: bytes in, bytes out
test_dns_OBJS      = dns
# learning an allowlist is text in, text out
test_learn_OBJS    = learn
test_observed_OBJS = observed net
test_worker_OBJS   = worker config_yaml $(test_listener_OBJS)
unit_link = $(if $($(1)_OBJS),$(patsubst %,$(B)/obj/%.o,$($(1)_OBJS)),$(B)/libgk.a)

$(B)/tests/%: tests/unit/%.c $(B)/libgk.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(call unit_link,$*) $(LDLIBS) -lcmocka

run:
	@scripts/deps.sh build
	@$(MAKE) --no-print-directory all
	scripts/run-demo.sh $(B)

# The static binary is the image's; a sanitizer build cannot link statically,
# so `make asan` leaves out the image and its Docker scenarios.
ifneq ($(SAN),1)
STATIC_BIN = $(B)/gatekeeper-static $(B)/whoami-static
DOCKER_SUITE = docker-suite
endif

# What CI runs (.ci/run): the plain build (warnings are errors with CI=true)
# and its unit tests; the unit and integration suites again, built with
# ASan and UBSan (`make asan`; the static binary's tests included); every
# fuzz target for TEST_FUZZ_SECONDS; then the Docker scenarios. The plain
# integration run (`make integration`) is the quicker one while developing.
TEST_FUZZ_SECONDS ?= 5
test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory all $(STATIC_BIN) $(UNIT_BINS)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory asan $(if $(STATIC_BIN),STATIC_TEST_BIN=$(abspath $(B)/gatekeeper-static))
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(TEST_FUZZ_SECONDS)
	@$(MAKE) --no-print-directory $(DOCKER_SUITE)

# End to end in a real Docker engine, started when not running (the base
# image is built offline when no registry answers). Within `make test` the
# suite is skipped, with the reason, when no engine can be started here;
# `make test-docker` fails instead.
docker-suite:
	@scripts/deps.sh docker || echo "docker: packages missing; tests/docker will say why it skips" >&2
	$(PYTEST) -q -rs -p no:cacheprovider tests/docker $(PYTEST_ARGS)

test-docker:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory static
	@GK_DOCKER_REQUIRED=1 $(MAKE) --no-print-directory docker-suite

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

STATIC_TEST_BIN ?= $(if $(STATIC_BIN),$(abspath $(B)/gatekeeper-static))
integration: all $(STATIC_BIN)
	GATEKEEPER_BIN=$(abspath $(B)/gatekeeper) WHOAMI_BIN=$(abspath $(B)/whoami) \
		GATEKEEPER_STATIC_BIN=$(STATIC_TEST_BIN) \
		$(PYTEST) -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

# The unit and integration suites built with AddressSanitizer and UBSan.
asan:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory B=build-asan SAN=1 OPT=-O1 all build-asan/libgk.a
	@$(MAKE) --no-print-directory B=build-asan SAN=1 OPT=-O1 unit integration

# libFuzzer: the library is built with clang and fuzzer instrumentation.
build-fuzz/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	clang -std=gnu11 -D_GNU_SOURCE $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -Iinclude $(PKG_CFLAGS) -c -o $@ $<

build-fuzz/libgk.a: $(patsubst src/%.c,build-fuzz/obj/%.o,$(filter-out src/main.c,$(SRCS)))
	rm -f $@
	ar rcs $@ $^

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c build-fuzz/libgk.a
	clang -std=gnu11 -D_GNU_SOURCE $(FUZZ_FLAGS) -fsanitize=fuzzer -Iinclude $(PKG_CFLAGS) -o $@ $< build-fuzz/libgk.a $(LDLIBS)

# Each target runs FUZZ_SECONDS on its committed seeds; new inputs go to
# build-fuzz/corpus/, never into the tree. Any crash, leak or timeout fails.
fuzz:
	@scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do \
		t=$${f#build-fuzz/fuzz_}; mkdir -p build-fuzz/corpus/$$t build-fuzz/artifacts; \
		echo "== fuzz_$$t for $(if $(FUZZ_RUNS),$(FUZZ_RUNS) executions,$(FUZZ_SECONDS)s)"; \
		$$f $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS)) -timeout=10 -max_len=20000 -print_final_stats=1 \
			-artifact_prefix=build-fuzz/artifacts/$$t- build-fuzz/corpus/$$t tests/fuzz/corpus/$$t \
			2>&1 | grep -E "^(stat::number_of_executed_units|#[0-9]+ +DONE|==[0-9]+==ERROR|SUMMARY)" ; \
		test $${PIPESTATUS[0]:-0} -eq 0; \
	done

# memcheck over the integration tests that exercise every module
# (scripts/valgrind.sh): 0 errors and 0 leaked bytes in every process.
valgrind:
	@scripts/deps.sh valgrind
	@$(MAKE) --no-print-directory all
	scripts/valgrind.sh $(B) $(PYTEST_ARGS)

# The soak (tests/soak/, minutes long, not part of `make test`): 10,000
# concurrent connections, 100,000 short ones, then bulk + keep-alive; fds and
# heap in use come back to their baseline, RSS does not grow after the peak.
# SOAK_* variables size it.
soak:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory all
	GATEKEEPER_BIN=$(abspath $(B)/gatekeeper) WHOAMI_BIN=$(abspath $(B)/whoami) \
		/usr/bin/python3 tests/soak/soak.py

# gatekeeper against nginx stream and HAProxy on the same cores (tests/bench/):
# installs the peers, prints one table, writes $(B)/bench/results.md, then the
# policy-scale section (10 against 100,000 allow entries; sources lists, the
# per-source limit and an action: report listener), then the DNS section (the
# dns door against dnsmasq under dnsperf, UDP and TCP, and the per-source
# query limiter). BENCH_ONLY=policy runs only the policy section (about three
# minutes) and writes $(B)/bench/policy.md; BENCH_ONLY=dns only the DNS one
# (about three minutes), written to $(B)/bench/dns.md.
# BENCH_SECONDS (default 10) sets the length of each load run.
bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory $(B)/gatekeeper
	GATEKEEPER_BIN=$(abspath $(B)/gatekeeper) BENCH_OUT=$(B)/bench BENCH_ONLY=$(BENCH_ONLY) /usr/bin/python3 tests/bench/bench.py

# The C sources against the pinned .clang-format: format-check lists every
# file whose formatting differs (and fails); format rewrites them in place.
FORMAT_SRCS = $(wildcard src/*.c src/*.h include/*.h tests/unit/*.c tests/fuzz/*.c tests/fuzz/*.h demo/*.c)
format-check:
	@scripts/deps.sh format
	@bad=0; for f in $(FORMAT_SRCS); do \
		clang-format --style=file "$$f" | cmp -s - "$$f" || { echo "format-check: $$f differs (make format)"; bad=1; }; \
	done; \
	if [ $$bad -eq 0 ]; then echo "format-check: $(words $(FORMAT_SRCS)) files formatted as .clang-format says"; fi; \
	exit $$bad
format:
	@scripts/deps.sh format
	clang-format --style=file -i $(FORMAT_SRCS)

clean:
	rm -rf build build-asan build-fuzz

SHELL := /bin/bash
-include $(wildcard $(B)/obj/*.d $(B)/tests/*.d $(B)/*.d)
