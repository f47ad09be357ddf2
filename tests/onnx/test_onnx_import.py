"""ONNX import against PyTorch: models exported with torch.onnx.export at test time.

For every supported activation, with and without bias, several depths and opsets 11/13/17 (plus
hand-written opset-20 Gelu and MatMul+Add files), the imported layer list must match the
nn.Sequential and the imported parameters must equal parameters_to_vector (exactly for float64
exports). Where the CLI is built, `basin analyze --local --model m.onnx` must equal the JSON-spec
path to 1e-12 and its outputs must equal the torch forward pass.

Run by ctest (onnx_import_pytest) with BASIN_ONNX_DUMP (and BASIN_CLI) set; by hand:
  BASIN_ONNX_DUMP=build/tests/onnx/basin_onnx_dump BASIN_CLI=build/bin/basin \
      /usr/bin/python3 -m pytest -q tests/onnx/test_onnx_import.py
"""
import io
import json
import os
import subprocess
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

DUMP = os.environ.get("BASIN_ONNX_DUMP", "")
CLI = os.environ.get("BASIN_CLI", "")
if not DUMP or not os.path.exists(DUMP):
    pytest.skip("BASIN_ONNX_DUMP does not name the built basin_onnx_dump", allow_module_level=True)

nn = torch.nn

# name -> (module factory, layer the importer must produce or None for a no-op)
ACTIVATIONS = {
    "relu": (lambda: nn.ReLU(), {"type": "relu"}),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), {"type": "leaky_relu", "alpha": 0.2}),
    "tanh": (lambda: nn.Tanh(), {"type": "tanh"}),
    "sigmoid": (lambda: nn.Sigmoid(), {"type": "sigmoid"}),
    "gelu": (lambda: nn.GELU(), {"type": "gelu"}),
    "softplus": (lambda: nn.Softplus(), {"type": "softplus"}),
    "silu": (lambda: nn.SiLU(), {"type": "silu"}),
    "identity": (lambda: nn.Identity(), None),
    "flatten": (lambda: nn.Flatten(), None),
}
ACT_JSON = {type(f()).__name__: j for f, j in ACTIVATIONS.values()}


def spec_of(model, input_dim):
    """The Basin JSON spec of an nn.Sequential, written independently of the importer."""
    layers = []
    for m in model:
        if isinstance(m, nn.Linear):
            layers.append({"type": "dense", "out": m.out_features, "bias": m.bias is not None})
        elif ACT_JSON[type(m).__name__] is not None:
            layers.append(dict(ACT_JSON[type(m).__name__]))
    return {"input_dim": input_dim, "layers": layers}


def make_model(widths, act, bias, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    mods = []
    for i in range(len(widths) - 1):
        mods.append(nn.Linear(widths[i], widths[i + 1], bias=bias))
        if i + 2 < len(widths):
            mods.append(ACTIVATIONS[act][0]() if isinstance(act, str) else act[i]())
    return nn.Sequential(*mods).to(dtype)


def export(model, path, input_dim, opset, dtype=torch.float64):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(2, input_dim, dtype=dtype), str(path), opset_version=opset,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})


def dump(path):
    p = subprocess.run([DUMP, str(path)], capture_output=True, text=True, timeout=60)
    out = json.loads(p.stdout)
    assert (p.returncode == 0) == ("error" not in out), p.stdout + p.stderr
    return out


def flat_params(model):
    return nn.utils.parameters_to_vector(model.parameters()).detach().double().numpy()


def check_import(model, path, input_dim, opset):
    got = dump(path)
    assert "error" not in got, got
    assert got["opset"] == opset
    assert got["chain"] == spec_of(model, input_dim)
    params = np.array(got["params"], dtype=np.float64)
    want = flat_params(model)
    assert params.shape == want.shape
    np.testing.assert_allclose(params, want, rtol=0, atol=1e-12)
    return got


# ---- torch.onnx.export round trips ----

@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("bias", [True, False])
def test_every_activation_opset_and_bias(tmp_path, opset, act, bias):
    model = make_model([3, 5, 2], act, bias)
    path = tmp_path / "m.onnx"
    export(model, path, 3, opset)
    check_import(model, path, 3, opset)


@pytest.mark.parametrize("widths", [[4, 1], [4, 6, 3], [2, 8, 8, 8, 3], [6, 3, 5, 2, 4, 1]])
def test_depths_mixed_activations(tmp_path, widths):
    names = ["tanh", "gelu", "silu", "leaky_relu", "softplus", "relu", "sigmoid"]
    acts = [ACTIVATIONS[names[i % len(names)]][0] for i in range(len(widths))]
    model = make_model(widths, acts, bias=True, seed=len(widths))
    path = tmp_path / "m.onnx"
    export(model, path, widths[0], 13)
    check_import(model, path, widths[0], 13)


