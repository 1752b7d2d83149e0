# syntax=docker/dockerfile:1
# Strata broker image: python:3.11-slim, the project built as a wheel in a throwaway stage,
# a non-root user, data on a volume, `strata broker start` configured from STRATA_* variables
# (see ops/docker/entrypoint.sh and docs/operations.md).
#
#   docker build -t strata:latest .
#   docker run --rm -e STRATA_ID=1 -e STRATA_PEERS=1@localhost:9192 -e STRATA_ADVERTISED=localhost:9192 -e STRATA_KAFKA_ADVERTISED=localhost:9092 -p 9092:9092 -p 9192:9192 -p 9644:9644 strata:latest
#
# One broker alone: Kafka clients on the host reach it at localhost:9092 (kcat -b localhost:9092 -L),
# Strata's clients at localhost:9192, and each is told that same address (STRATA_KAFKA_ADVERTISED,
# STRATA_ADVERTISED; the default, the container's hostname, means nothing on the host). A cluster
# in a Docker network gives each broker external listeners as well (STRATA_KAFKA_EXTERNAL_ADVERTISED,
# container port 19092; STRATA_EXTERNAL_ADVERTISED, 19192): see ops/docker-compose.yml.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY client ./client
COPY storage ./storage
COPY broker ./broker
# The project and its dependencies as wheels (uvloop, crc32c and msgpack ship manylinux
# wheels, so no compiler is needed), installed below without the build context.
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    STRATA_LISTEN=0.0.0.0:9192 STRATA_KAFKA_LISTEN=0.0.0.0:9092 STRATA_METRICS_LISTEN=0.0.0.0:9644 \
    STRATA_DATA_DIR=/var/lib/strata
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels strata \
    && groupadd --system --gid 10001 strata \
    && useradd --system --uid 10001 --gid strata --home-dir /var/lib/strata --shell /usr/sbin/nologin strata \
    && mkdir -p /var/lib/strata && chown strata:strata /var/lib/strata
COPY --chmod=0755 ops/docker/entrypoint.sh /usr/local/bin/strata-entrypoint

USER strata:strata
WORKDIR /var/lib/strata
VOLUME ["/var/lib/strata"]
# 9092: the Kafka API; 9192: the native protocol (peers and Strata's clients) in the same
# network; 19092 and 19192: the external Kafka and native listeners for clients outside (only
# with STRATA_KAFKA_EXTERNAL_ADVERTISED / STRATA_EXTERNAL_ADVERTISED); 9644: /metrics, /healthz, /readyz.
EXPOSE 9092 9192 19092 19192 9644

# Alive = the metrics port answers /healthz (slim images have no curl).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('STRATA_METRICS_LISTEN', '0.0.0.0:9644').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["strata-entrypoint"]
