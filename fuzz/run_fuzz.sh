#!/usr/bin/env bash
# Builds the libFuzzer target over the ONNX importer and runs it for a bounded time.
#   fuzz/run_fuzz.sh BUILD_DIR SECONDS
# Needs clang++ (14+) with libFuzzer, libonnx-dev, libprotobuf-dev, nlohmann-json3-dev; seeds are
# generated with python3-onnx when available. Exits non-zero when the target crashes (the crashing
# input is left in BUILD_DIR/fuzz/crash-*), 0 otherwise. Built directly with clang++ (not CMake)
# because the fuzzer needs every source compiled with -fsanitize=fuzzer,address.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
BUILD_DIR=$1
SECONDS_TO_RUN=$2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$BUILD_DIR/fuzz"
mkdir -p "$OUT/corpus" "$OUT/seeds"

CXX=${CXX_FUZZ:-}
if [[ -z "$CXX" ]]; then
  for c in clang++ clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$c" >/dev/null; then CXX=$c; break; fi
  done
fi
if [[ -z "$CXX" ]]; then
  echo "run_fuzz.sh: no clang++ found (set CXX_FUZZ)" >&2
  exit 2
fi

start=$(date +%s)
# The importer and the two engine files it uses (Model::validate, error names); nothing else.
"$CXX" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -DONNX_NAMESPACE=onnx -DONNX_ML=1 \
  -I"$ROOT/kernels/include" -I"$ROOT/kernels/onnx/include" -I"$ROOT/kernels/onnx/src" \
  "$ROOT/fuzz/fuzz_onnx_import.cpp" \
  "$ROOT/kernels/onnx/src/onnx_import.cpp" "$ROOT/kernels/onnx/src/onnx_tensor.cpp" \
  "$ROOT/kernels/onnx/src/activation_patterns.cpp" \
  "$ROOT/kernels/src/model.cpp" "$ROOT/kernels/src/error.cpp" \
  -lonnx_proto -lprotobuf -lpthread \
  -o "$OUT/fuzz_onnx_import"
built=$(date +%s)
echo "run_fuzz.sh: built $OUT/fuzz_onnx_import in $((built - start)) s"

if /usr/bin/python3 -c "import onnx, numpy" 2>/dev/null; then
  /usr/bin/python3 "$ROOT/fuzz/make_seeds.py" "$OUT/seeds"
else
  echo "run_fuzz.sh: python3-onnx not found; fuzzing without seeds" >&2
fi

# corpus/ collects what the fuzzer finds (kept between runs); seeds/ is read-only input.
set +e
"$OUT/fuzz_onnx_import" "$OUT/corpus" "$OUT/seeds" \
  -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
  -print_final_stats=1 -artifact_prefix="$OUT/" 2>&1 | tail -n 40
rc=${PIPESTATUS[0]}
set -e
echo "run_fuzz.sh: fuzzed for $(( $(date +%s) - built )) s, exit code $rc"
exit "$rc"
