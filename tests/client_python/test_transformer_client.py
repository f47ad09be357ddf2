"""Transformers from torch.nn.Module through the Python client and a real basind, against PyTorch
float64: int64 token inputs [n, T] (the module exported on integer ids), per-position labels [n, T]
for cross_entropy on outputs [n, T, C], a causal mask buffer taken as a constant without naming it
(the client sends named_buffers() as constants), nn.MultiheadAttention as torch exports it.
Bad input: labels of the wrong shape, float inputs to a token model."""
import os
import sys

import numpy as np
import pytest

import basin

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import attention_models as am  # noqa: E402
import transformer_models as tm  # noqa: E402
from sequence_reference import close, reference  # noqa: E402

torch.set_num_threads(1)


def check(client, model, X, labels):
    # θ = parameters_to_vector(model.parameters()): named_parameters() order
    ref = reference(model, [k for k, _ in model.named_parameters()], X, labels)
    r = client.analyze(model, X, labels, loss="cross_entropy", want=("jacobian", "ggn", "hessian"), method="svd",
                       return_jacobian=True)
    n = X.shape[0]
    N = ref["G"].shape[1]
    assert r.num_params == N and r.num_examples == n and r.num_outputs == ref["G"].shape[0] // n
    close(r.jacobian_matrix, ref["G"], 1e-9 * np.abs(ref["G"]).max(), "G")
    sv = np.asarray(r.jacobian.singular_values)
    close(sv, ref["sv"][: sv.size], 1e-9 * ref["sv"].max(), "singular values")
    assert r.jacobian.rank == int(np.sum(ref["sv"] > r.jacobian.tolerance))
    assert r.loss == pytest.approx(ref["loss"], rel=1e-12)
    ggn = np.asarray(r.ggn.eigenvalues)
    close(ggn, ref["ggn"][: ggn.size], 1e-8 * np.abs(ref["ggn"]).max(), "GGN eigenvalues")
    close(r.hessian.eigenvalues, ref["hess"], 1e-8 * np.abs(ref["hess"]).max(), "Hessian eigenvalues")
    return r


def tokens(n, T, vocab, C, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, size=(n, T)).astype(np.int64), rng.integers(0, C, size=(n, T)).astype(np.int64)


def test_gpt_tokens_and_position_labels(client):
    """The hand-written causal GPT (tied embeddings, a mask buffer `tril` used by Where) from the
    module itself: no --constants, the client names the buffer a constant."""
    torch.manual_seed(0)
    model = tm.randomise(tm.GPT(vocab=11, T=6, width=8, heads=2, layers=1), seed=0)
    X, labels = tokens(4, 6, 11, 11, seed=1)
    tm_export = basin.from_torch(model, X)
    assert any("tril" in c for c in tm_export.constant_names), tm_export.constant_names
    check(client, model, X, labels)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_module(client, batch_first):
    torch.manual_seed(0)
    model = am.randomise(am.MHA(batch_first=batch_first, mask="float"), seed=1)
    X, labels = tokens(3, 5, 11, 5, seed=2)
    assert "causal" in basin.from_torch(model, X).constant_names  # a float −inf mask buffer
    check(client, model, X, labels)


@pytest.mark.parametrize("batch_first,norm_first,mask", [(True, False, None), (False, True, "float")])
def test_encoder_layer_module(client, batch_first, norm_first, mask):
    """(True, False, None) is the case torch runs through its fused eval fast path
    (aten::_transformer_encoder_layer_fwd, which ONNX cannot write) unless grad is on: the client
    exports the composite module."""
    torch.manual_seed(0)
    model = am.randomise(am.Encoder(batch_first=batch_first, norm_first=norm_first, mask=mask), seed=3)
    X = np.random.default_rng(4).normal(size=(3, 5, 8))
    labels = np.random.default_rng(5).integers(0, 5, size=(3, 5)).astype(np.int64)
    check(client, model, X, labels)


