"""Real architectures through `basin analyze --local`, against PyTorch float64 (see graph_reference.py):

  * LeNet-5 (conv → tanh → avg-pool, twice; three Linear layers) on scikit-learn's bundled 8×8 digits
    (sklearn.datasets.load_digits: no download), σ(G) at full width and, at reduced width, the GGN and
    the exact Hessian of the cross-entropy loss;
  * a CIFAR-style ResNet-20 (He et al. 2016: a 3×3 stem, three stages of three basic blocks, the
    parameter-free "option A" shortcut — stride-2 subsampling and zero channel padding — BatchNorm in
    eval mode with random running statistics, global average pooling): σ(G), and at reduced width
    (1/2/4 channels) the exact Hessian;
  * torchvision's resnet18 (random initialisation, eval mode: fresh BatchNorm statistics, which the
    exporter would otherwise merge into γ/β by value) for σ(G) on two 3×32×32 images (marked heavy).

Each first checks the export keeps θ = parameters_to_vector(model.parameters()) (N against
sum(p.numel() for p in model.parameters())); an op basin refuses is a failure (BASIN_GRAPH_LENIENT=1:
skipped as "engine pending").
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from graph_reference import GraphReference, check_against, export_onnx, run_basin, theta_of

torch.set_num_threads(2)


def check_export(model, X):
    tm = export_onnx(model, X)
    assert tm.num_params == sum(p.numel() for p in model.parameters())
    np.testing.assert_array_equal(tm.params, theta_of(model))
    assert tm.parameter_names == [name for name, _ in model.named_parameters()]
    return tm


def random_bn_stats(model, rng):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.as_tensor(rng.normal(0, 0.3, m.num_features)))
                m.running_var.copy_(torch.as_tensor(rng.uniform(0.5, 2.0, m.num_features)))
                m.weight.copy_(torch.as_tensor(rng.uniform(0.5, 1.5, m.num_features)))
                m.bias.copy_(torch.as_tensor(rng.normal(0, 0.2, m.num_features)))


# --------------------------------------------------------------------------------------------------
# LeNet-5 on the digits
# --------------------------------------------------------------------------------------------------

class LeNet5(nn.Module):
    def __init__(self, c1=6, c2=16, f1=120, f2=84, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)    # 8×8
        self.pool1 = nn.AvgPool2d(2)                    # 4×4
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)   # 4×4
        self.pool2 = nn.AvgPool2d(2)                    # 2×2
        self.fc1 = nn.Linear(c2 * 4, f1)
        self.fc2 = nn.Linear(f1, f2)
        self.fc3 = nn.Linear(f2, classes)

    def forward(self, x):
        x = self.pool1(torch.tanh(self.conv1(x)))
        x = self.pool2(torch.tanh(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


def digits(n, seed):
    from sklearn.datasets import load_digits
    d = load_digits()
    idx = np.random.default_rng(seed).choice(len(d.target), size=n, replace=False)
    X = (d.images[idx] / 16.0).astype(np.float64)[:, None, :, :]  # [n, 1, 8, 8]
    return X, d.target[idx].astype(np.int64)


def test_lenet5_digits_jacobian(basin_bin, tmp_path):
    torch.manual_seed(0)
    model = LeNet5().double().eval()
    X, y = digits(8, 0)
    tm = check_export(model, X)
    ref = GraphReference(model, X, torch.as_tensor(y), "cross_entropy", "mean")
    run = run_basin(basin_bin, tmp_path, tm, X, y, "cross_entropy", "mean", want="jacobian,ggn")
    check_against(run.json(), run.G, ref)


def test_lenet5_digits_hessian_reduced_width(basin_bin, tmp_path):
    torch.manual_seed(1)
    model = LeNet5(c1=2, c2=4, f1=12, f2=10).double().eval()
    X, y = digits(6, 1)
    tm = check_export(model, X)
    assert tm.num_params < 1000
    ref = GraphReference(model, X, torch.as_tensor(y), "cross_entropy", "sum", hessian=True)
    run = run_basin(basin_bin, tmp_path, tm, X, y, "cross_entropy", "sum", want="jacobian,ggn,hessian")
    check_against(run.json(), run.G, ref)


# --------------------------------------------------------------------------------------------------
# CIFAR ResNet-20
# --------------------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.pad:  # option A: subsample, zero-pad the new channels
            short = x[:, :, ::self.stride, ::self.stride]
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + short)


class ResNet20(nn.Module):
    def __init__(self, widths=(16, 32, 64), classes=10, blocks=3):
        super().__init__()
        w1, w2, w3 = widths
        self.conv = nn.Conv2d(3, w1, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(w1)
        layers, cin = [], w1
        for w, stride in ((w1, 1), (w2, 2), (w3, 2)):
            for b in range(blocks):
                layers.append(BasicBlock(cin, w, stride if b == 0 else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(w3, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def test_resnet20_depth():
    m = ResNet20()
    convs = [x for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear))]
    assert len(convs) == 20  # 1 + 3·3·2 + 1 weighted layers
    assert 0.265e6 < sum(p.numel() for p in m.parameters()) < 0.275e6  # He et al.'s 0.27M


def test_resnet20_jacobian(basin_bin, tmp_path):
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    model = ResNet20(widths=(4, 8, 16)).double().eval()
    random_bn_stats(model, rng)
    X = rng.normal(size=(4, 3, 16, 16))
    tm = check_export(model, X)
    ref = GraphReference(model, X)
    run = run_basin(basin_bin, tmp_path, tm, X, want="jacobian")
    check_against(run.json(), run.G, ref)


def test_resnet20_hessian_reduced_width(basin_bin, tmp_path):
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    model = ResNet20(widths=(1, 2, 4), classes=3).double().eval()
    random_bn_stats(model, rng)
    X = rng.normal(size=(2, 3, 8, 8))
    tm = check_export(model, X)
    Y = rng.normal(size=(2, 3))
    ref = GraphReference(model, X, Y, "mse", "mean", hessian=True)
    run = run_basin(basin_bin, tmp_path, tm, X, Y, "mse", "mean", want="jacobian,ggn,hessian")
    check_against(run.json(), run.G, ref)


# --------------------------------------------------------------------------------------------------
# torchvision resnet18
# --------------------------------------------------------------------------------------------------

@pytest.mark.heavy
def test_torchvision_resnet18_jacobian(basin_bin, tmp_path):
    """σ(G) of resnet18 (N = 11.2M) on two 3×32×32 images, k = 2: compared through G Gᵀ (the reference
    never holds G twice), σ² to 1e-10·σmax²."""
    import torchvision
    torch.manual_seed(4)
    model = torchvision.models.resnet18(num_classes=2).double().eval()  # random init, fresh statistics
    X = np.random.default_rng(4).normal(size=(2, 3, 32, 32))
    tm = check_export(model, X)
    assert tm.num_params == 11177538
    ref = GraphReference(model, X)
    run = run_basin(basin_bin, tmp_path, tm, X, want="jacobian", method="auto", save_jacobian=False,
                    timeout=600)
    res = run.json()
    assert res["num_params"] == ref.N
    sv = np.asarray(res["jacobian"]["singular_values"])
    smax = ref.sv[0]
    np.testing.assert_allclose(sv ** 2, ref.sv ** 2, rtol=0, atol=1e-10 * smax ** 2)
    assert res["jacobian"]["rank"] == int(np.sum(ref.sv > res["jacobian"]["tolerance"]))
    np.testing.assert_allclose(np.asarray(res["outputs"]), ref.outputs, rtol=0,
                               atol=1e-11 * max(1.0, np.abs(ref.outputs).max()))
