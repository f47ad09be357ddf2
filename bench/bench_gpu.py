#!/usr/bin/env python3
"""Basin's CUDA backend vs PyTorch (and JAX) on the same GPU: the same workloads, side by side.

Workloads (float64 throughout; MLPs with tanh, θ = PyTorch's default nn.Linear init, X, Y ~ N(0,1)):
  A  target: MLP 256-432-432-10, N = 302,410, n·k = 1000·10 = 10,000; all σ(G).
     Basin `--loss none --want jacobian --method auto` (→ gram, n·k < N).
     Peers: torch.func vmap(jacrev) → G [n·k, N] (built in chunks of examples into a preallocated G:
     one vmap would hold G twice), then (1) G Gᵀ + torch.linalg.eigvalsh — the same algorithm as
     Basin's — and (2) torch.linalg.svdvals(G).  (2) runs last, with whatever budget is left.
  B  batch: 1,000 checkpoints θ_b = θ₀ + 0.2·std(θ₀)·ξ_b of MLP 8-24-24-4 (N = 916) on the same
     n = 25 examples (n·k = 100); all σ(G) of each.  Basin: ONE process, `--params` [B, N] (prints
     B JSON objects, one per line).  If this basin rejects a 2-D --params, a loop of single-vector
     processes over the first 20 checkpoints is timed instead and the row says so.
     Peers: vmap over models of vmap(jacrev) → [B, n·k, N], then batched svdvals, and batched
     eigvalsh of the Grams.  Reported as spectra per second.
  C  GGN + Hessian, MSE: MLP 16-48-40-4, N = 2,940, n·k = 256·4 = 1,024.  Basin `--want
     jacobian,ggn,hessian`; peer: G (vmap(jacrev)) → eigvalsh(c·G Gᵀ), and torch.func.hessian of
     the loss → eigvalsh(H).
  D  JAX peer for A (jax.vmap(jax.jacrev) → Σ_l J_l J_lᵀ → jnp.linalg.eigvalsh, jit, x64), when
     `import jax` works and JAX sees a GPU; skipped with the reason otherwise.

Timing.  Basin: one fresh `basin analyze --local --device cuda ... --json` process per repeat, one
warm-up process excluded; time = wall-clock of the whole process (start-up, CUDA context, .npy
reading, JSON printing); the engine's own timings_ms are shown too, and the ratio against them.
Peers: each workload in its own subprocess (so this process never holds the GPU), one warm-up
run excluded (the svdvals peer of A warms up on the first 8 examples only: a full warm-up would
double the most expensive call), torch.cuda.synchronize() around every timed section, TF32 off;
time = the computation only (imports, file reading and moving the inputs to the GPU excluded).
Median of --repeats.  --budget-s: each peer skips its remaining repeats once the next one would
end after its share of the budget (A, B and D 20 %, C 12 %; the svdvals peer of A gets the rest),
and a peer still running at the end of the budget (plus a grace) is stopped; its row then gives
the lower bound ("> T s").

Agreement: max |a − b| / max |b| over the compared spectra (descending, the first min(len)
values): for σ(G) the squares σ² are compared (the Gram methods compute σ², whose small values
are √round-off on σ; as in tests/cuda/gpu_check.sh), GGN and Hessian eigenvalues as they are.
Above 1e-8 (float64) the row says DISAGREE and the timing is meaningless.

Dry run (--dry-run, automatic when torch sees no CUDA device): tiny sizes, Basin --device cpu,
torch on the CPU (torch.func, or functorch on torch 1.13): exercises the whole pipeline in < 60 s.

Exit status: 0 when every row agrees; 1 when a Basin run failed, spectra disagree or a required
peer (torch on A, B, C) failed other than by running out of memory or budget; 2 on bad usage.
Optional peers (A's svdvals, JAX) never fail the run.

Usage:  python3 bench/bench_gpu.py [--basin build/bin/basin] [--markdown] [--only A,B,C,D]
                                    [--repeats 3] [--budget-s 300] [--dry-run] [--device cuda|cpu]
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_cpu  # noqa: E402  (model/data generation, binary identity, formatting)

DEFAULT_BASIN = os.environ.get("BASIN_CLI") or bench_cpu.DEFAULT_BASIN
AGREE_TOL = 1e-8          # float64
GRACE_S = 20              # a peer still running this long after the budget is stopped
LOOP_FALLBACK = 20        # checkpoints timed one process each when batched --params is missing


# --------------------------------------------------------------------------- workloads
def gpu_workloads(dry):
    if dry:
        return dict(
            A=dict(name="A-target(dry)", d=16, hidden=[24, 24], k=4, n=30, act="tanh", kind="svd"),
            B=dict(name="B-batch(dry)", d=4, hidden=[8, 8], k=2, n=5, act="tanh", kind="batch", B=8),
            C=dict(name="C-ggn+hessian(dry)", d=4, hidden=[8, 8], k=2, n=10, act="tanh", kind="hessian"),
        )
    return dict(
        # N = 302,410, n·k = 10,000: G is 24.2 GB in float64
        A=dict(name="A-target", d=256, hidden=[432, 432], k=10, n=1000, act="tanh", kind="svd"),
        # N = 916, n·k = 100, 1,000 parameter vectors
        B=dict(name="B-batch", d=8, hidden=[24, 24], k=4, n=25, act="tanh", kind="batch", B=1000),
        # N = 2,940, n·k = 1,024
        C=dict(name="C-ggn+hessian", d=16, hidden=[48, 40], k=4, n=256, act="tanh", kind="hessian"),
    )


def layer_shapes(w):
    """Parameter shapes in torch parameters_to_vector order (each Linear: weight [out, in], bias)."""
    dims = [w["d"]] + w["hidden"] + [w["k"]]
    shapes = []
    for i in range(len(dims) - 1):
        shapes += [(dims[i + 1], dims[i]), (dims[i + 1],)]
    return shapes


def unflatten(theta, shapes):
    """theta [..., N] (numpy or torch) -> list of [..., *shape] views."""
    out, off = [], 0
    lead = tuple(theta.shape[:-1])
    for s in shapes:
        size = int(np.prod(s))
        out.append(theta[..., off:off + size].reshape(lead + tuple(s)))
        off += size
    assert off == theta.shape[-1], (off, theta.shape)
    return out


def g_bytes(w):
    return w["n"] * w["k"] * bench_cpu.num_params(w) * 8


# --------------------------------------------------------------------------- processes
def run_proc(cmd, out_path, err_path, env=None, timeout=None):
    """Runs cmd in its own session; returns (returncode or None when stopped, wall s).  On timeout the
    child's process group (the child's own pid) is sent SIGTERM, then SIGKILL.  The wait itself is a
    blocking wait (a watchdog thread does the stopping): Popen.wait(timeout=...) polls with sleeps of
    up to 50 ms, which would round every short run up by tens of milliseconds."""
    import threading
    with open(out_path, "wb") as so, open(err_path, "wb") as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=so, stderr=se, env=env, start_new_session=True)
        stopped = threading.Event()

        def stop():
            stopped.set()
            for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 30)):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    return
                deadline = time.monotonic() + wait_s
                while p.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.1)
                if p.poll() is not None:
                    return

        watchdog = threading.Timer(timeout, stop) if timeout is not None else None
        if watchdog is not None:
            watchdog.daemon = True
            watchdog.start()
        rc = p.wait()
        wall = time.perf_counter() - t0
        if watchdog is not None:
            watchdog.cancel()
        return (None if stopped.is_set() else rc), wall


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]).rstrip()
    except OSError:
        return ""


def parse_json_stream(text):
    """All JSON values in text (one per line, concatenated, or one array of them)."""
    dec, i, objs = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return objs
        obj, i = dec.raw_decode(text, i)
        objs.extend(obj if isinstance(obj, list) else [obj])


class Budget:
    def __init__(self, seconds):
        self.start, self.seconds = time.time(), seconds
        self.deadline = self.start + seconds

    def left(self):
        return self.deadline - time.time()


def worker_env():
    """Environment of the Python peers.  BASIN_LD_LIBRARY_PATH (if set) is for basin only."""
    return dict(os.environ)


def basin_env():
    env = dict(os.environ)
    if os.environ.get("BASIN_LD_LIBRARY_PATH") is not None:
        env["LD_LIBRARY_PATH"] = os.environ["BASIN_LD_LIBRARY_PATH"]
    return env


def run_worker(kind, job, tmp, timeout, log=True):
    """Runs `--worker` for one peer in its own process; returns its (possibly partial) result."""
    job = dict(job, kind=kind, result=os.path.join(tmp, kind + ".result.json"))
    path = os.path.join(tmp, kind + ".job.json")
    with open(path, "w") as f:
        json.dump(job, f)
    out, err = os.path.join(tmp, kind + ".out"), os.path.join(tmp, kind + ".err")
    rc, wall = run_proc([sys.executable, os.path.abspath(__file__), "--worker", path], out, err,
                        env=worker_env(), timeout=timeout)
    stopped_at = time.time()
    res = {}
    if os.path.exists(job["result"]):
        with open(job["result"]) as f:
            res = json.load(f)
    res.update(rc=rc, wall=wall, stopped=rc is None, stopped_at=stopped_at, stderr=tail(err))
    if rc is None and log:
        print("#   %s stopped after %.0f s (budget)" % (kind, wall), file=sys.stderr, flush=True)
    elif rc != 0 and res.get("status") in (None, "running"):
        res.update(status="error", message="worker exited %s: %s" % (rc, tail_line(tail(err))))
    return res


# --------------------------------------------------------------------------- Basin side
def basin_cmd(basin, w, files, device, params):
    cmd = [basin, "analyze", "--local", "--device", device, "--model", files["spec.json"],
           "--params", params, "--inputs", files["X.npy"], "--dtype", "float64", "--json"]
    if w["kind"] == "hessian":
        cmd += ["--targets", files["Y.npy"], "--loss", "mse", "--want", "jacobian,ggn,hessian"]
    else:
        cmd += ["--loss", "none", "--want", "jacobian", "--method", "auto"]
    return cmd


def run_basin(cmd, expect, repeats, budget, tmp, warmup=True):
    """Warm-up (excluded) + repeats of one basin process each.  Returns walls, per-run engine
    timings (timings_ms summed over the printed objects) and the objects of the last run."""
    walls, timings, objs = [], [], None
    so, se = os.path.join(tmp, "basin.out"), os.path.join(tmp, "basin.err")
    for r in range(repeats + (1 if warmup else 0)):
        if r > int(warmup) and walls and budget.left() < walls[-1]:
            print("#   basin: %d repeat(s) skipped (budget)" % (repeats + int(warmup) - r), file=sys.stderr)
            break
        rc, wall = run_proc(cmd, so, se, env=basin_env(), timeout=max(120, budget.left() + GRACE_S))
        if rc != 0:
            return dict(ok=False, error="exit %s: %s" % (rc, tail(se, 5)), cmd=cmd)
        with open(so) as f:
            objs = parse_json_stream(f.read())
        if len(objs) != expect:
            return dict(ok=False, error="printed %d JSON objects, expected %d" % (len(objs), expect), cmd=cmd)
        if warmup and r == 0:
            continue
        walls.append(wall)
        t = {}
        for o in objs:
            for key, v in o.get("timings_ms", {}).items():
                t[key] = t.get(key, 0.0) + float(v)
        timings.append(t)
    return dict(ok=True, walls=walls, timings=timings, objs=objs, cmd=cmd)


def engine_median(b):
    keys = sorted(set().union(*b["timings"])) if b["timings"] else []
    per_key = {key: statistics.median(t.get(key, 0.0) for t in b["timings"]) for key in keys}
    total = statistics.median(sum(t.values()) for t in b["timings"]) if b["timings"] else float("nan")
    return per_key, total


# --------------------------------------------------------------------------- agreement
def spectrum_diff(a, b, square=False):
    """max |a − b| / max |b| over the first min(len) values of both, sorted descending."""
    a = np.sort(np.asarray(a, dtype=np.float64).ravel())[::-1]
    b = np.sort(np.asarray(b, dtype=np.float64).ravel())[::-1]
    m = min(a.size, b.size)
    if m == 0:
        return float("inf")
    a, b = a[:m], b[:m]
    if square:
        a, b = a * a, b * b
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny))


# --------------------------------------------------------------------------- workers (subprocesses)
class Result:
    """The worker's result file, rewritten (atomically) after every step so that a stopped
    worker still leaves what it measured."""

    def __init__(self, path):
        self.path, self.d = path, dict(status="running", message="", peers={})

    def peer(self, key):
        return self.d["peers"].setdefault(key, dict(times=[], parts={}, skipped_repeats=0, spectra={},
                                                    status="running", message=""))

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.d, f)
        os.replace(tmp, self.path)


def func_api():
    """vmap, jacrev, hessian: torch.func (PyTorch ≥ 2.0), else functorch (PyTorch 1.13)."""
    try:
        from torch.func import vmap, jacrev, hessian
        return vmap, jacrev, hessian, "torch.func"
    except ImportError:
        from functorch import vmap, jacrev, hessian
        return vmap, jacrev, hessian, "functorch"


def is_oom(e):
    s = str(e)
    return type(e).__name__ == "OutOfMemoryError" or "out of memory" in s.lower() or "RESOURCE_EXHAUSTED" in s


def torch_setup(job, R):
    import torch
    dev = torch.device(job["device"])
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        if hasattr(torch, "set_float32_matmul_precision"):
            torch.set_float32_matmul_precision("highest")
        R.d["device"] = torch.cuda.get_device_name(dev)
    else:
        torch.set_num_threads(os.cpu_count() or 1)
        R.d["device"] = "CPU, torch on %d threads" % torch.get_num_threads()
    R.d["versions"] = dict(torch=torch.__version__, cuda=getattr(torch.version, "cuda", None))
    torch.set_default_dtype(torch.float64)

    def clock():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter()

    def reset_peak():
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)

    def peak():
        return int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else None

    return torch, dev, clock, reset_peak, peak


def torch_mlp(torch, act):
    f = {"tanh": torch.tanh, "relu": torch.relu, "gelu": torch.nn.functional.gelu}[act]

    def mlp(ps, x):
        h, L = x, len(ps) // 2
        for i in range(L):
            h = h @ ps[2 * i].T + ps[2 * i + 1]
            if i < L - 1:
                h = f(h)
        return h
    return mlp


def load_inputs(torch, dev, job):
    files, w = job["files"], job["w"]
    X = torch.from_numpy(np.load(files["X.npy"])).to(dev)
    Y = torch.from_numpy(np.load(files["Y.npy"])).to(dev)
    theta = torch.from_numpy(np.load(files["p.npy"])).to(dev)
    ps = tuple(p.contiguous() for p in unflatten(theta, layer_shapes(w)))
    return X, Y, theta, ps


def make_build_g(torch, dev, job):
    """G [n·k, N] (example-major rows) by vmap(jacrev) over chunks of examples, written into a
    preallocated G: peak memory G + one chunk instead of the 2 G of a single vmap + cat."""
    vmap, jacrev, _, _ = func_api()
    w = job["w"]
    k, N = w["k"], bench_cpu.num_params(w)
    jf = vmap(jacrev(torch_mlp(torch, w["act"])), in_dims=(None, 0))
    per_example = k * N * 8
    chunk = max(1, min(w["n"], int(job["chunk_bytes"] // per_example)))

    def build(ps, X):
        n = X.shape[0]
        G = torch.empty(n * k, N, dtype=torch.float64, device=dev)
        for s in range(0, n, chunk):
            J = jf(ps, X[s:s + chunk])          # tuple of [c, k, *shape]
            c, off = J[0].shape[0], 0
            for j in J:
                size = j[0, 0].numel()
                G[s * k:(s + c) * k, off:off + size] = j.reshape(c * k, size)
                off += size
            del J
        return G
    return build, chunk


def repeat_loop(R, keys, job, run_once):
    """Timed repeats of run_once() -> {key: (seconds, parts dict, spectra dict)}; the first always
    runs, a later one only if it would end before the deadline."""
    last = 0.0
    for r in range(job["repeats"]):
        if r > 0 and time.time() + last > job["deadline"]:
            for key in keys:
                R.peer(key)["skipped_repeats"] = job["repeats"] - r
            break
        R.d["running_since"] = time.time()
        R.save()
        t0 = time.perf_counter()
        out = run_once()
        last = time.perf_counter() - t0
        for key, (secs, parts, spectra) in out.items():
            p = R.peer(key)
            p["times"].append(secs)
            for name, v in parts.items():
                p["parts"].setdefault(name, []).append(v)
            p["spectra"] = spectra
            p["status"] = "ok"
        R.d["running_since"] = None
        R.save()


def guarded(R, keys, fn):
    """Runs fn(); an out-of-memory or other exception becomes the status of these peers."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - reported in the row
        status = "oom" if is_oom(e) else "error"
        msg = ("%s: %s" % (type(e).__name__, e)).strip().splitlines()[0][:300]
        for key in keys:
            p = R.peer(key)
            if not p["times"]:
                p["status"], p["message"] = status, msg
            else:
                p["message"] = "later repeat failed: " + msg
        R.d["running_since"] = None
        import traceback
        traceback.print_exc()


