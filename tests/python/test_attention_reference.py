"""torch.nn.MultiheadAttention, nn.TransformerEncoderLayer (eval), a tiny ViT and flatten(0, 1), as
torch.onnx.export writes them at opsets 13–17, through `basin analyze --local` against PyTorch
float64 (attention_models.py has the models).

The export moves the batch axis ([n, T, D] → [T, n, D]) and merges it with the heads
([T, n·h, d], [n·h, T, d]) and the positions ([T·n, D]); the importer tracks where the batch sits
(kernels/onnx/src/batch_layout.hpp). Per case: G against torch.autograd.functional.jacobian (1e-9·
max|G|), σ(G) to 1e-9·σmax (method svd), the rank exact; cross-entropy over every position: the GGN
Jᵀ M J and the Hessian eigenvalues to 1e-8·|λ|max. torch 1.13's vectorised Hessian is wrong for
LayerNorm after a parameter, so the reference Hessian is checked against plain double-backward
Hessian-vector products and rebuilt from them when it disagrees. Bad input: a key_padding_mask
buffer (per-example data beside the input), a key_padding_mask computed from the tokens, an output
left with the batch on axis 1, attention scores between examples.
"""
import pathlib
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import attention_models as am  # noqa: E402

F = torch.nn.functional
torch.set_num_threads(1)


def parameter_names(path, constants):
    """The float initialisers Basin takes as parameters, in file order (θ order)."""
    m = onnx.load(str(path))
    return [t.name for t in m.graph.initializer if t.name not in constants and t.data_type in (1, 11)]


def _hvp(L, theta, v):
    th = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(L(th), th, create_graph=True)
    (hv,) = torch.autograd.grad(g @ v, th)
    return hv.detach()


def reference(model, names, X, labels, hessian=True):
    params = dict(model.named_parameters())
    assert sorted(names) == sorted(params), (names, list(params))
    shapes = [params[k].shape for k in names]
    sizes = [int(np.prod(s)) for s in shapes]
    theta = torch.cat([params[k].detach().reshape(-1) for k in names])
    x = torch.from_numpy(X)

    def f(th):
        parts = torch.split(th, sizes)
        p = {k: v.reshape(s) for k, v, s in zip(names, parts, shapes)}
        return torch.nn.utils.stateless.functional_call(model, p, (x,))

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


def run(basin, path, constants, X, labels, want="jacobian,ggn,hessian", method="svd"):
    args = ["analyze", "--local", "--model", str(path), "--inputs", basin.npy("x.npy", X), "--targets",
            basin.npy("labels.npy", labels), "--loss", "cross_entropy", "--want", want, "--json", "--method", method,
            "--save-jacobian", basin.path("G.npy")]
    for c in constants:
        args += ["--constants", c]
    return basin.run(args, timeout=600)


