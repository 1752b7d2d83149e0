#!/bin/sh
# Container entrypoint: `strata broker start` with its flags taken from the environment.
#
#   STRATA_ID                   this broker's id (required)
#   STRATA_PEERS                every broker, ID@HOST:PORT,... on the native port (required,
#                               this one included); peers reach each other at these addresses
#   STRATA_LISTEN               HOST:PORT of the native protocol, for peers and for Strata
#                               clients that reach the container's own name (the same Docker
#                               network, the same pod network)    (default 0.0.0.0:9192)
#   STRATA_ADVERTISED           HOST:PORT those clients are told    (default $(hostname):<listen port>)
#   STRATA_EXTERNAL_ADVERTISED  HOST:PORT Strata clients outside the network are told: the
#                               host's published port (e.g. 127.0.0.1:9192 for `-p 9192:19192`).
#                               Setting it turns on the external native listener. (default: none)
#   STRATA_EXTERNAL_LISTEN      HOST:PORT of that listener          (default 0.0.0.0:19192)
#   STRATA_KAFKA_LISTEN         HOST:PORT of the Kafka API for Kafka clients in the network,
#                               or "off"                            (default 0.0.0.0:9092)
#   STRATA_KAFKA_ADVERTISED     HOST:PORT those Kafka clients are told
#                                                                   (default $(hostname):<kafka port>)
#   STRATA_KAFKA_EXTERNAL_ADVERTISED  HOST:PORT Kafka clients outside the network are told
#                               (e.g. 127.0.0.1:9092 for `-p 9092:19092`). Setting it turns on
#                               the external Kafka listener.        (default: none)
#   STRATA_KAFKA_EXTERNAL_LISTEN  HOST:PORT of that listener        (default 0.0.0.0:19092)
#   STRATA_METRICS_LISTEN       HOST:PORT for /metrics /healthz /readyz (default 0.0.0.0:9644)
#   STRATA_DATA_DIR             data directory, a volume            (default /var/lib/strata)
#   STRATA_FLUSH_POLICY         always | interval | never           (default: the broker's, always)
#
# A client is told the addresses of the listener it connected to, so a client on the host
# (through a published external port) and one inside the network each get addresses it can
# reach (Kafka's and Redpanda's internal/external listeners), for both protocols.
#
# Extra arguments are passed on to `strata broker start`. A first argument that is not an
# option runs that command instead (e.g. `docker run IMAGE strata topic list`).
set -eu

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

if [ -n "${STRATA_EXTERNAL_LISTEN:-}" ] && [ -z "${STRATA_EXTERNAL_ADVERTISED:-}" ]; then
    echo "strata-entrypoint: STRATA_EXTERNAL_LISTEN needs STRATA_EXTERNAL_ADVERTISED, the HOST:PORT clients outside reach it at (e.g. 127.0.0.1:9192)" >&2
    exit 2
fi
if [ -n "${STRATA_KAFKA_EXTERNAL_LISTEN:-}" ] && [ -z "${STRATA_KAFKA_EXTERNAL_ADVERTISED:-}" ]; then
    echo "strata-entrypoint: STRATA_KAFKA_EXTERNAL_LISTEN needs STRATA_KAFKA_EXTERNAL_ADVERTISED, the HOST:PORT Kafka clients outside reach it at (e.g. 127.0.0.1:9092)" >&2
    exit 2
fi

: "${STRATA_LISTEN:=0.0.0.0:9192}"
: "${STRATA_EXTERNAL_LISTEN:=0.0.0.0:19192}"
: "${STRATA_KAFKA_LISTEN:=0.0.0.0:9092}"
: "${STRATA_KAFKA_EXTERNAL_LISTEN:=0.0.0.0:19092}"
: "${STRATA_METRICS_LISTEN:=0.0.0.0:9644}"
: "${STRATA_DATA_DIR:=/var/lib/strata}"

if [ -z "${STRATA_ID:-}" ]; then
    echo "strata-entrypoint: set STRATA_ID to this broker's id (e.g. 1)" >&2
    exit 2
fi
if [ -z "${STRATA_PEERS:-}" ]; then
    echo "strata-entrypoint: set STRATA_PEERS to every broker, e.g. 1@strata-1:9192,2@strata-2:9192,3@strata-3:9192" >&2
    exit 2
fi
if [ -z "${STRATA_ADVERTISED:-}" ]; then
    STRATA_ADVERTISED="${HOSTNAME:-$(hostname)}:${STRATA_LISTEN##*:}"
fi

if [ "$STRATA_KAFKA_LISTEN" != "off" ]; then
    if [ -n "${STRATA_KAFKA_EXTERNAL_ADVERTISED:-}" ]; then
        set -- --kafka-external-listen "$STRATA_KAFKA_EXTERNAL_LISTEN" \
            --kafka-external-advertised "$STRATA_KAFKA_EXTERNAL_ADVERTISED" "$@"
    fi
    if [ -z "${STRATA_KAFKA_ADVERTISED:-}" ]; then
        STRATA_KAFKA_ADVERTISED="${HOSTNAME:-$(hostname)}:${STRATA_KAFKA_LISTEN##*:}"
    fi
    set -- --kafka-listen "$STRATA_KAFKA_LISTEN" --kafka-advertised "$STRATA_KAFKA_ADVERTISED" "$@"
fi
if [ -n "${STRATA_EXTERNAL_ADVERTISED:-}" ]; then
    set -- --external-listen "$STRATA_EXTERNAL_LISTEN" --external-advertised "$STRATA_EXTERNAL_ADVERTISED" "$@"
fi
set -- --id "$STRATA_ID" --peers "$STRATA_PEERS" --listen "$STRATA_LISTEN" \
    --advertised "$STRATA_ADVERTISED" --metrics-listen "$STRATA_METRICS_LISTEN" \
    --data-dir "$STRATA_DATA_DIR" "$@"
if [ -n "${STRATA_FLUSH_POLICY:-}" ]; then
    set -- --flush-policy "$STRATA_FLUSH_POLICY" "$@"
fi

# exec: the broker is PID 1's direct replacement, so `docker stop` (SIGTERM) reaches it and it
# hands its leaderships over before exiting.
exec strata broker start "$@"
