"""--vectors over the wire: the server stores the vectors as the caller's .npy blobs, the remote
CLI downloads them (DownloadBlob) into --save-dir so `--server` and `--local` write the same files,
the Python client exposes them as NumPy arrays, and another user's blob is NOT_FOUND."""
import json
import os
import subprocess

import numpy as np
import pytest

import basin
from helpers import random_sequential

ALL = "jacobian_row,jacobian_null,jacobian_left,ggn,hessian"
NAMES = ["jacobian_row_basis", "jacobian_null_basis", "jacobian_left_basis", "ggn_eigenvectors",
         "hessian_eigenvectors"]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    m = random_sequential(rng, 3, [5], ["tanh"], 3)  # N = 38
    X = rng.normal(size=(6, 3))                        # n·k = 18 < N: a null space of >= 20
    labels = rng.integers(0, 3, size=6)
    return m, X, labels


def write_inputs(tmp_path, m, X, labels):
    spec = os.path.join(tmp_path, "model.json")
    with open(spec, "w") as f:
        json.dump(m.to_json(), f)
    np.save(os.path.join(tmp_path, "params.npy"), np.asarray(m.params))
    np.save(os.path.join(tmp_path, "X.npy"), X)
    np.save(os.path.join(tmp_path, "y.npy"), labels)
    return ["--model", spec, "--params", os.path.join(tmp_path, "params.npy"),
            "--inputs", os.path.join(tmp_path, "X.npy"), "--targets", os.path.join(tmp_path, "y.npy"),
            "--loss", "cross_entropy", "--want", "jacobian,ggn,hessian"]


def run(basin_bin, *args):
    return subprocess.run([basin_bin, "analyze", *args], capture_output=True, text=True, timeout=120)


def test_server_and_local_write_the_same_files(server, basin_bin, tmp_path, problem):
    base = write_inputs(tmp_path, *problem)
    dirs = {}
    for where in ("local", "server"):
        d = os.path.join(tmp_path, where)
        flag = ["--local"] if where == "local" else ["--server", server.address]
        out = run(basin_bin, *flag, *base, "--vectors", ALL, "--save-dir", d, "--json")
        assert out.returncode == 0, out.stderr
        assert json.load(open(os.path.join(d, "result.json"))) == json.loads(out.stdout)
        dirs[where] = d
    local = json.load(open(os.path.join(dirs["local"], "result.json")))
    remote = json.load(open(os.path.join(dirs["server"], "result.json")))
    assert sorted(local["files"]) == sorted(NAMES)
    assert local["files"] == remote["files"]
    N, rank = local["num_params"], local["jacobian"]["rank"]
    assert local["files"]["jacobian_null_basis"]["shape"] == [N, N - rank]
    assert local["files"]["jacobian_row_basis"]["shape"] == [rank, N]
    for name, f in local["files"].items():
        a = np.load(os.path.join(dirs["local"], f["file"]))
        b = np.load(os.path.join(dirs["server"], f["file"]))
        assert a.dtype == np.float64 and list(a.shape) == f["shape"], name
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12, err_msg=name)


def test_python_client_arrays(client, basin_bin, tmp_path, problem):
    m, X, labels = problem
    r = client.analyze(m, X, labels, loss="cross_entropy", want=("jacobian", "ggn", "hessian"),
                       vectors=ALL.split(","))
    d = os.path.join(tmp_path, "local")
    out = run(basin_bin, "--local", *write_inputs(tmp_path, m, X, labels), "--vectors", ALL,
              "--save-dir", d)
    assert out.returncode == 0, out.stderr
    local = json.load(open(os.path.join(d, "result.json")))
    assert r.to_dict()["files"] == local["files"]
    for name in NAMES:
        np.testing.assert_allclose(getattr(r, name), np.load(os.path.join(d, name + ".npy")),
                                   rtol=0, atol=1e-12, err_msg=name)
    # the definitions, on the arrays the client returned
    V = np.vstack([r.jacobian_row_basis, r.jacobian_null_basis.T])
    np.testing.assert_allclose(V @ V.T, np.eye(m.num_params), atol=1e-12)
    lam = r.hessian.eigenvalues
    assert r.hessian_eigenvectors.shape == (m.num_params, len(lam))
    # K extreme ones: the first and last K of the eigenvalue list
    r2 = client.analyze(m, X, labels, loss="cross_entropy", want="jacobian,hessian",
                        vectors="hessian", vectors_k=3)
    idx = r2.files["hessian_eigenvectors"]["indices"]
    assert idx == [0, 1, 2, len(lam) - 3, len(lam) - 2, len(lam) - 1]
    np.testing.assert_allclose(r2.hessian_eigenvectors, r.hessian_eigenvectors[:, idx], atol=1e-12)
    assert r2.jacobian_row_basis is None


def test_download_blob_is_per_user(make_server, tmp_path, problem):
    tokens = os.path.join(tmp_path, "tokens")
    with open(tokens, "w") as f:
        f.write("tok-a alice\ntok-b bob\n")
    s = make_server("--tokens", tokens)
    m, X, labels = problem
    with basin.Client(s.address, token="tok-a") as alice, \
            basin.Client(s.address, token="tok-b") as bob:
        r = alice.analyze(m, X, labels, loss="cross_entropy", want="jacobian",
                          vectors="jacobian_row")
        blob = r._blob_ids["jacobian_row_basis"]
        assert alice.download(blob)[:6] == b"\x93NUMPY"
        with pytest.raises(basin.NotFound, match=r"blob_id: unknown blob") as e:
            bob.download(blob)
        assert "alice" not in e.value.message
        with pytest.raises(basin.NotFound):
            alice.download("sha256:" + "f" * 64)
        with pytest.raises(basin.InvalidArgument, match="not a blob id"):
            alice.download("sha256:xyz")
        with pytest.raises(basin.InvalidArgument, match="not a blob id"):
            alice.download("")


