#!/usr/bin/env bash
# Builds a libFuzzer target and runs it for a bounded time.
#   fuzz/run_fuzz.sh BUILD_DIR SECONDS [onnx|request]
#   onnx     the ONNX importer (fuzz_onnx_import.cpp), seeds from make_seeds.py (python3-onnx)
#   request  request decoding + validation + small analyses (fuzz_request.cpp), structure-aware;
#            two binaries, AnalyzeRequest (2/3 of the time) and SubmitJobRequest (1/3), seeded
#            from fuzz/seeds/{analyze_request,submit_job_request} in the repository
# Needs clang++ (14+) with libFuzzer, libprotobuf-dev, protobuf-compiler, nlohmann-json3-dev,
# libopenblas-dev, liblapacke-dev (and libonnx-dev for onnx; used by request when present).
# Exits non-zero when a target crashes (the crashing input is left in BUILD_DIR/fuzz/crash-*),
# 0 otherwise. Built directly with clang++ (not CMake) because every source must be compiled
# with -fsanitize=fuzzer,address,undefined; ccache is used when it is on PATH.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS [onnx|request]" >&2
  exit 2
fi
BUILD_DIR=$1
SECONDS_TO_RUN=$2
TARGET=${3:-onnx}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$BUILD_DIR/fuzz"
mkdir -p "$OUT"

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
LAUNCH=()
if command -v ccache >/dev/null; then LAUNCH=(ccache); fi
FLAGS=(-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)

# run_target BINARY SECONDS CORPUS SEEDS EXTRA_FLAGS...: corpus/ collects what the fuzzer finds
# (kept between runs); the seed folder is read-only input.
run_target() {
  local bin=$1 secs=$2 corpus=$3 seeds=$4
  shift 4
  mkdir -p "$corpus"
  set +e
  "$bin" "$corpus" "$seeds" -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="$OUT/" "$@" 2>&1 | tail -n 40
  local rc=${PIPESTATUS[0]}
  set -e
  echo "run_fuzz.sh: $(basename "$bin") fuzzed for $secs s, exit code $rc"
  return "$rc"
}