def worker_gen(job, R):
    """Probes torch (version, CUDA device), picks the sizes (the dry run's when asked or when torch
    sees no CUDA device) and writes every selected workload's data: bench_cpu.make_data (torch's
    default init, X, Y ~ N(0,1)), and for B the [B, N] stack of checkpoints."""
    try:
        import torch
        try:
            _, _, _, api = func_api()
        except ImportError:
            api = "neither torch.func nor functorch"
        cuda = bool(torch.cuda.is_available())
        R.d.update(torch=torch.__version__, api=api, cuda=cuda, cuda_version=getattr(torch.version, "cuda", None))
        if cuda:
            props = torch.cuda.get_device_properties(0)
            R.d.update(device=props.name, total_memory=int(props.total_memory))
    except ImportError as e:
        cuda = False
        R.d.update(torch=None, message="torch not importable: %s" % e)
    R.d.update(numpy=np.__version__, dry=bool(job["dry"] or not (cuda or job["full"])))
    wls = {k: w for k, w in gpu_workloads(R.d["dry"]).items() if k in job["need"]}
    R.d["workloads"] = wls
    for key, w in wls.items():
        d = os.path.join(job["tmp"], key)
        os.makedirs(d, exist_ok=True)
        if R.d["torch"]:
            files = bench_cpu.make_data(w, job["seed"], d)
        else:  # the same init distribution from numpy's generator
            files = make_data_numpy(w, job["seed"], d)
        if w["kind"] == "batch":
            theta0 = np.load(files["p.npy"])
            rng = np.random.default_rng(job["seed"] + 1)
            P = theta0[None, :] + 0.2 * theta0.std() * rng.standard_normal((w["B"], theta0.size))
            P[0] = theta0
            files["pB.npy"] = os.path.join(d, "pB.npy")
            np.save(files["pB.npy"], np.ascontiguousarray(P, dtype=np.float64))
            files["p1.npy"] = os.path.join(d, "p1_%d.npy")  # single checkpoints (loop fallback)
            for b in range(min(w["B"], LOOP_FALLBACK)):
                np.save(files["p1.npy"] % b, P[b])
        R.d.setdefault("files", {})[key] = files
    R.d["status"] = "ok"


