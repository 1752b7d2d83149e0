# Strata: the two commands are `make run` and `make test`.
# Everything they need is installed here, into .venv (Python) or by apt (system tools).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
SEEDS  ?= 100000

.PHONY: run test lint sim clean install system-deps

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

## run: a local 3-broker cluster under ./data, until Ctrl-C
run: $(STAMP)
	$(VENV)/bin/strata dev --nodes 3 --data-dir ./data

## test: lint, then the whole suite (unit, simulation, integration, fault injection)
test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

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
