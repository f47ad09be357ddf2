"""Basin vs PyTorch on the CPU for a small causal GPT (tests/python/transformer_models.GPT):
(a) all σ(G) at n·k ≈ 2,000 (vocab 11, T 6, width 8, 2 layers, 2 heads, tied embeddings: k = T·11 = 66,
n = 30, N = 1,896), (b) the exact Hessian (cross-entropy over every position) of the same block,
N = 1,896 (n = 8); and the same two for torch's own nn.TransformerEncoderLayer over a token embedding
(transformer_models.Encoder: width 8, 2 heads, feed-forward 16, 5 classes per position: k = 30, N = 733;
its nn.MultiheadAttention exports with the batch axis moved and merged with the heads), σ(G) at
n = 66 (n·k = 1,980) and the Hessian at n = 8.

Basin: one fresh `basin analyze --local --device cpu … --json` process per repeat (wall clock of the
whole process, ONNX import and .npy reading included; its CPU time; peak RSS by GNU time %M). PyTorch, in this
process, float64, every route timed and the fastest compared: G by torch.autograd.functional.jacobian(vectorize=
True) or functorch.jacrev, then svdvals or eigvalsh(G Gᵀ); H by torch.autograd.functional.hessian(vectorize=True)
or functorch.jacrev(jacrev), then eigvalsh. Agreement is against the first route (svdvals / the autograd Hessian).
Prints one Markdown row per workload.

  /usr/bin/python3 bench/bench_transformer.py [--basin build/bin/basin] [--repeats 3]
"""
import argparse
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
import json

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "python"))
import transformer_models as tm  # noqa: E402
from sequence_reference import functional as torch_parts  # noqa: E402  (θ, f(θ) = model(tokens))

F = torch.nn.functional
import functorch  # noqa: E402


def eig_sigma(J):
    """σ(G) from eigvalsh(G Gᵀ) (accurate to √ε·σmax only)."""
    return torch.linalg.eigvalsh(J @ J.T).flip(0).clamp(min=0).sqrt()


