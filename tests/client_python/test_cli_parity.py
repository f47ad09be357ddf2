"""The client's Result equals the CLI's JSON (`basin analyze --local --json`) on the same data."""
import json
import os

import numpy as np
import pytest

import basin
from conftest import DATA
from helpers import assert_same, cli_json, drop_volatile, random_sequential, strip


def load(name):
    return np.load(os.path.join(DATA, name))


def remote_and_local(server, basin_bin, common):
    """`basin analyze --server` and `--local --device cpu` on the same flags: {where: [JSON lines]},
    volatile fields dropped (skips when the build has no ONNX importer and the model is ONNX)."""
    import subprocess
    out = {}
    for where in (["--server", server.address], ["--local", "--device", "cpu"]):
        p = subprocess.run([basin_bin, "analyze", *where, *common], capture_output=True, text=True)
        if p.returncode != 0 and "no ONNX importer" in p.stderr:
            pytest.skip("this basin build has no ONNX importer")
        assert p.returncode == 0, p.stderr
        out[where[0]] = [drop_volatile(json.loads(line)) for line in p.stdout.strip().splitlines()]
    return out



@pytest.fixture(scope="module")
def regression():
    m = basin.Sequential.from_json(os.path.join(DATA, "regression_model.json"),
                                   load("regression_params.npy"))
    return m, load("regression_X.npy"), load("regression_Y.npy")


@pytest.fixture(scope="module")
def classification():
    m = basin.Sequential.from_json(os.path.join(DATA, "classification_model.json"),
                                   load("classification_params.npy"))
    return m, load("classification_X.npy"), load("classification_labels.npy")


def test_regression_default_want(client, basin_bin, tmp_path, regression):
    m, X, Y = regression
    r = client.analyze(m, X, Y, loss="mse")
    cli = cli_json(basin_bin, tmp_path, m, X, Y, "mse")
    assert set(cli) >= {"jacobian", "ggn", "hessian", "outputs"}
    assert_same(strip(r.to_dict()), strip(cli))
    # to_json() is the same JSON object (and key order) as the CLI prints
    assert_same(strip(json.loads(r.to_json())), strip(cli))
    assert list(json.loads(r.to_json())) == sorted(cli)
    assert isinstance(r.jacobian.singular_values, np.ndarray)
    assert r.outputs.shape == (X.shape[0], 1)
    assert r.jacobian.level_set_dim == r.num_params - r.jacobian.rank


def test_classification_cross_entropy(client, basin_bin, tmp_path, classification):
    m, X, labels = classification
    r = client.analyze(m, X, labels, loss="cross_entropy")
    cli = cli_json(basin_bin, tmp_path, m, X, labels, "cross_entropy")
    assert_same(strip(r.to_dict()), strip(cli))
    assert r.loss_function == "cross_entropy" and r.hessian is not None


@pytest.mark.parametrize("opts,cli_extra", [
    (dict(loss="none"), ["--want", "jacobian"]),
    (dict(loss="mse", reduction="sum", want=("jacobian", "ggn")),
     ["--reduction", "sum", "--want", "jacobian,ggn"]),
    (dict(loss="mse", method="svd", rtol=1e-6, want=("jacobian", "hessian")),
     ["--method", "svd", "--rtol", "1e-6", "--want", "jacobian,hessian"]),
    (dict(loss="mse", method="normal", atol=1e-3, want="jacobian,ggn"),
     ["--method", "normal", "--atol", "1e-3", "--want", "jacobian,ggn"]),
    (dict(loss="mse", dtype="float32", want=("jacobian",)),
     ["--dtype", "float32", "--want", "jacobian"]),
])
def test_options(client, basin_bin, tmp_path, regression, opts, cli_extra):
    m, X, Y = regression
    targets = None if opts.get("loss") == "none" else Y
    r = client.analyze(m, X, targets, **opts)
    cli = cli_json(basin_bin, tmp_path, m, X, targets, opts["loss"], cli_extra)
    assert_same(strip(r.to_dict()), strip(cli), rtol=1e-12 if opts.get("dtype") != "float32"
                else 1e-5)


