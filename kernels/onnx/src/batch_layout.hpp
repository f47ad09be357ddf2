// Where the example axis sits in an ONNX value's full shape, while the graph value holds one
// example (docs/ARCHITECTURE.md, "The ONNX importer").
//
// torch.onnx.export's nn.MultiheadAttention moves the batch axis ([n, T, D] → [T, n, D]) and
// merges it with neighbours ([T, n·h, d], [n·h, T, d], [T·n, D]). The graph value keeps one
// example with every axis separate (h too), and a BatchLayout says how the ONNX axes are made
// of its axes: put the example axis n into the per-example shape G before graph axis `pos`
// (the expanded shape [G[0:pos], n, G[pos:]]); the ONNX axis holding n is the product of the
// `outer` graph axes before n, n, and the `inner` graph axes after it; every other ONNX axis
// is one graph axis. {0, 0, 0} is Basin's own layout [n, G...].
//
// All functions here are pure (shapes in, shapes out), so the importer's rewrites of
// Transpose, Reshape and broadcasting around a moved batch axis are tested on their own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "basin/graph.hpp"

namespace basin::onnx_import_detail {

struct BatchLayout {
  int64_t pos = 0;    // graph axes before n in the expanded shape
  int64_t outer = 0;  // graph axes merged into n's ONNX axis before n
  int64_t inner = 0;  // graph axes merged into n's ONNX axis after n
  bool standard() const { return pos == 0 && outer == 0 && inner == 0; }
  bool operator==(const BatchLayout& o) const { return pos == o.pos && outer == o.outer && inner == o.inner; }
  int64_t batch_axis() const { return pos - outer; }  // the ONNX axis holding n
};

// "[T, n·2, 4]" for messages.
std::string layout_string(const Shape& per_example, const BatchLayout& layout);

// One ONNX axis of a batched value: graph axes [first, first + count); `batch` for n's axis
// (count = outer + inner, possibly 0).
struct OnnxAxis {
  int64_t first = 0;
  int64_t count = 1;
  bool batch = false;
};
std::vector<OnnxAxis> onnx_axes(const Shape& per_example, const BatchLayout& layout);

// The ONNX rank of a batched value.
int64_t onnx_rank(const Shape& per_example, const BatchLayout& layout);

// The factor c of n's ONNX axis (n·c): the product of its merged graph axes.
int64_t batch_factor(const Shape& per_example, const BatchLayout& layout);

// A Transpose by the ONNX `perm` (a valid permutation of the ONNX axes): the graph's
// permutation of the per-example axes and the layout after it.
struct Permuted {
  std::vector<int64_t> graph_perm;
  BatchLayout layout;
};
Permuted permute_layout(const Shape& per_example, const BatchLayout& layout, const std::vector<int64_t>& perm);

// One entry of a resolved Reshape target: a known size, or n·coef (coef ≥ 1).
struct TargetDim {
  int64_t size = 1;
  int64_t coef = 0;  // > 0: the batch times coef
};

// The per-example shape and layout of a batched value reshaped to `target` (exactly one entry
// holding n, no -1 or 0 left): row-major reshape keeps each example's entries contiguous in the
// order of the graph value exactly when the axes before n's target axis cover a whole number of
// the expanded shape's leading entries (those before n) and the axes after it a whole number of
// its trailing ones. Otherwise nullopt, with the reason in *why.
std::optional<std::pair<Shape, BatchLayout>> reshape_layout(const Shape& per_example, const BatchLayout& layout,
                                                             const std::vector<TargetDim>& target, std::string* why);

// An operand without the batch (ONNX dims `dims`) broadcast against a batched value: its shape
// in graph axes (rank of per_example, 1 along n's merged axes and where it does not reach).
// nullopt when it cannot broadcast without mixing examples (more axes than the batched value,
// or a size other than 1 along n's axis), with the reason in *why.
std::optional<Shape> broadcast_operand(const Shape& dims, const Shape& per_example, const BatchLayout& layout,
                                       std::string* why);

}  // namespace basin::onnx_import_detail
