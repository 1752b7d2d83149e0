# Fault injection (tests/fault): included by the top-level Makefile, after its variables.
#
#   make fault-deps                          # iproute2 + nftables via apt, only if missing
#   make fault-test                          # harness, checker and runner tests (root)
#   make chaos SEEDS=5 DURATION=600          # seeds 0..4, 10 minutes of faults each
#   make chaos SEEDS=7-7 CHAOS_NODES=5       # replay seed 7 on five nodes
#   make chaos CHAOS_EXCLUDE=fill-disk       # leave a fault kind out
#   make chaos CHAOS_WORKLOAD=tests.fault.workload:ToyLogWorkload   # the toy log instead of brokers
#
# The harness needs root (network namespaces, nftables, tmpfs). Tests never
# install anything themselves: this target is the one place that does.

# `make chaos` takes SEEDS/DURATION from the command line or environment; the
# top-level SEEDS default (100000) is the Raft simulator's, far too many here.
CHAOS_SEEDS = $(if $(filter command line environment,$(origin SEEDS)),$(SEEDS),1)
DURATION ?= 1800
CHAOS_NODES ?= 3
CHAOS_SETTLE ?= 30
CHAOS_WORKLOAD ?= tests.fault.strata_workload:StrataWorkload
CHAOS_EXCLUDE ?=
FAULT_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: fault-deps fault-test chaos

## fault-deps: install ip (iproute2) and nft (nftables) with apt, if either is missing
fault-deps:
	@if command -v ip >/dev/null 2>&1 && command -v nft >/dev/null 2>&1; then \
	  echo "fault-deps: ip and nft present"; \
	else \
	  $(FAULT_SUDO) apt-get update && \
	  $(FAULT_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2 nftables; \
	fi

## fault-test: the fault-injection suite's own tests (needs root)
fault-test: fault-deps install
	$(VENV)/bin/python -m pytest -q tests/fault

## chaos: seeded fault-injection runs; reports under tests/fault/reports/
chaos: fault-deps install
	$(VENV)/bin/python -m tests.fault.run --seeds $(CHAOS_SEEDS) --duration $(DURATION) \
	  --nodes $(CHAOS_NODES) --settle $(CHAOS_SETTLE) --workload $(CHAOS_WORKLOAD) \
	  --exclude "$(CHAOS_EXCLUDE)"
