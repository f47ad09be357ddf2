"""Every result's "provenance": the digests equal hashlib's over the documented serialisation
(docs/results.md), the build fields name this source tree, and a checkpoint batch digests each
checkpoint's own parameters."""
import datetime
import hashlib
import json
import subprocess

import numpy as np
import pytest

from conftest import REPO_ROOT


def array_digest(dtype, a):
    a = np.ascontiguousarray(a, dtype="<f8" if dtype == "float64" else "<i8")
    header = f"{dtype}[{','.join(str(d) for d in a.shape)}]\n".encode()
    return hashlib.sha256(header + a.tobytes()).hexdigest()


def model_digest(spec):
    """Basin's canonical JSON of the architecture: every dense layer with out and bias, alpha only
    for leaky_relu, compact, keys sorted."""
    layers = []
    for layer in spec["layers"]:
        if layer["type"] == "dense":
            layers.append({"type": "dense", "out": layer["out"], "bias": layer.get("bias", True)})
        elif layer["type"] == "leaky_relu":
            layers.append({"type": "leaky_relu", "alpha": layer.get("alpha", 0.01)})
        else:
            layers.append({"type": layer["type"]})
    canon = {"input_dim": spec["input_dim"], "layers": layers}
    return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


SPEC = {"input_dim": 3, "layers": [{"type": "dense", "out": 4}, {"type": "leaky_relu", "alpha": 0.1},
                                   {"type": "dense", "out": 2, "bias": False}]}
N = 3 * 4 + 4 + 4 * 2


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "none"])
def test_digests_equal_hashlib_over_the_documented_bytes(basin, loss):
    rng = np.random.default_rng(3)
    theta = rng.normal(size=N).astype(np.float32)  # float32 on disk: digested as the float64 used
    X = rng.normal(size=(5, 3))
    Y = {"mse": rng.normal(size=(5, 2)), "cross_entropy": rng.integers(0, 2, size=5).astype(np.int32),
         "none": None}[loss]
    res, _ = basin.analyze(SPEC, theta, X, Y, loss=loss, want="jacobian")
    p = res["provenance"]
    assert p["model_sha256"] == model_digest(SPEC)
    assert p["params_sha256"] == array_digest("float64", theta.astype(np.float64))
    assert p["inputs_sha256"] == array_digest("float64", X)
    if loss == "mse":
        assert p["targets_sha256"] == array_digest("float64", Y)
    elif loss == "cross_entropy":
        assert p["targets_sha256"] == array_digest("int64", Y)
    else:
        assert p["targets_sha256"] is None
    # what the rest of the result says, repeated where a citation needs it
    for key in ("dtype", "backend", "device"):
        assert p[key] == res[key]
    assert p["methods"]["jacobian"] == res["jacobian"]["method"]
    assert p["tolerance"]["jacobian"] == res["jacobian"]["tolerance"]
    assert p["tolerance"]["rtol"] is None and p["tolerance"]["atol"] is None
    assert "matrix_rank" in p["tolerance"]["rule"]
    assert p["seeds"] == {}
    started = datetime.datetime.strptime(p["started_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs((datetime.datetime.utcnow() - started).total_seconds()) < 600
    assert p["duration_ms"] > 0
    assert "queue_ms" not in p and "total_ms" not in p  # a server's, not the local engine's


def test_a_digest_changes_with_one_value(basin):
    rng = np.random.default_rng(4)
    theta, X = rng.normal(size=N), rng.normal(size=(5, 3))
    a, _ = basin.analyze(SPEC, theta, X, want="jacobian")
    X2 = X.copy()
    X2[4, 2] = np.nextafter(X2[4, 2], np.inf)
    b, _ = basin.analyze(SPEC, theta, X2, want="jacobian")
    assert a["provenance"]["inputs_sha256"] != b["provenance"]["inputs_sha256"]
    assert a["provenance"]["params_sha256"] == b["provenance"]["params_sha256"]
    # shape is part of the digest: the same values as (3, 5) are another array
    assert array_digest("float64", X) != array_digest("float64", X.reshape(3, 5))


def test_user_tolerance_is_recorded(basin):
    rng = np.random.default_rng(5)
    res, _ = basin.analyze(SPEC, rng.normal(size=N), rng.normal(size=(5, 3)), want="jacobian",
                           extra=["--rtol", "1e-6", "--atol", "1e-9"])
    t = res["provenance"]["tolerance"]
    assert t["rtol"] == 1e-6 and t["atol"] == 1e-9
    assert "from the request" in t["rule"]


def test_build_fields_name_this_source_tree(basin, basin_bin):
    rng = np.random.default_rng(6)
    res, _ = basin.analyze(SPEC, rng.normal(size=N), rng.normal(size=(5, 3)), want="jacobian")
    p = res["provenance"]
    version = subprocess.run([basin_bin, "--version"], capture_output=True, text=True).stdout.split()[-1]
    assert p["basin_version"] == version
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("the source tree is not a git checkout")
    assert p["commit"] == head.stdout.strip()
    assert isinstance(p["source_modified"], bool)


def test_each_checkpoint_digests_its_own_parameters(basin):
    rng = np.random.default_rng(7)
    P = rng.normal(size=(3, N))
    X = rng.normal(size=(5, 3))
    args = basin.analyze_args(SPEC, P, X, want="jacobian")
    run = basin.run(args)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.strip().splitlines()]
    assert len(lines) == 3
    for b, line in enumerate(lines):
        assert line["provenance"]["params_sha256"] == array_digest("float64", P[b])
        assert line["provenance"]["inputs_sha256"] == array_digest("float64", X)
    assert len({line["provenance"]["params_sha256"] for line in lines}) == 3
