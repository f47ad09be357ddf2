#!/usr/bin/env bash
# Everything a GPU session runs to check the CUDA backend, printing all of it.
#
#   tests/cuda/gpu_check.sh                  # on the GPU machine, from the repository root
#   tests/cuda/gpu_check.sh --bundle [SRC [DST]]  # on the build machine: lean copy of build SRC
#                                                 # (default build-cuda) into DST (build-cuda-carry)
#
# Two ways to get binaries (../shared/ENVIRONMENT.md):
#  1. Build on the GPU machine: configure + build for sm_90 without gRPC/ONNX into build-gpu/.
#     Needs OpenBLAS + LAPACKE, GoogleTest and nlohmann_json headers there.
#  2. Build here, carry the build folder: on the dev machine
#       cmake -S . -B build-cuda -DCMAKE_CUDA_ARCHITECTURES=90 -DBASIN_WITH_GRPC=OFF -DBASIN_WITH_ONNX=OFF
#       cmake --build build-cuda -j2 && tests/cuda/gpu_check.sh --bundle build-cuda build-cuda-carry
#     (--bundle copies the test binaries, the CLI and the non-CUDA shared libraries `ldd` lists,
#     those gzipped: ~30 MB), then on the GPU machine, with carry=["build-cuda-carry"]:
#       SKIP_BUILD=1 tests/cuda/gpu_check.sh
#     Without SKIP_BUILD the script tries step 1 first and falls back to the carried binaries
#     (run directly, not through ctest: ctest files hold this machine's absolute paths).
#
# Steps: environment → build → CUDA tests (parity must RUN, not skip) → the op kernels and graph
# requests case by case → compute-sanitizer memcheck on small parity cases (op kernels included)
# → `basin analyze --local` with --device cuda vs cpu on examples/data.
# Then, unless BENCH=0: bench/bench_gpu.py (Basin --device cuda vs PyTorch, JAX if present; ~5 min).
# Exit status: the number of failed steps (0 = all good). Env: PREBUILT=dir (default build-cuda-carry),
# FRESH=dir (default build-gpu), SKIP_BUILD=1 (use PREBUILT directly), JOBS (default nproc), BENCH.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD

if [[ "${1:-}" == "--bundle" ]]; then
  # A lean copy to carry (the device tool takes 64 MiB): the three binaries and every non-CUDA
  # shared library they load, except the C library and loader, which must be the host's.
  SRC=${2:-build-cuda}
  DST=${3:-build-cuda-carry}
  rm -rf "$DST" && mkdir -p "$DST/bin" "$DST/tests/cuda" "$DST/bundled-libs"
  for rel in tests/cuda/basin_gpu_parity_tests tests/cuda/basin_cuda_elementwise_tests bin/basin bin/libbasin_cuda.so; do
    [[ -e "$SRC/$rel" ]] || { echo "missing $SRC/$rel: build first"; exit 1; }
    cp "$SRC/$rel" "$DST/$rel"
    ldd "$SRC/$rel" | awk '/=> \//{print $3}' |
      grep -v -E '/usr/local/cuda|/libc\.so|/libm\.so|ld-linux|/libdl\.so|/libpthread\.so|/librt\.so|/libbasin_cuda\.so' |
      while read -r lib; do cp -L -n "$lib" "$DST/bundled-libs/"; done
  done
  # The C++ runtime goes aside: this one needs this machine's glibc (2.36); the GPU host's own
  # libstdc++ is tried first and this one only if the binaries do not start with it.
  mkdir -p "$DST/bundled-libs/cxx"
  mv "$DST"/bundled-libs/libstdc++.so.* "$DST"/bundled-libs/libgcc_s.so.* "$DST/bundled-libs/cxx/" 2>/dev/null
  # Compressed (OpenBLAS alone is 36 MB): the carry limit is 64 MiB with the working tree. The
  # GPU run unpacks it into a temporary folder (LIBDIR below).
  tar -czf "$DST/bundled-libs.tar.gz" -C "$DST" bundled-libs && rm -rf "$DST/bundled-libs"
  du -sh "$DST"
  echo "carry [\"$DST\"] and run: PREBUILT=$DST SKIP_BUILD=1 tests/cuda/gpu_check.sh"
  exit 0
fi

PREBUILT=${PREBUILT:-build-cuda-carry}
FRESH=${FRESH:-build-gpu}
JOBS=${JOBS:-$(nproc)}
LOGS=${OUT:-/tmp}/basin_gpu_check   # $OUT comes back from the device tool: full logs there
mkdir -p "$LOGS"
FAILED=()
step() { printf '\n==================== %s ====================\n' "$*"; }
fail() { echo "!!! FAILED: $*"; FAILED+=("$*"); }