def close(got, want, tol, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = np.abs(got - want).max() if got.size else 0.0
    assert err <= tol, f"{what}: max error {err:.3e} > {tol:.3e}"


def check(basin, model, path, constants, X, labels, hessian=True):
    names = parameter_names(path, constants)
    ref = reference(model, names, X, labels, hessian=hessian)
    res = run(basin, path, constants, X, labels, want="jacobian,ggn,hessian" if hessian else "jacobian,ggn").json()
    n = X.shape[0]
    N, k = ref["G"].shape[1], ref["G"].shape[0] // n
    assert res["num_params"] == N and res["num_outputs"] == k and res["num_examples"] == n
    close(np.asarray(res["outputs"]).reshape(-1), ref["outputs"], 1e-10 * max(1, np.abs(ref["outputs"]).max()),
          "outputs")
    close(np.load(basin.path("G.npy")), ref["G"], 1e-9 * np.abs(ref["G"]).max(), "G")
    sv = np.asarray(res["jacobian"]["singular_values"])
    smax = ref["sv"].max()
    close(sv, ref["sv"][: min(n * k, N)], 1e-9 * smax, "singular values")
    tol = res["jacobian"]["tolerance"]
    assert res["jacobian"]["rank"] == int(np.sum(ref["sv"] > tol))
    assert res["loss"] == pytest.approx(ref["loss"], rel=1e-12)
    ggn = np.asarray(res["ggn"]["eigenvalues"])
    close(ggn, ref["ggn"][: len(ggn)], 1e-8 * np.abs(ref["ggn"]).max(), "GGN eigenvalues")
    if hessian:
        hess = np.asarray(res["hessian"]["eigenvalues"])
        close(hess, ref["hess"], 1e-8 * np.abs(ref["hess"]).max(), "Hessian eigenvalues")
    return res


def tokens_and_labels(n, T, vocab, C, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, size=(n, T)).astype(np.int64), rng.integers(0, C, size=(n, T)).astype(np.int64)


OPSETS = [13, 14, 15, 16, 17]
MASKS = ["float", "bool", None]


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention(basin, tmp_path, batch_first, mask, opset):
    torch.manual_seed(0)
    model = am.randomise(am.MHA(batch_first=batch_first, mask=mask), seed=1)
    tokens, labels = tokens_and_labels(3, 5, 11, 5, seed=2)
    path = tmp_path / "mha.onnx"
    am.export(model, path, torch.from_numpy(tokens), opset)
    check(basin, model, path, ["causal"] if mask else [], tokens, labels)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
def test_transformer_encoder_layer(basin, tmp_path, batch_first, norm_first, opset):
    mask = MASKS[(opset + 2 * norm_first + batch_first) % 3]  # every mask kind across the grid
    torch.manual_seed(0)
    model = am.randomise(am.Encoder(batch_first=batch_first, norm_first=norm_first, mask=mask), seed=3)
    X = np.random.default_rng(4).normal(size=(3, 5, 8))
    labels = np.random.default_rng(5).integers(0, 5, size=(3, 5)).astype(np.int64)
    path = tmp_path / "enc.onnx"
    am.export(model, path, torch.from_numpy(X), opset)
    check(basin, model, path, ["causal"] if mask else [], X, labels)


@pytest.mark.parametrize("opset", [13, 17])
def test_vit_class_token(basin, tmp_path, opset):
    """Conv patches, flatten(2), the class token expanded to the batch and concatenated, learned
    positions, one encoder layer, the head on the class token."""
    torch.manual_seed(0)
    model = am.randomise(am.ViT(), seed=6)
    X = np.random.default_rng(7).normal(size=(3, 3, 4, 4))
    labels = np.random.default_rng(8).integers(0, 5, size=(3,)).astype(np.int64)
    path = tmp_path / "vit.onnx"
    am.export(model, path, torch.from_numpy(X), opset)
    check(basin, model, path, [], X, labels)


def test_flatten_batch_with_positions(basin, tmp_path):
    """x.flatten(0, 1) exports as Flatten(axis=2): [n, T, D] → [n·T, D]."""
    model = am.randomise(am.TokenMerge(), seed=9)
    tokens, labels = tokens_and_labels(3, 4, 11, 4, seed=10)
    path = tmp_path / "merge.onnx"
    am.export(model, path, torch.from_numpy(tokens), 17)
    assert any(n.op_type == "Flatten" and n.attribute[0].i == 2 for n in onnx.load(str(path)).graph.node)
    check(basin, model, path, [], tokens, labels)


# ---- bad input ---------------------------------------------------------------------------------

class PaddingMask(torch.nn.Module):
    """key_padding_mask as a buffer: per-example data [n, T] beside the one input."""

    def __init__(self, n, T=5):
        super().__init__()
        self.inner = am.MHA(batch_first=True, mask=None, T=T)
        pad = torch.zeros(n, T, dtype=torch.bool)
        pad[:, -1] = True
        self.register_buffer("pad", pad)

    def forward(self, tokens):
        m = self.inner
        x = m.emb(tokens) + m.pos
        y, _ = m.att(x, x, x, key_padding_mask=self.pad, need_weights=False)
        return m.head(y)


def test_key_padding_mask_refused_naming_the_node(basin, tmp_path):
    model = am.randomise(PaddingMask(3), seed=1)
    tokens, labels = tokens_and_labels(3, 5, 11, 5, seed=2)
    path = tmp_path / "pad.onnx"
    am.export(model, path, torch.from_numpy(tokens), 17)
    r = run(basin, path, ["pad"], tokens, labels, want="jacobian")
    assert r.returncode != 0
    assert "node '/att/" in r.error and "key_padding_mask" in r.error, r.error


class BatchSecondOutput(torch.nn.Module):
    """nn.MultiheadAttention(batch_first=False) whose [T, n, D] output is returned as it is."""

    def __init__(self):
        super().__init__()
        self.inner = am.MHA(batch_first=False, mask=None)

    def forward(self, tokens):
        m = self.inner
        x = (m.emb(tokens) + m.pos).transpose(0, 1)
        return m.att(x, x, x, need_weights=False)[0]


def test_output_with_the_batch_on_axis_1_refused(basin, tmp_path):
    model = am.randomise(BatchSecondOutput(), seed=1)
    tokens, labels = tokens_and_labels(3, 5, 11, 5, seed=2)
    path = tmp_path / "tnd.onnx"
    am.export(model, path, torch.from_numpy(tokens), 17)
    r = basin.run(["analyze", "--local", "--model", str(path), "--inputs", basin.npy("t.npy", tokens), "--loss",
                   "none", "--want", "jacobian"])
    assert r.returncode != 0
    assert "graph output 'y'" in r.error and "[5, n, 8]" in r.error and "node '/att/" in r.error, r.error


class HeadsMixed(torch.nn.Module):
    """Attention over the batch: scores between examples ([T, n, D] · [T, D, n]), which no per-example
    rewrite can express."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(11, 4)

    def forward(self, tokens):
        x = self.emb(tokens).transpose(0, 1)  # [T, n, D]
        att = torch.softmax(x @ x.transpose(1, 2), dim=-1)  # [T, n, n]
        return (att @ x).transpose(0, 1)


def test_attention_across_examples_refused_naming_the_node(basin, tmp_path):
    model = am.randomise(HeadsMixed(), seed=1)
    tokens, _ = tokens_and_labels(3, 5, 11, 5, seed=2)
    path = tmp_path / "across.onnx"
    am.export(model, path, torch.from_numpy(tokens), 17)
    r = basin.run(["analyze", "--local", "--model", str(path), "--inputs", basin.npy("t.npy", tokens), "--loss",
                   "none", "--want", "jacobian"])
    assert r.returncode != 0
    assert "MatMul" in r.error and "examples cannot be mixed" in r.error, r.error


class MaskFromTokens(torch.nn.Module):
    """key_padding_mask=(tokens == 0): a mask computed from the input."""

    def __init__(self):
        super().__init__()
        self.inner = am.MHA(batch_first=True, mask=None)

    def forward(self, tokens):
        m = self.inner
        x = m.emb(tokens) + m.pos
        return m.head(m.att(x, x, x, key_padding_mask=(tokens == 0), need_weights=False)[0])


def test_mask_from_the_input_refused_naming_the_node(basin, tmp_path):
    model = am.randomise(MaskFromTokens(), seed=1)
    tokens, labels = tokens_and_labels(3, 5, 11, 5, seed=2)
    path = tmp_path / "kpm.onnx"
    am.export(model, path, torch.from_numpy(tokens), 17)
    r = run(basin, path, [], tokens, labels, want="jacobian")
    assert r.returncode != 0
    assert "node '/Equal' (Equal)" in r.error and "mask computed from the input" in r.error, r.error
