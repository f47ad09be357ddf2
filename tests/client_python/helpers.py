"""Shared helpers: the CLI's JSON for the same inputs, and result comparison."""
import json
import math
import os
import subprocess

import numpy as np


def cli_json(basin_bin, tmp_path, model, inputs, targets=None, loss="mse", extra=(), tag="a"):
    """Runs `basin analyze --local ... --json` on files written from the arguments. `model` is a
    basin.Sequential (written as spec.json + params.npy) or a path to an .onnx file."""
    import basin
    args = [basin_bin, "analyze", "--local", "--json", "--loss", loss]
    if isinstance(model, basin.Sequential):
        spec = os.path.join(tmp_path, f"{tag}_model.json")
        with open(spec, "w") as f:
            json.dump(model.to_json(), f)
        params = os.path.join(tmp_path, f"{tag}_params.npy")
        np.save(params, np.asarray(model.params))
        args += ["--model", spec, "--params", params]
    else:
        args += ["--model", str(model)]
    x = os.path.join(tmp_path, f"{tag}_X.npy")
    np.save(x, np.asarray(inputs))
    args += ["--inputs", x]
    if targets is not None:
        y = os.path.join(tmp_path, f"{tag}_Y.npy")
        np.save(y, np.asarray(targets))
        args += ["--targets", y]
    args += list(extra)
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# Provenance fields that differ between two runs of the same request: when and how long, where
# (a server may be another host), and the server's queue and wall times. The digests, build,
# methods and tolerances must agree.
VOLATILE_PROVENANCE = ("host", "started_at", "duration_ms", "queue_ms", "total_ms")


def drop_volatile(doc):
    """Removes timings_ms and the volatile provenance fields from a result's JSON, in place."""
    doc.pop("timings_ms", None)
    for key in VOLATILE_PROVENANCE:
        doc.get("provenance", {}).pop(key, None)
    return doc


def strip(doc):
    """The JSON without what legitimately differs: timings and volatile provenance, and
    `refined_from`, which the basin.v1 contract does not carry."""
    doc = drop_volatile(json.loads(json.dumps(doc)))
    if "jacobian" in doc:
        doc["jacobian"].pop("refined_from", None)
    return doc


def assert_same(a, b, rtol=1e-12, path="$"):
    """Equal JSON values; floats to `rtol` relative to the largest value of their array (the
    server and the CLI run the same engine, so this is normally exact)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], rtol, f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        flat = [x for x in a if isinstance(x, (int, float))]
        scale = max([abs(x) for x in flat] or [0.0])
        for i, (x, y) in enumerate(zip(a, b)):
            if isinstance(x, (int, float)) and isinstance(y, (int, float)) and scale:
                assert abs(x - y) <= rtol * scale, f"{path}[{i}]: {x} != {y}"
            else:
                assert_same(x, y, rtol, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, f"{path}: {a} != {b}"
        assert math.isclose(a, b, rel_tol=rtol, abs_tol=1e-300), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def random_sequential(rng, input_dim, widths, acts, k, bias=True):
    import basin
    layers = []
    for w, a in zip(widths, acts):
        layers.append({"type": "dense", "out": w, "bias": bias})
        layers.append(a if isinstance(a, dict) else {"type": a})
    layers.append({"type": "dense", "out": k})
    m = basin.Sequential(input_dim, layers)
    m.params = rng.normal(size=m.num_params) * 0.5
    return m
