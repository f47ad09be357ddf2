"""Writes the seed corpus of fuzz/fuzz_request.cpp: small serialised basin.v1.AnalyzeRequest
messages into fuzz/seeds/analyze_request/ and SubmitJobRequest messages into
fuzz/seeds/submit_job_request/. The outputs are committed; rerun after changing basin.proto:

    /usr/bin/python3 fuzz/make_request_seeds.py

Needs protoc and python3-protobuf (python3-onnx and python3-numpy for the ONNX seeds). Each
seed is valid or deliberately wrong in one way (the wrong ones name the rule in their file
name), so the fuzzer starts next to every check. Blob ids "hex:<hex digits>" carry the blob itself
(see fuzz_request.cpp)."""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
gen = tempfile.mkdtemp()
subprocess.run(["protoc", "--proto_path=" + os.path.join(ROOT, "proto"), "--python_out=" + gen,
                "basin/v1/basin.proto"], check=True)
sys.path.insert(0, gen)
from basin.v1 import basin_pb2 as pb  # noqa: E402

OUT_A = os.path.join(ROOT, "fuzz", "seeds", "analyze_request")
OUT_S = os.path.join(ROOT, "fuzz", "seeds", "submit_job_request")
for d in (OUT_A, OUT_S):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)

# Deterministic values without numpy: a fixed linear congruential sequence in [-1, 1).
_state = [12345]


def values(count):
    out = []
    for _ in range(count):
        _state[0] = (_state[0] * 1103515245 + 12345) % (1 << 31)
        out.append(_state[0] / float(1 << 30) - 1.0)
    return out


def tensor(shape, vals, dtype=pb.DTYPE_FLOAT64):
    fmt = {pb.DTYPE_FLOAT64: "d", pb.DTYPE_FLOAT32: "f", pb.DTYPE_INT64: "q", pb.DTYPE_INT32: "i"}[dtype]
    return pb.Tensor(dtype=dtype, shape=shape, data=struct.pack("<%d%s" % (len(vals), fmt), *vals))


def layers(spec):
    out = []
    for s in spec:
        if isinstance(s, int):
            out.append(pb.Layer(type="dense", out=s))
        elif isinstance(s, tuple):
            out.append(pb.Layer(type=s[0], alpha=s[1]))
        else:
            out.append(pb.Layer(type=s))
    return out


def num_params(in_dim, spec):
    width, total = in_dim, 0
    for s in spec:
        if isinstance(s, int):
            total += s * width + s
            width = s
    return total, width


def mlp(in_dim=3, spec=(4, "tanh", 2), n=4, loss=pb.LOSS_MSE, dtype=pb.DTYPE_FLOAT64, batch=0, **kw):
    N, k = num_params(in_dim, spec)
    r = pb.AnalyzeRequest(model=pb.Model(input_dim=in_dim, layers=layers(spec)), loss=loss, **kw)
    r.params.tensor.CopyFrom(tensor([batch, N] if batch else [N], values(max(batch, 1) * N), dtype))
    r.inputs.tensor.CopyFrom(tensor([n, in_dim], values(n * in_dim), dtype))
    if loss == pb.LOSS_MSE:
        r.targets.tensor.CopyFrom(tensor([n, k], values(n * k), dtype))
    elif loss == pb.LOSS_CROSS_ENTROPY:
        r.targets.tensor.CopyFrom(tensor([n], [i % k for i in range(n)], pb.DTYPE_INT64))
    return r


def npy_bytes(shape, vals):
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%s), }" % (
        "".join("%d, " % d for d in shape) if len(shape) != 1 else "%d," % shape[0])
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + struct.pack(
        "<%dd" % len(vals), *vals)


seeds = {}
seeds["mse_tanh"] = mlp()
seeds["mse_all_spectra"] = mlp(want=pb.Want(jacobian=True, ggn=True, hessian=True))
seeds["ce_relu"] = mlp(spec=(5, "relu", 3), n=6, loss=pb.LOSS_CROSS_ENTROPY, reduction=pb.REDUCTION_SUM)
seeds["none_gelu_f32"] = mlp(spec=(3, "gelu", 1), loss=pb.LOSS_NONE, dtype=pb.DTYPE_FLOAT32)
seeds["leaky_silu_softplus_sigmoid"] = mlp(spec=(4, ("leaky_relu", 0.2), 4, "silu", 3, "softplus", 2, "sigmoid", 2))
seeds["checkpoints_batch3"] = mlp(batch=3, method=pb.METHOD_GRAM)
r = mlp(method=pb.METHOD_SVD)
r.dtype = pb.COMPUTE_DTYPE_FLOAT32
seeds["method_svd_f32compute"] = r
seeds["method_normal_tolerances"] = mlp(n=8, method=pb.METHOD_NORMAL, rtol=1e-8, atol=1e-12)
seeds["return_jacobian_no_outputs"] = mlp(return_jacobian=True, omit_outputs=True)
seeds["input_dim1_vector_inputs"] = mlp(in_dim=1, spec=(2, "tanh", 1))
seeds["input_dim1_vector_inputs"].inputs.tensor.CopyFrom(tensor([4], values(4)))
seeds["device_cuda"] = mlp(device=pb.DEVICE_CUDA)
seeds["no_bias"] = mlp()
seeds["no_bias"].model.layers[0].bias = False
N = num_params(3, (4, "tanh", 2))[0]
seeds["no_bias"].params.tensor.CopyFrom(tensor([N - 4], values(N - 4)))
r = mlp()
r.inputs.blob_id = "hex:" + npy_bytes([4, 3], values(12)).hex()
seeds["blob_inputs_npy"] = r

