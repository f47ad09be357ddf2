"""ONNX graphs exported from PyTorch at test time: the parameters Basin finds in a bare file are the
module's parameters() (N == sum(p.numel()), same names, same order, same values), with BatchNorm's
running statistics constants; and where the CLI is built, the forward outputs of the imported
graph equal torch's.

Exports use training=TrainingMode.PRESERVE on an eval-mode module: the default (EVAL) folds
BatchNorm into the preceding Conv, which changes the parameter set.

Run by ctest (onnx_import_pytest) with BASIN_ONNX_DUMP (and BASIN_CLI) set.
"""
import json
import os
import subprocess
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

DUMP = os.environ.get("BASIN_ONNX_DUMP", "")
CLI = os.environ.get("BASIN_CLI", "")
if not DUMP or not os.path.exists(DUMP):
    pytest.skip("BASIN_ONNX_DUMP does not name the built basin_onnx_dump", allow_module_level=True)
nn = torch.nn


def export(model, path, example, opset=13, dynamic=True):
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(path), opset_version=opset, input_names=["x"], output_names=["y"],
                          training=torch.onnx.TrainingMode.PRESERVE,
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}} if dynamic else None)


def dump(path, *args):
    p = subprocess.run([DUMP, str(path), *args], capture_output=True, text=True, timeout=60)
    out = json.loads(p.stdout)
    assert (p.returncode == 0) == ("error" not in out), p.stdout + p.stderr
    return out


def randomise_bn(model, seed=0):
    """Random running statistics and affine parameters (fresh ones are 0/1 and hide mistakes; and
    torch's exporter writes parameters equal to an earlier one as an Identity of it)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype))
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g, dtype=m.running_mean.dtype))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=m.running_var.dtype) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype))
    return model


class BasicBlock(nn.Module):
    """ResNet's basic block with a projection shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.short(x))


class ResNetTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.block = BasicBlock(4, 8, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


class Reshaper(nn.Module):
    """x.view(x.size(0), -1): shape arithmetic (Shape, Gather, Unsqueeze, Concat) before Reshape."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 4 * 4, 2)

    def forward(self, x):
        h = torch.tanh(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


def cases():
    torch.manual_seed(0)
    return {
        "conv_bn_relu_pool_linear": (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                                   nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)),
                                     (3, 8, 8), 13),
        "resnet_basic_block": (ResNetTiny(), (3, 8, 8), 13),
        "layernorm_mlp": (nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 8),
                                        nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 2)), (5,), 17),
        "layernorm_mlp_opset13": (nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2)),
                                  (5,), 13),
        "avgpool_dropout_softmax": (nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.AvgPool2d(2),
                                                  nn.Dropout(0.5), nn.Flatten(), nn.Linear(3 * 2 * 2, 4),
                                                  nn.Softmax(dim=1)), (2, 8, 8), 13),
        "view_reshape": (Reshaper(), (1, 6, 6), 13),
        "batchnorm1d_elu_hardswish": (nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ELU(), nn.Linear(6, 6),
                                                    nn.Hardswish(), nn.Hardtanh(-0.5, 0.5), nn.Linear(6, 2)),
                                      (4,), 14),
    }


@pytest.mark.parametrize("name", list(cases()))
def test_parameters_are_the_modules(tmp_path, name):
    model, shape, opset = cases()[name]
    model = randomise_bn(model.double())
    path = tmp_path / f"{name}.onnx"
    export(model, path, torch.zeros(2, *shape, dtype=torch.float64), opset)
    got = dump(path)
    assert "error" not in got, got
    assert got["num_params"] == sum(p.numel() for p in model.parameters())
    assert [p["name"] for p in got["graph"]["parameters"]] == [k for k, _ in model.named_parameters()]
    want = nn.utils.parameters_to_vector(model.parameters()).detach().numpy()
    np.testing.assert_array_equal(np.array(got["params"]), want)
    # The same with the names given (the Python client's route) and none left as constants.
    named = dump(path, "--params", ",".join(k for k, _ in model.named_parameters()))
    assert named["num_params"] == got["num_params"]
    assert got["graph"]["input"]["shape"] == list(shape)


needs_cli = pytest.mark.skipif(not CLI or not os.path.exists(CLI), reason="BASIN_CLI (the basin CLI) not built")


@needs_cli
@pytest.mark.parametrize("name", list(cases()))
def test_forward_outputs_equal_torch(tmp_path, name):
    model, shape, opset = cases()[name]
    model = randomise_bn(model.double())
    path = tmp_path / f"{name}.onnx"
    export(model, path, torch.zeros(2, *shape, dtype=torch.float64), opset)
    x = np.random.default_rng(1).normal(size=(3, *shape))
    np.save(tmp_path / "x.npy", x)
    p = subprocess.run([CLI, "analyze", "--local", "--model", str(path), "--inputs", str(tmp_path / "x.npy"),
                        "--loss", "none", "--want", "jacobian", "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    got = np.array(json.loads(p.stdout)["outputs"])
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-10, atol=1e-12)


def test_dynamic_spatial_dims_need_the_data(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    path = tmp_path / "dyn.onnx"
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.double(), torch.zeros(2, 1, 5, 5, dtype=torch.float64), str(path), opset_version=13,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    err = dump(path)["error"]
    assert err["code"] == "INVALID_ARGUMENT" and "dynamic dimension 2" in err["message"] and "'x'" in err["message"]
    ok = dump(path, "--input-shape", "1,7,7")
    assert "error" not in ok, ok
    assert ok["graph"]["input"]["shape"] == [1, 7, 7]


def test_batchnorm_training_export_is_refused(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    model.train()
    path = tmp_path / "train.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(2, 3, dtype=torch.float64), str(path), opset_version=15,
                          input_names=["x"], output_names=["y"], training=torch.onnx.TrainingMode.TRAINING,
                          do_constant_folding=False)
    err = dump(path)["error"]
    assert err["code"] == "INVALID_ARGUMENT", err
    assert "BatchNormalization" in err["message"] and ("training" in err["message"]), err


def test_constants_option_removes_parameters(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    path = tmp_path / "m.onnx"
    export(model, path, torch.zeros(2, 3, dtype=torch.float64))
    got = dump(path, "--constants", "0.bias,2.weight")
    assert [p["name"] for p in got["graph"]["parameters"]] == ["0.weight", "2.bias"]
    err = dump(path, "--constants", "nope")["error"]
    assert err["code"] == "INVALID_ARGUMENT" and "'0.weight'" in err["message"], err


def test_identical_fresh_parameters_by_name(tmp_path):
    """Two fresh LayerNorms: torch writes the second's γ/β as Identity nodes of the first's. With the
    module's names (the Python client's route) each is a parameter of its own, in the given order."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)).double()
    path = tmp_path / "ln2.onnx"
    export(model, path, torch.zeros(2, 3, dtype=torch.float64), 17)
    names = [k for k, _ in model.named_parameters()]
    got = dump(path, "--params", ",".join(names))
    assert "error" not in got, got
    assert [p["name"] for p in got["graph"]["parameters"]] == names
    assert got["num_params"] == sum(p.numel() for p in model.parameters())
    np.testing.assert_array_equal(np.array(got["params"]),
                                  nn.utils.parameters_to_vector(model.parameters()).detach().numpy())
