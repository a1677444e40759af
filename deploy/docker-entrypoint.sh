#!/bin/sh
# kong-ace image entrypoint: start the supervised `ace` plugin server, wait (bounded) for its
# socket, then hand over to the Kong image's own entrypoint. Kong is given only the socket and
# the query command (no start_cmd), so its Admin API `GET /` works and decK can talk to it; the
# supervisor holds the socket and restarts a dead server at once.
set -eu

SOCKET="${KONG_PLUGINSERVER_ACE_SOCKET:-/usr/local/kong/ace.socket}"
SERVER="${KONG_ACE_SERVER:-/opt/kong-ace/venv/bin/kong-ace-server}"
KONG_ENTRYPOINT="${KONG_ACE_NEXT_ENTRYPOINT:-/docker-entrypoint.sh}"  # the kong image's
PREFIX="$(dirname "$SOCKET")"
NAME="$(basename "$SOCKET")"

if [ "${1:-}" = "kong" ] && { [ "${2:-}" = "docker-start" ] || [ "${2:-}" = "start" ]; }; then
    mkdir -p "$PREFIX"
    # KONG_ACE_SERVER_ARGS: extra flags (e.g. "--mode threading --event-timeout 20").
    # shellcheck disable=SC2086
    "$SERVER" --supervise -p "$PREFIX" --socket-name "$NAME" \
        ${KONG_ACE_SERVER_ARGS:-} &
    tries=0
    while [ ! -S "$SOCKET" ] && [ "$tries" -lt 100 ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
fi

exec "$KONG_ENTRYPOINT" "$@"
