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