def test_random_networks(client, basin_bin, tmp_path):
    rng = np.random.default_rng(7)
    acts = ["relu", "tanh", "sigmoid", "gelu", "softplus", "silu", "identity",
            {"type": "leaky_relu", "alpha": 0.2}]
    for t in range(4):
        m = random_sequential(rng, 3, [5, 4], [acts[2 * t], acts[2 * t + 1]], 2)
        X = rng.normal(size=(7, 3))
        Y = rng.normal(size=(7, 2))
        r = client.analyze(m, X, Y, loss="mse")
        cli = cli_json(basin_bin, tmp_path, m, X, Y, "mse", tag=f"r{t}")
        assert_same(strip(r.to_dict()), strip(cli))


def test_checkpoints_one_request(client, basin_bin, tmp_path, regression):
    m, X, Y = regression
    rng = np.random.default_rng(1)
    P = np.stack([m.params + 0.01 * i * rng.normal(size=m.params.size) for i in range(3)])
    results = client.analyze(m.with_params(P), X, Y, loss="mse", want=("jacobian", "ggn"))
    assert isinstance(results, list) and len(results) == 3
    # a list of vectors is the same batch
    again = client.analyze(m.with_params(list(P)), X, Y, loss="mse", want=("jacobian", "ggn"))
    for i, r in enumerate(results):
        cli = cli_json(basin_bin, tmp_path, m.with_params(P[i]), X, Y, "mse",
                       ["--want", "jacobian,ggn"], tag=f"c{i}")
        assert_same(strip(r.to_dict()), strip(cli))
        assert_same(strip(again[i].to_dict()), strip(cli))


