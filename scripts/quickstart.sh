#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine: install, build, start the Basin server (basind) on
# loopback, and analyse a small trained MLP shipped in examples/data through it.
set -euo pipefail
cd "$(dirname "$0")/.."
BASIN_WITH_TORCH=0 bash scripts/install-deps.sh
BASIN_TARGETS="basin basind" bash scripts/build.sh

DATA_DIR=$(mktemp -d)
PORT_FILE=$DATA_DIR/ports
./build/bin/basind --listen 127.0.0.1:0 --data-dir "$DATA_DIR" --port-file "$PORT_FILE" &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null; rm -rf "$DATA_DIR"' EXIT
for _ in $(seq 100); do [ -s "$PORT_FILE" ] && break; sleep 0.1; done
export BASIN_SERVER=127.0.0.1:$(head -1 "$PORT_FILE" | tr -dc '0-9')
./build/bin/basin health --server "$BASIN_SERVER"

D=examples/data
./build/bin/basin analyze --server "$BASIN_SERVER" \
  --model $D/regression_model.json --params $D/regression_params.npy \
  --inputs $D/regression_X.npy --targets $D/regression_Y.npy \
  --loss mse --want jacobian,ggn,hessian