def make_data_numpy(w, seed, outdir):
    rng = np.random.default_rng(seed)
    parts = []
    for s in layer_shapes(w):
        fan_in = s[1] if len(s) == 2 else parts[-1].shape[1]
        parts.append(rng.uniform(-1, 1, size=s) / np.sqrt(fan_in))
    theta = np.concatenate([p.ravel() for p in parts])
    return bench_cpu.write_case_files(w, theta, rng.standard_normal((w["n"], w["d"])),
                                      rng.standard_normal((w["n"], w["k"])), outdir)


def worker_a_eig(job, R):
    """A: G by vmap(jacrev), then G Gᵀ and eigvalsh.  One full warm-up."""
    torch, dev, clock, reset_peak, peak = torch_setup(job, R)
    X, _, _, ps = load_inputs(torch, dev, job)
    build, chunk = make_build_g(torch, dev, job)
    R.d["chunk_examples"] = chunk
    key = "torch-eigvalsh"

    def once():
        reset_peak()
        t0 = clock()
        G = build(ps, X)
        t1 = clock()
        ev = torch.linalg.eigvalsh(G @ G.T).flip(0)
        t2 = clock()
        del G
        R.peer(key)["peak_mem"] = peak()
        return {key: (t2 - t0, dict(build=t1 - t0, solve=t2 - t1), dict(sigma2=ev.cpu().tolist()))}

    def body():
        once()  # warm-up
        repeat_loop(R, [key], job, once)
    guarded(R, [key], body)


