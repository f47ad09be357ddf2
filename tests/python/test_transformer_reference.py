"""Transformers exported from PyTorch (torch.onnx.export, float64) through `basin analyze --local`
against PyTorch float64: a hand-written 2-layer, 2-head causal GPT with tied input/output
embeddings (transformer_models.GPT) and nn.TransformerEncoderLayer over a token embedding.

Per case: integer tokens [n, T], the per-example output [T, C] (k = T·C); G against
torch.autograd.functional.jacobian, σ(G) to 1e-9·σmax, rank exact; cross-entropy over every
position (F.cross_entropy(logits.reshape(-1, C), labels.reshape(-1))): the GGN Jᵀ M J and the
Hessian (autograd.functional.hessian) eigenvalues to 1e-8·|λ|max. Bad input: token ids out of
range, label shapes that do not fit, a mask that depends on the input. (torch's own attention
modules: test_attention_reference.py.)
"""
import pathlib
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import transformer_models as tm  # noqa: E402
from sequence_reference import compare, reference  # noqa: E402
from sequence_reference import parameter_names as onnx_parameter_names  # noqa: E402

F = torch.nn.functional


def make_case(tmp_path, kind, n=4, T=6, seed=0, opset=17):
    torch.manual_seed(seed)
    if kind == "gpt":
        model = tm.GPT(vocab=11, T=T, width=8, heads=2, layers=2)
        constants = ["blocks.0.attn.tril"]
        C = 11
    elif kind == "gpt_tanh_additive":
        model = tm.GPT(vocab=11, T=T, width=8, heads=2, layers=1, gelu="tanh", mask="additive")
        constants = ["blocks.0.attn.tril"]
        C = 11
    else:
        model = tm.Encoder(vocab=11, width=8, heads=2, classes=5)
        constants = []
        C = 5
    model = tm.randomise(model, seed)
    path = tmp_path / f"{kind}_{opset}.onnx"
    tm.export(model, path, n, T, opset)
    rng = np.random.default_rng(seed + 1)
    tokens = rng.integers(0, 11, size=(n, T)).astype(np.int64)
    labels = rng.integers(0, C, size=(n, T)).astype(np.int64)
    return model, path, constants, tokens, labels


def run_case(basin, path, constants, tokens, labels, want="jacobian,ggn,hessian", extra=()):
    args = ["analyze", "--local", "--model", str(path), "--inputs", basin.npy("tokens.npy", tokens),
            "--targets", basin.npy("labels.npy", labels), "--loss", "cross_entropy", "--want", want, "--json",
            "--save-jacobian", basin.path("G.npy")]
    for c in constants:
        args += ["--constants", c]
    return basin.run(list(args) + list(extra), timeout=600)


CASES = [("gpt", 17), ("gpt", 13), ("gpt_tanh_additive", 17)]


@pytest.mark.parametrize("kind,opset", CASES)
def test_spectra_equal_torch(basin, tmp_path, kind, opset):
    model, path, constants, tokens, labels = make_case(tmp_path, kind, opset=opset)
    names = onnx_parameter_names(path, constants)
    hessian = kind != "gpt"  or opset == 17
    ref = reference(model, names, tokens, labels, hessian=hessian)
    want = "jacobian,ggn,hessian" if hessian else "jacobian,ggn"
    res = run_case(basin, path, constants, tokens, labels, want=want).json()
    compare(res, np.load(basin.path("G.npy")), ref, tokens.shape[0], hessian=hessian)


@pytest.mark.parametrize("opset", [13, 17])
def test_encoder_layer_over_embeddings(basin, tmp_path, opset):
    """nn.TransformerEncoderLayer over a token embedding: its nn.MultiheadAttention exports with
    the batch axis moved to axis 1 and merged with the heads ([T, n, D] → [T, n·h, d] →
    [n·h, T, d]); the importer tracks the batch's place (batch_layout.hpp), so the spectra equal
    torch's (the reference's Hessian checked by plain Hessian-vector products: LayerNorm)."""
    import test_attention_reference as tar
    model, path, constants, tokens, labels = make_case(tmp_path, "encoder", opset=opset)
    tar.check(basin, model, path, constants, tokens, labels)


def test_token_id_out_of_range(basin, tmp_path):
    _, path, constants, tokens, labels = make_case(tmp_path, "gpt")
    tokens[2, 3] = 11
    r = run_case(basin, path, constants, tokens, labels, want="jacobian")
    assert r.returncode != 0
    assert "token id 11 (example 2, position 3)" in r.error and "/wte/Gather" in r.error, r.error


def test_float_tokens_refused(basin, tmp_path):
    _, path, constants, tokens, labels = make_case(tmp_path, "gpt")
    r = run_case(basin, path, constants, tokens.astype(np.float64), labels, want="jacobian")
    assert r.returncode != 0 and "--inputs" in r.error and "integer token ids" in r.error, r.error


def test_label_shape_mismatch(basin, tmp_path):
    _, path, constants, tokens, labels = make_case(tmp_path, "gpt")
    r = run_case(basin, path, constants, tokens, labels[:, :5], want="jacobian")
    assert r.returncode != 0 and "--targets" in r.error and "(4, 6)" in r.error, r.error
    r = run_case(basin, path, constants, tokens, labels.reshape(-1), want="jacobian")
    assert r.returncode != 0 and "--targets" in r.error, r.error


class InputMask(torch.nn.Module):
    """Attention whose mask is computed from the tokens (a padding mask from the data)."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(11, 4)

    def forward(self, tokens):
        x = self.emb(tokens)
        att = x @ x.transpose(1, 2)
        pad = (tokens == 0).unsqueeze(1)
        att = att.masked_fill(pad, float("-inf"))
        return F.softmax(att, dim=-1) @ x


def test_input_dependent_mask_refused(basin, tmp_path):
    model = tm.randomise(InputMask())
    path = tmp_path / "mask.onnx"
    tm.export(model, path, 2, 5)
    tokens = np.ones((2, 5), dtype=np.int64)
    r = basin.run(["analyze", "--local", "--model", str(path), "--inputs", basin.npy("t.npy", tokens), "--loss",
                   "none", "--want", "jacobian"])
    assert r.returncode != 0
    assert "Where" in r.error or "Equal" in r.error, r.error
