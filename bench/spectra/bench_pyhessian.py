"""Issue 12, side by side in one run: PyHessian's algorithms written in PyTorch (float64) — power
iteration with deflation for the top-K, Hutchinson's trace, SLQ — against Basin's matrix-free
block Lanczos, Hutch++ and SLQ on the same MLP and data, with both checked against the exact
spectrum (Basin's dense --want hessian, itself checked against finite differences in the tests).

usage: /usr/bin/python3 bench/spectra/bench_pyhessian.py BASIN_CLI [--n 256] [--top 20]
Prints markdown rows for bench/RESULTS.md.
"""
import argparse, json, os, subprocess, tempfile, time

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
p = argparse.ArgumentParser()
p.add_argument("basin")
p.add_argument("--n", type=int, default=256)
p.add_argument("--top", type=int, default=20)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)

# The MLP: 20 → 64 → 32 → 10, tanh, cross-entropy (mean), N = 3,754.
rng = np.random.default_rng(0)
dims = [20, 64, 32, 10]
X = rng.standard_normal((a.n, dims[0]))
y = rng.integers(0, dims[-1], a.n).astype(np.int64)
layers = []
for i in range(len(dims) - 1):
    layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
    if i < len(dims) - 2:
        layers.append(torch.nn.Tanh())
net = torch.nn.Sequential(*layers)
torch.manual_seed(0)
for m in net:
    if isinstance(m, torch.nn.Linear):
        torch.nn.init.normal_(m.weight, std=1.0 / np.sqrt(m.in_features))
        torch.nn.init.normal_(m.bias, std=0.1)
theta = torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
N = theta.size
tmp = tempfile.mkdtemp()
spec = {"input_dim": dims[0], "layers": []}
for i in range(len(dims) - 1):
    spec["layers"].append({"type": "dense", "out": dims[i + 1]})
    if i < len(dims) - 2:
        spec["layers"].append({"type": "tanh"})
json.dump(spec, open(f"{tmp}/model.json", "w"))
np.save(f"{tmp}/params.npy", theta)
np.save(f"{tmp}/X.npy", X)
np.save(f"{tmp}/y.npy", y)


def basin(*flags):
    cmd = [a.basin, "analyze", "--local", "--model", f"{tmp}/model.json", "--params", f"{tmp}/params.npy",
           "--inputs", f"{tmp}/X.npy", "--targets", f"{tmp}/y.npy", "--loss", "cross_entropy", "--json",
           "--device", "cpu", "--hessian-limit", str(N), *flags]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads))).stdout
    return json.loads(out), time.perf_counter() - t0


# Exact spectrum (dense).
exact, t_exact = basin("--want", "hessian")
lam = np.array(exact["hessian"]["eigenvalues"])  # descending
lmax = np.abs(lam).max()
top_exact = lam[: a.top]
mag_exact = lam[np.argsort(-np.abs(lam))][: a.top]  # PyHessian's power iteration finds |λ|-largest

# PyTorch: loss and Hessian-vector products by double back-propagation.
Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
params = list(net.parameters())
loss_fn = torch.nn.CrossEntropyLoss()


def hvp(vs):
    loss = loss_fn(net(Xt), yt)
    g = torch.autograd.grad(loss, params, create_graph=True)
    return torch.autograd.grad(g, params, grad_outputs=vs)


def inner(u, v):
    return sum((x * w).sum() for x, w in zip(u, v))


def normalize(v):
    s = torch.sqrt(inner(v, v))
    return [x / s for x in v]


def orth(w, vs):
    for v in vs:
        c = inner(w, v)
        w = [x - c * y for x, y in zip(w, v)]
    return normalize(w)


def rand_like(rademacher=False):
    if rademacher:
        return [torch.randint_like(p, high=2) * 2 - 1 for p in params]
    return [torch.randn_like(p) for p in params]


# PyHessian eigenvalues(maxIter=100, tol=1e-3, top_n=K): power iteration with deflation.
def pyhessian_top(K, max_iter=100, tol=1e-3):
    eigs, vecs, mv = [], [], 0
    for _ in range(K):
        v = orth(rand_like(), vecs)
        lam_prev = None
        for _ in range(max_iter):
            hv = hvp(v)
            mv += 1
            lam_i = inner(hv, v).item()
            v = orth(hv, vecs)
            if lam_prev is not None and abs(lam_i - lam_prev) / (abs(lam_prev) + 1e-6) < tol:
                break
            lam_prev = lam_i
        eigs.append(lam_i)
        vecs.append(v)
    return np.array(eigs), mv


# PyHessian trace(maxIter=100, tol=1e-3): Hutchinson with Rademacher probes.
def pyhessian_trace(max_iter=100, tol=1e-3):
    vals, prev = [], 0.0
    for i in range(max_iter):
        v = rand_like(True)
        vals.append(inner(hvp(v), v).item())
        if abs(np.mean(vals) - prev) / (abs(prev) + 1e-6) < tol:
            break
        prev = np.mean(vals)
    return np.mean(vals), len(vals)


