#!/usr/bin/python3
"""Basin's operation graph against PyTorch on the CPU: issue 11's speed workloads, side by side, in one run.

Workloads (float64, seed 0):
  a  all σ(G) of a CIFAR-style ResNet-20 (3 stages × 3 basic blocks, widths 16/32/64, 1×1 conv + BN
     projection shortcuts; random init, eval mode, BatchNorm with random running statistics and γ, β),
     n = 50 random 3×32×32 images, k = 10 (n·k = 500), `--loss none --want jacobian`;
  b  all σ(G) of a LeNet on scikit-learn's 8×8 digits: conv 3×3 (32) → relu → maxpool 2 → conv 3×3 (64)
     → relu → maxpool 2 → dense 256 → relu → dense 10 (N = 87,178), n = 100, k = 10 (n·k = 1,000);
  c  the exact Hessian spectrum of a small CNN on the digits: conv 3×3 (8) → tanh → maxpool 2 → conv 3×3
     (16) → tanh → avgpool 2 → dense 10 (N = 1,898), n = 32 digits, cross-entropy, `--want hessian`;
  d  bench_cpu.py's workload (d): MLP 8-32-20-4 tanh, N = 1,032, n = 50, k = 4, MSE, `--want ggn,hessian`
     (the same data and parameters as bench_cpu.py), through the JSON chain (`d-spec`) and as ONNX (`d-onnx`).

Basin:   the torch model exported to ONNX (eval mode, do_constant_folding=False, BatchNorm kept as its own node,
         every parameter its own initializer), then `basin analyze --local --device cpu --model m.onnx
         --inputs X.npy ... --json`, one fresh process per repeat, OPENBLAS_NUM_THREADS=2; time = wall clock of
         the whole process (start-up, ONNX import, .npy reading and JSON printing included).
PyTorch: torch.set_num_threads(2), float64, each route in its own child process (all its repeats in it);
         time = the computation only (import, model building and file reading excluded). σ(G): G built by
         functorch `vmap(jacrev)` or by per-example `torch.autograd.functional.jacobian(vectorize=True)`, then
         `eigvalsh(G Gᵀ)` or `svdvals(G)` — every combination is timed and the table compares Basin with the
         fastest. Hessian: functorch `jacrev(jacrev(loss))` (functorch.hessian = jacfwd(jacrev) fails on cross-entropy in
         torch 1.13: no forward AD for _log_softmax_backward_data) and `torch.autograd.functional.hessian`
         (vectorize True and False), each + `eigvalsh`, the fastest compared (for d also the GGN's eigvalsh, as
         bench_cpu.py does). A route 1.5× slower than the fastest so far is stopped there (it cannot win).
Floor:   `torch.linalg.eigvalsh` of a random symmetric matrix of the small side alone ((n·k)² for σ(G), N² for the
         Hessian), the part of the work neither side can avoid; Basin's wall / floor says how close it is.
Peak memory: GNU /usr/bin/time %M (ru_maxrss) of each child process (Basin's process; the torch route's process).
Agreement: max |Δσ| / σmax (σ(G)) or max |Δλ| / max|λ| (Hessian) between Basin and the torch reference
         (svdvals where it ran), printed per row.

A Basin run that fails prints "basin: not supported yet (<error>)" in its row; the torch side still runs.

Usage:  /usr/bin/python3 bench/bench_graph.py [--repeats 3] [--only a,b] [--quick] [--markdown] [--basin PATH]
"""
import argparse
import datetime
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
sys.path.insert(0, HERE)
import bench_cpu  # noqa: E402  (workload (d) and the child-process runner are reused from there)

DEFAULT_BASIN = os.path.join(os.path.dirname(HERE), "build", "bin", "basin")
THREADS = 2
AGREE_TOL = 1e-8  # max |Δσ| / σmax or max |Δλ| / max |λ| above this: the two sides did not compute the same thing
TARGET = {"sigma": 5.0, "hessian": 3.0}  # issue 11: PyTorch / Basin at least this


def child_env():
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    return env


