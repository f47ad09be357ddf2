// ONNX import: an exported network as Basin's operation graph (basin/graph.hpp) and its
// parameter vector.
//
// The graph is walked in topological order (cycles are refused naming a node on them) and each
// ONNX node becomes primitive graph nodes, composite layers through GraphBuilder
// (kernels/src/graph/graph_builder.hpp): Gemm, MatMul (+ Add bias), Conv, MaxPool, AveragePool,
// GlobalAveragePool, BatchNormalization (inference), LayerNormalization, GroupNormalization,
// InstanceNormalization, Add/Sub/Mul/Div, Pow (constant exponent), Concat, Flatten, Reshape,
// Transpose, Squeeze/Unsqueeze, Slice, Gather (a constant index, or an embedding lookup of integer
// token inputs), Split, Where (a constant condition), Expand, Tile (a parameter to the batch), Pad
// (constant), Identity, Dropout (inference), ReduceMean/ReduceSum, Softmax/LogSoftmax and the element-wise functions
// (Relu, LeakyRelu, Tanh, Sigmoid, Softplus, Gelu, Elu, HardSigmoid, HardSwish, Clip, Erf, Exp,
// Log, Sqrt, Reciprocal, Neg, and the Erf pattern of exact GELU and x·Sigmoid(x)). Shape
// arithmetic (Shape, Constant, Gather/Slice/Concat/Unsqueeze/Cast/... on constants) is folded
// for the actual input shape. Opsets 11–20 of the default domain; initialisers float32 or
// float64, raw or typed.
//
// The data input and the output carry the example (batch) axis first; in between the batch may
// move and merge with other axes (torch's nn.MultiheadAttention: [T, n·h, d]), tracked per value
// by a BatchLayout (kernels/onnx/src/batch_layout.hpp) through which each op's ONNX axes map to
// the graph's per-example axes (docs/ARCHITECTURE.md "The ONNX importer"); an op that would mix
// examples (act along the batch's axis, interleave examples, multiply across them) is refused
// (kInvalidArgument) naming the node.
//
// Parameters θ: with ImportBounds::parameter_names, exactly those initialisers in that order;
// otherwise the float initialisers used in differentiable slots (weights, biases, γ/β, ...), in
// the file's initialiser order, less ImportBounds::constant_names. BatchNormalization's running
// statistics and initialisers used only in shape arithmetic are constants. θ is each
// initialiser's values row-major as stored, except a rank-2 weight used only as MatMul's B
// [in, out], which θ holds transposed ([out, in], as torch stores the Linear that exports as
// MatMul(x, Wᵀ)): PyTorch's parameters_to_vector order for a torch export. A parameter used by
// several nodes is one parameter. Graph parameter names are the initialiser names; a parameter
// name may also be an Identity of an initialiser (torch writes a parameter equal to an earlier
// one that way).
//
// Failures throw basin::Error whose message starts with `what` and names the node, its op type
// and the reason: kUnimplemented for a valid graph using something Basin does not support (an
// op, an attribute value, a data type), kInvalidArgument for a malformed or truncated graph,
// a cycle, shapes that do not fit, examples mixed, kResourceExhausted over max_nodes. The importer
// never aborts on hostile input (it is fuzzed: fuzz/fuzz_onnx_import.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "basin/graph.hpp"
#include "basin/model.hpp"

namespace basin {

struct ImportedModel {
  Graph graph;
  std::vector<double> params;  // graph.num_params() values, θ order
  int64_t opset = 0;           // the default-domain opset the file declares
  // The chain shorthand of the same network with the same θ (dense layers and activations,
  // matmul trans_b = 1), for the routes that still take a Model; layers is empty when the graph
  // is not such a chain.
  Model model;
};

// Bounds and choices of one import.
struct ImportBounds {
  // ONNX graph nodes, refused (kResourceExhausted) right after parsing, before any per-node work.
  int64_t max_nodes = 40000;
  // Called every few thousand nodes of the import's linear passes; throws (basin::Error
  // kCancelled / kDeadlineExceeded) to stop an import whose caller has gone.
  std::function<void()> check_stop;
  // When non-empty: exactly these initialisers, in this order, are θ (the Python client sends
  // the module's named_parameters() names); an unknown name is kInvalidArgument listing the
  // initialisers.
  std::vector<std::string> parameter_names;
  // Initialisers to treat as constants even in differentiable slots (the CLI's --constants).
  std::vector<std::string> constant_names;
  // The per-example shape of the data (the input's shape without the batch axis), when known:
  // resolves dynamic non-batch dimensions and is checked against static ones. Empty: every
  // non-batch dimension of the graph input must be static.
  Shape input_shape;
};

// `file_bytes` is the serialised ModelProto; `what` names it in error messages (a path, a blob id).
ImportedModel import_onnx(const std::string& file_bytes, const std::string& what,
                          const ImportBounds& bounds = {});
// Reads `path` and imports it; an unreadable file is kInvalidArgument naming the path.
ImportedModel import_onnx_file(const std::string& path, const ImportBounds& bounds = {});

// The ONNX op types import_onnx maps, comma-separated (for messages and GetServerInfo).
std::string onnx_supported_ops();

}  // namespace basin