# PyHessian density(iter=100, n_v=1): SLQ with full reorthogonalisation.
def pyhessian_slq(steps=100, n_v=1):
    nodes, weights = [], []
    for _ in range(n_v):
        v = normalize(rand_like(True))
        basis, alpha, beta = [v], [], []
        for i in range(steps):
            w = hvp(basis[-1])
            al = inner(w, basis[-1]).item()
            alpha.append(al)
            if i == steps - 1:
                break
            for b in basis:  # full reorthogonalisation
                c = inner(w, b)
                w = [x - c * y for x, y in zip(w, b)]
            be = torch.sqrt(inner(w, w)).item()
            beta.append(be)
            basis.append([x / be for x in w])
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        t, z = np.linalg.eigh(T)
        nodes.append(t)
        weights.append(z[0] ** 2)
    return nodes, weights


torch.manual_seed(1)
t0 = time.perf_counter()
ph_top, ph_mv = pyhessian_top(a.top)
t_ph_top = time.perf_counter() - t0
t0 = time.perf_counter()
ph_tr, ph_tr_mv = pyhessian_trace()
t_ph_tr = time.perf_counter() - t0
t0 = time.perf_counter()
ph_nodes, _ = pyhessian_slq()
t_ph_slq = time.perf_counter() - t0

b_top, t_b_top = basin("--want", "hessian_top", "--top-k", str(a.top), "--spectra-method", "matrix_free")
b_tr, t_b_tr = basin("--want", "hessian_trace", "--probes", "99", "--spectra-method", "matrix_free")
b_slq, t_b_slq = basin("--want", "hessian_density", "--probes", "1", "--lanczos-steps", "100",
                       "--spectra-method", "matrix_free")

bt = np.array(b_top["hessian_top"]["eigenvalues"])
err_b = np.abs(bt - top_exact).max() / lmax
# PyHessian's power iteration converges to the |λ|-largest; compare each to the nearest exact λ.
err_ph = max(np.abs(lam - e).min() for e in ph_top) / lmax
missed = [float(x) for x in mag_exact if np.abs(ph_top - x).min() > 1e-3 * lmax]
tr_exact = lam.sum()
print(f"N = {N}, n = {a.n}, |λ|max = {lmax:.6g}, exact dense spectrum {t_exact:.2f} s (Basin --want hessian)")
print("| task | PyHessian algorithm (PyTorch f64) | time | HVPs | error | Basin | time | HVPs | error |")
print("|---|---|---|---|---|---|---|---|---|")
print(f"| top-{a.top} | power iteration + deflation (tol 1e-3) | {t_ph_top:.2f} s | {ph_mv} | "
      f"max {err_ph:.1e}·|λ|max to the nearest λ; {len(missed)} of the {a.top} |λ|-largest missed | "
      f"block Lanczos (tol 1e-8, converged={b_top['hessian_top']['converged']}) | {t_b_top:.2f} s | "
      f"{b_top['hessian_top']['matvecs']} | max {err_b:.1e}·|λ|max, max residual "
      f"{max(b_top['hessian_top']['residual_norms']):.1e} |")
print(f"| trace | Hutchinson (tol 1e-3) | {t_ph_tr:.2f} s | {ph_tr_mv} | {abs(ph_tr - tr_exact):.3g} "
      f"(exact {tr_exact:.6g}) | Hutch++ (99 probes) | {t_b_tr:.2f} s | {b_tr['hessian_trace']['matvecs']} | "
      f"{abs(b_tr['hessian_trace']['estimate'] - tr_exact):.3g} (± {b_tr['hessian_trace']['std_error']:.3g} s.e.) |")
m2_exact = (lam ** 2).mean()
b_nodes = np.array(b_slq["hessian_density"]["nodes"][0])
b_w = np.array(b_slq["hessian_density"]["weights"][0])
print(f"| density | SLQ, 100 steps, 1 probe | {t_ph_slq:.2f} s | 100 | nodes span [{ph_nodes[0].min():.4g}, "
      f"{ph_nodes[0].max():.4g}] | SLQ, 100 steps, 1 probe | {t_b_slq:.2f} s | "
      f"{b_slq['hessian_density']['matvecs']} | nodes span [{b_nodes.min():.4g}, {b_nodes.max():.4g}]; "
      f"Σwλ² = {float((b_w * b_nodes ** 2).sum()):.4g} vs tr(H²)/N = {m2_exact:.4g} |")
print(f"exact extremes: λmax = {lam[0]:.6g}, λmin = {lam[-1]:.6g}; PyHessian missed: {missed}")
print(f"speed-up top-{a.top}: {t_ph_top / t_b_top:.1f}x (Basin wall time includes process start and loading)")
