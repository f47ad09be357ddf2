#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine: install, build, and run a real analysis of a small
# trained MLP shipped in examples/data.
set -euo pipefail
cd "$(dirname "$0")/.."
BASIN_WITH_TORCH=0 bash scripts/install-deps.sh
bash scripts/build.sh
D=examples/data
./build/bin/basin analyze --local \
  --model $D/regression_model.json --params $D/regression_params.npy \
  --inputs $D/regression_X.npy --targets $D/regression_Y.npy \
  --loss mse --want jacobian,ggn,hessian
