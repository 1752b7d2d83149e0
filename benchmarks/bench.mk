# Benchmarks: Strata side by side with Apache Kafka, NATS JetStream and Redis Streams.
# See benchmarks/README.md. Included from the Makefile, which defines VENV, PY, PIP and STAMP;
# kafka-dist (Apache Kafka's jars, for the apache-kafka row and the native load generator)
# comes from tests/compat/compat.mk.
#
#   make bench         every workload at full size (tens of minutes)
#   make bench-quick   the same workloads made small (about 7 minutes)
#   make bench BENCH_ARGS="--drivers nats redis --workloads max-rate-1-topic-6-partitions-1kb"

BENCH_TOOLS := nats-server redis-server iperf3
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS  ?=
# The Go load generator of the lone-produce rows (loadGenerator: go-lone), built from its
# go.mod/go.sum (franz-go, nats.go from the Go module proxy) with the machine's Go
# toolchain ($(GO), from tests/compat/compat.mk) into build/golat.
GOLAT_DIR := benchmarks/native/golat
GOLAT     := build/golat
GOLAT_SRC := $(wildcard $(GOLAT_DIR)/*.go) $(GOLAT_DIR)/go.mod $(GOLAT_DIR)/go.sum

.PHONY: bench bench-quick bench-tools golat golat-test

# System tools come from apt, and only when a binary is missing (the Debian
# package names are the binary names). Needs root or sudo.
bench-tools:
	@missing=""; \
	for tool in $(BENCH_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
		$$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y $$missing; \
	fi

# The bench extra (nats-py, redis, confluent-kafka, matplotlib, ...) goes into the project venv, once.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PIP) install --quiet -e '.[test,bench]'
	@touch $(BENCH_STAMP)

## golat: the one-produce-in-flight load generator (Go: franz-go and nats.go) into build/golat
golat: $(GOLAT)

$(GOLAT): $(GOLAT_SRC)
	@mkdir -p $(dir $@)
	cd $(GOLAT_DIR) && $(GO) build -buildvcs=false -o $(abspath $@) .

## golat-test: golat's own Go tests (percentiles, payloads)
golat-test:
	cd $(GOLAT_DIR) && $(GO) test ./...

bench: bench-tools kafka-dist golat $(BENCH_STAMP)
	$(PY) -m benchmarks.omb.run $(BENCH_ARGS)

bench-quick: bench-tools kafka-dist golat $(BENCH_STAMP)
	$(PY) -m benchmarks.omb.run --quick $(BENCH_ARGS)
