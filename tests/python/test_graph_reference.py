"""Operation graphs (any torch.nn.Module, exported to ONNX by the Python client's exporter) through
`basin analyze --local`, against PyTorch float64 (functorch vmap(jacrev), autograd.functional.hessian).

Random graphs of the ops Basin implements — conv stacks (1-D and 2-D; stride, padding, dilation,
groups including depthwise, with and without bias), max/average/global pooling, BatchNorm in eval mode
with random running statistics, LayerNorm, GroupNorm, InstanceNorm, residual blocks, tied weights,
Dropout and Flatten — each drawn from a seed. Checked: N = sum(p.numel() for p in model.parameters()),
the outputs, G entrywise (1e-10·max|G|), σ(G) (1e-9·σmax, method svd), the rank (exact: torch's
matrix_rank at Basin's tolerance), the GGN and exact Hessian eigenvalues (1e-8·|λ|max), the loss and the
gradient norm; and `--params p.npy` in parameters_to_vector order at other values than the file's.

The torch side checks itself first (so these tests are meaningful before the engine runs them): the
exporter keeps every parameter as its own initialiser (none fused, folded or merged with a buffer), G's
columns are the module's parameters_to_vector order (central differences of module.forward), and at an
MSE minimum the Hessian is Gᵀ M G. An op basin refuses is a failure (BASIN_GRAPH_LENIENT=1: skipped as
"engine pending", for a build whose engine lacks it).
"""
import numpy as np
import pytest
import torch
from torch import nn

from graph_reference import (GraphReference, check_against, export_onnx, onnx_initializer_order,
                             run_basin, set_theta, theta_of)

torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------------
# Random graph families
# --------------------------------------------------------------------------------------------------

def _act(rng):
    return [nn.Tanh, nn.Sigmoid, nn.Softplus, nn.ELU, nn.GELU][int(rng.integers(0, 5))]()


class ConvStack(nn.Module):
    """conv (stride/padding/dilation/groups, bias or not) → activation → pooling, twice; Linear head."""

    def __init__(self, rng, dim=2):
        super().__init__()
        Conv = nn.Conv2d if dim == 2 else nn.Conv1d
        Pool = [nn.MaxPool2d, nn.AvgPool2d] if dim == 2 else [nn.MaxPool1d, nn.AvgPool1d]
        c0 = int(rng.choice([2, 3, 4]))
        size = 8 if dim == 2 else 12
        self.in_shape = (c0,) + (size,) * dim
        layers, c = [], c0

        def size_after(mods):
            with torch.no_grad():
                return nn.Sequential(*mods)(torch.zeros((1,) + self.in_shape)).shape[-1]

        for i in range(2):
            groups = int(rng.choice([g for g in (1, 2, c) if c % g == 0]))
            out = groups * int(rng.integers(1, 3)) * (1 if groups > 1 else 2)
            k = int(rng.choice([1, 2, 3]))
            stride = int(rng.choice([1, 2]))
            pad = int(rng.integers(0, k))
            dil = int(rng.choice([1, 2])) if k > 1 else 1
            if dil * (k - 1) + 1 > size + 2 * pad:  # keep the output non-empty
                dil, k, pad = 1, 1, 0
            layers.append(Conv(c, out, k, stride=stride, padding=pad, dilation=dil, groups=groups,
                               bias=bool(rng.random() < 0.7)))
            layers.append(_act(rng))
            size = size_after(layers)
            if size >= 4 and rng.random() < 0.7:
                P = Pool[int(rng.integers(0, 2))]
                ks = int(rng.choice([2, 3]))
                layers.append(P(ks, stride=2, padding=int(rng.integers(0, 2)) if ks == 3 else 0))
                size = size_after(layers)
            c = out
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros((1,) + self.in_shape)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(flat, int(rng.integers(2, 4))))

    def forward(self, x):
        return self.head(self.features(x))


def random_bn_stats(module, rng):
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.as_tensor(rng.normal(0, 0.5, m.running_mean.shape)))
                m.running_var.copy_(torch.as_tensor(rng.uniform(0.5, 2.0, m.running_var.shape)))
                if m.affine:
                    m.weight.copy_(torch.as_tensor(rng.uniform(0.5, 1.5, m.weight.shape)))
                    m.bias.copy_(torch.as_tensor(rng.normal(0, 0.3, m.bias.shape)))


