#!/usr/bin/python3
"""Basin vs PyTorch on the CPU: the same workloads, side by side, in one run.

Basin:   `basin analyze --local --device cpu ... --json`, one fresh process per repeat.
         Time = wall-clock of the whole process (start-up, .npy reading and JSON
         printing included); the engine's own timings_ms are recorded as well.
PyTorch: float64, torch.set_num_threads(2), functorch make_functional + vmap(jacrev)
         to build G, then torch.linalg.svdvals (or, for the Hessian workload,
         torch.autograd.functional.hessian + torch.linalg.eigvalsh).  Runs in its own
         subprocess (one per workload, all repeats in it); time = the computation
         only (torch import and file reading excluded).
Peak RSS of each child: GNU /usr/bin/time %M (ru_maxrss of exactly that process).

Usage:  /usr/bin/python3 bench/bench_cpu.py [--repeats 3] [--quick] [--markdown]
"""
import argparse
import datetime
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BASIN = os.path.join(os.path.dirname(HERE), "build", "bin", "basin")

# Agreement threshold on the compared spectra (relative).  Anything above this means
# the two programs did not compute the same thing and the timing is meaningless.
AGREE_TOL = 1e-6


# --------------------------------------------------------------------------- workloads
def workloads(quick):
    """name, input_dim, hidden widths, k outputs, n examples, activation, kind."""
    if quick:
        return [
            dict(name="a-target(quick)", d=16, hidden=[32, 32], k=4, n=20, act="tanh", kind="svd"),
            dict(name="b-small(quick)", d=8, hidden=[16, 16], k=3, n=10, act="tanh", kind="svd"),
            dict(name="c-tall(quick)", d=4, hidden=[8], k=3, n=100, act="tanh", kind="svd"),
            dict(name="d-ggn+hessian(quick)", d=4, hidden=[8, 8], k=2, n=10, act="tanh", kind="hessian"),
        ]
    return [
        # (a) the target: N = 101,386 parameters, n*k = 200*10 = 2000
        dict(name="a-target", d=128, hidden=[256, 256], k=10, n=200, act="tanh", kind="svd"),
        # (b) smaller: N = 10,058, n*k = 50*10 = 500
        dict(name="b-small", d=16, hidden=[64, 64, 64], k=10, n=50, act="tanh", kind="svd"),
        # (c) tall, n*k > N: N = 1,930, n*k = 800*10 = 8000 (method normal)
        dict(name="c-tall", d=16, hidden=[32, 32], k=10, n=800, act="tanh", kind="svd"),
        # (d) GGN + full Hessian, MSE, N = 1,032, n*k = 50*4 = 200
        dict(name="d-ggn+hessian", d=8, hidden=[32, 20], k=4, n=50, act="tanh", kind="hessian"),
    ]


def num_params(w):
    dims = [w["d"]] + w["hidden"] + [w["k"]]
    return sum(dims[i] * dims[i + 1] + dims[i + 1] for i in range(len(dims) - 1))


def arch_str(w):
    return "-".join(str(x) for x in [w["d"]] + w["hidden"] + [w["k"]]) + " " + w["act"]


def build_torch_model(w):
    import torch
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "gelu": torch.nn.GELU}[w["act"]]
    dims = [w["d"]] + w["hidden"] + [w["k"]]
    layers = []
    for i in range(len(dims) - 1):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(act())
    return torch.nn.Sequential(*layers).double()


def make_data(w, seed, outdir):
    """Writes spec.json, p.npy (torch default nn.Linear init), X.npy, Y.npy."""
    import torch
    torch.manual_seed(seed)
    model = build_torch_model(w)
    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy()
    assert theta.size == num_params(w)
    rng = np.random.default_rng(seed)
    return write_case_files(w, theta, rng.standard_normal((w["n"], w["d"])), rng.standard_normal((w["n"], w["k"])),
                            outdir)


def write_case_files(w, theta, X, Y, outdir):
    """Writes the workload's spec.json and p.npy, X.npy, Y.npy (float64); returns their paths."""
    layers = []
    for i, h in enumerate(w["hidden"] + [w["k"]]):
        layers.append({"type": "dense", "out": h, "bias": True})
        if i < len(w["hidden"]):
            layers.append({"type": w["act"]})
    files = {k: os.path.join(outdir, k) for k in ("spec.json", "p.npy", "X.npy", "Y.npy")}
    with open(files["spec.json"], "w") as f:
        json.dump({"input_dim": w["d"], "layers": layers}, f)
    np.save(files["p.npy"], np.asarray(theta, dtype=np.float64))
    np.save(files["X.npy"], X)
    np.save(files["Y.npy"], Y)
    return files


