// ONNX import: turn an exported feed-forward network into Basin's Model and parameter vector.
//
// Accepted graphs are chains from one input to one output made of dense layers (Gemm, or MatMul
// optionally followed by Add of a constant bias) and element-wise activations (Relu, LeakyRelu,
// Tanh, Sigmoid, Softplus, Gelu, the Erf pattern older exporters write for exact GELU,
// x·Sigmoid(x) for SiLU), plus the no-ops Identity, Flatten (axis 1) and Dropout (inference).
// Opsets 11–20 of the default domain; initialisers float32 or float64, raw or typed.
//
// The parameter vector is in PyTorch's parameters_to_vector order of the equivalent
// nn.Sequential: per dense layer, weight [out, in] row-major, then bias [out]. So Gemm's B is
// transposed when transB = 0 and MatMul's B [in, out] is always transposed; Gemm's alpha and beta
// are folded into the weight and bias (W = alpha·B', b = beta·C).
//
// Failures throw basin::Error whose message starts with `what` and names the node, its op type
// and the reason: kUnimplemented for a valid graph using something Basin does not support (an
// op, an attribute value, a data type), kInvalidArgument for a malformed, truncated or branching
// graph. The importer never aborts on hostile input (it is fuzzed: fuzz/fuzz_onnx_import.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "basin/model.hpp"

namespace basin {

struct ImportedModel {
  Model model;
  std::vector<double> params;  // model.num_params() values, parameters_to_vector order
  int64_t opset = 0;           // the default-domain opset the file declares
};

// Bounds on one import, so that a hostile file cannot tie a server thread up.
struct ImportBounds {
  // Graph nodes, refused (kResourceExhausted) right after parsing, before any per-node work.
  // A layer is one to five nodes (Gemm; MatMul + Add; the Erf pattern of GELU), so the default
  // is 4 x Limits::max_layers; the imported model is then held to max_layers by the engine.
  int64_t max_nodes = 40000;
  // Called every few thousand nodes of the import's linear passes; throws (basin::Error
  // kCancelled / kDeadlineExceeded) to stop an import whose caller has gone.
  std::function<void()> check_stop;
};

// `file_bytes` is the serialised ModelProto; `what` names it in error messages (a path, a blob id).
ImportedModel import_onnx(const std::string& file_bytes, const std::string& what,
                          const ImportBounds& bounds = {});
// Reads `path` and imports it; an unreadable file is kInvalidArgument naming the path.
ImportedModel import_onnx_file(const std::string& path, const ImportBounds& bounds = {});

}  // namespace basin
