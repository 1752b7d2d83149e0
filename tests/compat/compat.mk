# Apache Kafka as a compatibility peer (tests/compat): included by the top-level Makefile.
#
#   make kafka-dist                    Apache Kafka's jars from Maven Central, once
#   make kafka-dist KAFKA_VERSION=4.1.2 KAFKA_LOG4J2_VERSION=2.24.3   another release
#   make kafka-deps                    Java (>= 17) and Maven with apt, only if missing
#
# The jars (broker, kafka-tools, a log4j2 binding) land in build/apache-kafka-<version>/libs,
# the flat classpath directory the release tarball's libs/ is; tests/compat/apache_kafka.py
# starts brokers from it and benchmarks/omb drive it. Maven resolves into its own local
# repository under build/, so nothing in ~/.m2 is needed, read or changed. A stamp makes a
# second run a no-op; `make clean` (rm -rf build) removes everything.

KAFKA_POM            := tests/compat/apache-kafka/pom.xml
# One source of truth for the default versions: the pom's properties.
KAFKA_VERSION        ?= $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' $(KAFKA_POM))
KAFKA_LOG4J2_VERSION ?= $(shell sed -n 's:.*<log4j2.version>\(.*\)</log4j2.version>.*:\1:p' $(KAFKA_POM))
KAFKA_HOME           := build/apache-kafka-$(KAFKA_VERSION)
KAFKA_STAMP          := $(KAFKA_HOME)/.installed
KAFKA_M2             := build/maven-repository
KAFKA_SUDO           := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# copy-dependencies pinned, so that a fresh machine resolves exactly what this was tried with.
MVN_DEPENDENCY_PLUGIN := org.apache.maven.plugins:maven-dependency-plugin:3.8.1

.PHONY: kafka-deps kafka-dist

## kafka-deps: a Java runtime >= 17 and Maven, with apt, if either is missing
kafka-deps:
	@java_major=$$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p'); \
	missing=""; \
	if [ -z "$$java_major" ] || [ "$${java_major%%.*}" -lt 17 ]; then missing="$$missing default-jre-headless"; fi; \
	command -v mvn >/dev/null 2>&1 || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then \
	  echo "kafka-deps: installing$$missing with apt-get"; \
	  $(KAFKA_SUDO) apt-get update && \
	  $(KAFKA_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else \
	  echo "kafka-deps: Java $$java_major and $$(mvn -v 2>/dev/null | head -n1 | sed 's/\x1b\[[0-9;]*m//g') present"; \
	fi

## kafka-dist: Apache Kafka $(KAFKA_VERSION)'s runtime jars into $(KAFKA_HOME)/libs (once)
kafka-dist: $(KAFKA_STAMP)

# Resolved into a scratch directory and moved into place whole, so an interrupted
# download never leaves a half-filled libs/ behind a stamp. The checks catch the two
# classpath mistakes that fail late: a missing core jar, and zero or two SLF4J APIs.
$(KAFKA_STAMP): $(KAFKA_POM) | kafka-deps
	@rm -rf $(KAFKA_HOME).partial
	mvn -B -q -Dstyle.color=never -f $(KAFKA_POM) -Dmaven.repo.local=$(abspath $(KAFKA_M2)) \
	  -Dkafka.version=$(KAFKA_VERSION) -Dlog4j2.version=$(KAFKA_LOG4J2_VERSION) \
	  $(MVN_DEPENDENCY_PLUGIN):copy-dependencies -DincludeScope=runtime \
	  -DoutputDirectory=$(abspath $(KAFKA_HOME).partial/libs)
	@cd $(KAFKA_HOME).partial/libs && \
	  for jar in kafka_2.13-$(KAFKA_VERSION).jar kafka-tools-$(KAFKA_VERSION).jar \
	             log4j-core-$(KAFKA_LOG4J2_VERSION).jar log4j-slf4j-impl-$(KAFKA_LOG4J2_VERSION).jar; do \
	    [ -f $$jar ] || { echo "kafka-dist: $$jar missing from the resolved jars"; exit 1; }; \
	  done; \
	  [ "$$(ls slf4j-api-*.jar | wc -l)" -eq 1 ] || { echo "kafka-dist: expected exactly one slf4j-api jar"; exit 1; }
	@rm -rf $(KAFKA_HOME)
	@mv $(KAFKA_HOME).partial $(KAFKA_HOME)
	@echo "$(KAFKA_VERSION)" > $(KAFKA_STAMP)
	@echo "kafka-dist: Apache Kafka $(KAFKA_VERSION) in $(KAFKA_HOME)/libs ($$(ls $(KAFKA_HOME)/libs | wc -l) jars)"

# --- the client matrix and the differential suite (tests/compat/test_*.py) ---------------
#
#   make compat                        every client x scenario and the differential tests,
#                                      against Apache Kafka and Strata (COMPAT_TARGET=both)
#   make compat COMPAT_TARGET=apache-kafka       one target only
#   make compat-deps                   install and build every client, once
#
# Each client is installed or built only when missing or changed (stamps, as above):
# kcat with apt; the Python clients with pip into .venv (pinned in requirements.txt);
# kafkajs with `npm ci` (package-lock.json); franz-go and sarama with `go build` (go.sum)
# into build/compat/go; the Java client with Maven (pom.xml) into its target/.
# `make test` builds what its subset needs (compat-subset-deps) and runs that subset.

COMPAT_TARGET ?= both
COMPAT_CLIENTS := tests/compat/clients
COMPAT_PY_REQS := $(COMPAT_CLIENTS)/python/requirements.txt
COMPAT_PY_STAMP := $(VENV)/.installed-compat-python
COMPAT_NODE_STAMP := $(COMPAT_CLIENTS)/node/node_modules/.installed
COMPAT_GO_DIR := build/compat/go
COMPAT_GO_SRC := $(shell find $(COMPAT_CLIENTS)/go -name '*.go' 2>/dev/null) $(COMPAT_CLIENTS)/go/go.mod $(COMPAT_CLIENTS)/go/go.sum
COMPAT_JAVA := $(COMPAT_CLIENTS)/java
COMPAT_JAVA_STAMP := $(COMPAT_JAVA)/target/.built
# The machine's own Go toolchain (Debian's golang-go is too old for franz-go's go.mod).
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)

