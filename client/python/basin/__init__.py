"""Basin: per-example Jacobian, Gauss-Newton and Hessian spectra of neural networks, from Python.

    import basin
    client = basin.Client("localhost:50051")
    model = basin.Sequential(2, [{"type": "dense", "out": 16}, {"type": "tanh"},
                                 {"type": "dense", "out": 1}], params)
    result = client.analyze(model, X, Y, loss="mse")
    result.jacobian.rank, result.hessian.eigenvalues[:5]

The gRPC stubs are generated from proto/basin/v1/*.proto (never edited by hand, never
committed). They are looked for in $BASIN_PROTO_DIR (a directory holding basin/v1/basin_pb2.py,
e.g. the CMake build's <build>/python/_proto) and then in basin/_proto/ next to this file.
Generate them with

    sh client/python/generate_stubs.sh            # into client/python/basin/_proto
"""
import os as _os

__version__ = "0.1.0"


def _find_proto_dir():
    candidates = []
    env = _os.environ.get("BASIN_PROTO_DIR")
    if env:
        candidates.append(env)
    candidates.append(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_proto"))
    for d in candidates:
        if _os.path.isfile(_os.path.join(d, "basin", "v1", "basin_pb2.py")) and \
                _os.path.isfile(_os.path.join(d, "basin", "v1", "basin_pb2_grpc.py")):
            return d
    raise ImportError(
        "basin: the generated gRPC stubs (basin/v1/basin_pb2.py, basin_pb2_grpc.py) were not "
        "found in " + " or ".join(repr(c) for c in candidates) + ". Generate them with "
        "`sh client/python/generate_stubs.sh` (needs protoc and grpc_python_plugin; Debian: "
        "apt-get install protobuf-compiler protobuf-compiler-grpc), or build the CMake target "
        "basin_python_stubs and set BASIN_PROTO_DIR=<build>/python/_proto.")


# The generated modules import each other as `basin.v1.basin_pb2` (protoc's package layout).
# Adding <proto dir>/basin to this package's search path makes `basin.v1` resolve to the
# generated directory, so the generated files are used exactly as protoc wrote them.
_PROTO_DIR = _find_proto_dir()
__path__.append(_os.path.join(_PROTO_DIR, "basin"))  # noqa: F821 (package __path__)

from .v1 import basin_pb2 as _pb2  # noqa: E402,F401
from .v1 import basin_pb2_grpc as _pb2_grpc  # noqa: E402,F401

from .errors import (  # noqa: E402
    BasinError, InvalidArgument, NotFound, AlreadyExists, PermissionDenied, ResourceExhausted,
    FailedPrecondition, Aborted, OutOfRange, Unimplemented, Internal, Unavailable, DataLoss,
    Unauthenticated, DeadlineExceeded, Cancelled, Unknown,
)
from .models import Sequential, OnnxModel, from_torch  # noqa: E402
from .torch_export import TorchModel  # noqa: E402
from .result import Result, JacobianSpectrum, GgnSpectrum, HessianSpectrum, ParameterSpectrum, RankBound  # noqa: E402
from .client import Client, Job, TLS  # noqa: E402

__all__ = [
    "analyze", "Client", "Job", "TLS", "Sequential", "OnnxModel", "TorchModel", "from_torch", "Result",
    "JacobianSpectrum", "GgnSpectrum", "HessianSpectrum", "ParameterSpectrum", "RankBound", "BasinError", "InvalidArgument",
    "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
    "Unauthenticated", "DeadlineExceeded", "Cancelled", "Unknown",
]


def analyze(model, inputs, targets=None, *, server=None, token=None, tls=None, **kwargs):
    """One analysis on a Basin server (default $BASIN_SERVER or localhost:50051): a Client opened
    and closed around Client.analyze(model, inputs, targets, **kwargs). `model` may be any
    torch.nn.Module (see Client.analyze)."""
    with Client(server, token=token, tls=tls) as client:
        return client.analyze(model, inputs, targets, **kwargs)


def __getattr__(name):
    # `basin.plot` without importing matplotlib up front
    if name == "plot":
        import importlib
        return importlib.import_module(".plot", __name__)
    raise AttributeError(f"module 'basin' has no attribute {name!r}")