class NormNet(nn.Module):
    """conv → BatchNorm (eval, random statistics) → ReLU → conv → GroupNorm/InstanceNorm → pool →
    Linear → LayerNorm → Linear."""

    def __init__(self, rng):
        super().__init__()
        self.in_shape = (2, 6, 6)
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.norm2 = (nn.GroupNorm(2, 4) if rng.random() < 0.5 else nn.InstanceNorm2d(4, affine=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(4, 6)
        self.ln = nn.LayerNorm(6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv1(x)))
        x = torch.tanh(self.norm2(self.conv2(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.fc2(self.ln(self.fc1(x)))


class Residual(nn.Module):
    """Two basic residual blocks (identity skip, then a strided 1×1 projection skip), global pool."""

    def __init__(self, rng):
        super().__init__()
        self.in_shape = (3, 6, 6)
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.a1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(4)
        self.a2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.b1 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
        self.b2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.proj = nn.Conv2d(4, 6, 1, stride=2, bias=False)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        x = torch.tanh(self.stem(x))
        x = torch.tanh(x + self.a2(torch.tanh(self.bn_a(self.a1(x)))))
        x = torch.tanh(self.proj(x) + self.b2(torch.tanh(self.b1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class Tied(nn.Module):
    """One weight used by two layers (and a conv filter bank reused twice): G's columns for it sum
    the uses' Jacobians; model.parameters() lists it once."""

    def __init__(self, rng):
        super().__init__()
        self.in_shape = (2, 5, 5)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.fc1 = nn.Linear(50, 6)
        self.fc2 = nn.Linear(6, 6)
        self.fc3 = nn.Linear(6, 6)
        self.fc3.weight = self.fc2.weight
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        x = torch.tanh(self.conv(torch.tanh(self.conv(x))))
        x = torch.tanh(self.fc1(x.flatten(1)))
        return self.out(torch.tanh(self.fc3(torch.tanh(self.fc2(x)))))


FAMILIES = {
    "conv2d": lambda rng: ConvStack(rng, 2),
    "conv1d": lambda rng: ConvStack(rng, 1),
    "norms": NormNet,
    "residual": Residual,
    "tied": Tied,
}
CASES = [(fam, seed) for fam in FAMILIES for seed in range(3)]


def draw(fam, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(100 * seed + len(fam))
    m = FAMILIES[fam](rng).double().eval()
    random_bn_stats(m, rng)
    n = int(rng.integers(3, 6))
    X = rng.normal(size=(n,) + m.in_shape)
    return m, X, rng


# --------------------------------------------------------------------------------------------------
# The export keeps θ = model.parameters()
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fam,seed", CASES)
def test_export_keeps_every_parameter(fam, seed):
    m, X, _ = draw(fam, seed)
    tm = export_onnx(m, X)
    N = sum(p.numel() for p in m.parameters())
    assert tm.num_params == N
    np.testing.assert_array_equal(tm.params, theta_of(m))
    assert tm.param_names == [name for name, _ in m.named_parameters()]
    assert len(tm.parameter_names) == len(list(m.parameters())) == len(set(tm.parameter_names))
    inits = onnx_initializer_order(tm.onnx_bytes)
    # every parameter its own initialiser, under its own name (no fusion or folding renamed it)
    assert tm.parameter_names == tm.param_names
    # a bare file's rule (float initialisers, file order) gives the same θ: the CLI needs no names
    assert [i for i in inits if i in set(tm.parameter_names)] == tm.parameter_names
    buffers = {name for name, b in m.named_buffers() if b.is_floating_point()}
    assert buffers & set(inits) <= set(tm.constant_names)  # statistics the graph uses are constants
    assert not set(tm.constant_names) & set(tm.parameter_names)
    assert m.training is False


def test_export_does_not_fuse_batchnorm_or_merge_fresh_statistics():
    """A fresh BatchNorm (running_var = 1 = weight, running_mean = 0 = bias) after a conv: the eval
    exporter would fuse the pair and merge equal-valued initialisers; the client's export keeps the
    four parameters and the two statistics apart."""
    m = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    m = m.double()
    m.train()
    tm = export_onnx(m, np.random.default_rng(0).normal(size=(2, 2, 4, 4)))
    assert tm.parameter_names == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
    assert set(tm.constant_names) >= {"1.running_mean", "1.running_var"}
    assert m.training  # restored
    text = tm.onnx_bytes
    assert b"BatchNormalization" in text and b"Identity" not in text


def test_export_fails_loudly_for_an_unused_parameter():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 2)
            self.b = nn.Linear(3, 2)

        def forward(self, x):
            return self.a(x)

    with pytest.raises(ValueError, match=r"parameter 'b.weight'.*not among the exported"):
        export_onnx(Unused().double(), np.zeros((2, 3)))


# --------------------------------------------------------------------------------------------------
# The torch reference is right by itself
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fam", list(FAMILIES))
def test_reference_checks_itself(fam):
    m, X, rng = draw(fam, 0)
    ref = GraphReference(m, X)
    ref.check_jacobian_by_differences(rng)
    # at an MSE minimum (targets = outputs) the Hessian is exactly Gᵀ M G
    at_min = GraphReference(m, X, ref.outputs.copy(), loss="mse", reduction="sum", hessian=True)
    at_min.check_gauss_newton_identity()
    if at_min.N <= 500:  # autograd.functional.hessian is ~20x slower than jacrev∘jacrev
        at_min.check_hessian_routes()


# --------------------------------------------------------------------------------------------------
# Basin against the reference
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fam,seed", CASES)
def test_graph_spectra(basin_bin, tmp_path, fam, seed):
    m, X, rng = draw(fam, seed)
    tm = export_onnx(m, X)
    k = GraphReference(m, X[:1], jacobian=False).k
    loss = ["mse", "cross_entropy", "mse"][seed % 3]
    reduction = ["mean", "sum"][seed % 2]
    Y = rng.normal(size=(X.shape[0], k)) if loss == "mse" else rng.integers(0, k, X.shape[0]).astype(np.int64)
    hessian = tm.num_params <= 1500
    ref = GraphReference(m, X, Y if loss == "mse" else torch.as_tensor(Y), loss, reduction, hessian=hessian)
    want = "jacobian,ggn" + (",hessian" if hessian else "")
    run = run_basin(basin_bin, tmp_path, tm, X, Y, loss, reduction, want=want)
    check_against(run.json(), run.G, ref)


@pytest.mark.parametrize("fam", list(FAMILIES))
def test_params_file_in_parameters_to_vector_order(basin_bin, tmp_path, fam):
    """--params p.npy at values other than the file's: the same answers as torch at those values."""
    m, X, rng = draw(fam, 1)
    tm = export_onnx(m, X)
    theta2 = theta_of(m) + rng.normal(0, 0.05, size=tm.num_params)
    set_theta(m, theta2)
    ref = GraphReference(m, X)
    run = run_basin(basin_bin, tmp_path, tm, X, params=theta2, want="jacobian")
    check_against(run.json(), run.G, ref)


def test_dropout_and_flatten_same_as_chain(basin_bin, tmp_path):
    """A chain with Dropout and a Flatten of image-shaped inputs: the graph route (ONNX of any shape)
    gives the chain route's answers (the layer list on flattened inputs)."""
    import json
    torch.manual_seed(4)
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Dropout(0.5), nn.Tanh(), nn.Linear(5, 2)).double().eval()
    X = np.random.default_rng(4).normal(size=(4, 3, 2, 2))
    ref = GraphReference(m, X)
    run = run_basin(basin_bin, tmp_path, export_onnx(m, X), X, want="jacobian")
    check_against(run.json(), run.G, ref)
    spec = {"input_dim": 12, "layers": [{"type": "dense", "out": 5}, {"type": "tanh"}, {"type": "dense", "out": 2}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    np.save(tmp_path / "p.npy", theta_of(m))
    np.save(tmp_path / "X2.npy", X.reshape(4, -1))
    import subprocess
    chain = subprocess.run([basin_bin, "analyze", "--local", "--device", "cpu", "--model", str(tmp_path / "spec.json"),
                            "--params", str(tmp_path / "p.npy"), "--inputs", str(tmp_path / "X2.npy"),
                            "--method", "svd", "--json"], capture_output=True, text=True)
    assert chain.returncode == 0, chain.stderr
    a, b = run.json(), json.loads(chain.stdout)
    np.testing.assert_allclose(a["jacobian"]["singular_values"], b["jacobian"]["singular_values"],
                               rtol=0, atol=1e-12 * b["jacobian"]["singular_values"][0])
    assert a["jacobian"]["rank"] == b["jacobian"]["rank"]


class NormAfterParameter(nn.Module):
    """A normalisation whose input depends on θ (a 1×1 conv / Linear before it) and whose own γ, β are
    parameters: the Hessian's mixed γ–upstream blocks go through the normalisation's statistics."""

    def __init__(self, norm, shape):
        super().__init__()
        self.in_shape = shape
        self.pre = nn.Conv2d(shape[0], shape[0], 1) if len(shape) == 3 else nn.Linear(shape[0], shape[0])
        self.norm = norm
        self.fc = nn.Linear(int(np.prod(shape)), 2)

    def forward(self, x):
        return self.fc(torch.tanh(self.norm(self.pre(x))).flatten(1))


NORMS = {
    "layernorm": lambda: (nn.LayerNorm(6), (6,)),
    "groupnorm": lambda: (nn.GroupNorm(2, 4), (4, 3, 3)),
    "instancenorm": lambda: (nn.InstanceNorm2d(4, affine=True), (4, 3, 3)),
    "batchnorm": lambda: (nn.BatchNorm2d(4), (4, 3, 3)),
}


@pytest.mark.parametrize("norm", list(NORMS))
def test_normalisation_after_a_parameter(basin_bin, tmp_path, norm):
    torch.manual_seed(5)
    rng = np.random.default_rng(5)
    m = NormAfterParameter(*NORMS[norm]()).double().eval()
    random_bn_stats(m, rng)
    X = rng.normal(size=(3,) + m.in_shape)
    Y = rng.normal(size=(3, 2))
    tm = export_onnx(m, X)
    ref = GraphReference(m, X, Y, "mse", "sum", hessian=True)
    run = run_basin(basin_bin, tmp_path, tm, X, Y, "mse", "sum", want="jacobian,ggn,hessian")
    check_against(run.json(), run.G, ref)
