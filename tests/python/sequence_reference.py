"""PyTorch float64 reference for sequence models exported to ONNX (token or float inputs, outputs
[n, .., C], cross-entropy over every position as F.cross_entropy(logits.reshape(-1, C),
labels.reshape(-1))), in the θ order the caller names (the ONNX file's initialisers, or
named_parameters() for the Python client).

G by torch.autograd.functional.jacobian, σ(G), the GGN Jᵀ M J and the Hessian. torch 1.13's
vectorised Hessian is wrong for LayerNorm after a parameter (graph_reference.py), so it is checked
against plain double-backward Hessian-vector products and rebuilt row by row from them when it
disagrees.
"""
import numpy as np
import onnx
import torch

F = torch.nn.functional


def parameter_names(path, constants):
    """The float initialisers Basin takes as parameters, in file order (θ order)."""
    m = onnx.load(str(path))
    return [t.name for t in m.graph.initializer if t.name not in constants and t.data_type in (1, 11)]


def functional(model, names, x):
    """(θ in `names` order, f(θ) = model(x) at θ)."""
    params = dict(model.named_parameters())
    assert sorted(names) == sorted(params), (names, list(params))
    shapes = [params[k].shape for k in names]
    sizes = [int(np.prod(s)) for s in shapes]
    theta = torch.cat([params[k].detach().reshape(-1) for k in names])
    x = torch.from_numpy(x) if isinstance(x, np.ndarray) else x

    def f(th):
        p = {k: v.reshape(s) for k, v, s in zip(names, torch.split(th, sizes), shapes)}
        return torch.nn.utils.stateless.functional_call(model, p, (x,))
    return theta, f


def _hvp(L, theta, v):
    th = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(L(th), th, create_graph=True)
    (hv,) = torch.autograd.grad(g @ v, th)
    return hv.detach()


def reference(model, names, X, labels, hessian=True):
    theta, f = functional(model, names, X)
    out = f(theta).detach()
    C = out.shape[-1]
    lab = torch.from_numpy(labels).reshape(-1)
    J = torch.autograd.functional.jacobian(lambda th: f(th).reshape(-1), theta, vectorize=True)
    ref = {"outputs": out.numpy().reshape(-1), "G": J.numpy(), "sv": torch.linalg.svdvals(J).numpy()}
    lf = lambda o: F.cross_entropy(o.reshape(-1, C), lab)  # noqa: E731
    M = torch.autograd.functional.hessian(lf, out.reshape(-1))
    ref["loss"] = float(lf(out.reshape(-1)))
    ref["ggn"] = torch.linalg.eigvalsh(J.T @ M @ J).numpy()[::-1].copy()
    if hessian:
        L = lambda th: lf(f(th).reshape(-1))  # noqa: E731
        H = torch.autograd.functional.hessian(L, theta, vectorize=True)
        gen = torch.Generator().manual_seed(7)
        scale = float(H.abs().max())
        for _ in range(3):
            v = torch.randn(theta.shape[0], dtype=torch.float64, generator=gen)
            if float((H @ v - _hvp(L, theta, v)).abs().max()) > 1e-10 * scale * float(v.abs().sum()):
                eye = torch.eye(theta.shape[0], dtype=torch.float64)
                H = torch.stack([_hvp(L, theta, eye[j]) for j in range(theta.shape[0])])
                break
        ref["hess"] = torch.linalg.eigvalsh(0.5 * (H + H.T)).numpy()[::-1].copy()
    return ref


def close(got, want, tol, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = np.abs(got - want).max() if got.size else 0.0
    assert err <= tol, f"{what}: max error {err:.3e} > {tol:.3e}"


def compare(res, G, ref, n, hessian=True):
    """Basin's CLI JSON (and the saved G) against reference(): sizes, outputs, G (1e-9·max|G|;
    G None: not compared, for a θ whose order differs from the reference's — the spectra do not
    depend on it), σ(G) (1e-9·σmax by the SVD; a Gram route's σ² to 1e-10·σmax²), the rank exactly,
    the loss, the GGN and Hessian eigenvalues (1e-8·|λ|max)."""
    N, k = ref["G"].shape[1], ref["G"].shape[0] // n
    assert res["num_params"] == N and res["num_outputs"] == k and res["num_examples"] == n
    close(np.asarray(res["outputs"]).reshape(-1), ref["outputs"], 1e-10 * max(1, np.abs(ref["outputs"]).max()),
          "outputs")
    if G is not None:
        close(G, ref["G"], 1e-9 * np.abs(ref["G"]).max(), "G")
    sv = np.asarray(res["jacobian"]["singular_values"])
    m = min(n * k, N)
    smax = ref["sv"].max()
    if res["jacobian"]["method"] == "svd":
        close(sv, ref["sv"][:m], 1e-9 * smax, "singular values")
    else:  # a Gram route resolves σ² to 1e-10·σmax²
        close(sv ** 2, ref["sv"][:m] ** 2, 1e-10 * smax ** 2, "squared singular values")
    tol = res["jacobian"]["tolerance"]
    assert res["jacobian"]["rank"] == int(np.sum(ref["sv"] > tol))
    assert res["jacobian"]["rank"] == np.linalg.matrix_rank(ref["G"], tol=tol)
    assert abs(res["loss"] - ref["loss"]) <= 1e-12 * abs(ref["loss"])
    ggn = np.asarray(res["ggn"]["eigenvalues"])
    close(ggn, ref["ggn"][:len(ggn)], 1e-8 * np.abs(ref["ggn"]).max(), "GGN eigenvalues")
    if hessian:
        hess = np.asarray(res["hessian"]["eigenvalues"])
        close(hess, ref["hess"], 1e-8 * np.abs(ref["hess"]).max(), "Hessian eigenvalues")