# --------------------------------------------------------------------------- child runs
def run_child(cmd, stdout_path, stderr_path):
    """Runs cmd; returns (exit code, wall s, CPU s (user+sys), peak RSS bytes) of exactly that process.

    The child is started through /usr/bin/time (GNU time, a tiny process): Linux keeps a
    process's RSS high-water mark across exec, so a child forked directly from this
    Python process would inherit this process's own RSS into its ru_maxrss.  GNU time's
    %M is the ru_maxrss (KiB) of its child, which was forked from a small process."""
    rss_path = stdout_path + ".rss"
    use_time = os.path.exists("/usr/bin/time")
    full = (["/usr/bin/time", "-f", "%M %U %S", "-o", rss_path] + cmd) if use_time else cmd
    with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=so, stderr=se)
        _, status, ru = os.wait4(p.pid, 0)
        t1 = time.perf_counter()
        p.returncode = os.waitstatus_to_exitcode(status)
    peak_kib = ru.ru_maxrss  # fallback: may include this process's RSS (see above)
    cpu = ru.ru_utime + ru.ru_stime
    if use_time:
        with open(rss_path) as f:
            last = f.read().strip().splitlines()[-1].split()
        peak_kib, cpu = int(last[0]), float(last[1]) + float(last[2])
    return p.returncode, t1 - t0, cpu, peak_kib * 1024


def binary_info(basin):
    """Identity of the basin binary: the shared build tree can be rebuilt while we run."""
    with open(basin, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()[:16]
    mtime = datetime.datetime.fromtimestamp(os.path.getmtime(basin), datetime.timezone.utc)
    try:
        ldd = subprocess.run(["ldd", basin], capture_output=True, text=True, timeout=60).stdout
        cuda_libs = sorted({ln.split()[0] for ln in ldd.splitlines()
                            if any(x in ln for x in ("libcuda", "libcublas", "libcusolver", "libcusparse",
                                                     "libnvJitLink"))})
    except (OSError, subprocess.SubprocessError):
        cuda_libs = []
    return dict(sha=sha, mtime=mtime.strftime("%Y-%m-%d %H:%M:%S UTC"), cuda_libs=cuda_libs)


def run_startup(basin, repeats, tmp):
    """Fixed cost of one basin process (`basin --version`: dynamic loading + static init)."""
    walls, cpus, rss = [], [], []
    for _ in range(repeats):
        rc, wall, cpu, peak = run_child([basin, "--version"], os.path.join(tmp, "v.out"), os.path.join(tmp, "v.err"))
        walls.append(wall)
        cpus.append(cpu)
        rss.append(peak)
    with open(os.path.join(tmp, "v.out")) as f:
        version = f.read().strip()
    return statistics.median(walls), statistics.median(cpus), max(rss), version


def run_basin(basin, w, files, repeats, tmp):
    cmd = [basin, "analyze", "--local", "--device", "cpu", "--model", files["spec.json"],
           "--params", files["p.npy"], "--inputs", files["X.npy"], "--json"]
    if w["kind"] == "svd":
        cmd += ["--loss", "none", "--want", "jacobian"]
    else:
        cmd += ["--targets", files["Y.npy"], "--loss", "mse", "--want", "ggn,hessian"]
    walls, cpus, rss, timings, out = [], [], [], [], None
    for _ in range(repeats):
        so, se = os.path.join(tmp, "basin.out"), os.path.join(tmp, "basin.err")
        rc, wall, cpu, peak = run_child(cmd, so, se)
        if rc != 0:
            raise RuntimeError("basin failed (%d): %s\n%s" % (rc, " ".join(cmd), open(se).read()))
        with open(so) as f:
            out = json.load(f)
        walls.append(wall)
        cpus.append(cpu)
        rss.append(peak)
        timings.append(out.get("timings_ms", {}))
    return dict(cmd=cmd, walls=walls, cpus=cpus, rss=max(rss), timings=timings, out=out)


def run_torch(w, seed, repeats, tmp):
    """The PyTorch side in its own process; it also writes the workload's data files (so this
    process never imports torch).  Returns its results and the data files."""
    files = {k: os.path.join(tmp, k) for k in ("spec.json", "p.npy", "X.npy", "Y.npy")}
    job = dict(w=w, seed=seed, files=files, repeats=repeats, result=os.path.join(tmp, "torch_result.npz"))
    job_path = os.path.join(tmp, "torch_job.json")
    with open(job_path, "w") as f:
        json.dump(job, f)
    so, se = os.path.join(tmp, "torch.out"), os.path.join(tmp, "torch.err")
    rc, _, _, peak = run_child([sys.executable, os.path.abspath(__file__), "--torch-worker", job_path], so, se)
    if rc != 0:
        raise RuntimeError("torch worker failed (%d):\n%s" % (rc, open(se).read()))
    r = dict(np.load(job["result"]))
    r["rss"] = peak
    return r, files


def torch_worker(job_path):
    """Runs in its own process: the PyTorch reference, timed, repeated."""
    with open(job_path) as f:
        job = json.load(f)
    w, repeats = job["w"], job["repeats"]
    files = make_data(w, job["seed"], os.path.dirname(job["files"]["p.npy"]))
    import torch
    from functorch import make_functional, vmap, jacrev
    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float64)
    X = torch.from_numpy(np.load(files["X.npy"]))
    Y = torch.from_numpy(np.load(files["Y.npy"]))
    theta = torch.from_numpy(np.load(files["p.npy"]))
    n, k = w["n"], w["k"]

    def setup():
        model = build_torch_model(w)
        torch.nn.utils.vector_to_parameters(theta.clone(), model.parameters())
        fmodel, params = make_functional(model)
        params = tuple(p.detach() for p in params)
        return fmodel, params

    def jacobian(fmodel, params):
        def f(ps, x):
            return fmodel(ps, x.unsqueeze(0)).squeeze(0)
        J = vmap(jacrev(f), in_dims=(None, 0))(params, X)       # each [n, k, *p.shape]
        return torch.cat([j.reshape(n * k, -1) for j in J], dim=1)  # [(n k), N], example-major

    times, cpu_times, jac_times, res = [], [], [], {}
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fmodel, params = setup()
        if w["kind"] == "svd":
            G = jacobian(fmodel, params)
            jac_times.append(time.perf_counter() - t0)
            sv = torch.linalg.svdvals(G)
            res = dict(sv=sv.numpy())
            del G
        else:
            G = jacobian(fmodel, params)
            jac_times.append(time.perf_counter() - t0)
            c = 2.0 / (n * k)  # MSELoss(reduction='mean')
            ggn = torch.linalg.eigvalsh(c * (G @ G.T)).flip(0)  # non-zero eigs of c GᵀG (small side)
            shapes = [p.shape for p in params]
            sizes = [p.numel() for p in params]

            def loss(th):
                ps = tuple(t.reshape(s) for t, s in zip(torch.split(th, sizes), shapes))
                return torch.nn.functional.mse_loss(fmodel(ps, X), Y)
            H = torch.autograd.functional.hessian(loss, theta.clone())
            hev = torch.linalg.eigvalsh(H).flip(0)
            res = dict(ggn=ggn.numpy(), hess=hev.numpy())
            del G, H
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    np.savez(job["result"], times=np.array(times), cpu_times=np.array(cpu_times),
             jac_times=np.array(jac_times), **res)