# --------------------------------------------------------------------------- workloads
def workloads(quick):
    """name, model family, its size knobs, n, kind (sigma | hessian), loss."""
    if quick:
        return [
            dict(name="a-resnet20", model="resnet", widths=[4, 8, 8], blocks=1, n=3, k=10, kind="sigma", loss="none"),
            dict(name="b-lenet", model="lenet", c1=4, c2=8, hidden=16, n=6, k=10, kind="sigma", loss="none"),
            dict(name="c-cnn-hessian", model="smallcnn", c1=2, c2=4, n=8, k=10, kind="hessian", loss="cross_entropy"),
            dict(name="d-spec", model="mlp_d", route="spec", kind="hessian", loss="mse", quick=True),
            dict(name="d-onnx", model="mlp_d", route="onnx", kind="hessian", loss="mse", quick=True),
        ]
    return [
        dict(name="a-resnet20", model="resnet", widths=[16, 32, 64], blocks=3, n=50, k=10, kind="sigma", loss="none"),
        dict(name="b-lenet", model="lenet", c1=32, c2=64, hidden=256, n=100, k=10, kind="sigma", loss="none"),
        dict(name="c-cnn-hessian", model="smallcnn", c1=8, c2=16, n=32, k=10, kind="hessian", loss="cross_entropy"),
        dict(name="d-spec", model="mlp_d", route="spec", kind="hessian", loss="mse"),
        dict(name="d-onnx", model="mlp_d", route="onnx", kind="hessian", loss="mse"),
    ]


def mlp_d_workload(w):
    return [x for x in bench_cpu.workloads(bool(w.get("quick"))) if x["name"].startswith("d-")][0]


def torch_routes(w):
    if w["kind"] == "sigma":
        return ["vmap_jacrev+eigvalsh", "vmap_jacrev+svdvals", "jacobian+eigvalsh", "jacobian+svdvals"]
    return ["jacrev(jacrev)+eigvalsh", "hessian(vectorize)+eigvalsh", "hessian+eigvalsh"]


