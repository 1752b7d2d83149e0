#!/bin/sh
# Container entrypoint: `strata broker start` with its flags taken from the environment.
#
#   STRATA_ID              this broker's id (required)
#   STRATA_PEERS           every broker, ID@HOST:PORT,... (required, this one included)
#   STRATA_LISTEN          HOST:PORT for clients and peers        (default 0.0.0.0:9092)
#   STRATA_ADVERTISED      HOST:PORT others use to reach it       (default $(hostname):<listen port>)
#   STRATA_METRICS_LISTEN  HOST:PORT for /metrics /healthz /readyz (default 0.0.0.0:9644)
#   STRATA_DATA_DIR        data directory, a volume               (default /var/lib/strata)
#   STRATA_FLUSH_POLICY    always | interval | never              (default: the broker's, always)
#
# Extra arguments are passed on to `strata broker start`. A first argument that is not an
# option runs that command instead (e.g. `docker run IMAGE strata topic list`).
set -eu

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

: "${STRATA_LISTEN:=0.0.0.0:9092}"
: "${STRATA_METRICS_LISTEN:=0.0.0.0:9644}"
: "${STRATA_DATA_DIR:=/var/lib/strata}"

if [ -z "${STRATA_ID:-}" ]; then
    echo "strata-entrypoint: set STRATA_ID to this broker's id (e.g. 1)" >&2
    exit 2
fi
if [ -z "${STRATA_PEERS:-}" ]; then
    echo "strata-entrypoint: set STRATA_PEERS to every broker, e.g. 1@strata-1:9092,2@strata-2:9092,3@strata-3:9092" >&2
    exit 2
fi
if [ -z "${STRATA_ADVERTISED:-}" ]; then
    STRATA_ADVERTISED="${HOSTNAME:-$(hostname)}:${STRATA_LISTEN##*:}"
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
