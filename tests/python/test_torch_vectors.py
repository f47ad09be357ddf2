"""--vectors against PyTorch float64: the null basis is orthogonal to the rows of functorch's G
(‖G·V_null‖ ≤ the reported tolerance), the row basis spans them, and the GGN / Hessian
eigenvectors satisfy GGN·v = λ·v and torch.autograd.functional.hessian(L)·v = λ·v."""
import json

import numpy as np
import pytest
import torch

from test_torch_reference import Reference, draw_params, loss_fn

CASES = [
    # (activation, n, loss): n·k below and above N = 38 (input 3, width 5, k = 3)
    ("tanh", 4, "cross_entropy"),
    ("gelu", 20, "mse"),
    ("relu", 6, "mse"),
]


def case(act, n, loss, seed=17):
    spec = {"input_dim": 3, "layers": [{"type": "dense", "out": 5}, {"type": act}, {"type": "dense", "out": 3}]}
    rng = np.random.default_rng(seed)
    theta = draw_params(spec, rng)
    X = rng.normal(size=(n, 3))
    X[-1] = X[0]  # a repeated example: G is rank deficient in both regimes
    Y = rng.integers(0, 3, size=n).astype(np.int64) if loss == "cross_entropy" else rng.normal(size=(n, 3))
    return spec, theta, X, Y


@pytest.mark.parametrize("act,n,loss", CASES)
def test_vectors_match_pytorch(basin, act, n, loss):
    spec, theta, X, Y = case(act, n, loss)
    out = basin.dir / f"vectors_{act}_{n}"
    res, _ = basin.analyze(spec, theta, X, Y, loss=loss, want="jacobian,ggn,hessian",
                           extra=["--vectors", "jacobian_row,jacobian_null,ggn,hessian", "--save-dir", out])
    assert json.loads((out / "result.json").read_text()) == res
    ref = Reference(spec, theta, X, Y, loss, "mean")
    N, rank, tol = ref.N, res["jacobian"]["rank"], res["jacobian"]["tolerance"]
    files = {name: np.load(out / f["file"]) for name, f in res["files"].items()}
    V_row, V_null = files["jacobian_row_basis"], files["jacobian_null_basis"]
    assert V_row.shape == (rank, N) and V_null.shape == (N, N - rank)
    if n * 3 < N:
        assert N - rank > 0  # wide G: a null space; a full-rank tall G gives an N × 0 basis
    V = np.vstack([V_row, V_null.T])
    assert np.abs(V @ V.T - np.eye(N)).max() <= 1e-12
    smax = ref.sv[0]
    # every direction of the null basis leaves the outputs unchanged to first order
    assert np.linalg.norm(ref.G @ V_null, axis=0).max(initial=0.0) <= tol + 1e-10 * smax
    # and the row basis spans G's rows
    assert np.abs(ref.G - ref.G @ V_row.T @ V_row).max() <= tol + 1e-10 * smax

    H = ref.H
    lam = np.asarray(res["hessian"]["eigenvalues"])
    Vh = files["hessian_eigenvectors"]
    assert Vh.shape == (N, N)
    scale = np.abs(lam).max()
    assert np.abs(H @ Vh - Vh * lam).max() <= 1e-10 * scale
    assert np.abs(Vh.T @ Vh - np.eye(N)).max() <= 1e-12

    # GGN = Gᵀ M G with M the Hessian of the loss in the outputs (autograd)
    lf = loss_fn(loss, "mean")
    Yt = torch.as_tensor(Y)
    M = torch.autograd.functional.hessian(lambda o: lf(o, Yt), torch.as_tensor(ref.outputs))
    M = M.reshape(n * 3, n * 3).numpy()
    GGN = ref.G.T @ M @ ref.G
    mu = np.asarray(res["ggn"]["eigenvalues"])
    Vg = files["ggn_eigenvectors"]
    assert Vg.shape == (N, len(mu))
    assert np.abs(GGN @ Vg - Vg * mu).max() <= 1e-10 * mu[0]
    assert np.abs(Vg.T @ Vg - np.eye(len(mu))).max() <= 1e-12