def worker_a_svd(job, R):
    """A: G by vmap(jacrev), then torch.linalg.svdvals(G).  Warm-up on the first 8 examples."""
    torch, dev, clock, reset_peak, peak = torch_setup(job, R)
    X, _, _, ps = load_inputs(torch, dev, job)
    build, chunk = make_build_g(torch, dev, job)
    key = "torch-svdvals"

    def once():
        reset_peak()
        t0 = clock()
        G = build(ps, X)
        t1 = clock()
        sv = torch.linalg.svdvals(G)
        t2 = clock()
        del G
        R.peer(key)["peak_mem"] = peak()
        return {key: (t2 - t0, dict(build=t1 - t0, solve=t2 - t1), dict(sigma=sv.cpu().tolist()))}

    def body():
        torch.linalg.svdvals(build(ps, X[:8]))  # warm-up (kernels, handles), small
        repeat_loop(R, [key], job, once)
    guarded(R, [key], body)


def worker_b(job, R):
    """B: per-model Jacobians of all checkpoints (vmap over models of vmap(jacrev)), then batched
    svdvals and batched eigvalsh of the Grams."""
    torch, dev, clock, reset_peak, peak = torch_setup(job, R)
    vmap, jacrev, _, _ = func_api()
    w = job["w"]
    nk = w["n"] * w["k"]
    X = torch.from_numpy(np.load(job["files"]["X.npy"])).to(dev)
    P = torch.from_numpy(np.load(job["files"]["pB.npy"])).to(dev)
    B = P.shape[0]
    stacked = tuple(p.contiguous() for p in unflatten(P, layer_shapes(w)))   # each [B, *shape]
    jf = vmap(jacrev(torch_mlp(torch, w["act"])), in_dims=(None, 0))
    keys = ["torch-svdvals-batched", "torch-eigvalsh-batched"]
    mode = {}

    def jac_all():
        if mode.get("nested", True):
            try:
                J = vmap(lambda ps: jf(ps, X))(stacked)                        # [B, n, k, *shape]
                mode["nested"] = True
                return torch.cat([j.reshape(B, nk, -1) for j in J], dim=2)
            except Exception as e:  # noqa: BLE001
                if is_oom(e):
                    raise
                mode.update(nested=False, why="%s: %s" % (type(e).__name__, str(e).splitlines()[0][:200]))
        G = torch.empty(B, nk, P.shape[1], dtype=torch.float64, device=dev)
        for b in range(B):
            J = jf(tuple(s[b] for s in stacked), X)
            G[b] = torch.cat([j.reshape(nk, -1) for j in J], dim=1)
        return G

    def once():
        reset_peak()
        t0 = clock()
        G = jac_all()
        t1 = clock()
        sv = torch.linalg.svdvals(G)                                   # [B, min(nk, N)]
        t2 = clock()
        ev = torch.linalg.eigvalsh(G @ G.mT).flip(-1)                   # [B, nk]
        t3 = clock()
        del G
        pk = peak()
        R.peer(keys[0])["peak_mem"] = R.peer(keys[1])["peak_mem"] = pk
        return {keys[0]: (t2 - t0, dict(build=t1 - t0, solve=t2 - t1), dict(sigma=sv.cpu().tolist())),
                keys[1]: ((t1 - t0) + (t3 - t2), dict(build=t1 - t0, solve=t3 - t2), dict(sigma2=ev.cpu().tolist()))}

    def body():
        once()  # warm-up
        R.d["jacobian_path"] = "vmap over models of vmap(jacrev)" if mode.get("nested", True) else \
            "loop over models of vmap(jacrev) (nested vmap failed: %s)" % mode.get("why")
        repeat_loop(R, keys, job, once)
    guarded(R, keys, body)


def worker_c(job, R):
    """C: GGN eigenvalues from G (vmap(jacrev)), Hessian by torch.func.hessian, both eigvalsh."""
    torch, dev, clock, reset_peak, peak = torch_setup(job, R)
    _, _, hessian, _ = func_api()
    w = job["w"]
    nk, N = w["n"] * w["k"], bench_cpu.num_params(w)
    X, Y, theta, ps = load_inputs(torch, dev, job)
    build, _ = make_build_g(torch, dev, job)
    mlp, shapes = torch_mlp(torch, w["act"]), layer_shapes(w)
    key = "torch-hessian"

    def loss(th):
        return torch.mean((mlp(unflatten(th, shapes), X) - Y) ** 2)   # MSELoss(reduction='mean')

    def once():
        reset_peak()
        t0 = clock()
        G = build(ps, X)
        c = 2.0 / nk
        ggn = torch.linalg.eigvalsh(c * (G @ G.T if nk <= N else G.T @ G)).flip(0)
        t1 = clock()
        H = hessian(loss)(theta)
        hev = torch.linalg.eigvalsh(H).flip(0)
        t2 = clock()
        del G, H
        R.peer(key)["peak_mem"] = peak()
        return {key: (t2 - t0, dict(ggn=t1 - t0, hessian=t2 - t1),
                      dict(ggn=ggn.cpu().tolist(), hessian=hev.cpu().tolist()))}

    def body():
        once()  # warm-up
        repeat_loop(R, [key], job, once)
    guarded(R, [key], body)