.PHONY: compat compat-deps compat-subset-deps compat-kcat compat-python compat-node compat-go compat-java compat-clean

## compat: the whole Kafka client matrix and the differential tests (COMPAT_TARGET=both|strata|apache-kafka)
compat: compat-deps
	$(PY) -m pytest -q tests/compat --compat-scope full --compat-target $(COMPAT_TARGET)

## compat-deps: every client of the matrix and Apache Kafka's jars
compat-deps: compat-kcat compat-python compat-node compat-go compat-java kafka-dist

## compat-subset-deps: what make test needs of the clients (kafka-python, confluent-kafka, Java; kcat for the README walk)
compat-subset-deps: compat-python compat-java compat-kcat

## compat-kcat: kcat (Debian's, on librdkafka 2.0.2) with apt, if missing
compat-kcat:
	@if command -v kcat >/dev/null 2>&1; then echo "compat-kcat: $$(kcat -V 2>/dev/null | sed -n 's/^Version //p')"; else \
	  $(KAFKA_SUDO) apt-get update && \
	  $(KAFKA_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kcat; fi

## compat-python: confluent-kafka, aiokafka and the codecs into .venv
compat-python: $(COMPAT_PY_STAMP)

$(COMPAT_PY_STAMP): $(COMPAT_PY_REQS) | $(STAMP)
	$(PIP) install --quiet -r $(COMPAT_PY_REQS)
	@touch $@

## compat-node: kafkajs (npm ci from the lockfile)
compat-node: $(COMPAT_NODE_STAMP)

$(COMPAT_NODE_STAMP): $(COMPAT_CLIENTS)/node/package.json $(COMPAT_CLIENTS)/node/package-lock.json
	@command -v npm >/dev/null 2>&1 || { $(KAFKA_SUDO) apt-get update && \
	  $(KAFKA_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm; }
	cd $(COMPAT_CLIENTS)/node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## compat-go: the franz-go and sarama drivers into build/compat/go
compat-go: $(COMPAT_GO_DIR)/franz $(COMPAT_GO_DIR)/sarama

$(COMPAT_GO_DIR)/%: $(COMPAT_GO_SRC)
	@mkdir -p $(COMPAT_GO_DIR)
	cd $(COMPAT_CLIENTS)/go && $(GO) build -buildvcs=false -o $(abspath $@) ./$*

## compat-java: the kafka-clients driver (Maven: compile, runtime jars into target/lib)
compat-java: $(COMPAT_JAVA_STAMP)

$(COMPAT_JAVA_STAMP): $(COMPAT_JAVA)/pom.xml $(shell find $(COMPAT_JAVA)/src -name '*.java' 2>/dev/null) | kafka-deps
	mvn -B -q -Dstyle.color=never -f $(COMPAT_JAVA)/pom.xml -Dmaven.repo.local=$(abspath $(KAFKA_M2)) \
	  compile $(MVN_DEPENDENCY_PLUGIN):copy-dependencies -DincludeScope=runtime \
	  -DoutputDirectory=$(abspath $(COMPAT_JAVA))/target/lib
	@touch $@

## compat-clean: remove the built clients (node_modules, the Java target/, build/compat)
compat-clean:
	rm -rf $(COMPAT_CLIENTS)/node/node_modules $(COMPAT_JAVA)/target build/compat $(COMPAT_PY_STAMP)
