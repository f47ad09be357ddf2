"""Shared plumbing for the example scripts: the `basin` import, and the common flags."""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import basin  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError as e:
    if "stubs" in str(e):
        raise
    sys.path.insert(0, os.path.join(HERE, "..", "client", "python"))
    import basin  # noqa: F401


def parser(description):
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default=os.environ.get("BASIN_SERVER", "localhost:50051"),
                   help="basind address HOST:PORT (default: $BASIN_SERVER or localhost:50051)")
    p.add_argument("--token", default=os.environ.get("BASIN_TOKEN"),
                   help="bearer token (default: $BASIN_TOKEN)")
    p.add_argument("--small", action="store_true", help="small sizes (CI)")
    p.add_argument("--seed", type=int, default=0)
    return p


def client(args):
    return basin.Client(args.server, token=args.token)


def plot_path(args, default_name):
    """--plot PATH, default <name>.png in the current directory; '' disables plotting."""
    path = args.plot if args.plot is not None else default_name
    return path or None


def init_params(model, rng, bias_scale=0.1):
    """PyTorch-like random init of a basin.Sequential's parameter vector (uniform ±1/√fan_in
    weights, small random biases), in parameters_to_vector order."""
    import numpy as np
    chunks, width = [], model.input_dim
    for layer in model.layers:
        if layer["type"] == "dense":
            out = int(layer["out"])
            chunks.append(rng.uniform(-1, 1, size=out * width) * np.sqrt(3.0 / width))
            if layer.get("bias", True):
                chunks.append(rng.normal(0, bias_scale, size=out))
            width = out
    return np.concatenate(chunks)