def test_bad_vector_requests_over_the_wire(client, problem):
    m, X, labels = problem
    with pytest.raises(basin.InvalidArgument, match="needs hessian in want"):
        client.analyze(m, X, labels, loss="cross_entropy", want="jacobian", vectors="hessian")
    with pytest.raises(basin.InvalidArgument, match="unknown word 'eigen'"):
        client._call("Analyze", _request_with(client, m, X, labels, vectors=["eigen"]))
    with pytest.raises(basin.InvalidArgument, match="vectors_k"):
        client._call("Analyze", _request_with(client, m, X, labels, vectors_k=2))
    with pytest.raises(ValueError, match="vectors: unknown"):
        client.analyze(m, X, labels, loss="cross_entropy", vectors="eigen")


def _request_with(client, m, X, labels, **fields):
    req, _ = client._build_request(m, X, labels, "cross_entropy", "mean", "jacobian", "auto",
                                   "float64", None, None, None, False, True, None, [])
    for k, v in fields.items():
        if isinstance(v, list):
            getattr(req, k).extend(v)
        else:
            setattr(req, k, v)
    return req


def test_cli_bad_input(make_server, basin_bin, tmp_path, problem):
    base = write_inputs(tmp_path, *problem)
    out = run(basin_bin, "--local", *base, "--vectors", "hessian")
    assert out.returncode == 2 and "needs --save-dir" in out.stderr
    out = run(basin_bin, "--local", *base, "--vectors", "jacobian_row,eigen", "--save-dir", str(tmp_path))
    assert out.returncode == 2 and "unknown word 'eigen'" in out.stderr
    blocker = os.path.join(tmp_path, "a_file")
    open(blocker, "w").close()
    out = run(basin_bin, "--local", *base, "--vectors", "jacobian_row", "--save-dir", blocker)
    assert out.returncode == 2 and "not a directory" in out.stderr
    out = run(basin_bin, "--local", *base, "--vectors", "jacobian_row",
              "--save-dir", os.path.join(blocker, "sub"))
    assert out.returncode == 2 and "--save-dir" in out.stderr
    out = run(basin_bin, "--local", *base, "--want", "jacobian", "--vectors", "hessian",
              "--save-dir", str(tmp_path))
    assert out.returncode == 2 and "needs hessian in want" in out.stderr
    out = run(basin_bin, "--local", *base, "--vectors-k", "2")
    assert out.returncode == 2 and "--vectors-k: only with --vectors" in out.stderr
    # the null basis over the limit says what fits; same over the wire. N = 3,503: the full
    # N × N V is ~200 MB, the analysis and the thin SVD ~1 MB, the limit 50 MiB.
    rng = np.random.default_rng(4)
    wide = random_sequential(rng, 3, [500], ["tanh"], 3)
    big = write_inputs(tmp_path, wide, rng.normal(size=(4, 3)), rng.integers(0, 3, size=4))
    big = big[:big.index("--want")] + ["--want", "jacobian"]
    small = make_server("--max-memory-bytes", str(50 << 20))  # the server's limit applies remotely
    for flag in (["--local", "--max-memory", str(50 / 1024)], ["--server", small.address]):
        out = run(basin_bin, *flag, *big, "--vectors", "jacobian_null", "--save-dir", str(tmp_path))
        assert out.returncode == 3, out.stderr
        assert "jacobian_null" in out.stderr and "full N × N V" in out.stderr, out.stderr
        assert "jacobian_row (rank × N, the thin SVD" in out.stderr and "fits" in out.stderr


def test_submit_then_result_save_dir(server, basin_bin, tmp_path, problem):
    base = write_inputs(tmp_path, *problem)
    local = os.path.join(tmp_path, "local")
    out = run(basin_bin, "--local", *base, "--vectors", "jacobian_null,hessian", "--save-dir", local)
    assert out.returncode == 0, out.stderr
    cli = lambda *a: subprocess.run([basin_bin, *a], capture_output=True, text=True, timeout=120)
    sub = cli("submit", "--server", server.address, *base, "--vectors", "jacobian_null,hessian")
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip()
    assert cli("watch", job, "--server", server.address).returncode == 0
    d = os.path.join(tmp_path, "from_job")
    res = cli("result", job, "--server", server.address, "--save-dir", d)
    assert res.returncode == 0, res.stderr
    assert json.load(open(os.path.join(d, "result.json"))) == json.loads(res.stdout)
    for name in ("jacobian_null_basis", "hessian_eigenvectors"):
        np.testing.assert_allclose(np.load(os.path.join(d, name + ".npy")),
                                   np.load(os.path.join(local, name + ".npy")), rtol=0, atol=1e-12)
    bad = cli("submit", "--server", server.address, *base, "--vectors", "hessian", "--save-dir", d)
    assert bad.returncode == 2 and "basin result ID --save-dir" in bad.stderr
