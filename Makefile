# Strata: the two commands are `make run` and `make test`.
# Everything they need is installed here, into .venv (Python) or by apt (system tools).

# The Python: the first of these on PATH that is 3.11 or newer (override: make PYTHON=...).
ifndef PYTHON
PYTHON := $(shell for p in python3 python3.13 python3.12 python3.11; do \
	  if command -v $$p >/dev/null 2>&1 && \
	     $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
	    echo $$p; break; fi; done)
endif
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# `make run` installs what running needs; `make test` (and `make install`) the test extras too.
RUN_STAMP  := $(VENV)/.installed-run
STAMP      := $(VENV)/.installed
SEEDS  ?= 100000

.PHONY: run test lint typecheck sim clean install system-deps python-venv

$(PY):
	@test -n "$(PYTHON)" || { echo "need Python 3.11 or newer on PATH (found: $$(python3 --version 2>&1))"; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || $(MAKE) --no-print-directory python-venv
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

## python-venv: Debian/Ubuntu ship Python's venv module apart (python3-venv); install it
python-venv:
	@command -v apt-get >/dev/null 2>&1 || { echo "$(PYTHON) has no venv module; install it (e.g. the python3-venv package)"; exit 1; }
	apt-get update -qq
	apt-get install -y -qq python3-venv || \
	  apt-get install -y -qq python$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv

$(RUN_STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test]'
	@touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

## run: a local 3-broker cluster under ./data, until Ctrl-C
run: $(RUN_STAMP)
	$(VENV)/bin/strata dev --nodes 3 --data-dir ./data

## test: lint and type-check, then the whole suite (unit, simulation, integration, fault injection)
test: $(STAMP) system-deps compat-subset-deps lint typecheck
	$(PY) -m pytest -q

## typecheck: mypy over client, broker and storage ([tool.mypy] in pyproject.toml). The import names
## are strata.*, mapped onto the top-level folders, so mypy reads them through links.
typecheck: $(STAMP)
	@mkdir -p $(VENV)/typecheck/strata
	@for d in client storage broker; do ln -sfn ../../../$$d $(VENV)/typecheck/strata/$$d; done
	$(VENV)/bin/mypy -p strata.client -p strata.broker -p strata.storage

## system-deps: what tests need from outside Python (apt, only when missing)
system-deps: fault-deps ops-deps

lint: $(STAMP)
	$(VENV)/bin/ruff check .

## sim: a long run of the deterministic Raft simulator (SEEDS=N)
sim: $(STAMP)
	$(PY) -m tests.sim.run --seeds $(SEEDS)

clean:
	rm -rf $(VENV) data build *.egg-info

include tests/fault/fault.mk
include ops/ops.mk
include benchmarks/bench.mk
include tests/compat/compat.mk
