"""Agreement with PyTorch float64 (functorch vmap(jacrev) for G, autograd for H) on random
networks passed as torch nn.Sequential (converted on the client)."""
import numpy as np
import pytest

import basin

torch = pytest.importorskip("torch")
functorch = pytest.importorskip("functorch")
nn = torch.nn


def reference(net, X, target, loss):
    """(outputs, G [n·k, N], loss, grad, H, GGN) in float64."""
    fmodel, params = functorch.make_functional(net)
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def unflat(theta):
        return tuple(t.reshape(s) for t, s in zip(torch.split(theta, sizes), shapes))

    def f_one(ps, x):
        return fmodel(ps, x.unsqueeze(0)).squeeze(0)

    jac = functorch.vmap(functorch.jacrev(f_one), in_dims=(None, 0))(params, X)
    n = X.shape[0]
    out = fmodel(params, X)
    k = out.shape[1]
    G = torch.cat([j.reshape(n * k, -1) for j in jac], dim=1)
    theta = torch.cat([p.detach().reshape(-1) for p in params])

    def loss_fn(th):
        y = fmodel(unflat(th), X)
        if loss == "mse":
            return nn.functional.mse_loss(y, target)
        return nn.functional.cross_entropy(y, target)

    th = theta.clone().requires_grad_(True)
    L = loss_fn(th)
    (g,) = torch.autograd.grad(L, th)
    H = torch.autograd.functional.hessian(loss_fn, theta)
    if loss == "mse":
        M = torch.eye(n * k, dtype=torch.float64) * 2.0 / (n * k)
    else:
        p = torch.softmax(out, dim=1).detach()
        M = torch.block_diag(*[(torch.diag(p[i]) - torch.outer(p[i], p[i])) / n
                               for i in range(n)])
    ggn = G.T @ M @ G
    return (out.detach().numpy(), G.detach().numpy(), L.item(), g.numpy(), H.numpy(),
            ggn.detach().numpy())


NETS = [
    lambda: nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5), nn.GELU(),
                          nn.Linear(5, 2)),
    lambda: nn.Sequential(nn.Linear(3, 5), nn.LeakyReLU(0.1), nn.Linear(5, 4), nn.SiLU(),
                          nn.Linear(4, 3)),
    lambda: nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.Softplus(), nn.Linear(6, 6),
                          nn.Sigmoid(), nn.Linear(6, 2, bias=False)),
    lambda: nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Identity(),
                          nn.Sequential(nn.Linear(8, 4), nn.Tanh()), nn.Linear(4, 3)),
]


@pytest.mark.parametrize("index", range(len(NETS)))
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_against_functorch(client, index, loss):
    torch.manual_seed(index)
    net = NETS[index]().double()
    n = 6
    in_shape = (n, 2, 2) if isinstance(net[0], nn.Flatten) else (n, 3)
    X = torch.randn(*in_shape, dtype=torch.float64)
    k = net(X).shape[1]
    if loss == "mse":
        target = torch.randn(n, k, dtype=torch.float64)
    else:
        target = torch.randint(0, k, (n,))
    out, G, L, g, H, ggn = reference(net, X, target, loss)
    r = client.analyze(net, X, target, loss=loss, want=("jacobian", "ggn", "hessian"))
    N = G.shape[1]
    assert r.num_params == N and r.num_examples == n and r.num_outputs == k
    np.testing.assert_allclose(r.outputs, out, rtol=1e-12, atol=1e-12)
    assert r.loss == pytest.approx(L, rel=1e-12)
    assert r.grad_norm == pytest.approx(np.linalg.norm(g), rel=1e-9, abs=1e-14)

    sv = np.linalg.svd(G, compute_uv=False)
    m = min(G.shape)
    np.testing.assert_allclose(r.jacobian.singular_values, sv[:m], rtol=0, atol=1e-9 * sv[0])
    tol = r.jacobian.tolerance
    assert r.jacobian.rank == int(np.sum(sv > tol))
    assert r.jacobian.level_set_dim == N - r.jacobian.rank

    eg = np.linalg.eigvalsh(ggn)[::-1]
    np.testing.assert_allclose(r.ggn.eigenvalues, eg[:m], rtol=0, atol=1e-9 * abs(eg[0]))
    eh = np.linalg.eigvalsh(H)[::-1]
    scale = np.abs(eh).max()
    np.testing.assert_allclose(r.hessian.eigenvalues, eh, rtol=0, atol=1e-9 * scale)
    er = np.linalg.eigvalsh(H - ggn)[::-1]
    np.testing.assert_allclose(r.hessian.residual_eigenvalues, er, rtol=0, atol=1e-9 * scale)
    assert r.hessian.residual_rel == pytest.approx(
        np.linalg.norm(H - ggn) / np.linalg.norm(H), rel=1e-7, abs=1e-12)


def test_return_jacobian_matches_functorch(client):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    X = torch.randn(5, 2, dtype=torch.float64)
    _, G, *_ = reference(net, X, torch.zeros(5, 2, dtype=torch.float64), "mse")
    r = client.analyze(net, X, loss="none", return_jacobian=True)
    assert r.jacobian_matrix.shape == G.shape
    np.testing.assert_allclose(r.jacobian_matrix, G, rtol=1e-12, atol=1e-13)


