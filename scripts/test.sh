#!/usr/bin/env bash
# Builds Basin and runs every test suite: GoogleTest (engine, server, ONNX, CUDA element
# kernels; GPU parity tests skip visibly without a GPU) and pytest (PyTorch references, CLI
# errors, server clients), all through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BASIN_BUILD_DIR:-build}
bash scripts/build.sh
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 1200