def test_float32_export_widens_exactly(tmp_path):
    model = make_model([3, 4, 2], "gelu", True, dtype=torch.float32)
    path = tmp_path / "m.onnx"
    export(model, path, 3, 17, dtype=torch.float32)
    got = dump(path)
    assert got["chain"] == spec_of(model, 3)
    assert np.array_equal(np.array(got["params"]), flat_params(model))  # float32 -> float64 is exact


def test_flatten_of_image_input(tmp_path):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(2, 1, 2, 3, dtype=torch.float64), str(path), opset_version=13,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    check_import(model, path, 6, 13)


# ---- files written with onnx.helper (other exporters' shapes) ----

def save(graph, path, opset):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, str(path))


def test_gelu_op_opset20(tmp_path):
    rng = np.random.default_rng(0)
    w1, b1, w2 = rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(2, 4))
    for approx, ok in [(None, True), ("none", True), ("tanh", False)]:
        attrs = {} if approx is None else {"approximate": approx}
        g = helper.make_graph(
            [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Gelu", ["h"], ["a"], name="act", **attrs),
             helper.make_node("Gemm", ["a", "w2"], ["y"], name="fc2", transB=1)],
            "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", 3])],
            [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["batch", 2])],
            [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")])
        path = tmp_path / f"gelu_{approx}.onnx"
        save(g, path, 20)
        got = dump(path)
        if ok:
            assert got["chain"]["layers"] == [{"type": "dense", "out": 4, "bias": True}, {"type": "gelu"},
                                               {"type": "dense", "out": 2, "bias": False}]
            assert got["params"] == list(np.concatenate([w1.ravel(), b1, w2.ravel()]))
        else:  # the tanh approximation: a graph node of its own (not a chain layer)
            assert got["chain"] is None
            fns = [n["attrs"].get("fn") for n in got["graph"]["nodes"] if n["op"] == "unary"]
            assert fns == ["gelu_tanh"], got["graph"]["nodes"]


@pytest.mark.parametrize("bias_first", [False, True])
@pytest.mark.parametrize("typed", [False, True])
def test_matmul_add(tmp_path, bias_first, typed):
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)  # w is [in, out]

    def tensor(a, name):
        if typed:  # float_data instead of raw_data
            return helper.make_tensor(name, TensorProto.FLOAT, a.shape, a.ravel().tolist())
        return numpy_helper.from_array(a, name)

    add_in = ["b", "xw"] if bias_first else ["xw", "b"]
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", add_in, ["h"]),
         helper.make_node("Sigmoid", ["h"], ["s"]), helper.make_node("Mul", ["h", "s"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 5])], [tensor(w, "w"), tensor(b, "b")])
    path = tmp_path / "mm.onnx"
    save(g, path, 14)
    got = dump(path)
    assert got["chain"] == {"input_dim": 3, "layers": [{"type": "dense", "out": 5, "bias": True}, {"type": "silu"}]}
    assert got["params"] == list(np.concatenate([w.T.ravel(), b]).astype(np.float64))


# ---- errors ----

def test_truncated_and_garbage_files(tmp_path):
    model = make_model([3, 4, 2], "tanh", True)
    path = tmp_path / "m.onnx"
    export(model, path, 3, 13)
    data = path.read_bytes()
    for cut in [1, 10, len(data) // 3, len(data) // 2, len(data) - 1]:
        p = tmp_path / f"cut{cut}.onnx"
        p.write_bytes(data[:cut])
        got = dump(p)
        assert got["error"]["code"] == "INVALID_ARGUMENT", (cut, got)
        assert str(p) in got["error"]["message"]
    p = tmp_path / "garbage.onnx"
    p.write_bytes(b"\x08\x07\x12\xff\xff\xff\xff\x0f junk")
    assert dump(p)["error"]["code"] == "INVALID_ARGUMENT"
    assert dump(tmp_path / "missing.onnx")["error"]["code"] == "INVALID_ARGUMENT"


def test_conv1d_is_a_graph_now(tmp_path):
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)).double()
    path = tmp_path / "conv.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(2, 1, 6, dtype=torch.float64), str(path), opset_version=13,
                          input_names=["x"], output_names=["y"])
    got = dump(path)
    assert "error" not in got, got
    assert [n["op"] for n in got["graph"]["nodes"]] == ["conv", "reshape", "matmul"]
    assert got["num_params"] == sum(p.numel() for p in model.parameters())
    assert got["chain"] is None