def worker_jax(job, R):
    """D: JAX on workload A: jit(vmap(jacrev)) → Σ_l J_l J_lᵀ (= G Gᵀ without concatenating G),
    then jnp.linalg.eigvalsh; x64; warm-up (compilation) excluded."""
    key = "jax-eigvalsh"
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax
        import jax.numpy as jnp
    except Exception as e:  # noqa: BLE001
        R.peer(key).update(status="skipped", message="JAX not importable (%s)" % type(e).__name__)
        return
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    R.d["versions"] = dict(jax=jax.__version__)
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if job["device"] == "cuda":
        if not gpus:
            R.peer(key).update(status="skipped", message="JAX sees no GPU (backend %s)" % jax.default_backend())
            return
        dev = gpus[0]
    else:
        dev = jax.devices("cpu")[0]
    R.d["device"] = getattr(dev, "device_kind", str(dev))
    w = job["w"]
    nk = w["n"] * w["k"]
    act = {"tanh": jnp.tanh, "relu": jax.nn.relu, "gelu": lambda z: jax.nn.gelu(z, approximate=False)}[w["act"]]
    theta = np.load(job["files"]["p.npy"])
    ps = tuple(jax.device_put(np.ascontiguousarray(p), dev) for p in unflatten(theta, layer_shapes(w)))
    X = jax.device_put(np.load(job["files"]["X.npy"]), dev)

    def f(ps, x):
        h, L = x, len(ps) // 2
        for i in range(L):
            h = h @ ps[2 * i].T + ps[2 * i + 1]
            if i < L - 1:
                h = act(h)
        return h

    @jax.jit
    def gram(ps, X):
        J = jax.vmap(jax.jacrev(f), in_dims=(None, 0))(ps, X)          # tuple of [n, k, *shape]
        out = None
        for j in J:
            jm = j.reshape(nk, -1)
            out = jm @ jm.T if out is None else out + jm @ jm.T
        return out

    eig = jax.jit(lambda A: jnp.linalg.eigvalsh(A)[::-1])

    def once():
        t0 = time.perf_counter()
        A = gram(ps, X).block_until_ready()
        t1 = time.perf_counter()
        ev = eig(A).block_until_ready()
        t2 = time.perf_counter()
        del A
        return {key: (t2 - t0, dict(build=t1 - t0, solve=t2 - t1), dict(sigma2=np.asarray(ev).tolist()))}

    def body():
        once()  # warm-up: compilation
        repeat_loop(R, [key], job, once)
    guarded(R, [key], body)


WORKERS = dict(gen=worker_gen, a_eig=worker_a_eig, a_svd=worker_a_svd,
               b=worker_b, c=worker_c, jax=worker_jax)


def worker_main(job_path):
    with open(job_path) as f:
        job = json.load(f)
    R = Result(job["result"])
    R.save()
    WORKERS[job["kind"]](job, R)
    if R.d["status"] == "running":
        R.d["status"] = "ok"
    R.save()


# --------------------------------------------------------------------------- rows
SHARES = dict(A=0.2, B=0.2, C=0.12, D=0.2)   # soft share of --budget-s for each peer's repeats; A's svdvals gets the rest


def fmt_s(x):
    return "%.3f" % x if x < 100 else "%.0f" % x


def fmt_ratio(x, prefix=""):
    return prefix + (("%.1f×" if x >= 1 else "%.2g×") % x)


