"""Issue 12's scale benchmark: the top-20 Hessian eigenvalues of an MLP with N ≈ 10⁷ parameters and
n = 64 examples by `basin analyze --want hessian_top` (block Lanczos from H·V products), its wall
time and peak memory against the bound the restart length sets.

The MLP is s → 4s → 1.5s → 10 (tanh, cross-entropy), N ≈ 10·s², so s = 1000 gives N = 10,020,510
(the issue's model; bench/spectra/make_big_mlp.py writes the same one). Each size runs in its own
`basin` process under /usr/bin/time, which reports the peak resident memory. The bound printed is

    bytes ≈ (M + K + b + 2)·N·8   the eigensolver: M basis vectors, K locked pairs, a block of b
          + 4·b·N·8               the products' blocks (vectors in and out, tangents)
          + 2·N·8 + n·s·8         the model (θ and its gradient) and the data

with M the restart length (--lanczos-steps; default max(2K + 4b, 40)), K = 20, b = 8.
Where N is at most --dense-max (default 4096) the Lanczos eigenvalues are also checked against
the exact dense spectrum (basin --want hessian) to 1e-10·|λ|max.

usage:
  /usr/bin/python3 bench/spectra/bench_large_mlp.py build/bin/basin --sizes 1e7          # the issue's
  /usr/bin/python3 bench/spectra/bench_large_mlp.py build/bin/basin --sizes 3e3,1e5,1e6  # quick
Prints a markdown table for bench/RESULTS.md. The 10⁷ case wants ~10 GB free and a quiet machine.
"""
import argparse
import json
import math
import os
import subprocess
import tempfile
import time

import numpy as np

p = argparse.ArgumentParser()
p.add_argument("basin")
p.add_argument("--sizes", default="1e7", help="comma-separated target N (e.g. 1e5,1e6,1e7)")
p.add_argument("--n", type=int, default=64)
p.add_argument("--top", type=int, default=20)
p.add_argument("--block", type=int, default=8)
p.add_argument("--lanczos-steps", type=int, default=0, help="restart length M (0: Basin's default)")
p.add_argument("--tol", type=float, default=1e-8)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--max-memory", type=float, default=20, help="GiB handed to --max-memory")
p.add_argument("--dense-max", type=int, default=4096, help="largest N also checked against the dense path")
p.add_argument("--keep", help="directory for the model files (default: a temporary one)")
a = p.parse_args()


def write_model(target, out):
    s = max(2, int(round(math.sqrt(float(target) / 10.0))))
    dims = [s, 4 * s, (3 * s) // 2, 10]
    rng = np.random.default_rng(0)
    spec = {"input_dim": dims[0], "layers": []}
    params = []
    for i in range(3):
        spec["layers"].append({"type": "dense", "out": dims[i + 1]})
        if i < 2:
            spec["layers"].append({"type": "tanh"})
        # PyTorch order: weight [out, in], then bias.
        params.append(rng.standard_normal(dims[i + 1] * dims[i]) / np.sqrt(dims[i]))
        params.append(0.1 * rng.standard_normal(dims[i + 1]))
    theta = np.concatenate(params)
    files = {k: os.path.join(out, f"mlp{s}_{k}") for k in ("model.json", "params.npy", "X.npy", "y.npy")}
    with open(files["model.json"], "w") as f:
        json.dump(spec, f)
    np.save(files["params.npy"], theta)
    np.save(files["X.npy"], rng.standard_normal((a.n, dims[0])))
    np.save(files["y.npy"], rng.integers(0, dims[-1], a.n).astype(np.int64))
    return dims, theta.size, files


def basin(files, N, *flags):
    """Runs the CLI under /usr/bin/time: (JSON, wall seconds, peak RSS bytes)."""
    rss_file = files["model.json"] + ".time"
    cmd = ["/usr/bin/time", "-f", "%e %M", "-o", rss_file, a.basin, "analyze", "--local",
           "--model", files["model.json"], "--params", files["params.npy"], "--inputs", files["X.npy"],
           "--targets", files["y.npy"], "--loss", "cross_entropy", "--json", "--device", "cpu",
           "--max-memory", str(a.max_memory), "--hessian-limit", str(max(N, 4096)), *flags]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"basin failed ({out.returncode}): {out.stderr.strip()}\n  {' '.join(cmd)}")
    with open(rss_file) as f:
        elapsed, kb = f.read().split()[-2:]
    return json.loads(out.stdout), float(elapsed) if elapsed else wall, int(kb) * 1024


def gib(x):
    return f"{x / 2**30:.2f} GiB"


out_dir = a.keep or tempfile.mkdtemp(prefix="basin-large-mlp-")
os.makedirs(out_dir, exist_ok=True)
K, b = a.top, a.block
rows = []
for target in [float(x) for x in a.sizes.split(",")]:
    dims, N, files = write_model(target, out_dir)
    M = a.lanczos_steps or min(N - b, max(2 * K + 4 * b, 40))
    flags = ["--want", "hessian_top", "--top-k", str(K), "--lanczos-block", str(b), "--tol", str(a.tol),
             "--spectra-method", "matrix_free"]
    if a.lanczos_steps:
        flags += ["--lanczos-steps", str(a.lanczos_steps)]
    res, secs, rss = basin(files, N, *flags)
    top = res["hessian_top"]
    lam = np.array(top["eigenvalues"])
    bound = (M + K + b + 2) * N * 8 + 4 * b * N * 8 + 2 * N * 8 + a.n * dims[0] * 8
    check = ""
    if N <= a.dense_max:
        exact, _, _ = basin(files, N, "--want", "hessian")
        ev = np.array(exact["hessian"]["eigenvalues"])
        err = np.abs(lam - ev[:K]).max() / np.abs(ev).max()
        check = f"{err:.1e}·|λ|max vs dense"
    rows.append((N, dims, secs, rss, bound, top, check))
    print(f"N = {N:,} ({'→'.join(map(str, dims))}): {secs:.1f} s, peak RSS {gib(rss)}, bound {gib(bound)}, "
          f"converged {top['converged']}, max residual {max(top['residual_norms']):.2e}, "
          f"{top['matvecs']} products {check}", flush=True)

print()
print(f"Top-{K} Hessian eigenvalues, block Lanczos (block {b}, tol {a.tol:g}), n = {a.n}, "
      f"{a.threads} threads, `{os.path.basename(a.basin)} analyze --want hessian_top`:")
print()
print("| N | MLP | n | time | peak RSS | (M+K+b+2)·N·8 + 4·b·N·8 + model | converged | max residual | "
      "λ₁ | products | dense check |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for N, dims, secs, rss, bound, top, check in rows:
    print(f"| {N:,} | {'→'.join(map(str, dims))} | {a.n} | {secs:.1f} s | {gib(rss)} | {gib(bound)} | "
          f"{top['converged']} | {max(top['residual_norms']):.1e} | {top['eigenvalues'][0]:.6g} | "
          f"{top['matvecs']} | {check or '—'} |")
