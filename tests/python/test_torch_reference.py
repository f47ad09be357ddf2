"""Basin's CLI against a PyTorch reference (float64, functorch vmap(jacrev), autograd.functional.hessian).

Every case draws a seeded random MLP, writes spec/params/data, runs `basin analyze --local --json
--save-jacobian`, and checks the per-example Jacobian G, its singular values, rank and level-set
dimension, the GGN and Hessian spectra, the residual term, the loss, the gradient norm and the outputs.

Tolerances (all relative to the scale of the quantity, never loosened to hide a discrepancy):
  * G entrywise: 1e-10 * max|G|; outputs: 1e-12 * max(1, max|f|).
  * singular values: method svd: |s - s_ref| <= 1e-9 * s_max; gram/normal (decompose a Gram matrix, so
    small singular values are only resolved to sqrt(eps) * s_max): |s^2 - s_ref^2| <= 1e-10 * s_max^2.
  * GGN / Hessian / residual eigenvalues: 1e-10 * max|eig(H)| (or max|eig(GGN)|).
"""

import json
import math

import numpy as np
import pytest
import torch
from functorch import jacrev, make_functional, vmap

torch.set_num_threads(1)

ACTIVATIONS = ["identity", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "softplus", "silu"]
METHODS = ["auto", "gram", "normal", "svd"]
LOSSES = [("none", None), ("mse", "mean"), ("mse", "sum"), ("cross_entropy", "mean"), ("cross_entropy", "sum")]
EPS64 = np.finfo(np.float64).eps


# --------------------------------------------------------------------------------------------------
# Reference model
# --------------------------------------------------------------------------------------------------

def torch_model(spec):
    layers = []
    width = spec["input_dim"]
    for layer in spec["layers"]:
        t = layer["type"]
        if t == "dense":
            layers.append(torch.nn.Linear(width, layer["out"], bias=layer.get("bias", True)))
            width = layer["out"]
        elif t == "identity":
            layers.append(torch.nn.Identity())
        elif t == "relu":
            layers.append(torch.nn.ReLU())
        elif t == "leaky_relu":
            layers.append(torch.nn.LeakyReLU(negative_slope=layer["alpha"]))
        elif t == "tanh":
            layers.append(torch.nn.Tanh())
        elif t == "sigmoid":
            layers.append(torch.nn.Sigmoid())
        elif t == "gelu":
            layers.append(torch.nn.GELU())  # exact erf form
        elif t == "softplus":
            layers.append(torch.nn.Softplus(beta=1, threshold=20))
        elif t == "silu":
            layers.append(torch.nn.SiLU())
        else:
            raise ValueError(t)
    return torch.nn.Sequential(*layers).double()


def output_dim(spec):
    return [l["out"] for l in spec["layers"] if l["type"] == "dense"][-1]


def num_params(spec):
    width, total = spec["input_dim"], 0
    for l in spec["layers"]:
        if l["type"] == "dense":
            total += width * l["out"] + (l["out"] if l.get("bias", True) else 0)
            width = l["out"]
    return total


def loss_fn(loss, reduction):
    if loss == "mse":
        return lambda out, y: torch.nn.functional.mse_loss(out, y, reduction=reduction)
    if loss == "cross_entropy":
        return lambda out, y: torch.nn.functional.cross_entropy(out, y, reduction=reduction)
    return None


class Reference:
    """Everything Basin reports, computed in float64 with PyTorch."""

    def __init__(self, spec, theta, X, Y=None, loss="none", reduction="mean", hessian=True):
        model = torch_model(spec)
        fmodel, params0 = make_functional(model)
        shapes = [p.shape for p in params0]
        sizes = [p.numel() for p in params0]

        def unflat(th):
            return tuple(chunk.view(shape) for chunk, shape in zip(torch.split(th, sizes), shapes))

        def f(th, x):
            return fmodel(unflat(th), x)

        def f1(th, x):
            return f(th, x.unsqueeze(0)).squeeze(0)

        th = torch.as_tensor(np.asarray(theta, dtype=np.float64))
        Xt = torch.as_tensor(np.asarray(X, dtype=np.float64))
        n = Xt.shape[0]
        N = th.numel()
        assert N == num_params(spec)
        self.N, self.n = N, n
        with torch.no_grad():
            self.outputs = f(th, Xt).numpy()
        k = self.outputs.shape[1]
        self.k = k
        J = vmap(jacrev(f1), in_dims=(None, 0))(th, Xt)  # (n, k, N)
        self.G = J.reshape(n * k, N).detach().numpy()
        self.sv = np.linalg.svd(self.G, compute_uv=False)  # descending, min(nk, N)
        self.sv_torch = torch.linalg.svdvals(J.reshape(n * k, N)).detach().numpy()
        self.loss = self.grad_norm = None
        if loss != "none":
            lf = loss_fn(loss, reduction)
            Yt = torch.as_tensor(Y)
            Lfun = lambda t: lf(f(t, Xt), Yt)
            thg = th.clone().requires_grad_(True)
            L = Lfun(thg)
            (grad,) = torch.autograd.grad(L, thg)
            self.loss = float(L)
            self.grad_norm = float(torch.linalg.norm(grad))
            out = torch.as_tensor(self.outputs)
            M = torch.autograd.functional.hessian(lambda o: lf(o, Yt), out).reshape(n * k, n * k)
            Gt = torch.as_tensor(self.G)
            GGN = Gt.T @ M @ Gt
            GGN = 0.5 * (GGN + GGN.T)
            self.ggn = torch.linalg.eigvalsh(GGN).numpy()[::-1].copy()
            if hessian:
                H = torch.autograd.functional.hessian(Lfun, th, vectorize=True)
                H = 0.5 * (H + H.T)
                self.H = H.numpy()
                self.hess = torch.linalg.eigvalsh(H).numpy()[::-1].copy()
                R = H - GGN
                self.residual = torch.linalg.eigvalsh(R).numpy()[::-1].copy()
                self.residual_rel = float(torch.linalg.norm(R) / torch.linalg.norm(H))


