# Operations (ops/, tests/ops): included by the top-level Makefile, after its variables.
#
#   make ops-deps    prometheus + promtool from Debian's package, only if promtool is missing
#   make ops-test    promtool checks, rule unit tests, a live Prometheus against a live cluster
#
# Tests never install anything themselves: this target is the one place that does. The
# package's systemd service is not used: tests start their own prometheus on a free port.

OPS_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: ops-deps ops-test

## ops-deps: install prometheus (provides prometheus and promtool) with apt, if promtool is missing
ops-deps:
	@if command -v promtool >/dev/null 2>&1; then \
	  echo "ops-deps: $$(promtool --version 2>&1 | head -n1)"; \
	else \
	  $(OPS_SUDO) apt-get update && \
	  $(OPS_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; \
	fi

## ops-test: the ops suite (tests/ops)
ops-test: ops-deps install
	$(VENV)/bin/python -m pytest -q tests/ops