def tail_line(s):
    lines = [ln for ln in s.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no result"


def peer_cell(res, key, basin_s, basin_engine_s, count_scale, gsize):
    """(peer s cell, ratio cell, engine-ratio cell, seconds (median, or the lower bound when stopped) or None,
    status: ok | stopped | oom | skipped | error)."""
    p = res.get("peers", {}).get(key)
    if p and p["times"]:
        t = statistics.median(p["times"]) * count_scale
        extra = " (%d of %d repeats: budget)" % (len(p["times"]), len(p["times"]) + p["skipped_repeats"]) \
            if p["skipped_repeats"] else " (%d repeat(s), then stopped: budget)" % len(p["times"]) if res.get("stopped") \
            else ""
        return fmt_s(t) + extra, fmt_ratio(t / basin_s), fmt_ratio(t / basin_engine_s), t, "ok"
    if res.get("stopped"):
        since = res.get("running_since")
        if not since:   # stopped before its first timed run began: no bound on one run
            return "stopped (budget) after %.0f s, before its first timed run" % res["wall"], "—", "—", None, "stopped"
        lower = (res["stopped_at"] - since) * count_scale
        return ("> %.0f (stopped: budget)" % lower, fmt_ratio(lower / basin_s, "≥ "),
                fmt_ratio(lower / basin_engine_s, "≥ "), lower, "stopped")
    if p and p["status"] in ("oom", "skipped", "error"):
        if p["status"] == "oom":
            return "out of memory (G is %s; see details)" % gsize, "—", "—", None, "oom"
        cell = "%s: %s" % (p["status"], p["message"])
        return (cell if len(cell) <= 90 else cell[:87] + "..."), "—", "—", None, p["status"]
    if res.get("status") == "skipped":
        return "skipped: %s" % res.get("message", ""), "—", "—", None, "skipped"
    cell = "error: %s" % (res.get("message") or tail_line(res.get("stderr", "")))
    return (cell if len(cell) <= 90 else cell[:87] + "..."), "—", "—", None, "error"


def agreement(key, objs, spectra, skind):
    """Worst max|Δ|/max over the compared spectra (see the module docstring)."""
    if key == "C":
        o = objs[0]
        return max(spectrum_diff(o["ggn"]["eigenvalues"], spectra["ggn"]),
                   spectrum_diff(o["hessian"]["eigenvalues"], spectra["hessian"]))
    peer = spectra[skind] if key == "B" else [spectra[skind]]
    worst = 0.0
    for o, s in zip(objs, peer):
        sb = np.asarray(o["jacobian"]["singular_values"])
        if skind == "sigma2":   # the peer computed σ² (eigenvalues of the Gram)
            worst = max(worst, spectrum_diff(sb * sb, s))
        else:
            worst = max(worst, spectrum_diff(sb, s, square=True))
    return worst


def run_basin_loop(basin, w, files, device, budget, tmp):
    """Fallback for B: one process per checkpoint over the first LOOP_FALLBACK (+1 warm-up)."""
    m = min(w["B"], LOOP_FALLBACK)
    walls, objs, cmd = [], [], None
    for b in range(-1, m):
        cmd = basin_cmd(basin, w, files, device, files["p1.npy"] % max(b, 0))
        r = run_basin(cmd, 1, 1, budget, tmp, warmup=False)
        if not r["ok"]:
            return r
        if b >= 0:
            walls += r["walls"]
            objs += r["objs"]
    total = {}
    for o in objs:
        for key, v in o.get("timings_ms", {}).items():
            total[key] = total.get(key, 0.0) + float(v)
    # one "repeat": the whole loop
    return dict(ok=True, walls=[sum(walls)], proc_walls=walls, timings=[total], objs=objs, count=m, cmd=cmd)


def machine_info(gen):
    info = dict(host=socket.gethostname(), nproc=os.cpu_count(), python=platform.python_version())
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    info["cpu"] = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout
            info["nvidia_smi"] = q.strip().splitlines()[0] if q.strip() else None
        except (OSError, subprocess.SubprocessError):
            pass
    info.update({k: gen.get(k) for k in ("torch", "api", "cuda_version", "device", "total_memory", "numpy")})
    return info


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--basin", default=DEFAULT_BASIN, help="basin binary (default $BASIN_CLI or build/bin/basin)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None,
                    help="device of Basin and the peers (default cuda when torch sees one, else cpu + --dry-run)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes (default device cpu): checks the pipeline, < 60 s")
    ap.add_argument("--full-size", action="store_true",
                    help="the GPU sizes even where torch sees no CUDA device (to check B, C on a CPU; A needs 24 GB)")
    ap.add_argument("--only", default="A,B,C,D", help="subset of A,B,C,D (default all)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each program (median; default 3)")
    ap.add_argument("--budget-s", type=float, default=300.0,
                    help="time budget of the whole bench (default 300): peers skip repeats beyond their share, "
                         "a peer still running %d s after it is stopped" % GRACE_S)
    ap.add_argument("--no-svd-peer", action="store_true", help="skip torch.linalg.svdvals on A (the slowest call)")
    ap.add_argument("--markdown", action="store_true", help="markdown for bench/RESULTS.md, with date and machine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args.worker)
        return 0
    if args.repeats < 1:
        ap.error("--repeats must be ≥ 1")
    only = {x.strip().upper() for x in args.only.split(",") if x.strip()}
    if not only or not only <= set("ABCD"):
        ap.error("--only takes letters from A,B,C,D")
    if not os.path.exists(args.basin):
        print("basin binary not found at %s (build it: cmake --build build --target basin)" % args.basin,
              file=sys.stderr)
        return 2
    budget = Budget(args.budget_s)
    started = datetime.datetime.now(datetime.timezone.utc)
    tmp = tempfile.mkdtemp(prefix="basin-bench-gpu-")
    log = lambda *a: print("#", *a, file=sys.stderr, flush=True)  # noqa: E731
    try:
        need = {k for k in "ABC" if k in only} | ({"A"} if "D" in only else set())
        gen = run_worker("gen", dict(dry=args.dry_run, full=args.full_size, need=sorted(need), seed=args.seed, tmp=tmp),
                         tmp, timeout=600)
        if gen.get("status") != "ok":
            print("probe / data generation failed:\n%s" % (gen.get("message") or gen.get("stderr")), file=sys.stderr)
            return 2
        cuda, dry, torch_ok = bool(gen.get("cuda")), bool(gen["dry"]), bool(gen.get("torch"))
        device = args.device or ("cuda" if cuda and not args.dry_run else "cpu")
        if device == "cpu" and not dry and "A" in need:
            print("the full-size A on a CPU would build a 24 GB G in PyTorch: use --only B,C with --full-size "
                  "(or --dry-run)", file=sys.stderr)
            return 2
        if device == "cuda" and not cuda:
            print("--device cuda, but torch (%s) sees no CUDA device" % gen.get("torch"), file=sys.stderr)
            return 2
        if dry and not args.dry_run and torch_ok:
            log("torch %s sees no CUDA device: dry run (tiny sizes, --device %s)" % (gen.get("torch"), device))
        if not torch_ok:
            log("%s: no PyTorch peers" % gen.get("message"))
        wls, files = gen["workloads"], gen["files"]
        info, minfo = bench_cpu.binary_info(args.basin), machine_info(gen)
        # A private copy (the shared build tree may be relinked while we run), with the CUDA module.
        basin = os.path.join(tmp, "basin")
        shutil.copy2(args.basin, basin)
        mod = os.path.join(os.path.dirname(os.path.abspath(args.basin)), "libbasin_cuda.so")
        if os.path.exists(mod):
            shutil.copy2(mod, os.path.join(tmp, "libbasin_cuda.so"))
        vout, verr = os.path.join(tmp, "v.out"), os.path.join(tmp, "v.err")
        vrc, vwall = run_proc([basin, "--version"], vout, verr, env=basin_env(), timeout=60)
        version = tail(vout, 1) if vrc == 0 else "(--version failed: %s)" % tail(verr, 1)

        def job_for(key, share):
            w = wls["A" if key == "D" else key]
            return dict(w=w, files=files["A" if key == "D" else key], device=device, repeats=args.repeats,
                        deadline=min(budget.deadline, time.time() + share * args.budget_s),
                        chunk_bytes=g_bytes(w) / 3 if dry else 2 ** 31)   # the dry run builds G in 3 chunks

        failed, basin_res, peer_res = [], {}, {}
        for key in ("A", "B", "C"):
            if key not in wls:
                continue
            w = wls[key]
            N, nk = bench_cpu.num_params(w), w["n"] * w["k"]
            log("%s: MLP %s, N=%s, n=%d, k=%d, n·k=%s%s — basin --device %s ..." % (
                w["name"], bench_cpu.arch_str(w), "{:,}".format(N), w["n"], w["k"], "{:,}".format(nk),
                ", %d parameter vectors" % w["B"] if key == "B" else "", device))
            if key == "B":
                b = run_basin(basin_cmd(basin, w, files[key], device, files[key]["pB.npy"]), w["B"],
                              args.repeats, budget, tmp)
                b.update(batched=True, count=w["B"])
                if not b["ok"]:
                    why = b["error"]
                    log("batched --params [%d, %d] failed (%s); timing a loop of %d single-vector processes instead"
                        % (w["B"], N, why.splitlines()[0], min(w["B"], LOOP_FALLBACK)))
                    b = run_basin_loop(basin, w, files[key], device, budget, tmp)
                    b.update(batched=False, why=why)
                    if "expected a 1-D vector" not in why:   # not "unsupported" but broken
                        failed.append("%s: batched --params failed: %s" % (w["name"], why.splitlines()[0]))
            else:
                b = run_basin(basin_cmd(basin, w, files[key], device, files[key]["p.npy"]), 1, args.repeats, budget, tmp)
            if not b["ok"]:
                failed.append("%s: basin %s" % (w["name"], b["error"].splitlines()[0]))
                log("  basin FAILED: %s" % b["error"])
            basin_res[key] = b
            if key in only and torch_ok:
                log("%s: PyTorch (%s) on %s ..." % (w["name"], gen.get("api"), device))
                peer_res[key] = run_worker(dict(A="a_eig", B="b", C="c")[key], job_for(key, SHARES[key]), tmp,
                                           timeout=max(60, budget.left() + GRACE_S))
        if "D" in only:
            log("%s: JAX ..." % wls["A"]["name"])
            peer_res["D"] = run_worker("jax", job_for("D", SHARES["D"]), tmp, timeout=max(60, budget.left() + GRACE_S))
        if "A" in only and torch_ok and not args.no_svd_peer:
            left = budget.left()
            if left < 20:
                peer_res["Asvd"] = dict(status="skipped", message="no budget left (--budget-s %.0f)" % args.budget_s)
            else:
                log("%s: PyTorch svdvals, with the %.0f s of budget left ..." % (wls["A"]["name"], left))
                peer_res["Asvd"] = run_worker("a_svd", job_for("A", 1.0), tmp, timeout=left + GRACE_S)
        info_end = bench_cpu.binary_info(args.basin)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows, details, targets = build_rows(args, only, wls, basin_res, peer_res, torch_ok, failed)
    finished = datetime.datetime.now(datetime.timezone.utc)
    hdr = ["workload", "N", "n·k", "Basin method", "Basin s (process, median)", "forward ms", "jacobian ms",
           "solve ms", "hessian ms", "peer", "peer s (median)", "peer/Basin (process)", "peer/Basin (engine)",
           "spectra/s: Basin process · engine / peer", "agree (max abs Δ / max)", "device (Basin / peer)"]
    if args.markdown:
        print("### %s — %s–%s UTC%s" % ("GPU run" if device == "cuda" else "CPU run", started.strftime("%Y-%m-%d %H:%M"),
                                      finished.strftime("%H:%M"), " (DRY RUN: tiny sizes, not a benchmark)" if dry else ""))
        print()
    bullet = "* " if args.markdown else ""
    m = minfo
    gpu = ("GPU %s (%.0f GiB; nvidia-smi: %s); " % (m["device"], m["total_memory"] / 2 ** 30, m.get("nvidia_smi") or "n/a")
           if m.get("device") else "no GPU; ")
    print("%sMachine: %shost %s, %s CPUs (%s); Python %s, numpy %s, torch %s (CUDA %s, %s)." % (
        bullet, gpu, m["host"], m["nproc"], m.get("cpu", "?"), m["python"], m.get("numpy"), m.get("torch"),
        m.get("cuda_version"), m.get("api")))
    print("%sBasin: %s (sha256 %s…, built %s; `--version`: %s, %.3f s); Basin --device %s, peers on %s." % (
        bullet, args.basin, info["sha"], info["mtime"], version, vwall, device, device))
    if info_end["sha"] != info["sha"]:
        print("%sNote: %s was rebuilt during this run (now sha256 %s…); the run used a copy of the build above."
              % (bullet, args.basin, info_end["sha"]))
    print("%sCommand: `%s %s` — %d repeats (+1 warm-up each, excluded), budget %.0f s, total %.0f s%s." % (
        bullet, os.path.basename(sys.executable), " ".join([os.path.relpath(os.path.abspath(__file__))] + sys.argv[1:]),
        args.repeats, args.budget_s, time.time() - budget.start, "; DRY RUN (tiny sizes)" if dry else ""))
    print("%sBasin s = wall of the whole process; forward/jacobian/solve/hessian = its timings_ms (median; B: summed "
          "over the B objects); peer s = the computation only, synchronized; agree = max|Δ|/max of σ² (Jacobian) or "
          "of the eigenvalues (GGN, Hessian), ≤ %.0e required." % (bullet, AGREE_TOL))
    print()
    cells = [r for r in rows]
    if args.markdown:
        print("| " + " | ".join(hdr) + " |")
        print("|" + "|".join("---" for _ in hdr) + "|")
        for c in cells:
            print("| " + " | ".join(x.replace("|", "\\|") for x in c) + " |")
    else:
        widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(hdr)]
        print("  ".join(h.ljust(wd) for h, wd in zip(hdr, widths)).rstrip())
        for c in cells:
            print("  ".join(x.ljust(wd) for x, wd in zip(c, widths)).rstrip())
    print()
    print("Targets (from the issue)%s:" % (" — dry run, sizes tiny: not meaningful" if dry else ""))
    for t in targets:
        print("%s%s" % ("* " if args.markdown else "  ", t))
    print()
    print("Per-workload details (every repeat, seconds):")
    for d in details:
        for ln in d:
            print(ln)
    if failed:
        print("\nFAILED:\n  " + "\n  ".join(failed))
    return 1 if failed else 0