def child_peak_kb():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_basin(binary, args):
    t0, c0 = time.perf_counter(), child_cpu()
    rss = tempfile.NamedTemporaryFile(suffix=".rss", delete=False).name
    # GNU time's %M: the child's own peak RSS (RUSAGE_CHILDREN would count torch's pages at fork)
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss, binary] + args, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    run_basin.cpu.append(child_cpu() - c0)
    run_basin.rss.append(int(open(rss).read().split()[-1]))
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return dt, json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--basin", default="build/bin/basin")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import onnx
    tmp = pathlib.Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    gpt = tm.randomise(tm.GPT(vocab=11, T=6, width=8, heads=2, layers=2), 0)
    tm.export(gpt, tmp / "gpt.onnx", 2, 6)
    torch.manual_seed(0)
    enc = tm.randomise(tm.Encoder(vocab=11, width=8, heads=2, classes=5), 0)
    tm.export(enc, tmp / "enc.onnx", 2, 6)
    rng = np.random.default_rng(1)
    rows = []
    workloads = [("GPT", gpt, tmp / "gpt.onnx", ["blocks.0.attn.tril"], 11, "sv", 30),
                 ("GPT", gpt, tmp / "gpt.onnx", ["blocks.0.attn.tril"], 11, "hessian", 8),
                 ("TransformerEncoderLayer", enc, tmp / "enc.onnx", [], 5, "sv", 66),
                 ("TransformerEncoderLayer", enc, tmp / "enc.onnx", [], 5, "hessian", 8)]
    for label, model, path, constants, C, what, n in workloads:
        names = [t.name for t in onnx.load(str(path)).graph.initializer
                 if t.name not in constants and t.data_type == 11]
        tokens = rng.integers(0, 11, size=(n, 6)).astype(np.int64)
        labels = rng.integers(0, C, size=(n, 6)).astype(np.int64)
        np.save(tmp / "t.npy", tokens)
        np.save(tmp / "y.npy", labels)
        args = ["analyze", "--local", "--device", "cpu", "--model", str(path), "--inputs", str(tmp / "t.npy"), "--json"]
        for c in constants:
            args += ["--constants", c]
        if what == "sv":
            args += ["--loss", "none", "--want", "jacobian"]
        else:
            args += ["--targets", str(tmp / "y.npy"), "--loss", "cross_entropy", "--want", "hessian"]
        btimes, res = [], None
        run_basin.cpu, run_basin.rss = [], []
        for _ in range(a.repeats):
            dt, res = run_basin(a.basin, args)
            btimes.append(dt)
        bpeak = max(run_basin.rss)
        theta, f = torch_parts(model, names, tokens)
        # PyTorch's routes; the table compares Basin with the fastest (the first is the reference).
        g = lambda th: f(th).reshape(-1)  # noqa: E731
        lab = torch.from_numpy(labels).reshape(-1)
        loss = lambda th: F.cross_entropy(f(th).reshape(-1, C), lab)  # noqa: E731
        if what == "sv":
            routes = {
                "jacobian(vectorize)+svdvals": lambda: torch.linalg.svdvals(
                    torch.autograd.functional.jacobian(g, theta, vectorize=True)),
                "functorch.jacrev+svdvals": lambda: torch.linalg.svdvals(functorch.jacrev(g)(theta)),
                "functorch.jacrev+eigvalsh(GGᵀ)": lambda: eig_sigma(functorch.jacrev(g)(theta)),
            }
            got = np.asarray(res["jacobian"]["singular_values"])
        else:
            routes = {
                "hessian(vectorize)+eigvalsh": lambda: torch.linalg.eigvalsh(
                    torch.autograd.functional.hessian(loss, theta, vectorize=True)).flip(0),
                "functorch.jacrev(jacrev)+eigvalsh": lambda: torch.linalg.eigvalsh(
                    functorch.jacrev(functorch.jacrev(loss))(theta)).flip(0),
            }
            got = np.asarray(res["hessian"]["eigenvalues"])
        best, ref = None, None
        for rname, route in routes.items():
            rt, rc = [], []
            for _ in range(a.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                out = route().numpy()
                rt.append(time.perf_counter() - t0)
                rc.append(time.process_time() - c0)
            if ref is None:
                ref = out
            print(f"#   torch {rname}: {np.median(rt):.3f} s", flush=True)
            if best is None or np.median(rt) < np.median(best[1]):
                best = (rname, rt, rc)
        route_name, ttimes, tcpu = best
        tpeak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        agree = np.abs(got - ref[:len(got)]).max() / np.abs(ref).max()
        N = theta.numel()
        k = 6 * C
        gbytes = n * k * N * 8
        bmed, tmed = float(np.median(btimes)), float(np.median(ttimes))
        bc, tc = float(np.median(run_basin.cpu)), float(np.median(tcpu))
        rows.append(f"| {label} {'σ(G)' if what == 'sv' else 'Hessian'} | {N} | {n} | {n * k} | {bmed:.2f} s ({bc:.2f} s CPU) | "
                    f"{tmed:.2f} s ({tc:.2f} s CPU), {route_name} | {tmed / bmed:.1f}× wall, {tc / bc:.1f}× CPU | "
                    f"{bpeak / 1024:.0f} MiB (G = {gbytes / 2**20:.1f} MiB) | "
                    f"{tpeak / 1024:.0f} MiB | {agree:.1e} |")
        print(rows[-1], res["timings_ms"], res[("jacobian" if what == "sv" else "hessian")]["method"], flush=True)
    print("| workload | N | n | n·k | Basin (median, wall / CPU) | PyTorch fastest route (median, wall / CPU) | speed-up | Basin peak RSS "
          "| PyTorch peak RSS "
          "| max |Δ|/max |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