# --------------------------------------------------------------------------- torch models (child processes only)
def build_model(w):
    import torch.nn as nn

    if w["model"] == "resnet":
        class BasicBlock(nn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(cout)
                self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(cout)
                self.relu = nn.ReLU()
                self.shortcut = nn.Sequential()
                if stride != 1 or cin != cout:
                    self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

            def forward(self, x):
                out = self.relu(self.bn1(self.conv1(x)))
                out = self.bn2(self.conv2(out))
                return self.relu(out + self.shortcut(x))

        class ResNet(nn.Module):
            def __init__(self, widths, blocks, k):
                super().__init__()
                self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(widths[0])
                self.relu = nn.ReLU()
                layers, cin = [], widths[0]
                for s, cout in enumerate(widths):
                    for b in range(blocks):
                        layers.append(BasicBlock(cin, cout, 2 if (s > 0 and b == 0) else 1))
                        cin = cout
                self.layers = nn.Sequential(*layers)
                self.pool = nn.AdaptiveAvgPool2d(1)
                self.flatten = nn.Flatten()
                self.fc = nn.Linear(cin, k)

            def forward(self, x):
                x = self.relu(self.bn1(self.conv1(x)))
                return self.fc(self.flatten(self.pool(self.layers(x))))

        m = ResNet(w["widths"], w["blocks"], w["k"])
    elif w["model"] == "lenet":
        m = nn.Sequential(nn.Conv2d(1, w["c1"], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(w["c1"], w["c2"], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(w["c2"] * 4, w["hidden"]), nn.ReLU(), nn.Linear(w["hidden"], w["k"]))
    elif w["model"] == "smallcnn":
        m = nn.Sequential(nn.Conv2d(1, w["c1"], 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
                          nn.Conv2d(w["c1"], w["c2"], 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(w["c2"] * 4, w["k"]))
    elif w["model"] == "mlp_d":
        m = bench_cpu.build_torch_model(mlp_d_workload(w))
    else:
        raise ValueError(w["model"])
    return m.double()


def randomise_batchnorm(model, gen):
    """Random running statistics (and γ, β): eval-mode BatchNorm is then a non-trivial affine map."""
    import torch
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            c = mod.num_features
            with torch.no_grad():
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=gen, dtype=torch.float64))
                mod.running_var.copy_(0.5 + torch.rand(c, generator=gen, dtype=torch.float64))
                mod.weight.copy_(0.5 + torch.rand(c, generator=gen, dtype=torch.float64))
                mod.bias.copy_(0.1 * torch.randn(c, generator=gen, dtype=torch.float64))


CLIENT_EXPORT = os.path.join(os.path.dirname(HERE), "client", "python", "basin", "torch_export.py")


def export_onnx(model, x_example, path):
    """The Python client's exporter (client/python/basin/torch_export.py: the settings that keep every parameter
    its own initializer, mapped back to model.parameters()) where this tree has it; else the same settings here:
    eval mode, no constant folding, BatchNorm kept as its own node (TrainingMode.PRESERVE skips the exporter's
    eval peephole, which would fold BN into the preceding conv and change the parameter set), the batch axis
    dynamic. Returns which exporter ran."""
    import torch
    model.eval()
    if os.path.exists(CLIENT_EXPORT):
        import importlib
        import types
        # The client's package without its __init__ (which needs the generated gRPC stubs): torch_export and
        # the .models it imports need only numpy and torch.
        pkg = types.ModuleType("_basin_client")
        pkg.__path__ = [os.path.dirname(CLIENT_EXPORT)]
        sys.modules["_basin_client"] = pkg
        mod = importlib.import_module("_basin_client.torch_export")
        exported = mod.export(model, x_example)
        exported.save(path)
        return "client/python/basin/torch_export.py (opset %d)" % mod.OPSET
    torch.onnx.export(model, (x_example,), path, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE, opset_version=13,
                      keep_initializers_as_inputs=False, export_params=True)
    return "bench_graph.export_onnx (opset 13)"


def prepare(w, seed, outdir):
    """Child process: builds the model and data, writes model.pt (state), model.onnx, X.npy, Y.npy, theta.npy,
    (spec.json + p.npy for d-spec), meta.json (N, n, k, buffers)."""
    import torch
    torch.set_num_threads(THREADS)
    files = {"pt": os.path.join(outdir, "model.pt"), "onnx": os.path.join(outdir, "model.onnx"),
             "X": os.path.join(outdir, "X.npy"), "Y": os.path.join(outdir, "Y.npy"),
             "theta": os.path.join(outdir, "theta.npy"), "meta": os.path.join(outdir, "meta.json")}
    if w["model"] == "mlp_d":
        wd = mlp_d_workload(w)
        f = bench_cpu.make_data(wd, seed, outdir)  # spec.json, p.npy, X.npy, Y.npy — exactly bench_cpu's (d)
        files.update(spec=f["spec.json"], params=f["p.npy"])
        model = build_model(w)
        torch.nn.utils.vector_to_parameters(torch.from_numpy(np.load(f["p.npy"])), model.parameters())
        X = np.load(f["X.npy"])
        n, k = wd["n"], wd["k"]
    else:
        torch.manual_seed(seed)
        model = build_model(w)
        randomise_batchnorm(model, torch.Generator().manual_seed(seed + 1))
        rng = np.random.default_rng(seed)
        n, k = w["n"], w["k"]
        if w["model"] == "resnet":
            X = rng.standard_normal((n, 3, 32, 32))
            Y = None
        else:
            from sklearn.datasets import load_digits
            d = load_digits()
            X = (d.data[:n] / 16.0).reshape(n, 1, 8, 8)
            Y = d.target[:n].astype(np.int64)
        np.save(files["X"], X)
        if w["loss"] == "cross_entropy":
            np.save(files["Y"], Y)
        elif w["loss"] == "mse":
            np.save(files["Y"], rng.standard_normal((n, k)))
    model.eval()
    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy()
    np.save(files["theta"], theta)
    torch.save(model.state_dict(), files["pt"])
    exporter = export_onnx(model, torch.from_numpy(np.ascontiguousarray(X[:2])), files["onnx"])
    meta = dict(N=int(theta.size), n=int(n), k=int(k), exporter=exporter,
                buffers=int(sum(b.numel() for b in model.buffers() if b.dtype.is_floating_point)))
    with open(files["meta"], "w") as f:
        json.dump(meta, f)
    return files, meta


# --------------------------------------------------------------------------- torch worker (child process)
def torch_worker(job_path):
    with open(job_path) as f:
        job = json.load(f)
    w, route, repeats, files = job["w"], job["route"], job["repeats"], job["files"]
    import torch
    torch.set_num_threads(THREADS)
    torch.set_default_dtype(torch.float64)
    res, times, build_times, cpu_times = {}, [], [], []

    if route.startswith("floor"):
        size = job["size"]
        A = torch.randn(size, size, generator=torch.Generator().manual_seed(0))
        A = A @ A.T
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            torch.linalg.eigvalsh(A)
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
        np.savez(job["result"], times=np.array(times), build_times=np.zeros(0), cpu_times=np.array(cpu_times))
        return

    from functorch import make_functional_with_buffers, vmap, jacrev
    model = build_model(w)
    model.load_state_dict(torch.load(files["pt"]))
    model.eval()
    X = torch.from_numpy(np.load(files["X"]))
    n = X.shape[0]
    names = [nm for nm, _ in model.named_parameters()]
    params0 = tuple(p.detach().clone() for p in model.parameters())
    shapes, sizes = [p.shape for p in params0], [p.numel() for p in params0]
    theta = torch.cat([p.reshape(-1) for p in params0])

    def fresh():
        fmodel, params, buffers = make_functional_with_buffers(model)
        return fmodel, tuple(p.detach() for p in params), tuple(b.detach() for b in buffers)

    def build_G(how):
        fmodel, params, buffers = fresh()

        def f(ps, x):
            return fmodel(ps, buffers, x.unsqueeze(0)).squeeze(0)
        if how == "vmap_jacrev":
            J = vmap(jacrev(f), in_dims=(None, 0))(params, X)           # each [n, k, *p.shape]
            return torch.cat([j.reshape(j.shape[0] * j.shape[1], -1) for j in J], dim=1)
        rows = []
        for i in range(n):
            xi = X[i]
            Ji = torch.autograd.functional.jacobian(lambda *ps: f(ps, xi), params, vectorize=True)
            rows.append(torch.cat([j.reshape(j.shape[0], -1) for j in Ji], dim=1))  # [k, N]
        return torch.cat(rows, dim=0)

    if w["kind"] == "sigma":
        how, solve = route.split("+")
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            G = build_G(how)
            t1 = time.perf_counter()
            if solve == "svdvals":
                sv = torch.linalg.svdvals(G)
            else:
                lam = torch.linalg.eigvalsh(G @ G.T).flip(0)
                sv = lam.clamp(min=0).sqrt()
            t2 = time.perf_counter()
            times.append(t2 - t0)
            cpu_times.append(time.process_time() - c0)
            build_times.append(t1 - t0)
            res = dict(sv=sv.numpy())
            del G
    else:
        loss_name = w["loss"]
        Y = torch.from_numpy(np.load(files["Y"]))
        fmodel, _, buffers = fresh()

        def loss(th):
            ps = tuple(t.reshape(s) for t, s in zip(torch.split(th, sizes), shapes))
            out = fmodel(ps, buffers, X)
            if loss_name == "mse":
                return torch.nn.functional.mse_loss(out, Y)
            return torch.nn.functional.cross_entropy(out, Y)
        vectorize = "vectorize" in route
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            if w["model"] == "mlp_d":  # bench_cpu.py's (d) also computes the GGN's eigenvalues (MSE: c·G Gᵀ)
                G = build_G("vmap_jacrev")
                c = 2.0 / G.shape[0]
                res["ggn"] = torch.linalg.eigvalsh(c * (G @ G.T)).flip(0).numpy()
                del G
            t1 = time.perf_counter()
            if route.startswith("jacrev(jacrev)"):  # functorch's reverse-over-reverse, vmapped over the N directions
                H = jacrev(jacrev(loss))(theta.clone())
            else:
                H = torch.autograd.functional.hessian(loss, theta.clone(), vectorize=vectorize)
            hev = torch.linalg.eigvalsh(H).flip(0)
            t2 = time.perf_counter()
            times.append(t2 - t0)
            cpu_times.append(time.process_time() - c0)
            build_times.append(t1 - t0)
            res["hess"] = hev.numpy()
            del H
    np.savez(job["result"], times=np.array(times), build_times=np.array(build_times), cpu_times=np.array(cpu_times),
             names=np.array(names), **res)


def run_torch(w, route, files, repeats, tmp, size=None, timeout=None):
    tag = route.replace("+", "_").replace("(", "_").replace(")", "")
    job = dict(w=w, route=route, repeats=repeats, files=files, size=size,
               result=os.path.join(tmp, "torch_%s.npz" % tag))
    job_path = os.path.join(tmp, "torch_%s.json" % tag)
    with open(job_path, "w") as f:
        json.dump(job, f)
    so, se = os.path.join(tmp, "torch_%s.out" % tag), os.path.join(tmp, "torch_%s.err" % tag)
    rc, wall, cpu, peak = run_child([sys.executable, os.path.abspath(__file__), "--torch-worker", job_path], so, se,
                                    timeout=timeout)
    if rc is None:
        return dict(route=route, error="stopped after %.0f s (--route-limit-s)" % wall, over=wall)
    if rc != 0:
        with open(se) as f:
            err = f.read().strip().splitlines()
        return dict(route=route, error="rc %d: %s" % (rc, err[-1] if err else "?"))
    r = dict(np.load(job["result"]))
    r.update(route=route, rss=peak, time=float(np.median(r["times"])), cpu=float(np.median(r["cpu_times"])),
             cpu_total=cpu)
    return r


def run_prepare(w, seed, tmp):
    job = dict(w=w, seed=seed, outdir=tmp)
    job_path = os.path.join(tmp, "prepare.json")
    with open(job_path, "w") as f:
        json.dump(job, f)
    so, se = os.path.join(tmp, "prepare.out"), os.path.join(tmp, "prepare.err")
    rc, _, _, _ = run_child([sys.executable, os.path.abspath(__file__), "--prepare", job_path], so, se)
    if rc != 0:
        raise RuntimeError("prepare failed (%d):\n%s" % (rc, open(se).read()))
    with open(so) as f:
        return json.load(f)


def run_child(cmd, stdout_path, stderr_path, timeout=None):
    """Runs cmd with 2 BLAS threads in its environment; returns (exit code, wall s, CPU s, peak RSS bytes) of
    exactly that process (GNU /usr/bin/time %M %U %S, as bench_cpu.run_child: a child forked straight from this
    Python process would inherit its RSS high-water mark). Past `timeout` seconds the child's process group is
    killed and the exit code is None."""
    rss_path = stdout_path + ".rss"
    full = ["/usr/bin/time", "-f", "%M %U %S", "-o", rss_path] + cmd
    with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=so, stderr=se, env=child_env(), start_new_session=True)
        while True:
            pid, status, _ = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if timeout is not None and time.perf_counter() - t0 > timeout:
                os.killpg(p.pid, 9)
                os.wait4(p.pid, 0)
                return None, time.perf_counter() - t0, 0.0, 0
            time.sleep(0.01)
        t1 = time.perf_counter()
    rc = os.waitstatus_to_exitcode(status)
    peak_kib, cpu = 0, 0.0
    try:
        with open(rss_path) as f:
            last = f.read().strip().splitlines()[-1].split()
        peak_kib, cpu = int(last[0]), float(last[1]) + float(last[2])
    except (OSError, IndexError, ValueError):
        pass
    return rc, t1 - t0, cpu, peak_kib * 1024


# --------------------------------------------------------------------------- Basin side
def basin_cmd(basin, w, files):
    if w.get("route") == "spec":
        cmd = [basin, "analyze", "--local", "--device", "cpu", "--model", files["spec"], "--params", files["params"]]
    else:
        cmd = [basin, "analyze", "--local", "--device", "cpu", "--model", files["onnx"]]
    cmd += ["--inputs", files["X"], "--json"]
    if w["kind"] == "sigma":
        cmd += ["--loss", "none", "--want", "jacobian"]
    else:
        cmd += ["--targets", files["Y"], "--loss", w["loss"],
                "--want", "ggn,hessian" if w["model"] == "mlp_d" else "hessian"]
    return cmd


def run_basin(basin, w, files, repeats, tmp):
    cmd = basin_cmd(basin, w, files)
    walls, cpus, rss, timings, out = [], [], [], [], None
    for _ in range(repeats):
        so, se = os.path.join(tmp, "basin.out"), os.path.join(tmp, "basin.err")
        rc, wall, cpu, peak = run_child(cmd, so, se)
        if rc != 0:
            with open(se) as f:
                err = " ".join(f.read().split())
            return dict(cmd=cmd, error="exit %d: %s" % (rc, err[:300]))
        with open(so) as f:
            out = json.load(f)
        walls.append(wall)
        cpus.append(cpu)
        rss.append(peak)
        timings.append(out.get("timings_ms", {}))
    eng = {key: statistics.median(x.get(key, 0.0) for x in timings) for key in sorted(set().union(*timings))}
    return dict(cmd=cmd, walls=walls, cpus=cpus, rss=max(rss), timings=eng, out=out, time=statistics.median(walls),
                cpu=statistics.median(cpus))


def agreement(w, out, ref):
    """max |Δσ| / σmax for σ(G); max |Δλ| / max |λ| for the Hessian (and the GGN for d)."""
    if w["kind"] == "sigma":
        a = np.sort(np.asarray(out["jacobian"]["singular_values"], dtype=float))[::-1]
        b = np.sort(np.asarray(ref["sv"], dtype=float))[::-1]
        m = min(a.size, b.size)
        if m == 0:
            return float("inf")
        pad_a, pad_b = a[m:], b[m:]  # any extra values must be zeros
        d = max(np.max(np.abs(a[:m] - b[:m])), np.max(np.abs(pad_a), initial=0.0), np.max(np.abs(pad_b), initial=0.0))
        return float(d / b[0])
    parts = []
    for key, rk in (("hessian", "hess"), ("ggn", "ggn")):
        if rk not in ref:
            continue
        a = np.sort(np.asarray(out[key]["eigenvalues"], dtype=float))[::-1]
        b = np.sort(np.asarray(ref[rk], dtype=float))[::-1]
        if key == "ggn":  # Basin lists the n·k eigenvalues of the small side; torch's c·G Gᵀ has the same
            m = min(a.size, b.size)
            a, b = a[:m], b[:m]
        if a.size != b.size:
            return float("inf")
        parts.append(float(np.max(np.abs(a - b)) / np.max(np.abs(b))))
    return max(parts) if parts else float("inf")


def fmt_bytes(b):
    return bench_cpu.fmt_bytes(b)


def short_error(e, limit=70):
    """The error without the CLI's prefix and the temporary path, cut to a table cell."""
    e = e.split("basin: error: ", 1)[-1]
    if e.startswith("/") and ": " in e:
        e = e.split(": ", 1)[1]
    e = e.split(" (supported:", 1)[0]
    return e if len(e) <= limit else e[:limit - 1] + "…"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=None, help="runs per program and route (default 3; 1 with --quick)")
    ap.add_argument("--torch-repeats", type=int, default=None, help="repeats of each torch route while finding the "
                    "fastest (default 1); the fastest route of each workload then gets --repeats in all")
    ap.add_argument("--route-limit-s", type=float, default=300.0, help="a torch route process running longer is "
                    "stopped (default 300 s; a route 1.5× slower than the fastest so far (at least 20 s) is stopped then)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--basin", default=DEFAULT_BASIN)
    ap.add_argument("--only", default=None, help="comma-separated workload name prefixes (a,b,c,d)")
    ap.add_argument("--routes", default=None, help="comma-separated torch routes to run (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="copy the work directory (ONNX files, inputs) here")
    ap.add_argument("--no-basin", action="store_true", help="the torch side only")
    ap.add_argument("--torch-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--prepare", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        torch_worker(args.torch_worker)
        return 0
    if args.prepare:
        with open(args.prepare) as f:
            job = json.load(f)
        files, meta = prepare(job["w"], job["seed"], job["outdir"])
        print(json.dumps(dict(files=files, meta=meta)))
        return 0
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    torch_repeats = min(args.torch_repeats or 1, args.repeats)

    wls = workloads(args.quick)
    if args.only:
        pre = args.only.split(",")
        wls = [w for w in wls if any(w["name"].startswith(p) for p in pre)]
    have_basin = os.path.exists(args.basin) and not args.no_basin
    root = tempfile.mkdtemp(prefix="basin-bench-graph-")
    basin = os.path.join(root, "basin")
    if have_basin:
        shutil.copy2(args.basin, basin)  # a private copy: the build tree may be relinked while we run
        info = bench_cpu.binary_info(args.basin)
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    print("# %s UTC, load %.2f %.2f %.2f, %d threads each, repeats %d" % (
        started.strftime("%Y-%m-%d %H:%M:%S"), *load0, THREADS, args.repeats), file=sys.stderr, flush=True)
    rows, all_ok = [], True
    try:
        for w in wls:
            tmp = os.path.join(root, w["name"])
            os.makedirs(tmp)
            prep = run_prepare(w, args.seed, tmp)
            files, meta = prep["files"], prep["meta"]
            N, n, k = meta["N"], meta["n"], meta["k"]
            print("# %s: N=%d, n=%d, k=%d, n·k=%d ..." % (w["name"], N, n, k, n * k), file=sys.stderr, flush=True)
            routes = torch_routes(w)
            if args.routes:
                routes = [r for r in routes if r in args.routes.split(",")]
            tr, best = [], None
            for r in routes:
                # A route already 1.5× slower than the fastest so far cannot be the fastest: it is stopped there.
                limit = args.route_limit_s if best is None else min(args.route_limit_s, max(20.0, 1.5 * best["time"]))
                t = run_torch(w, r, files, torch_repeats, tmp, timeout=limit)
                tr.append(t)
                if "error" not in t and (best is None or t["time"] < best["time"]):
                    best = t
                print("#   torch %-28s %s" % (r, t.get("error") or "%.3f s (build %.3f s), %s" % (
                    t["time"], float(np.median(t["build_times"])), fmt_bytes(t["rss"]))), file=sys.stderr, flush=True)
            if best is not None and torch_repeats < args.repeats:  # the fastest route gets the full repeats
                more = run_torch(w, best["route"], files, args.repeats - torch_repeats, tmp)
                if "error" not in more:
                    for key in ("times", "build_times", "cpu_times"):
                        more[key] = np.concatenate([best[key], more[key]])
                    more.update(time=float(np.median(more["times"])), cpu=float(np.median(more["cpu_times"])),
                                rss=max(more["rss"], best["rss"]))
                    tr = [more if t is best else t for t in tr]
                    best = more
            ok_tr = [t for t in tr if "error" not in t]
            floor_size = n * k if w["kind"] == "sigma" else N
            floor = run_torch(w, "floor", files, max(args.repeats, 3), tmp, size=floor_size)
            b = run_basin(basin, w, files, args.repeats, tmp) if have_basin else dict(error="no binary at " + args.basin)
            print("#   basin %s" % (("not supported yet (%s)" % b["error"]) if "error" in b else "%.3f s, %s" % (b["time"], fmt_bytes(b["rss"]))),
                  file=sys.stderr, flush=True)
            ref = None
            if w["kind"] == "sigma":
                svd = [t for t in ok_tr if t["route"].endswith("svdvals")]
                ref = svd[0] if svd else best
            else:
                ref = best
            agree = agreement(w, b["out"], ref) if ("error" not in b and ref is not None) else None
            # σ from eigvalsh(G Gᵀ) carry absolute errors ~ √ε·σmax in the small values: a looser bound then
            tol = AGREE_TOL if (w["kind"] != "sigma" or ref is None or ref["route"].endswith("svdvals")) else 1e-6
            ok = agree is not None and agree <= tol
            if "error" not in b:
                all_ok &= ok
                if b["out"].get("num_params") not in (None, N):
                    b["N_mismatch"] = b["out"]["num_params"]
                    all_ok = False
            if "error" not in b and best is not None:
                print("#   => Basin %.3f s (CPU %.2f), best torch %s %.3f s (CPU %.2f): %.1f× wall, %.1f× CPU; floor %s; "
                      "agree %.1e; Basin peak %s, torch peak %s" % (
                          b["time"], b["cpu"], best["route"], best["time"], best["cpu"], best["time"] / b["time"],
                          best["cpu"] / max(b["cpu"], 0.01), ("%.3f s" % floor["time"]) if "error" not in floor else "-",
                          agree if agree is not None else float("nan"), fmt_bytes(b["rss"]), fmt_bytes(best["rss"])),
                      file=sys.stderr, flush=True)
            rows.append(dict(w=w, N=N, n=n, k=k, tr=tr, best=best, floor=floor, b=b, agree=agree, ok=ok,
                             floor_size=floor_size, ref=ref["route"] if ref else None, tol=tol,
                             exporter=meta.get("exporter")))
        if args.keep:
            shutil.copytree(root, args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load1 = os.getloadavg()
    finished = datetime.datetime.now(datetime.timezone.utc)
    print_report(rows, args, load0, load1, started, finished, info if have_basin else None)
    return 0 if all_ok else 1


def print_report(rows, args, load0, load1, started, finished, info):
    hdr = ["workload", "N", "n·k", "Basin s", "PyTorch best route", "PyTorch s", "PyTorch / Basin", "ratio of CPU s",
           "target",
           "floor s (eigvalsh)", "Basin / floor", "Basin peak RSS", "PyTorch peak RSS", "size of G", "agree"]
    cells = []
    for r in rows:
        w, b, best, fl = r["w"], r["b"], r["best"], r["floor"]
        gsize = r["n"] * r["k"] * r["N"] * 8
        tgt = TARGET[w["kind"]]
        row = [w["name"], "{:,}".format(r["N"]), "{:,}".format(r["n"] * r["k"])]
        if "error" in b:
            row.append("basin: not supported yet (%s)" % short_error(b["error"]))
        else:
            row.append("%.3f" % b["time"])
        row += [best["route"] if best else "-", ("%.3f" % best["time"]) if best else "-"]
        if "error" not in b and best:
            ratio = best["time"] / b["time"]
            row.append("%.1f×" % ratio)
            row.append("%.1f×" % (best["cpu"] / max(b["cpu"], 0.01)))
            row.append("%g× %s" % (tgt, "met" if ratio >= tgt else "NOT met"))
        else:
            row += ["-", "-", "%g×" % tgt]
        row.append(("%.3f (%d²)" % (fl["time"], r["floor_size"])) if "error" not in fl else "-")
        row.append(("%.1f×" % (b["time"] / fl["time"])) if ("error" not in b and "error" not in fl) else "-")
        if "error" not in b:
            rss = fmt_bytes(b["rss"])
            if w["kind"] == "sigma":
                rss += " (%.0f%% of G)" % (100.0 * b["rss"] / gsize)
            row.append(rss)
        else:
            row.append("-")
        row.append(fmt_bytes(best["rss"]) if best else "-")
        row.append(fmt_bytes(gsize))
        if r["agree"] is None:
            row.append("-")
        else:
            row.append(("%.1e" if r["ok"] else "NO %.1e") % r["agree"])
        cells.append(row)
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
    print("Run %s – %s UTC; 1-min load average %.2f before, %.2f after; PyTorch %d threads, Basin "
          "OPENBLAS_NUM_THREADS=%d." % (started.strftime("%Y-%m-%d %H:%M:%S"), finished.strftime("%H:%M:%S"),
                                      load0[0], load1[0], THREADS, THREADS))
    if info:
        print("Basin binary: %s (sha256 %s…, built %s)" % (args.basin, info["sha"], info["mtime"]))
    r3 = lambda xs: [round(float(x), 3) for x in xs]  # noqa: E731
    print("Details (seconds; every repeat):")
    for r in rows:
        w, b = r["w"], r["b"]
        print("- %s: N=%d, n=%d, k=%d; ONNX by %s" % (w["name"], r["N"], r["n"], r["k"], r["exporter"]))
        if "error" in b:
            print("  Basin: not supported yet (%s)" % b["error"])
            print("    command: %s" % " ".join(b["cmd"]) if "cmd" in b else "")
        else:
            extra = "" if "N_mismatch" not in b else " — Basin's N = %d differs from torch's!" % b["N_mismatch"]
            print("  Basin wall %s, CPU %s, peak %s; engine timings_ms (median) %s%s" % (
                r3(b["walls"]), r3(b["cpus"]), fmt_bytes(b["rss"]),
                {kk: round(v, 1) for kk, v in b["timings"].items()}, extra))
            methods = {kk: v.get("method") for kk, v in b["out"].items() if isinstance(v, dict) and "method" in v}
            print("  Basin methods: %s" % methods)
        for t in r["tr"]:
            if "error" in t:
                print("  PyTorch %s: failed (%s)" % (t["route"], t["error"]))
            else:
                print("  PyTorch %s: %s (of which %s: %s), CPU %s, peak %s" % (
                    t["route"], r3(t["times"]), "building G" if w["kind"] == "sigma" else "GGN",
                    r3(t["build_times"]), r3(t["cpu_times"]), fmt_bytes(t["rss"])))
        if r["agree"] is not None:
            print("  agreement with torch's %s: %.2e (tolerance %.0e)%s" % (r["ref"], r["agree"], r["tol"],
                                                                           "" if r["ok"] else "  DISAGREE"))
        if "error" not in r["floor"]:
            print("  floor: eigvalsh of a %d² symmetric matrix %s" % (r["floor_size"], r3(r["floor"]["times"])))


if __name__ == "__main__":
    sys.exit(main())