def build_rows(args, only, wls, basin_res, peer_res, torch_ok, failed):
    rows, details, targets = [], [], []
    for key in ("A", "B", "C"):
        if key not in basin_res or (key not in only and not (key == "A" and "D" in only)):
            continue
        w, b = wls[key], basin_res[key]
        N, nk = bench_cpu.num_params(w), w["n"] * w["k"]
        head = [w["name"], "{:,}".format(N), "{:,}".format(nk)]
        if not b["ok"]:
            rows.append(head + ["—", "FAILED: " + b["error"].splitlines()[0][:100]] + ["—"] * 11)
            details.append(["- %s: basin failed: `%s`\n  %s" % (w["name"], " ".join(b["cmd"]), b["error"])])
            continue
        per_key, eng_ms = engine_median(b)
        objs, o0 = b["objs"], b["objs"][0]
        bdev = o0.get("device", "?")
        jm = o0["jacobian"]["method"] + (" (refined from %s)" % o0["jacobian"]["refined_from"]
                                         if o0["jacobian"].get("refined_from") else "")
        basin_s, eng_s, scale = statistics.median(b["walls"]), eng_ms / 1000.0, 1.0
        if key == "B":
            method = "%s ×%d, %s" % (jm, b["count"], "one process" if b["batched"] else
                                     "loop of %d processes (no batched --params)" % b["count"])
            scale = b["count"] / w["B"]        # peers' times scaled to the same number of spectra
        elif key == "C":
            method = "ggn+hessian (jacobian: %s)" % jm
        else:
            method = jm
        peers = []
        if key == "A":
            if "A" in only:
                if not args.no_svd_peer:
                    peers.append(("PyTorch svdvals(G)", peer_res.get("Asvd", {}), "torch-svdvals", "sigma", False))
                peers.append(("PyTorch G Gᵀ + eigvalsh", peer_res.get("A", {}), "torch-eigvalsh", "sigma2", True))
            if "D" in only:
                peers.append(("JAX Σ J Jᵀ + eigvalsh", peer_res.get("D", {}), "jax-eigvalsh", "sigma2", False))
        elif key == "B":
            peers.append(("PyTorch batched svdvals", peer_res.get("B", {}), "torch-svdvals-batched", "sigma", True))
            peers.append(("PyTorch batched Gram eigvalsh", peer_res.get("B", {}), "torch-eigvalsh-batched", "sigma2", True))
        else:
            peers.append(("PyTorch func.hessian + eigvalsh", peer_res.get("C", {}), "torch-hessian", None, True))
        if not torch_ok:
            peers = [(lb, dict(status="skipped", message="torch not importable") if pk.startswith("torch") else r, pk, sk, rq)
                     for lb, r, pk, sk, rq in peers]
        engine_cols = ["%.1f" % per_key[k] if per_key.get(k) else "—" for k in ("forward", "jacobian", "solve", "hessian")]
        for label, res, pkey, skind, required in peers:
            pcell, ratio, eratio, pt, pstatus = peer_cell(res, pkey, basin_s, eng_s, scale,
                                                          bench_cpu.fmt_bytes(g_bytes(w) * w.get("B", 1)))
            agree, ok = None, True
            if pstatus == "ok":
                agree = agreement(key, objs, res["peers"][pkey]["spectra"], skind)
                ok = agree <= AGREE_TOL
                if not ok:
                    failed.append("%s vs %s: DISAGREE (%.1e)" % (w["name"], label, agree))
            if required and pstatus == "error":
                failed.append("%s: %s: %s" % (w["name"], label, pcell))
            thr = "—"
            if key == "B":
                thr = "%.0f · %.0f / %s" % (b["count"] / basin_s, b["count"] / eng_s if eng_s > 0 else float("nan"),
                                            "%.0f" % (b["count"] / pt) if pstatus == "ok" else "—")
            agree_cell = "—" if agree is None else ("OK (%.1e)" if ok else "DISAGREE (%.1e)") % agree
            rows.append(head + [method, fmt_s(basin_s)] + engine_cols + [
                label, pcell, ratio, eratio, thr, agree_cell, "%s / %s" % (bdev, res.get("device", "—"))])
            if key == "A" and pkey == "torch-svdvals" and pstatus in ("ok", "stopped"):
                verdict = "met" if pt and pt / basin_s >= 20 else "not met" if pstatus == "ok" else \
                    "not shown (stopped before 20× the Basin time)"
                targets.append("A, whole request ≥ 20× faster than PyTorch svdvals: %s (process), %s (engine) — %s"
                               % (ratio, eratio, verdict))
        if key == "A":
            jac = per_key.get("forward", 0.0) + per_key.get("jacobian", 0.0)
            sol = per_key.get("solve", float("nan"))
            targets.append("A, Jacobian + Gram well under the eigen-solve: forward + jacobian %.1f ms vs solve %.1f ms "
                           "(%.2f of it)" % (jac, sol, jac / sol if sol else float("nan")))
        if key == "B":
            targets.append("B, ≥ 1,000 spectra/s: %.0f (whole process), %.0f (engine, Σ timings_ms)%s — %s" % (
                b["count"] / basin_s, b["count"] / eng_s if eng_s > 0 else float("nan"),
                "" if b["batched"] else " from a loop of %d processes: batched --params unavailable" % b["count"],
                "met" if b["count"] / basin_s >= 1000 else "not met"))
        details.append(detail_lines(key, w, b, per_key, eng_ms, peers))
    return rows, details, targets