def test_onnx_model(client, basin_bin, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    path = os.path.join(tmp_path, "net.onnx")
    torch.onnx.export(net, torch.zeros(1, 3), path, opset_version=13,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    X = np.random.default_rng(0).normal(size=(5, 3))
    Y = np.zeros((5, 2))
    r = client.analyze(path, X, Y, loss="mse")
    assert r.hessian is not None  # default want: N = 38 <= the Hessian limit
    try:
        cli = cli_json(basin_bin, tmp_path, path, X, Y, "mse")
    except AssertionError as e:
        if "no ONNX importer" not in str(e):
            raise
        cli = None  # this CLI build cannot read ONNX; the torch comparison below still runs
    if cli is not None:
        assert_same(strip(r.to_dict()), strip(cli))
    # the same network converted from torch on the client
    r2 = client.analyze(net, X, Y, loss="mse")
    assert r2.jacobian.rank == r.jacobian.rank
    np.testing.assert_allclose(r2.jacobian.singular_values, r.jacobian.singular_values,
                               rtol=1e-5)  # the ONNX file holds float32 weights
    # explicit params override the initialisers
    p = basin.from_torch(net).params
    r3 = client.analyze(basin.OnnxModel(path, params=p), X, Y, loss="mse")
    np.testing.assert_allclose(r3.hessian.eigenvalues, r2.hessian.eigenvalues, rtol=1e-10,
                               atol=1e-12)


def test_remote_cli_onnx_equals_local_cli(server, basin_bin, tmp_path):
    """`basin analyze --server --model x.onnx` prints the same JSON as `--local` (issue: ONNX import,
    local and remote)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.GELU(), torch.nn.Linear(5, 2)).double()
    path = os.path.join(tmp_path, "m.onnx")
    torch.onnx.export(net, torch.zeros(1, 3, dtype=torch.float64), path, opset_version=13,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    rng = np.random.default_rng(3)
    np.save(os.path.join(tmp_path, "X.npy"), rng.normal(size=(7, 3)))
    np.save(os.path.join(tmp_path, "Y.npy"), rng.normal(size=(7, 2)))
    common = ["--model", path, "--inputs", os.path.join(tmp_path, "X.npy"),
              "--targets", os.path.join(tmp_path, "Y.npy"), "--loss", "mse", "--json"]
    out = {k: v[0] for k, v in remote_and_local(server, basin_bin, common).items()}
    assert out["--server"] == out["--local"]
    assert out["--local"]["hessian"] is not None


def test_auto_refinement_is_reported_remotely_as_locally(client, basin_bin, tmp_path):
    """A tanh bottleneck of width 1 makes σ decay below the Gram's resolution, so auto falls back
    to the SVD of G; the remote result says so exactly as the CLI does."""
    m = basin.Sequential(4, [{"type": "dense", "out": 8}, {"type": "tanh"}, {"type": "dense", "out": 1},
                             {"type": "tanh"}, {"type": "dense", "out": 8}, {"type": "tanh"},
                             {"type": "dense", "out": 3}])
    rng = np.random.default_rng(1)
    m.params = rng.normal(size=m.num_params) * 0.6
    X = rng.normal(size=(10, 4))
    r = client.analyze(m, X, loss="none", want=("jacobian",))
    cli = cli_json(basin_bin, tmp_path, m, X, None, "none", ["--want", "jacobian"])
    assert r.jacobian.refined_from == "gram" and r.jacobian.method == "svd"
    assert cli["jacobian"]["refined_from"] == "gram"
    assert_same(strip(r.to_dict()), strip(cli))


def test_remote_cli_checkpoints_equal_local_cli(server, client, basin_bin, tmp_path, regression):
    """`basin analyze --params P.npy` with P of shape (B, N): `--server` and `--local` print the same B JSON
    lines, in order, and each equals the Python client's result for that checkpoint."""
    m, X, Y = regression
    rng = np.random.default_rng(5)
    P = np.stack([m.params + 0.02 * i * rng.normal(size=m.params.size) for i in range(4)])
    np.save(os.path.join(tmp_path, "P.npy"), P)
    np.save(os.path.join(tmp_path, "X.npy"), X)
    np.save(os.path.join(tmp_path, "Y.npy"), Y)
    common = ["--model", os.path.join(DATA, "regression_model.json"), "--params", os.path.join(tmp_path, "P.npy"),
              "--inputs", os.path.join(tmp_path, "X.npy"), "--targets", os.path.join(tmp_path, "Y.npy"),
              "--loss", "mse", "--want", "jacobian,ggn", "--json"]
    out = remote_and_local(server, basin_bin, common)
    for where, lines in out.items():
        assert len(lines) == len(P), f"{where}: {len(lines)} JSON lines for {len(P)} checkpoints"
    assert out["--server"] == out["--local"]
    results = client.analyze(m.with_params(P), X, Y, loss="mse", want=("jacobian", "ggn"))
    for r, line in zip(results, out["--local"]):
        assert_same(strip(r.to_dict()), strip(line))


def test_remote_provenance_has_the_local_digests_and_the_servers_times(server, client, basin_bin, tmp_path,
                                                                      regression):
    """Over the wire the digests, build and methods are the local ones; the server adds its queue
    and wall times (the Python client from the response, the remote CLI likewise)."""
    import subprocess
    m, X, Y = regression
    local = cli_json(basin_bin, tmp_path, m, X, Y, "mse")["provenance"]
    r = client.analyze(m, X, Y, loss="mse")
    remote = r.provenance
    for key in ("model_sha256", "params_sha256", "inputs_sha256", "targets_sha256", "commit", "basin_version",
                "methods", "tolerance", "seeds"):
        assert remote[key] == local[key], key
    assert remote["total_ms"] >= remote["queue_ms"] >= 0
    assert remote["total_ms"] >= remote["duration_ms"] > 0
    spec = os.path.join(tmp_path, "a_model.json")
    p = subprocess.run([basin_bin, "analyze", "--server", server.address, "--model", spec, "--params",
                        os.path.join(tmp_path, "a_params.npy"), "--inputs", os.path.join(tmp_path, "a_X.npy"),
                        "--targets", os.path.join(tmp_path, "a_Y.npy"), "--loss", "mse", "--json"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    cli_remote = json.loads(p.stdout)["provenance"]
    assert cli_remote["params_sha256"] == local["params_sha256"]
    assert "queue_ms" in cli_remote and "total_ms" in cli_remote


def test_per_parameter_remote_cli_equals_local_cli(server, client, basin_bin, tmp_path, regression):
    """`--want jacobian,hessian,per_parameter`: `--server` and `--local` print the same per_parameter list,
    and the Python client's Result holds it too (names, shapes, σ, trace shares, Hessian blocks)."""
    import subprocess
    m, X, Y = regression
    np.save(os.path.join(tmp_path, "X.npy"), X)
    np.save(os.path.join(tmp_path, "Y.npy"), Y)
    common = ["--model", os.path.join(DATA, "regression_model.json"),
              "--params", os.path.join(DATA, "regression_params.npy"),
              "--inputs", os.path.join(tmp_path, "X.npy"), "--targets", os.path.join(tmp_path, "Y.npy"),
              "--loss", "mse", "--want", "jacobian,hessian,per_parameter", "--json"]
    out = {k: v[0] for k, v in remote_and_local(server, basin_bin, common).items()}
    assert out["--server"] == out["--local"]
    pp = out["--local"]["per_parameter"]
    assert [t["name"] for t in pp][:2] == ["0.weight", "0.bias"]
    assert sum(t["count"] for t in pp) == out["--local"]["num_params"]
    assert abs(sum(t["gram_trace_fraction"] for t in pp) - 1) < 1e-12
    assert all(len(t["hessian_block"]["eigenvalues"]) == t["count"] for t in pp)
    r = client.analyze(m, X, Y, loss="mse", want="jacobian,hessian,per_parameter")
    assert_same(strip(r.to_dict()), strip(out["--local"]))
    assert r.per_parameter[0].name == "0.weight" and isinstance(r.per_parameter[0].jacobian.singular_values,
                                                                 np.ndarray)
    # the human summary prints the table
    p = subprocess.run([basin_bin, "analyze", "--local", *common[:-1]], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "per parameter tensor" in p.stdout and "0.weight" in p.stdout


def test_per_parameter_names_of_a_torch_module(client):
    """A torch module sent by the client reports its named_parameters() names (nested too)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh()),
                              torch.nn.Linear(4, 2, bias=False)).double()
    X = np.random.default_rng(0).normal(size=(5, 3))
    r = client.analyze(net, X, np.zeros((5, 2)), loss="mse", want="jacobian,per_parameter")
    assert [p.name for p in r.per_parameter] == [name for name, _ in net.named_parameters()]
    assert [p.shape for p in r.per_parameter] == [tuple(p.shape) for _, p in net.named_parameters()]


def test_per_parameter_names_of_an_onnx_model(server, client, basin_bin, tmp_path):
    """An ONNX model's tensors carry the initialiser names the importer saw (named_parameters() for a
    torch export), locally and on the server."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    path = os.path.join(tmp_path, "n.onnx")
    torch.onnx.export(net, torch.zeros(1, 3, dtype=torch.float64), path, opset_version=13,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    np.save(os.path.join(tmp_path, "X.npy"), np.random.default_rng(4).normal(size=(6, 3)))
    common = ["--model", path, "--inputs", os.path.join(tmp_path, "X.npy"), "--loss", "none",
              "--want", "jacobian,per_parameter", "--json"]
    names = [name for name, _ in net.named_parameters()]
    out = {k: v[0] for k, v in remote_and_local(server, basin_bin, common).items()}
    assert out["--server"] == out["--local"]
    assert [t["name"] for t in out["--local"]["per_parameter"]] == names
    r = client.analyze(path, np.load(os.path.join(tmp_path, "X.npy")), loss="none", want="per_parameter")
    assert [t.name for t in r.per_parameter] == names