# Wrong in one way each.
r = mlp(); r.params.tensor.shape[:] = [3037000500, 3037000500]; seeds["bad_shape_overflow"] = r
r = mlp(); r.inputs.tensor.shape[:] = [-4, 3]; seeds["bad_negative_dim"] = r
r = mlp(); r.inputs.tensor.data = r.inputs.tensor.data[:-3]; seeds["bad_byte_length"] = r
r = mlp(); r.inputs.tensor.data = struct.pack("<d", float("nan")) + r.inputs.tensor.data[8:]; seeds["bad_nan_input"] = r
r = mlp(); r.params.tensor.data = struct.pack("<d", float("inf")) + r.params.tensor.data[8:]; seeds["bad_inf_param"] = r
r = mlp(); r.loss = 42; seeds["bad_unknown_loss"] = r
r = mlp(); r.method = 9; r.device = 7; seeds["bad_unknown_method_device"] = r
r = mlp(); r.inputs.tensor.dtype = 17; seeds["bad_unknown_dtype"] = r
r = mlp(); r.model.layers.add(type="conv2d"); seeds["bad_unknown_layer"] = r
r = mlp(); r.model.layers[0].out = 1 << 40; seeds["bad_huge_width"] = r
r = mlp(loss=pb.LOSS_CROSS_ENTROPY); r.targets.tensor.CopyFrom(tensor([4], [0, 1, 2, -1], pb.DTYPE_INT64)); seeds["bad_label_range"] = r
r = mlp(); r.onnx_blob_id = "sha256:" + "0" * 64; seeds["bad_unknown_blob"] = r
r = mlp(); r.model.layers.extend(layers(["tanh"] * 2000 + [2])); seeds["many_layers"] = r

try:
    import onnx  # noqa: F401
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=s), n) for n, s in
             [("w1", (4, 3)), ("b1", (4,)), ("w2", (2, 4)), ("b2", (2,))]]
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), helper.make_node("Tanh", ["h"], ["a"]),
         helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], transB=1)], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["batch", 2])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx_bytes = m.SerializeToString()
except ImportError:
    onnx_bytes = None
    print("make_request_seeds.py: python3-onnx not found; no ONNX seeds", file=sys.stderr)


if onnx_bytes is not None:
    r = mlp(); r.ClearField("params"); r.onnx_blob_id = "hex:" + onnx_bytes.hex()
    seeds["onnx_params_from_initialisers"] = r
    r = mlp(want=pb.Want(jacobian=True, ggn=True)); r.onnx_blob_id = "hex:" + onnx_bytes.hex()
    seeds["onnx_with_params"] = r
    r = mlp(); r.ClearField("params"); r.onnx_blob_id = "hex:" + onnx_bytes[: len(onnx_bytes) // 2].hex()
    seeds["bad_onnx_truncated"] = r

for name, msg in seeds.items():
    with open(os.path.join(OUT_A, name + ".pb"), "wb") as f:
        f.write(msg.SerializeToString())

# SubmitJobRequest seeds: a few of the above with priorities.
for name, prio in [("mse_tanh", 0), ("ce_relu", 5), ("checkpoints_batch3", -3), ("bad_nan_input", 1),
                   ("many_layers", 0), ("onnx_with_params", 2), ("blob_inputs_npy", 2147483647)]:
    if name in seeds:
        with open(os.path.join(OUT_S, name + ".pb"), "wb") as f:
            f.write(pb.SubmitJobRequest(request=seeds[name], priority=prio).SerializeToString())

shutil.rmtree(gen)
print("make_request_seeds.py: %d analyze_request and %d submit_job_request seeds" % (
    len(os.listdir(OUT_A)), len(os.listdir(OUT_S))))