def detail_lines(key, w, b, per_key, eng_ms, peers):
    r3 = lambda xs: [round(x, 3) for x in xs]  # noqa: E731
    out = ["- %s: MLP %s, N=%s, n=%d, k=%d%s; G is %s" % (
        w["name"], bench_cpu.arch_str(w), "{:,}".format(bench_cpu.num_params(w)), w["n"], w["k"],
        ", %d parameter vectors" % w["B"] if key == "B" else "", bench_cpu.fmt_bytes(g_bytes(w) * w.get("B", 1)))]
    if key == "B" and not b["batched"]:
        out.append("  Basin: batched --params failed (%s); timed instead: one process per checkpoint, %d of %d, "
                   "process walls %s" % (b["why"].splitlines()[0][:200], b["count"], w["B"], r3(b["proc_walls"])))
    out.append("  Basin: wall %s; engine timings_ms (median%s) %s, sum %.1f ms" % (
        r3(b["walls"]), " of the sums over the objects" if key == "B" else "",
        {k: round(v, 1) for k, v in per_key.items()}, eng_ms))
    out.append("    `%s`" % " ".join(os.path.basename(x) if os.sep in x else x for x in b["cmd"]))
    seen = set()
    for label, res, pkey, _, _ in peers:
        p = res.get("peers", {}).get(pkey)
        if p and p["times"]:
            parts = ", ".join("%s %s" % (k, r3(v)) for k, v in p["parts"].items())
            mem = "; peak GPU memory %s" % bench_cpu.fmt_bytes(p["peak_mem"]) if p.get("peak_mem") else ""
            skipped = "; %d repeat(s) skipped (budget)" % p["skipped_repeats"] if p["skipped_repeats"] else ""
            note = " — " + p["message"] if p.get("message") else ""
            out.append("  %s: wall %s (%s)%s%s%s" % (label, r3(p["times"]), parts, mem, skipped, note))
        else:
            msg = "stopped at the budget after %.0f s" % res["wall"] if res.get("stopped") else \
                ((p or {}).get("message") or res.get("message") or tail_line(res.get("stderr", "")))
            out.append("  %s: %s" % (label, msg))
        if id(res) not in seen:
            seen.add(id(res))
            extras = []
            if res.get("jacobian_path"):
                extras.append("Jacobians: " + res["jacobian_path"])
            if res.get("chunk_examples"):
                extras.append("G built in chunks of %d examples" % res["chunk_examples"])
            if res.get("versions"):
                extras.append(", ".join("%s %s" % kv for kv in res["versions"].items() if kv[1]))
            if extras:
                out.append("    " + "; ".join(extras))
    return out


if __name__ == "__main__":
    sys.exit(main())
