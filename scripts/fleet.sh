#!/usr/bin/env bash
# Starts NATS and GATEWAYS odin-server gateways sharing one WebSocket port
# (SO_REUSEPORT: the kernel spreads new connections over them), each with its
# own HTTP port, and keeps them in the foreground; Ctrl-C stops them all.
#
#   GATEWAYS=4 WS_ADDR=127.0.0.1:8080 HTTP_BASE=3001 scripts/fleet.sh
#
# Each gateway is a full gateway: subscribed to NATS, its own /health,
# /stats and /metrics on 127.0.0.1:$((HTTP_BASE + i)). One process holds up
# to ~19,000 sockets here (20,000-file limit), so 100,000 connections need
# six. Extra odin-server flags go in SERVER_ARGS.
set -euo pipefail

GATEWAYS=${GATEWAYS:-4}
WS_ADDR=${WS_ADDR:-127.0.0.1:8080}
HTTP_HOST=${HTTP_HOST:-127.0.0.1}
HTTP_BASE=${HTTP_BASE:-3001}
NATS_PORT=${NATS_PORT:-4222}
BIN_DIR=${ODIN_BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
SERVER_ARGS=${SERVER_ARGS:-}

if ! [[ "$GATEWAYS" =~ ^[0-9]+$ ]] || (( GATEWAYS < 1 )); then
  echo "fleet: GATEWAYS must be a whole number of at least 1 (got '$GATEWAYS')" >&2
  exit 2
fi
[[ -x "$BIN_DIR/odin-server" ]] || { echo "fleet: no $BIN_DIR/odin-server; run 'make build-release'" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
pids=()
stop() {
  trap - INT TERM EXIT
  echo "fleet: stopping ${#pids[@]} processes" >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

if ! (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; then
  nats-server -js -a 127.0.0.1 -p "$NATS_PORT" &
  pids+=($!)
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
    sleep 0.05
  done
fi

# Load clients all connect from 127.0.0.1: the per-address budgets are off
# unless set in the environment.
export ODIN_MAX_CONNECTIONS_PER_ADDRESS=${ODIN_MAX_CONNECTIONS_PER_ADDRESS:-0}
export ODIN_CONNECT_RATE_PER_ADDRESS=${ODIN_CONNECT_RATE_PER_ADDRESS:-0}
export ODIN_AUTH_FAILURES_PER_ADDRESS=${ODIN_AUTH_FAILURES_PER_ADDRESS:-0}

for ((i = 0; i < GATEWAYS; i++)); do
  # shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
  "$BIN_DIR/odin-server" --dev --reuse-port --ws-addr "$WS_ADDR" \
    --http-addr "$HTTP_HOST:$((HTTP_BASE + i))" --server-id "gateway-$i" \
    --nats-url "nats://127.0.0.1:$NATS_PORT" $SERVER_ARGS &
  pids+=($!)
done
echo "fleet: $GATEWAYS gateways on ws://$WS_ADDR/ws, /stats on $HTTP_HOST:$HTTP_BASE-$((HTTP_BASE + GATEWAYS - 1)); Ctrl-C stops them" >&2
wait -n "${pids[@]}" || true
echo "fleet: a process exited" >&2