def test_tanh_approximate_gelu_from_torch_imports_as_primitives(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 2)).double()
    path = tmp_path / "m.onnx"
    export(model, path, 3, 17)
    got = dump(path)
    assert "error" not in got, got
    assert "tanh" in [n["attrs"].get("fn") for n in got["graph"]["nodes"]]
    assert got["num_params"] == sum(p.numel() for p in model.parameters())


def test_residual_imports_and_multiple_inputs_do_not(tmp_path):
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) + x

    path = tmp_path / "res.onnx"
    export(Residual().double(), path, 3, 13)
    got = dump(path)
    assert "error" not in got, got
    assert [n["op"] for n in got["graph"]["nodes"]] == ["matmul", "add"]

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x, z):
            return self.fc(x) + self.fc(z)

    path = tmp_path / "two.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TwoInputs().double(), (torch.zeros(2, 3, dtype=torch.float64),) * 2, str(path),
                          opset_version=13, input_names=["x", "z"], output_names=["y"])
    err = dump(path)["error"]
    assert err["code"] == "INVALID_ARGUMENT" and "2 inputs" in err["message"], err


# ---- the CLI: the ONNX path equals the JSON-spec path ----

def run_cli(*args):
    p = subprocess.run([CLI, "analyze", "--local", "--device", "cpu", "--json", *args],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def assert_same(a, b, path="result"):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            # timings and when/where a run happened differ between runs; the rest must not
            if k not in ("timings_ms", "started_at", "duration_ms", "host"):
                assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(a - b) <= 1e-12 * max(1.0, abs(a), abs(b)), (path, a, b)
    else:
        assert a == b, path


needs_cli = pytest.mark.skipif(not CLI or not os.path.exists(CLI), reason="BASIN_CLI (the basin CLI) not built")


def check_cli(tmp_path, model, onnx_path, spec, x, k):
    """basin analyze on the .onnx file equals basin analyze on the JSON spec + parameters_to_vector,
    and its outputs equal the torch forward pass."""
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    np.save(tmp_path / "p.npy", flat_params(model))
    y = np.random.default_rng(3).normal(size=(x.shape[0], k))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    common = ["--inputs", str(tmp_path / "x.npy"), "--targets", str(tmp_path / "y.npy"), "--loss", "mse",
              "--want", "jacobian,ggn,hessian"]
    via_spec = run_cli("--model", str(tmp_path / "spec.json"), "--params", str(tmp_path / "p.npy"), *common)
    via_onnx = run_cli("--model", str(onnx_path), *common)
    assert_same(via_spec, via_onnx)
    with torch.no_grad():
        want = model(torch.from_numpy(x).to(next(model.parameters()).dtype)).double().numpy()
    np.testing.assert_allclose(np.array(via_onnx["outputs"]), want, rtol=1e-12, atol=1e-12)


@needs_cli
@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "softplus", "silu"])
@pytest.mark.parametrize("bias", [True, False])
def test_cli_onnx_equals_json_spec(tmp_path, opset, act, bias):
    widths = [3, 6, 5, 2]
    model = make_model(widths, act, bias, seed=7)
    onnx_path = tmp_path / "m.onnx"
    export(model, onnx_path, 3, opset)
    x = np.random.default_rng(4).normal(size=(7, 3))
    check_cli(tmp_path, model, onnx_path, spec_of(model, 3), x, 2)


@needs_cli
@pytest.mark.parametrize("widths", [[4, 1], [2, 8, 8, 8, 3], [6, 3, 5, 2, 4, 1]])
def test_cli_depths(tmp_path, widths):
    names = ["tanh", "gelu", "silu", "leaky_relu", "softplus", "relu", "sigmoid"]
    acts = [ACTIVATIONS[names[i % len(names)]][0] for i in range(len(widths))]
    model = make_model(widths, acts, bias=True, seed=len(widths))
    onnx_path = tmp_path / "m.onnx"
    export(model, onnx_path, widths[0], 13)
    x = np.random.default_rng(5).normal(size=(5, widths[0]))
    check_cli(tmp_path, model, onnx_path, spec_of(model, widths[0]), x, widths[-1])


@needs_cli
def test_cli_gelu_op_opset20(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2)).double()
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), helper.make_node("Gelu", ["h"], ["a"]),
         helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], transB=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["batch", 2])],
        [numpy_helper.from_array(p.detach().numpy(), n)
         for p, n in zip(model.parameters(), ["w1", "b1", "w2", "b2"])])
    onnx_path = tmp_path / "gelu20.onnx"
    save(g, onnx_path, 20)
    x = np.random.default_rng(6).normal(size=(6, 3))
    check_cli(tmp_path, model, onnx_path, spec_of(model, 3), x, 2)