# --------------------------------------------------------------------------------------------------
# Random problems
# --------------------------------------------------------------------------------------------------

def relu_preactivations(spec, theta, X):
    """Pre-activations feeding each relu / leaky_relu layer (to keep away from the kink)."""
    model = torch_model(spec)
    torch.nn.utils.vector_to_parameters(torch.as_tensor(theta), model.parameters())
    zs = []
    h = torch.as_tensor(X)
    with torch.no_grad():
        for layer, desc in zip(model, spec["layers"]):
            if desc["type"] in ("relu", "leaky_relu"):
                zs.append(h.clone())
            h = layer(h)
    return zs


def draw_params(spec, rng):
    """Glorot-ish weights, small biases; float64."""
    parts = []
    width = spec["input_dim"]
    for l in spec["layers"]:
        if l["type"] == "dense":
            out = l["out"]
            parts.append(rng.normal(0.0, 1.2 / math.sqrt(width), size=(out, width)).ravel())
            if l.get("bias", True):
                parts.append(rng.normal(0.0, 0.3, size=out))
            width = out
    return np.concatenate(parts)


def draw_case(seed):
    """Seeded random architecture, parameters and data.  Returns a dict describing the case."""
    method = METHODS[seed % 4]
    regime = "below" if (seed // 4) % 2 == 0 else "above"  # n*k <= N  or  n*k > N
    loss, reduction = LOSSES[seed % 5]
    rng = np.random.default_rng(1000 + seed)
    for _attempt in range(50):
        d = int(rng.integers(1, 6))
        depth = int(rng.integers(1, 5))  # number of dense layers
        k = int(rng.integers(2 if loss == "cross_entropy" else 1, 5))
        layers = []
        for j in range(depth - 1):
            layers.append({"type": "dense", "out": int(rng.integers(1, 13)), "bias": bool(rng.random() < 0.75)})
            act = ACTIVATIONS[(seed + 3 * j) % len(ACTIVATIONS)] if j == 0 else str(rng.choice(ACTIVATIONS))
            a = {"type": act}
            if act == "leaky_relu":
                a["alpha"] = float(np.round(rng.uniform(0.01, 0.9), 4))
            layers.append(a)
        layers.append({"type": "dense", "out": k, "bias": bool(rng.random() < 0.75)})
        if loss == "none" and rng.random() < 0.3:  # sometimes end on an activation
            act = str(rng.choice(["tanh", "sigmoid", "softplus", "gelu"]))
            layers.append({"type": act})
        spec = {"input_dim": d, "layers": layers}
        N = num_params(spec)
        if regime == "below":
            n = max(1, int(N * rng.uniform(0.3, 0.95) / k))
            if n * k > N:
                continue
        else:
            n = int(math.ceil(N * rng.uniform(1.2, 2.5) / k)) + 1
            if n * k <= N:
                continue
        if n * k > 1500 or N > 500:
            continue
        theta = draw_params(spec, rng)
        X = rng.normal(size=(n, d))
        zs = relu_preactivations(spec, theta, X)
        if any(float(z.abs().min()) < 1e-6 for z in zs):
            continue  # too close to a ReLU kink (e.g. all inputs of a bias-free unit are zero)
        if loss == "mse":
            Y = rng.normal(size=(n, k))
        elif loss == "cross_entropy":
            Y = rng.integers(0, k, size=n).astype(np.int64)
        else:
            Y = None
        return dict(seed=seed, spec=spec, theta=theta, X=X, Y=Y, loss=loss, reduction=reduction,
                    method=method, regime=regime, N=N, n=n, k=k)
    raise RuntimeError(f"could not draw case {seed}")


# --------------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------------

def assert_close_abs(got, want, tol, what):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if got.size == 0:
        return
    err = np.abs(got - want).ravel()
    j = int(np.argmax(err))
    assert err[j] <= tol, (f"{what}: max abs error {err[j]:.3e} > {tol:.3e} at index {j} "
                           f"(got {got.ravel()[j]!r}, expected {want.ravel()[j]!r})")


def assert_descending(v, what):
    v = np.asarray(v)
    assert np.all(np.diff(v) <= 0), f"{what} not in descending order: {v}"


def method_expected(requested, n, k, N):
    if requested != "auto":
        return requested
    return "gram" if n * k <= N else "normal"


def check_singular_values(res, ref, method):
    sv = np.asarray(res["jacobian"]["singular_values"])
    want = ref.sv
    assert sv.shape == (min(ref.n * ref.k, ref.N),)
    assert_descending(sv, "jacobian.singular_values")
    smax = want[0]
    if method == "svd":
        assert_close_abs(sv, want, 1e-9 * smax, "jacobian.singular_values (svd) vs numpy svd")
        assert_close_abs(sv, ref.sv_torch, 1e-9 * smax, "jacobian.singular_values (svd) vs torch.linalg.svdvals")
    else:
        assert_close_abs(sv ** 2, want ** 2, 1e-10 * smax ** 2, f"jacobian.singular_values^2 ({method}) vs svd^2")
        assert np.all(sv >= 0)


def check_rank(res, ref, method):
    jac = res["jacobian"]
    sv = np.asarray(jac["singular_values"])
    N = ref.N
    assert jac["level_set_dim"] == N - jac["rank"]
    tol = jac["tolerance"]
    smax = ref.sv[0]
    size = max(ref.n * ref.k, N)
    if method == "svd":
        expected_tol = smax * size * EPS64
    else:  # Basin documents (analysis.cpp) that the cut is applied to the Gram: sqrt(size*eps)*s_max
        expected_tol = smax * math.sqrt(size * EPS64)
    assert tol == pytest.approx(expected_tol, rel=1e-6), f"jacobian.tolerance {tol} vs {expected_tol} ({method})"
    assert jac["rank"] == int(np.sum(sv > tol)), "rank is not the count of reported values above the tolerance"
    # Rank against the reference singular values wherever the cut is unambiguous.
    near = (ref.sv > tol / 100) & (ref.sv < tol * 100)
    if not near.any():
        assert jac["rank"] == int(np.sum(ref.sv > tol)), (
            f"rank {jac['rank']} but {int(np.sum(ref.sv > tol))} reference singular values exceed the "
            f"tolerance {tol:.3e}; reference tail {ref.sv[-4:]}, basin tail {sv[-4:]}")
    r = jac["rank"]
    if 1 <= r < len(sv) and sv[r] > 0:
        assert jac["gap"] == pytest.approx(sv[r - 1] / sv[r], rel=1e-9)


def check_all(res, G, ref, case):
    n, k, N = ref.n, ref.k, ref.N
    assert res["num_params"] == N
    assert res["num_examples"] == n
    assert res["num_outputs"] == k
    assert res["dtype"] == "float64"
    assert res["backend"] == "cpu"
    assert res["loss_function"] == case["loss"]
    method = method_expected(case["method"], n, k, N)
    jac = res["jacobian"]
    if case["method"] == "auto" and jac["method"] == "svd":
        # auto re-decides an unclear Gram cut with the SVD of G and says so
        assert jac.get("refined_from") == method, jac
        method = "svd"
    else:
        assert jac["method"] == method
        assert "refined_from" not in jac

    out = np.asarray(res["outputs"])
    assert_close_abs(out, ref.outputs, 1e-12 * max(1.0, np.abs(ref.outputs).max()), "outputs")

    if G is not None:  # None: G was not saved (checkpoint batches refuse --save-jacobian)
        assert G.shape == (n * k, N)
        assert_close_abs(G, ref.G, 1e-10 * np.abs(ref.G).max(), "saved jacobian G vs functorch vmap(jacrev)")

    check_singular_values(res, ref, method)
    check_rank(res, ref, method)
    check_bound(jac, "jacobian", int(np.linalg.matrix_rank(ref.G)), n * k, N)

    if case["loss"] == "none":
        assert res["loss"] is None
        return
    assert res["reduction"] == case["reduction"]
    assert res["loss"] == pytest.approx(ref.loss, rel=1e-12, abs=1e-15), "loss value"
    assert res["grad_norm"] == pytest.approx(ref.grad_norm, rel=1e-10, abs=1e-14), "grad_norm"

    ggn = np.asarray(res["ggn"]["eigenvalues"])
    m = min(n * k, N)
    assert ggn.shape == (m,), "ggn.eigenvalues must list min(n*k, N) values"
    assert_descending(ggn, "ggn.eigenvalues")
    gscale = max(np.abs(ref.ggn).max(), 1e-300)
    assert_close_abs(ggn, ref.ggn[:m], 1e-10 * gscale, "ggn.eigenvalues vs eigvalsh(G^T M G)")
    assert np.all(np.abs(ref.ggn[m:]) <= 1e-10 * gscale)  # sanity of the reference
    assert res["ggn"]["rank"] == int(np.sum(ggn > res["ggn"]["tolerance"]))
    assert res["ggn"]["rank"] <= res["ggn"]["bound"]["rank_at_most"], res["ggn"]["bound"]
    if case["loss"] == "cross_entropy":
        # k − 1 factor columns: the structural zeros are exact and never trigger auto's refinement
        r = min(n * (k - 1), N)
        assert np.all(ggn[r:] == 0.0), "cross-entropy's structural zeros must be exact"
        assert res["ggn"]["bound"]["rank_at_most"] <= n * (k - 1)
        if case["method"] == "auto" and res["ggn"]["method"] == "svd":
            assert res["ggn"].get("refined_from") in ("gram", "normal")
            # refined only for a genuine deficiency: some computed value below the Gram's resolution
            # (the Gram resolves λ to λ_max·max(n(k−1), N)·ε; margin 10 for the Gram's own error)
            assert ggn[r - 1] < 10 * ggn[0] * max(n * (k - 1), N) * EPS64, ggn[r - 4:r]

    hess = res["hessian"]
    hscale = np.abs(ref.hess).max()
    assert len(hess["eigenvalues"]) == N
    assert_descending(hess["eigenvalues"], "hessian.eigenvalues")
    assert_close_abs(hess["eigenvalues"], ref.hess, 1e-10 * hscale, "hessian.eigenvalues vs autograd hessian")
    assert len(hess["residual_eigenvalues"]) == N
    assert_close_abs(hess["residual_eigenvalues"], ref.residual, 1e-10 * hscale,
                     "hessian.residual_eigenvalues vs eigvalsh(H - GGN)")
    assert hess["residual_rel"] == pytest.approx(ref.residual_rel, rel=1e-8, abs=1e-12), "residual_rel"
    assert hess["rank"] == int(np.sum(np.abs(hess["eigenvalues"]) > hess["tolerance"]))
    assert hess["method"] == "dense" and "refined_from" not in hess
    assert hess["rank"] <= hess["bound"]["rank_at_most"], hess["bound"]


def check_bound(spectrum, what, numpy_rank, nk, N):
    """`bound` is present, well formed, and holds for Basin's and numpy's rank of the torch G."""
    b = spectrum["bound"]
    assert set(b) == {"rank_at_most", "why", "exact"}, b
    assert isinstance(b["why"], str) and b["why"], b
    assert spectrum["rank"] <= b["rank_at_most"] <= min(nk, N), (what, b)
    assert numpy_rank <= b["rank_at_most"], (what, numpy_rank, b)
    if b["exact"]:
        assert spectrum["rank"] == b["rank_at_most"] == numpy_rank, (what, b)


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------

CASE_SEEDS = list(range(40))  # seed -> (method, regime, loss) is a bijection onto all 4*2*5 combinations


@pytest.mark.parametrize("seed", CASE_SEEDS)
def test_random_architecture(basin, seed):
    case = draw_case(seed)
    want = "jacobian" if case["loss"] == "none" else "jacobian,ggn,hessian"
    res, G = basin.analyze(case["spec"], case["theta"], case["X"], case["Y"], loss=case["loss"],
                           reduction=case["reduction"], want=want, method=case["method"], save_jacobian=True)
    ref = Reference(case["spec"], case["theta"], case["X"], case["Y"], case["loss"], case["reduction"] or "mean")
    check_all(res, G, ref, case)


def test_case_coverage():
    """The drawn cases cover every activation, both regimes, every method x loss x reduction."""
    seen_acts, combos, bias_off = set(), set(), False
    for seed in CASE_SEEDS:
        c = draw_case(seed)
        for l in c["spec"]["layers"]:
            if l["type"] != "dense":
                seen_acts.add(l["type"])
            elif not l.get("bias", True):
                bias_off = True
        combos.add((c["method"], c["regime"], c["loss"], c["reduction"]))
    assert seen_acts == set(ACTIVATIONS)
    assert bias_off
    assert len(combos) == 40


def test_square_nk_equals_N(basin):
    spec = {"input_dim": 2, "layers": [{"type": "dense", "out": 3}, {"type": "gelu"}, {"type": "dense", "out": 1}]}
    N = num_params(spec)  # 6 + 3 + 3 + 1 = 13 = n * k with n = 13, k = 1
    rng = np.random.default_rng(7)
    theta = draw_params(spec, rng)
    X = rng.normal(size=(N, 2))
    Y = rng.normal(size=(N, 1))
    for method in METHODS:
        case = dict(loss="mse", reduction="mean", method=method)
        res, G = basin.analyze(spec, theta, X, Y, loss="mse", reduction="mean", want="jacobian,ggn,hessian",
                               method=method, save_jacobian=True)
        check_all(res, G, Reference(spec, theta, X, Y, "mse", "mean"), case)


def test_softplus_threshold_and_saturation(basin):
    """Pre-activations on both sides of softplus' threshold 20 and deep in sigmoid/tanh saturation."""
    spec = {"input_dim": 1, "layers": [{"type": "dense", "out": 3}, {"type": "softplus"},
                                       {"type": "dense", "out": 2}, {"type": "sigmoid"},
                                       {"type": "dense", "out": 2}]}
    theta = np.array([10.0, -8.0, 1.0,  # W1 (3x1)
                      0.5, 0.25, -0.1,  # b1
                      0.3, -0.2, 0.1, -0.4, 0.2, 0.3,  # W2 (2x3)
                      0.0, 0.1,  # b2
                      1.0, -1.0, 0.5, 2.0,  # W3
                      0.1, -0.1])
    X = np.array([[-3.1], [-1.7], [0.3], [1.93], [2.05], [2.6], [3.3]])  # 10x+0.5 spans -30.5 .. 33.5
    Y = np.random.default_rng(3).normal(size=(7, 2))
    res, G = basin.analyze(spec, theta, X, Y, loss="mse", want="jacobian,ggn,hessian", method="svd",
                           save_jacobian=True)
    check_all(res, G, Reference(spec, theta, X, Y, "mse", "mean"), dict(loss="mse", reduction="mean", method="svd"))


# --- structural rank deficiency ------------------------------------------------------------------

def structural_cases():
    """(name, spec, theta, X) with rank(G) < min(n*k, N) by construction, and a clean cut: every genuine
    singular value is >= ~1e-4 * s_max, every structural one is at rounding level (so the rank is not a
    matter of tolerance, also for the Gram paths that resolve s only to sqrt(eps) * s_max)."""
    out = []
    rng = np.random.default_rng(42)
    # 1. ReLU bottleneck of width 1 feeding the (linear) output layer: positive homogeneity of relu gives
    #    the one-dimensional symmetry (w1, b1, W2) -> (a w1, a b1, W2 / a); rank = N - 1 once n*k >= N.
    spec = {"input_dim": 4, "layers": [{"type": "dense", "out": 1}, {"type": "relu"}, {"type": "dense", "out": 3}]}
    theta = draw_params(spec, rng)
    theta[4] = 1.5  # b1 > 0: the bottleneck unit is active on most (not all) examples
    X = rng.normal(size=(10, 4))  # n*k = 30 > N = 11
    out.append(("relu_bottleneck", spec, theta.copy(), X))
    # 2. leaky_relu bottleneck: also positively homogeneous.
    spec = {"input_dim": 3, "layers": [{"type": "dense", "out": 1, "bias": False}, {"type": "leaky_relu", "alpha": 0.2},
                                       {"type": "dense", "out": 2}]}
    theta = draw_params(spec, rng)
    X = rng.normal(size=(12, 3))  # n*k = 24 > N = 7
    out.append(("leaky_bottleneck", spec, theta.copy(), X))
    # 3. tanh scalar bottleneck: the part before it contributes rank <= n, so rank <= n + P_after < n*k <= N.
    spec = {"input_dim": 4, "layers": [{"type": "dense", "out": 8}, {"type": "tanh"}, {"type": "dense", "out": 1},
                                       {"type": "tanh"}, {"type": "dense", "out": 3}]}  # N = 32+8+8+1+3+3 = 55
    theta = draw_params(spec, rng)
    X = rng.normal(size=(10, 4))  # n*k = 30 < N
    out.append(("tanh_bottleneck", spec, theta.copy(), X))
    # 4. Dead ReLUs: large negative biases switch hidden units off on every example.
    spec = {"input_dim": 4, "layers": [{"type": "dense", "out": 10}, {"type": "relu"}, {"type": "dense", "out": 3}]}
    theta = draw_params(spec, rng)
    theta[40:45] = -50.0  # b1[0:5] dead
    theta[45:50] = np.abs(theta[45:50]) + 0.5  # b1[5:10] alive
    X = rng.normal(size=(60, 4))  # n*k = 180 > N = 83
    out.append(("dead_relu_half", spec, theta.copy(), X))
    theta = theta.copy()
    theta[40:49] = -50.0  # only one unit alive: rank <= 4 + 1 + 3 + 3 - 1 = 10 < n*k = 24 < N
    X = rng.normal(size=(8, 4))
    out.append(("dead_relu_one_alive", spec, theta, X))
    return out


STRUCTURAL = structural_cases()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name,spec,theta,X", STRUCTURAL, ids=[c[0] for c in STRUCTURAL])
def test_structural_rank(basin, name, spec, theta, X, method):
    ref = Reference(spec, theta, X)
    ref_rank = int(np.linalg.matrix_rank(ref.G))
    assert ref_rank < min(ref.n * ref.k, ref.N), f"{name}: case is not rank deficient (reference rank {ref_rank})"
    assert relu_preactivations(spec, theta, X) == [] or all(
        float(z.abs().min()) > 1e-6 for z in relu_preactivations(spec, theta, X))
    res, G = basin.analyze(spec, theta, X, loss="none", want="jacobian", method=method, save_jacobian=True)
    check_all(res, G, ref, dict(loss="none", reduction=None, method=method))
    jac = res["jacobian"]
    assert jac["rank"] == ref_rank, (f"{name} ({jac['method']}): rank {jac['rank']}, numpy matrix_rank of the "
                                     f"torch G is {ref_rank}; tolerance {jac['tolerance']:.3e}, "
                                     f"values around the cut {jac['singular_values'][max(0, ref_rank - 2):ref_rank + 2]}")
    assert jac["level_set_dim"] == ref.N - ref_rank
    sv = jac["singular_values"]
    if sv[ref_rank] == 0.0:
        # s_r / 0 is infinite; Basin reports null (the same value it reports for "no cut").
        assert jac["gap"] is None or jac["gap"] > 1e3
    else:
        assert jac["gap"] is not None and jac["gap"] > 1e3, f"{name}: gap at a structural cut should be clear: {jac['gap']}"


@pytest.mark.parametrize("bias", [False, True])
def test_deep_linear_rank_is_singh_bachmann_hofmann(basin, bias):
    """rank(G) = rank(GGN) = q(r + K − q) (+ K with biases, 1 ∉ rowspace X) for a deep linear network,
    against numpy's matrix_rank of functorch's G and of the explicit G^T M G."""
    rng = np.random.default_rng(3)
    d, widths, K, n, r = 6, [3, 5], 4, 12, 4
    spec = {"input_dim": d, "layers": []}
    for w in widths:
        spec["layers"] += [{"type": "dense", "out": w, "bias": bias}, {"type": "identity"}]
    spec["layers"].append({"type": "dense", "out": K, "bias": bias})
    theta = draw_params(spec, rng)
    X = rng.normal(size=(n, r)) @ rng.normal(size=(r, d))  # rank(X) = 4
    Y = rng.normal(size=(n, K))
    q = min(r, K, *widths)
    expected = q * (r + K - q) + (K if bias else 0)
    res, _ = basin.analyze(spec, theta, X, Y, loss="mse", want="jacobian,ggn", method="svd")
    ref = Reference(spec, theta, X, Y, "mse", "mean", hessian=False)
    assert int(np.linalg.matrix_rank(ref.G)) == expected
    for what in ("jacobian", "ggn"):
        assert res[what]["rank"] == expected, what
        assert res[what]["bound"] == {"rank_at_most": expected, "why": res[what]["bound"]["why"], "exact": True}
        assert "Singh" in res[what]["bound"]["why"]


def test_rtol_atol_override(basin):
    name, spec, theta, X = STRUCTURAL[-1]
    ref = Reference(spec, theta, X)
    s = ref.sv
    # rtol halfway (geometrically) between two singular values selects exactly that many.
    j = 5
    rtol = math.sqrt(s[j - 1] * s[j]) / s[0]
    res, _ = basin.analyze(spec, theta, X, loss="none", want="jacobian", method="svd", extra=["--rtol", repr(rtol)])
    assert res["jacobian"]["tolerance"] == pytest.approx(rtol * s[0], rel=1e-9)
    assert res["jacobian"]["rank"] == j
    atol = math.sqrt(s[j] * s[j + 1])
    res, _ = basin.analyze(spec, theta, X, loss="none", want="jacobian", method="svd", extra=["--atol", repr(atol)])
    assert res["jacobian"]["tolerance"] == pytest.approx(atol, rel=1e-12)
    assert res["jacobian"]["rank"] == j + 1
    assert res["jacobian"]["level_set_dim"] == ref.N - j - 1


# --- the Gauss-Newton claim ------------------------------------------------------------------------

INTERP = [
    ("tanh", "mean", 6), ("gelu", "sum", 6), ("softplus", "mean", 40), ("sigmoid", "sum", 40), ("silu", "mean", 9),
]


@pytest.mark.parametrize("act,reduction,n", INTERP)
def test_interpolating_mse_hessian_is_gauss_newton(basin, act, reduction, n):
    spec = {"input_dim": 3, "layers": [{"type": "dense", "out": 5}, {"type": act}, {"type": "dense", "out": 2}]}
    rng = np.random.default_rng([ord(ch) for ch in act + reduction] + [n])
    theta = draw_params(spec, rng)
    X = rng.normal(size=(n, 3))
    ref = Reference(spec, theta, X)
    Y = ref.outputs.copy()  # targets = the model's own outputs: residuals vanish
    res, _ = basin.analyze(spec, theta, X, Y, loss="mse", reduction=reduction, want="jacobian,ggn,hessian")
    N, nk = ref.N, n * 2
    c = 2.0 / nk if reduction == "mean" else 2.0
    sv = np.asarray(res["jacobian"]["singular_values"])
    predicted = np.zeros(N)
    predicted[: len(sv)] = c * sv ** 2
    eig = np.asarray(res["hessian"]["eigenvalues"])
    # rounding: Hessian eigenvalues to ~eps*|H|; c*sigma^2 from the Gram to ~size*eps*|H|
    assert_close_abs(eig, predicted, 1e-12 * eig.max() * max(nk, N), "eig(H) vs (2/(n k)) sigma(G)^2")
    assert_close_abs(eig, predicted, 1e-10 * eig.max(), "eig(H) vs (2/(n k)) sigma(G)^2")
    ref_pred = np.zeros(N)
    ref_pred[: len(ref.sv)] = c * ref.sv ** 2
    assert_close_abs(eig, ref_pred, 1e-10 * eig.max(), "eig(H) vs (2/(n k)) sigma(G_torch)^2")
    assert res["hessian"]["residual_rel"] < 1e-12, res["hessian"]["residual_rel"]
    assert res["loss"] < 1e-28
    assert res["grad_norm"] < 1e-13


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_residual_is_nonzero(basin, reduction):
    spec = {"input_dim": 3, "layers": [{"type": "dense", "out": 6}, {"type": "tanh"}, {"type": "dense", "out": 3}]}
    rng = np.random.default_rng(11)
    theta = draw_params(spec, rng)
    X = rng.normal(size=(8, 3))
    Y = rng.integers(0, 3, size=8).astype(np.int64)
    res, G = basin.analyze(spec, theta, X, Y, loss="cross_entropy", reduction=reduction,
                           want="jacobian,ggn,hessian", save_jacobian=True)
    ref = Reference(spec, theta, X, Y, "cross_entropy", reduction)
    check_all(res, G, ref, dict(loss="cross_entropy", reduction=reduction, method="auto"))
    assert res["hessian"]["residual_rel"] > 1e-2
    # each softmax Hessian block has rank k - 1 (its null vector is the all-ones vector)
    assert res["ggn"]["rank"] == 8 * (3 - 1), res["ggn"]
    # The CE GGN is not a multiple of G^T G: its eigenvalues are not proportional to sigma^2.
    sv = np.asarray(res["jacobian"]["singular_values"])
    ggn = np.asarray(res["ggn"]["eigenvalues"])
    ratio = ggn[:5] / sv[:5] ** 2
    assert ratio.max() / ratio.min() > 1.01


# --- float32 --------------------------------------------------------------------------------------

@pytest.mark.parametrize("param_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act,n,method", [("tanh", 5, "auto"), ("gelu", 40, "auto"), ("silu", 8, "svd"),
                                          ("leaky_relu", 30, "normal")])
def test_float32_matches_float64_reference(basin, act, n, method, param_dtype):
    layers = [{"type": "dense", "out": 7}, {"type": act}, {"type": "dense", "out": 2}]
    if act == "leaky_relu":
        layers[1]["alpha"] = 0.05
    spec = {"input_dim": 3, "layers": layers}
    rng = np.random.default_rng(5 + n)
    theta = draw_params(spec, rng).astype(np.float32)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    Y = rng.normal(size=(n, 2)).astype(np.float32)
    ref = Reference(spec, theta.astype(np.float64), X.astype(np.float64), Y.astype(np.float64), "mse", "mean")
    res, _ = basin.analyze(spec, theta.astype(param_dtype), X, Y, loss="mse", want="jacobian,ggn,hessian",
                           method=method, dtype="float32")
    assert res["dtype"] == "float32"
    sv = np.asarray(res["jacobian"]["singular_values"])
    top = ref.sv[ref.sv > 1e-2 * ref.sv[0]][:6]
    np.testing.assert_allclose(sv[: len(top)], top, rtol=1e-4, err_msg="float32 top singular values")
    np.testing.assert_allclose(res["outputs"], ref.outputs, rtol=0, atol=1e-5 * np.abs(ref.outputs).max())
    assert res["loss"] == pytest.approx(ref.loss, rel=1e-4)
    hess = np.asarray(res["hessian"]["eigenvalues"])
    assert_close_abs(hess[:3], ref.hess[:3], 1e-4 * np.abs(ref.hess).max(), "float32 top Hessian eigenvalues")
    # float32 default tolerance uses float32's eps
    eps32 = float(np.finfo(np.float32).eps)
    size = max(n * 2, ref.N)
    used = res["jacobian"]["method"]
    exp_tol = sv[0] * size * eps32 if used == "svd" else sv[0] * math.sqrt(size * eps32)
    assert res["jacobian"]["tolerance"] == pytest.approx(exp_tol, rel=1e-6)


# --- --want subsets, file formats -----------------------------------------------------------------

@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_want_subsets_give_the_same_numbers(basin, loss):
    spec = {"input_dim": 3, "layers": [{"type": "dense", "out": 5}, {"type": "silu"}, {"type": "dense", "out": 3}]}
    rng = np.random.default_rng(21)
    theta = draw_params(spec, rng)
    X = rng.normal(size=(6, 3))
    Y = rng.normal(size=(6, 3)) if loss == "mse" else rng.integers(0, 3, size=6).astype(np.int64)
    full, G = basin.analyze(spec, theta, X, Y, loss=loss, want="jacobian,ggn,hessian", save_jacobian=True)
    check_all(full, G, Reference(spec, theta, X, Y, loss, "mean"), dict(loss=loss, reduction="mean", method="auto"))
    for key in ("device", "timings_ms", "outputs"):
        assert key in full
    for want in ("jacobian", "ggn", "hessian", "ggn,hessian", "hessian,jacobian"):
        res, _ = basin.analyze(spec, theta, X, Y, loss=loss, want=want)
        wanted = set(want.split(","))
        for part in ("jacobian", "ggn", "hessian"):
            if part in wanted:
                assert res[part] == full[part], f"--want {want}: {part} differs from the full run"
            else:
                assert res.get(part) is None, f"--want {want}: {part} reported although not asked for"
        assert res["loss"] == full["loss"] and res["grad_norm"] == full["grad_norm"]


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_header_versions_and_float32_params(basin, version):
    spec = {"input_dim": 3, "layers": [{"type": "dense", "out": 4}, {"type": "sigmoid"}, {"type": "dense", "out": 2}]}
    rng = np.random.default_rng(8)
    theta32 = draw_params(spec, rng).astype(np.float32)  # exactly representable: float64 compute must be exact
    X = rng.normal(size=(7, 3))
    p_path = basin.path(f"p_v{version[0]}.npy")
    x_path = basin.path(f"x_v{version[0]}.npy")
    with open(p_path, "wb") as fh:
        np.lib.format.write_array(fh, theta32, version=version)
    with open(x_path, "wb") as fh:
        np.lib.format.write_array(fh, X, version=version)
    res, G = basin.analyze(spec, p_path, x_path, loss="none", want="jacobian", save_jacobian=True)
    assert res["dtype"] == "float64"
    ref = Reference(spec, theta32.astype(np.float64), X)
    check_all(res, G, ref, dict(loss="none", reduction=None, method="auto"))


@pytest.mark.parametrize("scale", [50.0, 300.0])
def test_cross_entropy_saturated_softmax(basin, scale):
    """Logits of size ~scale: softmax saturates, p_c(1 - p_c) must not be computed as p_c - p_c^2.

    PyTorch's double backward through cross_entropy does exactly that (M_cc = 0 once p_c rounds to 1),
    so here the GGN reference uses M_i = diag(p) - p p^T with the diagonal formed as p_c * sum_{j!=c} p_j.
    """
    spec = {"input_dim": 3, "layers": [{"type": "dense", "out": 5}, {"type": "tanh"}, {"type": "dense", "out": 3}]}
    rng = np.random.default_rng(1)
    theta = draw_params(spec, rng)
    theta[-18:] *= scale  # last layer: weights (3x5) and bias (3)
    X = rng.normal(size=(6, 3))
    Y = rng.integers(0, 3, size=6).astype(np.int64)
    ref = Reference(spec, theta, X, Y, "cross_entropy", "mean")
    res, G = basin.analyze(spec, theta, X, Y, loss="cross_entropy", want="jacobian,ggn,hessian", save_jacobian=True)
    assert res["loss"] == pytest.approx(ref.loss, rel=1e-12)
    assert res["grad_norm"] == pytest.approx(ref.grad_norm, rel=1e-10)
    assert_close_abs(G, ref.G, 1e-10 * np.abs(ref.G).max(), "saved jacobian G")
    out = ref.outputs
    n, k = out.shape
    z = out - out.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    Mb = np.zeros((n * k, n * k))
    for i in range(n):
        M = -np.outer(p[i], p[i])
        for c in range(k):
            M[c, c] = p[i, c] * sum(p[i, j] for j in range(k) if j != c)
        Mb[i * k:(i + 1) * k, i * k:(i + 1) * k] = M / n
    ggn_ref = np.linalg.eigvalsh(ref.G.T @ Mb @ ref.G)[::-1]
    ggn = np.asarray(res["ggn"]["eigenvalues"])
    assert ggn[0] == pytest.approx(ggn_ref[0], rel=1e-8), (ggn[:3], ggn_ref[:3])
    assert_close_abs(ggn, ggn_ref[: len(ggn)], 1e-10 * ggn_ref[0], "saturated ggn.eigenvalues")
    hscale = np.abs(ref.hess).max()
    assert_close_abs(res["hessian"]["eigenvalues"], ref.hess, 1e-10 * hscale, "saturated hessian.eigenvalues")


@pytest.mark.parametrize("n,d,spectrum", [(20, 4, [1.0, 0.3, 0.1, 1e-9]), (3, 6, [1.0, 0.3, 1e-9])])
def test_auto_rank_sees_genuine_small_singular_value(basin, n, d, spectrum):
    """DESIGN.md: the default rank is NumPy's matrix_rank (tolerance s_max * max(nk, N) * eps).

    A bias-free linear model with k = 1 has G = X exactly, so X is built with a genuine singular value
    of 1e-9 * s_max: far above NumPy's cut (~1e-15), below what a Gram matrix resolves (~1e-8).
    With --method auto (the user chose nothing) the reported rank must still be matrix_rank(G).
    """
    rng = np.random.default_rng(n)
    U, _ = np.linalg.qr(rng.normal(size=(n, len(spectrum))))
    V, _ = np.linalg.qr(rng.normal(size=(d, len(spectrum))))
    X = U @ np.diag(spectrum) @ V.T
    spec = {"input_dim": d, "layers": [{"type": "dense", "out": 1, "bias": False}]}
    theta = rng.normal(size=d)
    res, G = basin.analyze(spec, theta, X, loss="none", want="jacobian", method="auto", save_jacobian=True)
    np.testing.assert_allclose(G, X, rtol=0, atol=1e-15)
    expected = int(np.linalg.matrix_rank(X))
    assert expected == len(spectrum)
    jac = res["jacobian"]
    assert jac["rank"] == expected, (
        f"--method auto ({jac['method']}): rank {jac['rank']}, numpy matrix_rank {expected}; reported "
        f"singular values {jac['singular_values']} (true {spectrum}), gap {jac['gap']}")
    assert jac["level_set_dim"] == d - expected


def test_auto_rank_of_a_tall_G_over_the_memory_limit_uses_tsqr(basin):
    """n*k > N: auto decomposes G^T G, which resolves s only to ~sqrt(eps) * s_max. Its refinement, the SVD
    of G, needs G in memory; under a --max-memory G does not fit in, Basin builds the triangular factor R of
    G = QR blockwise (TSQR) and reports s(R) = s(G) with the SVD's accuracy and rank rule, method "tsqr".

    G = X (bias-free linear model, k = 1) with 3 genuine singular values below G^T G's resolution (3e-7)
    and far above matrix_rank's cut (400 * eps ~ 9e-14).
    """
    n, d = 400, 12
    spectrum = np.concatenate([np.geomspace(1.0, 1e-3, 9), [1e-9, 1e-10, 1e-12]])
    rng = np.random.default_rng(12)
    U, _ = np.linalg.qr(rng.normal(size=(n, d)))
    V, _ = np.linalg.qr(rng.normal(size=(d, d)))
    X = U @ np.diag(spectrum) @ V.T
    spec = {"input_dim": d, "layers": [{"type": "dense", "out": 1, "bias": False}]}
    theta = rng.normal(size=d)
    ref = Reference(spec, theta, X)
    expected = int(np.linalg.matrix_rank(ref.G))
    assert expected == d
    # Memory estimates (analysis.cpp, float64, bytes): shared buffers 121,696; + normal (G^T G, G in one
    # block) 39,552 = 161,248; + svd (G, gesdd work) 43,008 = 164,704; + TSQR 7,488 + 96 per block row.
    # 160 KiB: normal runs, G does not fit, TSQR runs in blocks of 361 examples (two blocks).
    limit_gib = 160 * 1024 / 2 ** 30
    res, _ = basin.analyze(spec, theta, X, loss="none", want="jacobian", method="auto",
                           extra=["--max-memory", repr(limit_gib)])
    jac = res["jacobian"]
    assert jac["method"] == "tsqr" and jac.get("refined_from") == "normal", jac
    sv = np.asarray(jac["singular_values"])
    assert_close_abs(sv, ref.sv, 1e-12 * ref.sv[0], "tsqr singular values vs numpy svd of the functorch G")
    assert jac["tolerance"] == pytest.approx(sv[0] * n * EPS64, rel=1e-12)  # the SVD's rule
    assert jac["rank"] == expected and jac["level_set_dim"] == 0, jac
    normal, _ = basin.analyze(spec, theta, X, loss="none", want="jacobian", method="normal")
    assert normal["jacobian"]["rank"] == 9, "G^T G alone must miss the three small values here"
    full, _ = basin.analyze(spec, theta, X, loss="none", want="jacobian", method="auto")
    assert full["jacobian"]["method"] == "svd" and full["jacobian"]["refined_from"] == "normal"
    assert full["jacobian"]["rank"] == expected
    assert_close_abs(sv, full["jacobian"]["singular_values"], 1e-12 * sv[0], "tsqr vs svd singular values")


@pytest.mark.parametrize("loss,method,n", [("mse", "auto", 5), ("cross_entropy", "auto", 5), ("mse", "normal", 30),
                                           ("cross_entropy", "svd", 5), ("cross_entropy", "gram", 5)])
def test_checkpoints_each_line_matches_the_reference(basin, loss, method, n):
    """--params of shape (B, N): B JSON lines, in order, each checked against PyTorch on its own theta
    (the batch path shares the data upload and batches the eigen-solves; the numbers must not change)."""
    spec = {"input_dim": 3, "layers": [{"type": "dense", "out": 6}, {"type": "tanh"}, {"type": "dense", "out": 5},
                                       {"type": "gelu"}, {"type": "dense", "out": 3}]}
    N = num_params(spec)
    rng = np.random.default_rng(17)
    base = rng.normal(scale=0.6, size=N)
    thetas = np.stack([base + 0.3 * b * rng.normal(size=N) for b in range(4)])
    X = rng.normal(size=(n, 3))
    Y = rng.normal(size=(n, 3)) if loss == "mse" else rng.integers(0, 3, size=n).astype(np.int64)
    args = basin.analyze_args(spec, thetas, X, Y, loss=loss, reduction="mean", want="jacobian,ggn,hessian",
                              method=method)
    r = basin.run(args)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(thetas), f"expected one JSON line per checkpoint, got {len(lines)}"
    case = {"loss": loss, "reduction": "mean", "method": method}
    for theta, line in zip(thetas, lines):
        ref = Reference(spec, theta, X, Y, loss, "mean")
        check_all(json.loads(line), None, ref, case)
