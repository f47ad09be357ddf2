"""`--want ...,per_parameter` against PyTorch float64: per parameter tensor (named as
named_parameters() names the equivalent nn.Sequential), the column block G_t of the per-example
Jacobian from functorch vmap(jacrev) with respect to that tensor alone, its singular values
(|s - s_ref| <= 1e-9 * s_max where Basin took the SVD of G_t; |s^2 - s_ref^2| <= 1e-10 * s_max^2 for
a Gram side, which resolves small values only to sqrt(eps) * s_max), its rank (= numpy matrix_rank
under auto and svd), its share ||G_t||_F^2 / ||G||_F^2, and the eigenvalues of the Hessian's diagonal
block from torch.autograd.functional.hessian of the loss in that tensor alone (1e-8 * max|lambda|)."""

import numpy as np
import pytest
import torch
from functorch import jacrev, make_functional, vmap

from test_torch_reference import draw_params, loss_fn, torch_model

SPECS = {
    # wide blocks (n*k < count: Gram side) with a bias-free middle layer and a ReLU
    "wide": ({"input_dim": 3, "layers": [{"type": "dense", "out": 6}, {"type": "relu"},
                                          {"type": "dense", "out": 4, "bias": False}, {"type": "tanh"},
                                          {"type": "dense", "out": 2}]}, 5),
    # tall blocks (n*k > count: G_t^T G_t side, accumulated over examples)
    "tall": ({"input_dim": 2, "layers": [{"type": "dense", "out": 5}, {"type": "gelu"},
                                          {"type": "dense", "out": 3}]}, 30),
    # a width-1 bottleneck: the first layer's blocks are rank-deficient (auto refines by SVD)
    "bottleneck": ({"input_dim": 4, "layers": [{"type": "dense", "out": 1}, {"type": "tanh"},
                                                {"type": "dense", "out": 6}, {"type": "softplus"},
                                                {"type": "dense", "out": 3}]}, 6),
}


def reference(spec, theta, X, Y, loss, reduction):
    model = torch_model(spec)
    torch.nn.utils.vector_to_parameters(torch.as_tensor(theta), model.parameters())
    names = [name for name, _ in model.named_parameters()]
    fmodel, params = make_functional(model)
    params = tuple(p.detach() for p in params)
    Xt = torch.as_tensor(X)

    def f1(ps, x):
        return fmodel(ps, x.unsqueeze(0)).squeeze(0)

    jac = vmap(jacrev(f1), in_dims=(None, 0))(params, Xt)  # per tensor: (n, k, *shape)
    n = X.shape[0]
    blocks = [j.reshape(n * j.shape[1], -1).numpy() for j in jac]
    hess = []
    if loss != "none":
        lf = loss_fn(loss, reduction)
        Yt = torch.as_tensor(Y)
        for t in range(len(params)):
            def L(p, t=t):
                ps = list(params)
                ps[t] = p
                return lf(fmodel(tuple(ps), Xt), Yt)
            H = torch.autograd.functional.hessian(L, params[t]).reshape(params[t].numel(), -1)
            H = 0.5 * (H + H.T)
            hess.append(torch.linalg.eigvalsh(H).numpy()[::-1].copy())
    return names, [tuple(p.shape) for p in params], blocks, hess


@pytest.mark.parametrize("case", sorted(SPECS))
@pytest.mark.parametrize("method", ["auto", "svd", "gram"])
@pytest.mark.parametrize("loss,reduction", [("mse", "mean"), ("cross_entropy", "sum")])
def test_per_parameter_matches_pytorch(basin, case, method, loss, reduction):
    spec, n = SPECS[case]
    rng = np.random.default_rng(sorted(SPECS).index(case) * 10 + len(loss))
    theta = draw_params(spec, rng)
    X = rng.normal(size=(n, spec["input_dim"]))
    k = [l["out"] for l in spec["layers"] if l["type"] == "dense"][-1]
    Y = rng.normal(size=(n, k)) if loss == "mse" else rng.integers(0, k, size=n).astype(np.int64)
    res, _ = basin.analyze(spec, theta, X, Y, loss=loss, reduction=reduction, method=method,
                           want="jacobian,hessian,per_parameter")
    names, shapes, blocks, hess = reference(spec, theta, X, Y, loss, reduction)
    pp = res["per_parameter"]
    assert [t["name"] for t in pp] == names
    assert [tuple(t["shape"]) for t in pp] == shapes
    total = sum(float(np.sum(b ** 2)) for b in blocks)
    offset = 0
    for t, G_t, h_ref in zip(pp, blocks, hess):
        what = f"{t['name']} ({t['jacobian']['method']})"
        assert t["offset"] == offset and t["count"] == G_t.shape[1], what
        offset += t["count"]
        s_ref = np.linalg.svd(G_t, compute_uv=False)
        s = np.array(t["jacobian"]["singular_values"])
        assert s.shape == s_ref.shape, what
        smax = s_ref[0]
        if t["jacobian"]["method"] == "svd":
            np.testing.assert_allclose(s, s_ref, rtol=0, atol=1e-9 * smax, err_msg=what)
        else:
            np.testing.assert_allclose(s ** 2, s_ref ** 2, rtol=0, atol=1e-10 * smax ** 2, err_msg=what)
        if method in ("auto", "svd"):
            assert t["jacobian"]["rank"] == np.linalg.matrix_rank(G_t), what
        assert t["jacobian"]["level_set_dim"] == t["count"] - t["jacobian"]["rank"]
        assert abs(t["gram_trace_fraction"] - float(np.sum(G_t ** 2)) / total) <= 1e-12, what
        h = np.array(t["hessian_block"]["eigenvalues"])
        np.testing.assert_allclose(h, h_ref, rtol=0, atol=1e-8 * max(np.abs(h_ref).max(), 1e-300), err_msg=what)
    assert offset == res["num_params"]
    assert abs(sum(t["gram_trace_fraction"] for t in pp) - 1) <= 1e-12
    if case == "bottleneck" and method == "auto":
        assert any(t["jacobian"].get("refined_from") for t in pp)  # the Gram could not resolve 0.weight


def test_per_parameter_without_the_hessian_has_no_blocks(basin):
    spec, n = SPECS["wide"]
    rng = np.random.default_rng(3)
    res, _ = basin.analyze(spec, draw_params(spec, rng), rng.normal(size=(n, 3)), loss="none",
                           want="per_parameter")
    assert "jacobian" not in res
    assert all("hessian_block" not in t for t in res["per_parameter"])