step "environment ($(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(hostname))"
nvidia-smi || fail "nvidia-smi"
export PATH=$PATH:/usr/local/cuda/bin   # nvcc, compute-sanitizer where PATH lacks them
nvcc --version | tail -2
command -v compute-sanitizer && compute-sanitizer --version | head -2
git -C "$ROOT" log --oneline -1 2>/dev/null

# ---- build ----
MODE=""
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  step "configure + build (sm_90, no gRPC / ONNX) into $FRESH"
  if cmake -S . -B "$FRESH" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
       -DBASIN_WITH_GRPC=OFF -DBASIN_WITH_ONNX=OFF > "$LOGS/configure.log" 2>&1; then
    if cmake --build "$FRESH" -j "$JOBS" > "$LOGS/build.log" 2>&1; then MODE=fresh; BIN=$FRESH
    else tail -40 "$LOGS/build.log"; fail "build in $FRESH (log: $LOGS/build.log)"; fi
  else
    grep -E "CMake Error|Could NOT find" -A2 "$LOGS/configure.log" | head -12
    echo "configure failed here (missing dev packages?); trying the carried build $PREBUILT"
  fi
fi
if [[ -z "$MODE" ]]; then
  if [[ -x "$PREBUILT/tests/cuda/basin_gpu_parity_tests" ]]; then
    MODE=prebuilt; BIN=$PREBUILT
    # The bundled libraries: a folder (older bundles) or the tarball --bundle writes.
    LIBDIR=$ROOT/$PREBUILT/bundled-libs
    if [[ ! -d $LIBDIR && -f $PREBUILT/bundled-libs.tar.gz ]]; then
      UNPACK=$(mktemp -d "${TMPDIR:-/tmp}/basin_carry.XXXXXX")
      tar -xzf "$PREBUILT/bundled-libs.tar.gz" -C "$UNPACK" || fail "unpacking $PREBUILT/bundled-libs.tar.gz"
      LIBDIR=$UNPACK/bundled-libs
      trap 'rm -rf "$UNPACK"' EXIT
    fi
    export LD_LIBRARY_PATH="$LIBDIR:${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/cuda/lib64"
    if ! "$PREBUILT/tests/cuda/basin_cuda_elementwise_tests" --gtest_list_tests > /dev/null 2>&1; then
      echo "binaries do not start with the host's C++ runtime; adding $LIBDIR/cxx"
      export LD_LIBRARY_PATH="$LIBDIR/cxx:$LD_LIBRARY_PATH"
    fi
    echo "using prebuilt binaries in $PREBUILT (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
    ldd "$PREBUILT/tests/cuda/basin_gpu_parity_tests" | grep -E "not found|cuda|blas|stdc" || true
    "$PREBUILT/tests/cuda/basin_cuda_elementwise_tests" --gtest_list_tests > /dev/null || fail "prebuilt binaries do not start"
  else
    fail "no binaries: neither a build here nor $PREBUILT/tests/cuda/basin_gpu_parity_tests"
    echo "failed steps: ${FAILED[*]}"; exit ${#FAILED[@]}
  fi
fi
PARITY=$BIN/tests/cuda/basin_gpu_parity_tests
HOSTTESTS=$BIN/tests/cuda/basin_cuda_elementwise_tests
# The CUDA backend is a module the binaries open on demand; tell the test binaries where it is.
export BASIN_CUDA_MODULE=$(realpath -m "$BIN/bin/libbasin_cuda.so")
CLI=$BIN/bin/basin

# ---- tests ----
step "CUDA tests ($MODE)"
LOG=$LOGS/cuda_tests.log
if [[ $MODE == fresh ]]; then
  ctest --test-dir "$FRESH" -R cuda --output-on-failure -V > "$LOG" 2>&1 || fail "ctest -R cuda"
else
  "$HOSTTESTS" > "$LOGS/host_tests.log" 2>&1 || fail "host tests (log: $LOGS/host_tests.log)"
  tail -1 "$LOGS/host_tests.log"
  "$PARITY" > "$LOG" 2>&1 || fail "gpu parity (log: $LOG)"
fi
if grep -q "SKIPPED \]" "$LOG"; then
  fail "parity tests were SKIPPED on a GPU machine:"; grep -m1 "CUDA parity not run" "$LOG"
fi
# The device line, the totals, and each failure with its message (full log: $LOG).
grep -E "^\[ device|tests? ran|PASSED|FAILED  \]" "$LOG" | sort | uniq -c | sort -rn | head -30
grep -B2 -A6 "Failure$" "$LOG" | head -80
# The op kernels (kernels/cuda/ops/*.cu) and the graph engine on the device, printed case by case
# (worst |cpu − cuda| / scale of every comparison): they must RUN here, not skip.
step "op kernels and graph requests: CUDA vs CPU, case by case"
OPLOG=$LOGS/op_kernel_parity.log
BASIN_PARITY_VERBOSE=1 "$PARITY" --gtest_filter='CudaPrimitives/*.OpKernel*:GpuParityGraph.*:GpuParityDeviceContext.*' \
  > "$OPLOG" 2>&1 || fail "op kernel / graph parity (log: $OPLOG)"
if grep -q "SKIPPED \]" "$OPLOG"; then fail "op kernel parity SKIPPED on a GPU machine"; fi
if ! grep -q "OpKernelIm2colCol2im" "$OPLOG"; then fail "op kernel parity cases missing from $PARITY (stale binary?)"; fi
# The worst case of each kernel family and the totals.
for family in strided_copy binary reduce_sum reduce_max im2col col2im max_pool_forward max_pool_apply \
              max_pool_transpose avg_pool avg_pool_transpose "graph "; do
  grep -F "$family" "$OPLOG" | grep "max |cpu-cuda|" | sort -t= -k2 -g | tail -1
done
grep -E "tests? ran|PASSED|FAILED  \]" "$OPLOG" | sort | uniq -c
grep -B2 -A6 "Failure$" "$OPLOG" | head -40

if [[ $MODE == fresh ]]; then
  step "all other ctest tests (python reference excluded)"
  ctest --test-dir "$FRESH" -E "cuda|python" --output-on-failure > "$LOGS/ctest_other.log" 2>&1 || fail "ctest (engine)"
  tail -8 "$LOGS/ctest_other.log"
fi

# ---- compute-sanitizer on a small case ----
step "compute-sanitizer --tool memcheck (small cases)"
FILTER='CudaPrimitives/1.ElementwiseOperations:CudaPrimitives/1.SingularValuesBothOrientations'
FILTER+=':Analyze/GpuParity.MatchesCpu/tanh_small_mse_gram_f64:Analyze/GpuParity.MatchesCpu/tanh_small_ce_svd_f64_tall'
FILTER+=':Analyze/GpuParity.MatchesCpu/tanh_small_ce_svd_f32:GpuParityJacobian.*'
FILTER+=':CudaPrimitives/1.BatchedSymmetricEigenvaluesMatchOneAtATime:GpuParityBatch.*'
FILTER+=':CudaPrimitives/1.OpKernel*:GpuParityDeviceContext.*'   # op kernels (indexing), shared context
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 99 "$PARITY" --gtest_filter="$FILTER" > "$LOGS/memcheck.log" 2>&1 ||
    fail "compute-sanitizer memcheck (log: $LOGS/memcheck.log)"
  grep -E "ERROR SUMMARY|========= |PASSED|FAILED|SKIPPED" "$LOGS/memcheck.log" | head -40
else
  fail "compute-sanitizer not found"
fi

# ---- the CLI on the examples: same JSON from cuda and cpu ----
step "basin analyze --local: --device cuda vs --device cpu"
D=examples/data
run_cli() {  # name device extra-args...
  local name=$1 dev=$2; shift 2
  "$CLI" analyze --local --device "$dev" --json --want jacobian,ggn,hessian "$@" > "$LOGS/basin_${name}_${dev}.json" ||
    { fail "basin analyze $name --device $dev"; return 1; }
}
for name in regression classification; do
  [[ -f $D/${name}_model.json ]] || { echo "no $D/${name}_model.json; skipped"; continue; }
  if [[ $name == regression ]]; then extra=(--targets $D/regression_Y.npy --loss mse)
  else extra=(--targets $D/classification_labels.npy --loss cross_entropy); fi
  for dtype in float64 float32; do
    args=(--model $D/${name}_model.json --params $D/${name}_params.npy --inputs $D/${name}_X.npy "${extra[@]}" --dtype $dtype)
    run_cli "${name}_$dtype" cpu "${args[@]}" && run_cli "${name}_$dtype" cuda "${args[@]}" || continue
    python3 - "$LOGS/basin_${name}_${dtype}_cpu.json" "$LOGS/basin_${name}_${dtype}_cuda.json" "$dtype" <<'EOF' || fail "JSON parity ${name}_${dtype}"
import json, sys
cpu, gpu, dtype = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
tol = 1e-10 if dtype == "float64" else 1e-4
print(f"  cpu: backend={cpu['backend']!r} device={cpu['device']!r}  cuda: backend={gpu['backend']!r} device={gpu['device']!r}")
print(f"  timings cpu={cpu['timings_ms']} cuda={gpu['timings_ms']}")
bad = []
if gpu["backend"] != "cuda": bad.append("backend is not 'cuda'")
def flat(v):
    return [y for x in v for y in flat(x)] if isinstance(v, list) else [v]
def values(name, a, b, scale=None, square=False):
    a, b = flat(a), flat(b)
    if square: a, b = [x * x for x in a], [x * x for x in b]
    if len(a) != len(b): bad.append(f"{name}: {len(a)} vs {len(b)} values"); return
    s = scale if scale is not None else max([abs(x) for x in a] + [1e-300])
    worst = max([abs(x - y) for x, y in zip(a, b)] + [0.0])
    print(f"  {name:32s} {len(a):5d} values, max |cpu-cuda| / scale = {worst / s:.2e}")
    if worst > tol * s: bad.append(f"{name}: max difference {worst:.3e} > {tol} x {s:.3e}")
def same(name, a, b):
    if a != b: bad.append(f"{name}: cpu {a!r} vs cuda {b!r}")
for k in ("num_params", "num_examples", "num_outputs", "dtype", "loss_function", "reduction"): same(k, cpu.get(k), gpu.get(k))
values("outputs", cpu["outputs"], gpu["outputs"])
for k in ("loss", "grad_norm"):
    if cpu.get(k) is not None: values(k, [cpu[k]], [gpu[k]])
if "jacobian" in cpu:
    cj, gj = cpu["jacobian"], gpu["jacobian"]
    for k in ("rank", "level_set_dim", "method", "refined_from"): same("jacobian." + k, cj.get(k), gj.get(k))
    # Gram-based methods decompose σ²: compare σ² (tiny σ are √round-off on both backends).
    values("jacobian.singular_values" + ("" if cj["method"] == "svd" else "^2"), cj["singular_values"],
           gj["singular_values"], square=cj["method"] != "svd")
    print(f"  jacobian: rank {cj['rank']} / gap cpu {cj.get('gap')} cuda {gj.get('gap')} (method {cj['method']})")
if "ggn" in cpu:
    same("ggn.rank", cpu["ggn"]["rank"], gpu["ggn"]["rank"])
    values("ggn.eigenvalues", cpu["ggn"]["eigenvalues"], gpu["ggn"]["eigenvalues"])
if "hessian" in cpu:
    ch, gh = cpu["hessian"], gpu["hessian"]
    same("hessian.rank", ch["rank"], gh["rank"])
    values("hessian.eigenvalues", ch["eigenvalues"], gh["eigenvalues"])
    hs = max(abs(x) for x in ch["eigenvalues"])
    values("hessian.residual_eigenvalues", ch["residual_eigenvalues"], gh["residual_eigenvalues"], scale=hs)
    values("hessian.residual_rel", [ch["residual_rel"]], [gh["residual_rel"]], scale=1.0)
print("  JSON parity OK" if not bad else "  JSON mismatches:\n    " + "\n    ".join(bad[:20]))
sys.exit(1 if bad else 0)
EOF
  done
done
# Checkpoints: params (3, N) through one cuda process (batched solvers) vs the cpu, line by line.
if [[ -f $D/regression_params.npy ]]; then
  python3 -c "import numpy as np; p = np.load('$D/regression_params.npy'); r = np.random.default_rng(0);
np.save('$LOGS/checkpoints.npy', np.stack([p, p + 0.05 * r.standard_normal(p.shape), p + 0.1 * r.standard_normal(p.shape)]))"
  for dev in cpu cuda; do
    "$CLI" analyze --local --device $dev --json --want jacobian,ggn --model $D/regression_model.json \
      --params "$LOGS/checkpoints.npy" --inputs $D/regression_X.npy --targets $D/regression_Y.npy --loss mse \
      > "$LOGS/basin_checkpoints_$dev.jsonl" || fail "basin analyze checkpoints --device $dev"
  done
  python3 - "$LOGS/basin_checkpoints_cpu.jsonl" "$LOGS/basin_checkpoints_cuda.jsonl" <<'EOF' || fail "checkpoint JSON parity"
import json, sys
cpu = [json.loads(l) for l in open(sys.argv[1])]
gpu = [json.loads(l) for l in open(sys.argv[2])]
assert len(cpu) == len(gpu) == 3, (len(cpu), len(gpu))
for b, (c, g) in enumerate(zip(cpu, gpu)):
    assert g["backend"] == "cuda", g["backend"]
    for key, sq in (("jacobian", True), ("ggn", False)):
        a = c[key]["singular_values" if key == "jacobian" else "eigenvalues"]
        d = g[key]["singular_values" if key == "jacobian" else "eigenvalues"]
        if sq: a, d = [x * x for x in a], [x * x for x in d]
        worst = max(abs(x - y) for x, y in zip(a, d)) / max(abs(x) for x in a)
        print(f"  checkpoint {b} {key}: max |cpu-cuda| / scale = {worst:.2e}")
        assert worst <= 1e-10, worst
        assert c[key]["rank"] == g[key]["rank"], (c[key]["rank"], g[key]["rank"])
print("  checkpoint parity OK")
EOF
fi
# Matrix-free spectra (issue 12): Lanczos top/bottom, Hutch++ trace and the SLQ density through
# the CLI, cuda vs cpu (same seeds, so the trace's probes are the same on both).
if [[ -f $D/classification_model.json ]]; then
  for dev in cpu cuda; do
    "$CLI" analyze --local --device $dev --json --want hessian_top,ggn_top,hessian_trace,hessian_density \
      --top-k 5 --bottom-k 3 --probes 12 --tol 1e-10 --spectra-method matrix_free \
      --model $D/classification_model.json --params $D/classification_params.npy --inputs $D/classification_X.npy \
      --targets $D/classification_labels.npy --loss cross_entropy > "$LOGS/basin_spectra_$dev.json" ||
      fail "basin analyze matrix-free spectra --device $dev"
  done
  python3 - "$LOGS/basin_spectra_cpu.json" "$LOGS/basin_spectra_cuda.json" <<'EOF' || fail "matrix-free spectra JSON parity"
import json, sys
cpu, gpu = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
bad = [] if gpu["backend"] == "cuda" else ["backend is not 'cuda'"]
scale = max(abs(x) for x in cpu["hessian_top"]["eigenvalues"] + cpu["hessian_bottom"]["eigenvalues"])
for k in ("hessian_top", "hessian_bottom", "ggn_top", "ggn_bottom"):
    a, b = cpu[k], gpu[k]
    worst = max(abs(x - y) for x, y in zip(a["eigenvalues"], b["eigenvalues"]))
    print(f"  {k:16s} {a['method']:10s} max |cpu-cuda| / scale = {worst / scale:.2e}, converged cpu {a['converged']} "
          f"cuda {b['converged']}, max residual cuda {max(b['residual_norms']):.1e}")
    if worst > 1e-10 * scale or not b["converged"]: bad.append(k)
t0, t1 = cpu["hessian_trace"]["estimate"], gpu["hessian_trace"]["estimate"]
print(f"  hessian_trace    cpu {t0:.12g} cuda {t1:.12g}")
if abs(t0 - t1) > 1e-10 * scale * cpu["num_params"]: bad.append("hessian_trace")
print("  spectra parity OK" if not bad else "  spectra mismatches: " + ", ".join(bad))
sys.exit(1 if bad else 0)
EOF
fi
# --device auto picks cuda here and says so on stderr; --device cuda must not fall back.
"$CLI" analyze --local --device auto --model $D/regression_model.json --params $D/regression_params.npy \
  --inputs $D/regression_X.npy --targets $D/regression_Y.npy --loss mse 2>&1 | grep -E "backend|using" || true

# ---- benchmark: Basin --device cuda vs PyTorch (and JAX, if installed) on this GPU ----
# bench/bench_gpu.py keeps itself within --budget-s (default 300 s). BENCH=0 skips it.
if [[ "${BENCH:-1}" == 1 ]]; then
  step "benchmark: bench/bench_gpu.py --markdown (BENCH=0 skips it)"
  # The peers run in this host's python3 (PyTorch 2.x) without the carried libraries: those are for
  # basin only, which bench_gpu.py runs with BASIN_LD_LIBRARY_PATH as its LD_LIBRARY_PATH.
  PY_LD=$(tr ':' '\n' <<< "${LD_LIBRARY_PATH:-}" | grep -v -F "${LIBDIR:-$ROOT/$PREBUILT/bundled-libs}" | grep . | paste -sd: -)
  BASIN_LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}" LD_LIBRARY_PATH="$PY_LD" \
    python3 bench/bench_gpu.py --basin "$CLI" --markdown 2>&1 | tee "$LOGS/bench_gpu.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || fail "bench_gpu.py (log: $LOGS/bench_gpu.log)"
fi

step "summary"
date -u '+%Y-%m-%d %H:%M:%S UTC'
if [[ ${#FAILED[@]} == 0 ]]; then echo "ALL CUDA CHECKS PASSED ($MODE build)"; else printf 'FAILED: %s\n' "${FAILED[@]}"; fi
exit ${#FAILED[@]}
