"""Writes a small seed corpus of valid .onnx files for fuzz_onnx_import (onnx.helper only, no torch):
every supported op and arrangement, float and double, raw and typed initialisers, opsets 11-20."""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)


def save(name, nodes, inits, opset=13, elem=TensorProto.DOUBLE, in_dim=3, out_dim=2):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", elem, ["batch", in_dim])],
                          [helper.make_tensor_value_info("y", elem, ["batch", out_dim])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    with open(os.path.join(out, name + ".onnx"), "wb") as f:
        f.write(m.SerializeToString())


def t(name, shape, dtype=np.float64, typed=False):
    a = rng.normal(size=shape).astype(dtype)
    if typed:
        return helper.make_tensor(name, TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE, a.shape,
                                  a.ravel().tolist())
    return numpy_helper.from_array(a, name)


def c(name, v):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_t", TensorProto.FLOAT, [], [v]))


gemm = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1)]
tail = [helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], transB=1)]
w = [t("w1", (4, 3)), t("b1", (4,)), t("w2", (2, 4)), t("b2", (2,))]
for op, attrs in [("Relu", {}), ("Tanh", {}), ("Sigmoid", {}), ("Softplus", {}), ("LeakyRelu", {"alpha": 0.2}),
                  ("Identity", {}), ("Flatten", {"axis": 1})]:
    save(op.lower(), gemm + [helper.make_node(op, ["h"], ["a"], **attrs)] + tail, w)
save("gelu20", gemm + [helper.make_node("Gelu", ["h"], ["a"])] + tail, w, opset=20)
save("gelu_erf", gemm + [c("s2", 1.4142135), helper.make_node("Div", ["h", "s2"], ["d"]),
                         helper.make_node("Erf", ["d"], ["e"]), c("one", 1.0), helper.make_node("Add", ["e", "one"], ["p"]),
                         helper.make_node("Mul", ["h", "p"], ["q"]), c("half", 0.5),
                         helper.make_node("Mul", ["q", "half"], ["a"])] + tail, w, opset=11)
save("silu", gemm + [helper.make_node("Sigmoid", ["h"], ["s"]), helper.make_node("Mul", ["h", "s"], ["a"])] + tail, w, opset=17)
save("matmul_add_f32_typed",
     [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["b", "xw"], ["y"])],
     [t("w", (3, 2), np.float32, True), t("b", (2,), np.float32, True)], opset=14, elem=TensorProto.FLOAT)
save("gemm_transb0_alpha",
     [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=0, alpha=2.0, beta=0.5)], [t("w", (3, 2)), t("b", (1, 2))], opset=12)
save("residual_branch", gemm + [helper.make_node("Add", ["h", "x"], ["y"])], [t("w1", (3, 3)), t("b1", (3,))],
     out_dim=3)
save("conv_unsupported", [helper.make_node("Conv", ["x", "w1"], ["y"])], [t("w1", (2, 3))])


def ints(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


# Attention as torch's nn.MultiheadAttention exports it: the batch moved to axis 1 and merged with
# the heads by shape arithmetic on the batch size ([n, T, D] → [T, n·2, 2] → [n·2, T, 2]).
T = 3
att = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
       helper.make_node("MatMul", ["xt", "wq"], ["q"]),
       helper.make_node("Shape", ["xt"], ["s"]),
       helper.make_node("Gather", ["s", "i0"], ["t"]), helper.make_node("Gather", ["s", "i1"], ["nb"]),
       helper.make_node("Mul", ["nb", "two"], ["nh"]),
       helper.make_node("Unsqueeze", ["t", "ax0"], ["t1"]), helper.make_node("Unsqueeze", ["nh", "ax0"], ["nh1"]),
       helper.make_node("Unsqueeze", ["nb", "ax0"], ["nb1"]),
       helper.make_node("Concat", ["t1", "nh1", "d"], ["shape_h"], axis=0),
       helper.make_node("Concat", ["t1", "nb1", "D"], ["shape_b"], axis=0),
       helper.make_node("Reshape", ["q", "shape_h"], ["qh"]),
       helper.make_node("Transpose", ["qh"], ["q3"], perm=[1, 0, 2]),
       helper.make_node("Transpose", ["qh"], ["k3"], perm=[1, 2, 0]),
       helper.make_node("MatMul", ["q3", "k3"], ["sc"]),
       helper.make_node("Constant", [], ["mask"], value=numpy_helper.from_array(np.triu(np.full((T, T), -np.inf), 1)[None])),
       helper.make_node("Add", ["sc", "mask"], ["scm"]),
       helper.make_node("Softmax", ["scm"], ["p"], axis=-1),
       helper.make_node("MatMul", ["p", "q3"], ["o"]),
       helper.make_node("Transpose", ["o"], ["ot"], perm=[1, 0, 2]),
       helper.make_node("Reshape", ["ot", "shape_b"], ["ob"]),
       helper.make_node("Transpose", ["ob"], ["y"], perm=[1, 0, 2])]
g = helper.make_graph(att, "attention", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", T, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["batch", T, 4])],
                      [t("wq", (4, 4)), ints("i0", 0), ints("i1", 1), ints("two", 2), ints("ax0", [0]), ints("d", [2]),
                       ints("D", [4])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
m.ir_version = 8
with open(os.path.join(out, "attention_moved_batch.onnx"), "wb") as f:
    f.write(m.SerializeToString())
print(f"wrote {len(os.listdir(out))} seeds to {out}")
