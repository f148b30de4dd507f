# gatekeeper: one plain Makefile.
#
#   make            build build/gatekeeper and build/whoami (the demo backend)
#   make run        install missing packages, build, run the demo (conf/gatekeeper.yaml)
#   make test       install missing packages, build, run unit + integration tests
#   make asan       the whole suite under AddressSanitizer + UBSan (build-asan/)
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

.PHONY: all deps run test unit integration asan clean
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

$(B)/whoami: demo/whoami.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

$(B)/tests/%: tests/unit/%.c $(B)/libgk.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(B)/libgk.a $(LDLIBS) -lcmocka

run:
	@scripts/deps.sh build
	@$(MAKE) --no-print-directory all
	scripts/run-demo.sh $(B)

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory all $(UNIT_BINS)
	@$(MAKE) --no-print-directory unit integration

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: all
	GATEKEEPER_BIN=$(abspath $(B)/gatekeeper) WHOAMI_BIN=$(abspath $(B)/whoami) \
		$(PYTEST) -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

asan:
	@$(MAKE) --no-print-directory test B=build-asan SAN=1 OPT=-O1

clean:
	rm -rf build build-asan

-include $(wildcard $(B)/obj/*.d $(B)/tests/*.d $(B)/*.d)
