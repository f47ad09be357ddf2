// The chain shorthand of an imported graph, while parts of Basin still take a Model: dense
// layers (matmul with trans_b = 1 of a parameter W [out, in], a bias parameter [out] as its third
// input or an add right after it) and element-wise activations, in θ order, from the input
// (flattened) to the output. Anything else has no chain form: layers is empty.
#pragma once

#include "basin/graph.hpp"
#include "basin/model.hpp"

namespace basin::onnx_import_detail {

Model chain_model_of(const Graph& graph);

}  // namespace basin::onnx_import_detail