start=$(date +%s)
case "$TARGET" in
onnx)
  mkdir -p "$OUT/seeds"
  # The importer and the engine files it uses: the graph and its builder, the ops' shape rules
  # (kernels/src/ops), Model (the chain form, activation names) and error names; objects two at a
  # time (only the link gets libFuzzer's main), named for their source's path.
  OBJ="$OUT/onnx_obj"
  mkdir -p "$OBJ"
  srcs=("$ROOT"/kernels/onnx/src/*.cpp "$ROOT/kernels/src/graph/graph.cpp" "$ROOT/kernels/src/graph/graph_builder.cpp"
        "$ROOT"/kernels/src/ops/*.cpp "$ROOT/kernels/src/model.cpp" "$ROOT/kernels/src/error.cpp")
  incs=(-I"$ROOT/kernels/include" -I"$ROOT/kernels" -I"$ROOT/kernels/src" -I"$ROOT/kernels/onnx/include"
        -I"$ROOT/kernels/onnx/src")
  objs=()
  for s in "${srcs[@]}"; do
    rel=${s#"$ROOT"/}
    objs+=("$OBJ/${rel//\//_}.o")
  done
  for i in "${!srcs[@]}"; do printf '%s\0%s\0' "${srcs[$i]}" "${objs[$i]}"; done |
    xargs -0 -n2 -P2 bash -c '
    '"${LAUNCH[*]} $CXX"' -std=c++17 -g -O1 -fsanitize=fuzzer-no-link,address,undefined \
      -fno-sanitize-recover=undefined -DONNX_NAMESPACE=onnx -DONNX_ML=1 '"${incs[*]}"' -c "$0" -o "$1"'
  "${LAUNCH[@]}" "$CXX" "${FLAGS[@]}" -DONNX_NAMESPACE=onnx -DONNX_ML=1 "${incs[@]}" \
    -c "$ROOT/fuzz/fuzz_onnx_import.cpp" -o "$OBJ/fuzz_onnx_import.o"
  "$CXX" "${FLAGS[@]}" "$OBJ/fuzz_onnx_import.o" "${objs[@]}" -lonnx_proto -lprotobuf -lpthread \
    -o "$OUT/fuzz_onnx_import"
  echo "run_fuzz.sh: built $OUT/fuzz_onnx_import in $(( $(date +%s) - start )) s"
  if /usr/bin/python3 -c "import onnx, numpy" 2>/dev/null; then
    /usr/bin/python3 "$ROOT/fuzz/make_seeds.py" "$OUT/seeds"
  else
    echo "run_fuzz.sh: python3-onnx not found; fuzzing without seeds" >&2
  fi
  run_target "$OUT/fuzz_onnx_import" "$SECONDS_TO_RUN" "$OUT/corpus" "$OUT/seeds" \
    -timeout=10 -rss_limit_mb=2048 -max_len=16384
  ;;
request)
  OBJ="$OUT/request_obj"
  GEN="$OUT/request_gen"
  mkdir -p "$OBJ" "$GEN"
  protoc --proto_path="$ROOT/proto" --cpp_out="$GEN" "$ROOT/proto/basin/v1/basin.proto"
  # The whole engine (CPU backend) plus the wire library's proto conversion (wire/); the ONNX
  # importer when libonnx-dev is there, so that onnx_blob_id requests are decoded as basind
  # decodes them. Every engine source but the CUDA loader (cuda_unavailable.cpp stands in),
  # with every subfolder of kernels/src and the CPU op kernels (the folders kernels/CMakeLists.txt
  # globs), so a new file or folder there needs no edit here; the build info is the build's, or a stand-in.
  srcs=("$GEN/basin/v1/basin.pb.cc" "$ROOT/wire/src/proto_convert.cpp")
  for s in "$ROOT"/kernels/cpu/*.cpp; do srcs+=("$s"); done  # the CPU backend and its block cache
  for s in "$ROOT"/kernels/src/*.cpp; do
    [[ $(basename "$s") == cuda_loader.cpp ]] || srcs+=("$s")
  done
  # Every subfolder of kernels/src (graph, ops, spectra, ...) and the CPU op kernels.
  while IFS= read -r s; do srcs+=("$s"); done < <(find "$ROOT/kernels/src" -mindepth 2 -name '*.cpp' | sort)
  for s in "$ROOT"/kernels/cpu/ops/*.cpp; do
    [[ -f $s ]] && srcs+=("$s")
  done
  if [[ -f "$BUILD_DIR/generated/build_info.cpp" ]]; then
    srcs+=("$BUILD_DIR/generated/build_info.cpp")
  else
    cmake -DSRC="$ROOT" -DOUT="$GEN/build_info.cpp" -DVERSION=fuzz -P "$ROOT/cmake/write_build_info.cmake"
    srcs+=("$GEN/build_info.cpp")
  fi
  defs=() libs=()
  if [[ -f /usr/include/onnx/onnx_pb.h ]]; then
    srcs+=("$ROOT"/kernels/onnx/src/*.cpp)
    defs=(-DBASIN_HAVE_ONNX=1 -DONNX_NAMESPACE=onnx -DONNX_ML=1)
    libs=(-lonnx_proto)
  fi
  incs=(-I"$GEN" -I"$ROOT/wire/include" -I"$ROOT/kernels/include" -I"$ROOT/kernels/src" -I"$ROOT/kernels"
        -I"$ROOT/kernels/onnx/include" -I"$ROOT/kernels/onnx/src" -I/usr/include/openblas
        -I/usr/include/x86_64-linux-gnu/openblas-pthread)
  # Objects without -fsanitize=fuzzer's main (only the link gets it), two at a time. An object
  # is named for its source's path (kernels/src/ops/conv.cpp and kernels/cpu/ops/conv.cpp are
  # two objects).
  objs=()
  for s in "${srcs[@]}"; do
    rel=${s#"$ROOT"/}
    rel=${rel#"$BUILD_DIR"/}
    rel=${rel#/}
    objs+=("$OBJ/${rel//\//_}.o")
  done
  for i in "${!srcs[@]}"; do printf '%s\0%s\0' "${srcs[$i]}" "${objs[$i]}"; done |
    xargs -0 -n2 -P2 bash -c '
    '"${LAUNCH[*]} $CXX"' -std=c++17 -g -O1 -fsanitize=fuzzer-no-link,address,undefined \
      -fno-sanitize-recover=undefined '"${defs[*]} ${incs[*]}"' -c "$0" -o "$1"'
  for variant in analyze submit; do
    extra=()
    [[ $variant == submit ]] && extra=(-DBASIN_FUZZ_SUBMIT=1)
    "${LAUNCH[@]}" "$CXX" "${FLAGS[@]}" "${extra[@]}" "${defs[@]}" "${incs[@]}" \
      -c "$ROOT/fuzz/fuzz_request.cpp" -o "$OBJ/fuzz_request_$variant.o"
    "$CXX" "${FLAGS[@]}" "$OBJ/fuzz_request_$variant.o" "${objs[@]}" "${libs[@]}" \
      -lprotobuf -llapacke -llapack -lopenblas -lcrypto -lpthread -o "$OUT/fuzz_request_$variant"
  done
  echo "run_fuzz.sh: built $OUT/fuzz_request_{analyze,submit} in $(( $(date +%s) - start )) s"
  # One BLAS thread: the analyses are tiny and the fuzzer is the parallelism that matters.
  # -timeout catches inputs that are slow to refuse (validation must be linear in the size).
  export OPENBLAS_NUM_THREADS=1
  common=(-timeout=10 -rss_limit_mb=2048 -max_len=131072 -malloc_limit_mb=1024)
  rc=0
  run_target "$OUT/fuzz_request_analyze" $(( SECONDS_TO_RUN * 2 / 3 )) "$OUT/corpus_analyze_request" \
    "$ROOT/fuzz/seeds/analyze_request" "${common[@]}" || rc=$?
  if [[ $rc -eq 0 ]]; then
    run_target "$OUT/fuzz_request_submit" $(( SECONDS_TO_RUN - SECONDS_TO_RUN * 2 / 3 )) \
      "$OUT/corpus_submit_job_request" "$ROOT/fuzz/seeds/submit_job_request" "${common[@]}" || rc=$?
  fi
  exit "$rc"
  ;;
*)
  echo "run_fuzz.sh: unknown target '$TARGET'; expected onnx or request" >&2
  exit 2
  ;;
esac