def test_conversion_parameter_order():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 3), nn.LeakyReLU(0.3), nn.Linear(3, 2))
    m = basin.from_torch(net)
    assert m.input_dim == 6 and m.num_params == 6 * 3 + 3 + 3 * 2 + 2
    assert m.layers == [{"type": "dense", "out": 3, "bias": True},
                        {"type": "leaky_relu", "alpha": pytest.approx(0.3)},
                        {"type": "dense", "out": 2, "bias": True}]
    expect = np.concatenate([net[1].weight.detach().numpy().ravel(), net[1].bias.detach().numpy(),
                             net[3].weight.detach().numpy().ravel(), net[3].bias.detach().numpy()])
    np.testing.assert_array_equal(m.params, expect.astype(np.float64))
    assert m.params.dtype == np.float64
    assert basin.from_torch(nn.Sequential(nn.Flatten(), nn.Linear(4, 1))).with_params(
        np.zeros(5)).flatten_inputs


def test_chain_takes_dropout_and_flatten_as_inference_no_ops():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5), nn.Flatten(), nn.Tanh(),
                        nn.Linear(3, 2))
    m = basin.from_torch(net)
    assert isinstance(m, basin.Sequential) and m.flatten_inputs
    assert [layer["type"] for layer in m.layers] == ["dense", "tanh", "dense"]


@pytest.mark.parametrize("module,needle", [
    (nn.BatchNorm1d(4), "module 1 (BatchNorm1d) has parameters"),
    (nn.GELU(approximate="tanh"), "module 1 (GELU)"),
    (nn.Softplus(beta=2), "module 1 (Softplus)"),
])
def test_a_module_beyond_the_chain_is_exported(module, needle):
    """Not a chain of Linear layers and activations: exported to ONNX, which needs example inputs."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), module, nn.Linear(4, 2)).double()
    with pytest.raises(ValueError) as e:
        basin.from_torch(net)
    assert needle in str(e.value) and "example inputs" in str(e.value)
    m = basin.from_torch(net, np.zeros((2, 3)))
    assert isinstance(m, basin.TorchModel)
    assert m.num_params == sum(p.numel() for p in net.parameters())
    assert m.param_names == [name for name, _ in net.named_parameters()]
    np.testing.assert_array_equal(m.params, nn.utils.parameters_to_vector(net.parameters()).detach().numpy())
    with pytest.raises(ValueError, match="export=True"):
        basin.from_torch(net, np.zeros((2, 3)), export=False)


def test_any_module():
    torch.manual_seed(1)
    lin = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="not a torch.nn.Sequential"):
        basin.from_torch(lin)
    m = basin.from_torch(lin, np.zeros((1, 2)))
    assert m.parameter_names == ["weight", "bias"] and m.input_shape == (2,)
    with pytest.raises(ValueError, match="torch.nn.Module"):
        basin.from_torch(object())


class TwoPath(nn.Module):
    """Not an nn.Sequential (a user-defined module), Dropout inside: the exported route."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 5)
        self.drop = nn.Dropout(0.4)
        self.b = nn.Linear(5, 2)

    def forward(self, x):
        return self.b(self.drop(torch.tanh(self.a(x))))


def test_torch_module_request_names_theta(client):
    """The request of an exported module: the ONNX bytes by blob, θ's initialisers in
    model.parameters() order (parameter_names), the torch names (param_names), θ itself."""
    torch.manual_seed(2)
    net = TwoPath().double()
    X = np.random.default_rng(2).normal(size=(4, 3))
    req, batch = client._build_request(net, X, None, "none", "mean", ("jacobian",), "auto", "float64",
                                       None, None, None, False, True, None, [])
    assert req.WhichOneof("model_source") == "onnx_blob_id"
    assert list(req.parameter_names) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert list(req.param_names) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert not batch
    theta = np.frombuffer(req.params.tensor.data, dtype="<f8")
    np.testing.assert_array_equal(theta, nn.utils.parameters_to_vector(net.parameters()).detach().numpy())
    assert list(req.inputs.tensor.shape) == [4, 3]


def test_torch_module_against_functorch(client):
    torch.manual_seed(3)
    net = TwoPath().double().eval()
    X = torch.randn(6, 3, dtype=torch.float64)
    target = torch.randn(6, 2, dtype=torch.float64)
    out, G, L, g, H, ggn = reference(net, X, target, "mse")
    r = client.analyze(net, X, target, loss="mse", want=("jacobian", "ggn", "hessian"), method="svd")
    assert r.num_params == sum(p.numel() for p in net.parameters())
    np.testing.assert_allclose(r.outputs, out, rtol=0, atol=1e-12)
    sv = np.linalg.svd(G, compute_uv=False)
    np.testing.assert_allclose(r.jacobian.singular_values, sv[:min(G.shape)], rtol=0, atol=1e-9 * sv[0])
    eh = np.linalg.eigvalsh(H)[::-1]
    np.testing.assert_allclose(r.hessian.eigenvalues, eh, rtol=0, atol=1e-9 * np.abs(eh).max())
    assert r.loss == pytest.approx(L, rel=1e-12)


def test_server_info_lists_ops(client):
    info = client.info()
    assert {"matmul", "unary", "conv", "max_pool"} <= set(info["supported_ops"])
    # a server with the importer lists its ONNX op types (one name each, no remarks)
    onnx_ops = info["supported_onnx_ops"]
    if onnx_ops:
        assert {"Gemm", "Conv", "BatchNormalization", "LayerNormalization"} <= set(onnx_ops)
        assert all(" " not in op and "," not in op for op in onnx_ops)