def test_vit_module(client):
    """Conv patches, the class token expanded to the batch and concatenated, one encoder layer
    (batch_first: the fused fast path unless the client exports the composite ops), labels [n]."""
    torch.manual_seed(0)
    model = am.randomise(am.ViT(), seed=6)
    X = np.random.default_rng(7).normal(size=(3, 3, 4, 4))
    labels = np.random.default_rng(8).integers(0, 5, size=(3,)).astype(np.int64)
    check(client, model, X, labels)


class WithWeights(torch.nn.Module):
    """nn.MultiheadAttention called as att(x, x, x): need_weights=True (the head-averaged weights,
    unused), batch_first (torch's fast-path candidate), no mask."""

    def __init__(self):
        super().__init__()
        self.att = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        y, _ = self.att(x, x, x)
        return self.head(y)


def test_attention_called_with_default_arguments(client):
    model = am.randomise(WithWeights(), seed=4)
    X = np.random.default_rng(6).normal(size=(3, 5, 8))
    labels = np.random.default_rng(7).integers(0, 3, size=(3, 5)).astype(np.int64)
    check(client, model, X, labels)


def test_wrong_label_shape_names_the_field(client):
    model = am.randomise(am.MHA(batch_first=True, mask="float"), seed=1)
    X, labels = tokens(3, 5, 11, 5, seed=2)
    with pytest.raises(basin.InvalidArgument, match=r"targets\.shape: got \[3, 4\]; expected \[3, 5\]"):
        client.analyze(model, X, labels[:, :4], loss="cross_entropy", want=("jacobian",))
    with pytest.raises(basin.InvalidArgument, match=r"targets\.shape: got \[15\]"):
        client.analyze(model, X, labels.reshape(-1), loss="cross_entropy", want=("jacobian",))


def test_float_inputs_to_a_token_model(client):
    model = am.randomise(am.MHA(batch_first=True, mask="float"), seed=1)
    X, labels = tokens(3, 5, 11, 5, seed=2)
    exported = basin.from_torch(model, X)
    with pytest.raises(basin.InvalidArgument, match=r"inputs\.dtype: got float64; expected int32 or int64 token ids"):
        client.analyze(exported, X.astype(np.float64), labels, loss="cross_entropy", want=("jacobian",))


def test_token_id_out_of_range_names_the_node(client):
    model = am.randomise(am.MHA(batch_first=True, mask="float"), seed=1)
    X, labels = tokens(3, 5, 11, 5, seed=2)
    exported = basin.from_torch(model, X)
    X[1, 2] = 11
    with pytest.raises(basin.InvalidArgument, match=r"/emb/Gather.*token id 11"):
        client.analyze(exported, X, labels, loss="cross_entropy", want=("jacobian",))


def test_remote_cli_tokens_equal_local_cli(server, basin_bin, tmp_path):
    """`basin analyze --server` on a token model with per-position labels prints what `--local`
    prints (the CLI encodes integer inputs and [n, T] labels; basind decodes them)."""
    import json
    import subprocess
    from helpers import drop_volatile
    model = am.randomise(am.MHA(batch_first=False, mask="float"), seed=1)
    X, labels = tokens(3, 5, 11, 5, seed=2)
    path = os.path.join(tmp_path, "mha.onnx")
    am.export(model, path, torch.from_numpy(X), 17)
    np.save(os.path.join(tmp_path, "t.npy"), X)
    np.save(os.path.join(tmp_path, "y.npy"), labels)
    common = ["--model", path, "--inputs", os.path.join(tmp_path, "t.npy"), "--targets", os.path.join(tmp_path, "y.npy"),
              "--loss", "cross_entropy", "--constants", "causal", "--want", "jacobian,ggn,hessian", "--json"]
    out = {}
    for where in (["--server", server.address], ["--local", "--device", "cpu"]):
        p = subprocess.run([basin_bin, "analyze", *where, *common], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        out[where[0]] = drop_volatile(json.loads(p.stdout))
    assert out["--server"] == out["--local"]
    assert out["--local"]["hessian"] is not None and out["--local"]["num_outputs"] == 25
