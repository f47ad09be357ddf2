"""torch.nn.MultiheadAttention, nn.TransformerEncoderLayer (eval), a tiny ViT and flatten(0, 1), as
torch.onnx.export writes them at opsets 13–17, through `basin analyze --local` against PyTorch
float64 (attention_models.py has the models).

The export moves the batch axis ([n, T, D] → [T, n, D]) and merges it with the heads
([T, n·h, d], [n·h, T, d]) and the positions ([T·n, D]); the importer tracks where the batch sits
(kernels/onnx/src/batch_layout.hpp). Per case: G against torch.autograd.functional.jacobian (1e-9·
max|G|), σ(G) to 1e-9·σmax (method svd), the rank exact; cross-entropy over every position: the GGN
Jᵀ M J and the Hessian eigenvalues to 1e-8·|λ|max (sequence_reference.py: the Hessian checked by
plain Hessian-vector products, torch 1.13's vectorised one being wrong after LayerNorm). Bad input: a key_padding_mask
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
from sequence_reference import compare, parameter_names, reference  # noqa: E402

torch.set_num_threads(1)


def run(basin, path, constants, X, labels, want="jacobian,ggn,hessian", method="svd"):
    args = ["analyze", "--local", "--model", str(path), "--inputs", basin.npy("x.npy", X), "--targets",
            basin.npy("labels.npy", labels), "--loss", "cross_entropy", "--want", want, "--json", "--method", method,
            "--save-jacobian", basin.path("G.npy")]
    for c in constants:
        args += ["--constants", c]
    return basin.run(args, timeout=600)


def check(basin, model, path, constants, X, labels, hessian=True):
    names = parameter_names(path, constants)
    ref = reference(model, names, X, labels, hessian=hessian)
    res = run(basin, path, constants, X, labels, want="jacobian,ggn,hessian" if hessian else "jacobian,ggn").json()
    compare(res, np.load(basin.path("G.npy")), ref, X.shape[0], hessian=hessian)
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


@pytest.mark.parametrize("kind,opset", [("stack", 17), ("decoder", 17), ("decoder", 13), ("kdim", 17),
                                        ("bias_kv", 17), ("bias_kv", 14), ("transformer", 17)])
def test_attention_variants(basin, tmp_path, kind, opset):
    torch.manual_seed(0)
    model = am.randomise(am.Variant(kind), seed=11)
    X = np.random.default_rng(12).normal(size=(3, 5, 8))
    labels = np.random.default_rng(13).integers(0, 3, size=(3, 5)).astype(np.int64)
    path = tmp_path / "variant.onnx"
    am.export(model, path, torch.from_numpy(X), opset)
    check(basin, model, path, ["causal"], X, labels, hessian=sum(p.numel() for p in model.parameters()) <= 1200)


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


@pytest.mark.parametrize("kind", ["mha", "encoder", "vit"])
def test_fixed_batch_export_with_folding(basin, tmp_path, kind):
    """torch.onnx.export's defaults: a fixed batch (n = 2, written as numbers once shapes are
    folded) and constant folding (transposed weights become new initialisers, the mask is folded
    into one): σ(G), its rank, the GGN and Hessian eigenvalues do not depend on θ's order, so they
    are compared with torch's at named_parameters() order."""
    import warnings
    from onnx import numpy_helper
    from sequence_reference import compare
    torch.manual_seed(0)
    if kind == "mha":
        model = am.randomise(am.MHA(batch_first=False, mask="float"), seed=1)
        X, labels = tokens_and_labels(2, 5, 11, 5, seed=2)
    elif kind == "encoder":
        model = am.randomise(am.Encoder(batch_first=True, norm_first=True, mask="bool"), seed=3)
        X = np.random.default_rng(4).normal(size=(2, 5, 8))
        labels = np.random.default_rng(5).integers(0, 5, size=(2, 5)).astype(np.int64)
    else:
        model = am.randomise(am.ViT(), seed=6)
        X = np.random.default_rng(7).normal(size=(2, 3, 4, 4))
        labels = np.random.default_rng(8).integers(0, 5, size=(2,)).astype(np.int64)
    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(X),), str(path), opset_version=17)
    inits = onnx.load(str(path)).graph.initializer
    masks = [t.name for t in inits if t.data_type in (1, 11) and not np.isfinite(numpy_helper.to_array(t)).all()]
    ref = reference(model, [k for k, _ in model.named_parameters()], X, labels)
    res = run(basin, path, masks, X, labels).json()
    compare(res, None, ref, X.shape[0])


def test_fixed_batch_of_one_after_the_batch_moved_is_refused(basin, tmp_path):
    import warnings
    model = am.randomise(am.MHA(batch_first=True, mask=None), seed=1)
    tokens, labels = tokens_and_labels(1, 5, 11, 5, seed=2)
    path = tmp_path / "one.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(tokens),), str(path), opset_version=17)
    r = run(basin, path, [], tokens, labels, want="jacobian")
    assert r.returncode != 0
    assert "node '/att/Reshape' (Reshape)" in r.error and "fixed batch of 1" in r.error and "dynamic_axes" in r.error, \
        r.error


# ---- bad input ---------------------------------------------------------------------------------

class PaddingMask(torch.nn.Module):
    """A key_padding_mask: a buffer (per-example data [n, T] beside the one input), or computed
    from the tokens (tokens == 0)."""

    def __init__(self, n, source, T=5):
        super().__init__()
        self.source = source
        self.inner = am.MHA(batch_first=True, mask=None, T=T)
        pad = torch.zeros(n, T, dtype=torch.bool)
        pad[:, -1] = True
        self.register_buffer("pad", pad)

    def forward(self, tokens):
        m = self.inner
        x = m.emb(tokens) + m.pos
        pad = self.pad if self.source == "buffer" else tokens == 0
        return m.head(m.att(x, x, x, key_padding_mask=pad, need_weights=False)[0])


def test_key_padding_mask_refused_naming_the_node(basin, tmp_path):
    model = am.randomise(PaddingMask(3, "buffer"), seed=1)
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


def refusal(basin, tmp_path, module):
    """The one error line of `basin analyze` on the exported module (token inputs, loss none)."""
    model = am.randomise(module, seed=1)
    tokens, _ = tokens_and_labels(3, 5, 11, 5, seed=2)
    path = tmp_path / "m.onnx"
    am.export(model, path, torch.from_numpy(tokens), 17)
    r = basin.run(["analyze", "--local", "--model", str(path), "--inputs", basin.npy("t.npy", tokens), "--loss",
                   "none", "--want", "jacobian"])
    assert r.returncode != 0
    return r


def test_output_with_the_batch_on_axis_1_refused(basin, tmp_path):
    r = refusal(basin, tmp_path, BatchSecondOutput())
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
    r = refusal(basin, tmp_path, HeadsMixed())
    assert "MatMul" in r.error and "examples cannot be mixed" in r.error, r.error


def test_mask_from_the_input_refused_naming_the_node(basin, tmp_path):
    model = am.randomise(PaddingMask(3, "tokens"), seed=1)
    tokens, labels = tokens_and_labels(3, 5, 11, 5, seed=2)
    path = tmp_path / "kpm.onnx"
    am.export(model, path, torch.from_numpy(tokens), 17)
    r = run(basin, path, [], tokens, labels, want="jacobian")
    assert r.returncode != 0
    assert "node '/Equal' (Equal)" in r.error and "mask computed from the input" in r.error, r.error