# --------------------------------------------------------------------------- comparison
def rel_diff_top(a, b, frac=0.9):
    a, b = np.sort(np.asarray(a))[::-1], np.sort(np.asarray(b))[::-1]
    m = min(a.size, b.size)
    t = max(1, int(m * frac))
    a, b = a[:t], b[:t]
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)))


def agreement(w, basin_out, tr):
    if w["kind"] == "svd":
        return rel_diff_top(basin_out["jacobian"]["singular_values"], tr["sv"])
    # GGN: top 90% relative; Hessian (indefinite): max |dλ| / max |λ| over all N eigenvalues
    g = rel_diff_top(basin_out["ggn"]["eigenvalues"], tr["ggn"])
    hb = np.sort(np.asarray(basin_out["hessian"]["eigenvalues"]))[::-1]
    ht = np.sort(tr["hess"])[::-1]
    h = float(np.max(np.abs(hb - ht)) / np.max(np.abs(ht))) if hb.size == ht.size else float("inf")
    return max(g, h)


def fmt_bytes(b):
    for unit, s in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= s:
            return "%.3g %s" % (b / s, unit)
    return "%d B" % b


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=None, help="runs per workload and program (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke, < 30 s)")
    ap.add_argument("--markdown", action="store_true", help="print the rows as a markdown table")
    ap.add_argument("--basin", default=DEFAULT_BASIN, help="path to the basin binary")
    ap.add_argument("--only", default=None, help="comma-separated workload name prefixes (a,b,c,d)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        torch_worker(args.torch_worker)
        return 0
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if not os.path.exists(args.basin):
        print("basin binary not found at %s (build it: cmake --build build --target basin)" % args.basin,
              file=sys.stderr)
        return 2

    wls = workloads(args.quick)
    if args.only:
        pre = args.only.split(",")
        wls = [w for w in wls if any(w["name"].startswith(p) for p in pre)]
    rows, details, all_ok = [], [], True
    tmp = tempfile.mkdtemp(prefix="basin-bench-")
    info = binary_info(args.basin)
    # Run a private copy: the shared build tree may be relinked while we run (RUNPATH is absolute).
    basin = os.path.join(tmp, "basin")
    shutil.copy2(args.basin, basin)
    try:
        startup = run_startup(basin, args.repeats, tmp)
        for w in wls:
            N, nk = num_params(w), w["n"] * w["k"]
            print("# %s: MLP %s, N=%d, n=%d, k=%d ..." % (w["name"], arch_str(w), N, w["n"], w["k"]),
                  file=sys.stderr, flush=True)
            t, files = run_torch(w, args.seed, args.repeats, tmp)
            b = run_basin(basin, w, files, args.repeats, tmp)
            agree = agreement(w, b["out"], t)
            ok = agree <= AGREE_TOL
            all_ok &= ok
            method = b["out"]["jacobian"]["method"] if w["kind"] == "svd" else "ggn+hessian"
            bt, tt = statistics.median(b["walls"]), float(np.median(t["times"]))
            bc, tc = statistics.median(b["cpus"]), float(np.median(t["cpu_times"]))
            eng = {key: statistics.median(x.get(key, 0.0) for x in b["timings"])
                   for key in sorted(set().union(*b["timings"]))}
            rows.append(dict(workload=w["name"], N=N, nk=nk, method=method, basin_s=bt, torch_s=tt,
                             ratio=tt / bt, cpu_ratio=tc / max(bc, 0.01), basin_rss=b["rss"], torch_rss=int(t["rss"]),
                             g_bytes=nk * N * 8, agree=agree, ok=ok))
            details.append(dict(name=w["name"], arch=arch_str(w), N=N, n=w["n"], k=w["k"],
                                basin_walls=b["walls"], torch_times=list(map(float, t["times"])),
                                basin_cpus=b["cpus"], torch_cpus=list(map(float, t["cpu_times"])),
                                torch_jac=list(map(float, t["jac_times"])),
                                timings_ms_median=eng))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info_end = binary_info(args.basin)

    hdr = ["workload", "N", "n·k", "method", "Basin s (median)", "PyTorch s (median)",
           "ratio PyTorch/Basin", "ratio of CPU s", "Basin peak RSS", "PyTorch peak RSS", "size of G", "σ agree (max rel diff)"]
    cells = [[r["workload"], "{:,}".format(r["N"]), "{:,}".format(r["nk"]), r["method"],
              "%.3f" % r["basin_s"], "%.3f" % r["torch_s"], "%.1f×" % r["ratio"], "%.1f×" % r["cpu_ratio"],
              fmt_bytes(r["basin_rss"]), fmt_bytes(r["torch_rss"]), fmt_bytes(r["g_bytes"]),
              ("yes (%.1e)" if r["ok"] else "NO (%.1e)") % r["agree"]] for r in rows]
    if args.markdown:
        print("| " + " | ".join(hdr) + " |")
        print("|" + "|".join("---" for _ in hdr) + "|")
        for c in cells:
            print("| " + " | ".join(c) + " |")
    else:
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(hdr)]
        print("  ".join(h.ljust(wd) for h, wd in zip(hdr, widths)))
        for c in cells:
            print("  ".join(x.ljust(wd) for x, wd in zip(c, widths)))
    print()
    print("Basin binary: %s (sha256 %s…, built %s, `--version`: %s); CUDA libraries linked: %s" % (
        args.basin, info["sha"], info["mtime"], startup[3], ", ".join(info["cuda_libs"]) or "none"))
    if info_end["sha"] != info["sha"]:
        print("Note: %s was rebuilt during this run (now sha256 %s…, built %s); the run used a copy of the build above."
              % (args.basin, info_end["sha"], info_end["mtime"]))
    print("Basin process start-up (`basin --version`, median): wall %.3f s, CPU %.2f s, peak RSS %s"
          % (startup[0], startup[1], fmt_bytes(startup[2])))
    print("Per-workload details (every repeat, seconds):")
    r3 = lambda xs: [round(x, 3) for x in xs]  # noqa: E731
    for d in details:
        print("- %s: MLP %s, N=%d, n=%d, k=%d" % (d["name"], d["arch"], d["N"], d["n"], d["k"]))
        print("  Basin   wall %s, CPU %s; engine timings_ms (median) %s, sum %.0f ms" % (
            r3(d["basin_walls"]), r3(d["basin_cpus"]),
            {k: round(v, 1) for k, v in d["timings_ms_median"].items()}, sum(d["timings_ms_median"].values())))
        print("  PyTorch wall %s (of which building G: %s), CPU %s" % (
            r3(d["torch_times"]), r3(d["torch_jac"]), r3(d["torch_cpus"])))
    if not all_ok:
        print("\nWARNING: spectra disagree (> %.0e) on some workload: its timing is meaningless." % AGREE_TOL)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
