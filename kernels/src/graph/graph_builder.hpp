// GraphBuilder: composite layers (dense, BatchNorm, LayerNorm, GroupNorm, Softmax, Div, ...)
// written as primitive nodes of a Graph (basin/graph.hpp, op catalogue in docs/ARCHITECTURE.md).
//
// Composite layers are not ops: each is a few primitive nodes, so their first and second
// derivatives are exact by composition. The builder never changes a parameter: scalings that
// exporters fold into weights (Gemm's alpha, BatchNorm's 1/√(var+ε)) are folded into CONSTANTS
// only; a scaling of a parameter is a mul node by a scalar constant.
//
// Every method takes value ids of the graph and the name of the layer the nodes come from (an
// ONNX node's name); a layer of several nodes names its inner nodes "<name>:<part>"
// ("/ln/LayerNormalization:mean"), its last node "<name>" itself. Axes are those of the shape
// the op sees (per-example for batched values, full for unbatched ones), non-negative.
// Shape mistakes are reported by the primitive ops' rules (basin::Error naming the node).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "basin/graph.hpp"

namespace basin {

// Names of the unary op's element-wise functions the builder writes (attribute fn).
namespace unary_fn {
inline constexpr const char* kExp = "exp";
inline constexpr const char* kLog = "log";
inline constexpr const char* kSqrt = "sqrt";
inline constexpr const char* kReciprocal = "reciprocal";
inline constexpr const char* kRsqrt = "rsqrt";
inline constexpr const char* kErf = "erf";
inline constexpr const char* kPow = "pow";  // alpha = exponent
}  // namespace unary_fn

class GraphBuilder {
 public:
  explicit GraphBuilder(Graph& graph) : g_(graph) {}
  Graph& graph() { return g_; }
  const GraphValue& value(int id) const { return g_.value(id); }
  const Shape& shape(int id) const { return g_.value(id).shape; }
  bool is_constant(int id) const { return g_.value(id).kind == ValueKind::kConstant; }

  // ---- values ----
  int constant(const std::string& name, Shape shape, std::vector<double> data);
  int scalar(const std::string& name, double v);  // a constant of shape []
  // `v` as shape `to` (same numel): a new constant for a constant, else a reshape node
  // (nothing when the shape is already `to`).
  int reshaped(int v, const Shape& to, const std::string& name);

  // ---- primitive nodes ----
  int node(const std::string& op, const std::vector<int>& inputs, Attributes attrs, const std::string& name);
  int unary(int x, const std::string& fn, const std::string& name, double alpha = 0.0, double beta = 0.0,
            bool has_alpha = false, bool has_beta = false);
  int add(int a, int b, const std::string& name) { return node("add", {a, b}, {}, name); }
  int sub(int a, int b, const std::string& name) { return node("sub", {a, b}, {}, name); }
  int mul(int a, int b, const std::string& name) { return node("mul", {a, b}, {}, name); }
  int reshape(int x, const Shape& to, const std::string& name);  // a node (nothing when equal)
  int transpose(int x, const std::vector<int64_t>& perm, const std::string& name);
  int reduce(const std::string& op, int x, const std::vector<int64_t>& axes, bool keepdims, const std::string& name);

  // ---- composite layers ----
  // x·Wᵀ (+ b): W [out, in] as torch stores it (matmul trans_b = 1), b [out] optional (-1).
  int dense(int x, int w, int b, const std::string& name);
  // ONNX Conv: x [C, (H,) W], w [M, C/group, k...], b [M] optional (-1).
  int conv(int x, int w, int b, const std::vector<int64_t>& strides, const std::vector<int64_t>& pads,
           const std::vector<int64_t>& dilations, int64_t group, const std::string& name);
  // a / b: a constant b becomes mul by the constant 1/b (zero entries refused), otherwise
  // mul(a, reciprocal(b)).
  int div(int a, int b, const std::string& name);
  // (x − mean)·γ/√(var + ε) + β over the channel axis 0 of x [C, ...]. mean, var [C]; γ, β [C]
  // or -1 (1 and 0). Constant mean/var (running statistics) fold into constants; a constant γ
  // folds with them; parameters take mul/add nodes.
  int batch_norm_inference(int x, int gamma, int beta, int mean, int var, double eps, const std::string& name);
  // Normalises over axes [axis, rank) with per-example statistics, then ·γ + β (γ, β of shape
  // x.shape[axis:], or -1).
  int layer_norm(int x, int64_t axis, double eps, int gamma, int beta, const std::string& name);
  // x [C, ...] in `groups` groups of C/groups channels, statistics per example and group; γ, β of
  // [C] (per channel) or [groups] (per group, ONNX opset 18), or -1.
  int group_norm(int x, int64_t groups, double eps, int gamma, int beta, const std::string& name);
  // group_norm with one group per channel.
  int instance_norm(int x, double eps, int gamma, int beta, const std::string& name);
  // exp(x − max)/Σexp(x − max) over `axes` (the max a stop-gradient reduce_max).
  int softmax(int x, const std::vector<int64_t>& axes, const std::string& name);
  int log_softmax(int x, const std::vector<int64_t>& axes, const std::string& name);
  // reduce_mean over the spatial axes 1.. of x [C, ...], keepdims: [C, 1, ...].
  int global_avg_pool(int x, const std::string& name);
  // reshape to [numel].
  int flatten(int x, const std::string& name);
  // x (power) p for a constant exponent: 1 → x, 2 → x·x, 3 → x·x·x, 0.5 → sqrt, -1 → reciprocal,
  // -0.5 → rsqrt, else unary pow.
  int pow_constant(int x, double p, const std::string& name);
  // x·s for a scalar s (nothing when s == 1).
  int scale(int x, double s, const std::string& name);

 private:
  // A per-channel tensor `v` ([C], or numel C) shaped to broadcast along axis 0 of a rank-`rank`
  // value: [C, 1, ..., 1].
  int per_channel(int v, int64_t C, size_t rank, const std::string& name);
  // 1/√(v + ε): a constant when v is, else nodes.
  int inv_std(int var, double eps, const std::string& name);
  // Normalised x over `axes` (keepdims statistics), before γ/β.
  int normalise(int x, const std::vector<int64_t>& axes, double eps, const std::string& name);

  Graph& g_;
};

}  // namespace basin
