// Primitive op, gather family: `gather`, an embedding lookup.
//
//   gather  table [V, D…] (unbatched: a parameter, or computed from parameters), indices [S…]
//           (integer-valued, never differentiated: the graph's integer input or a constant)
//           axis = 0 (the only one supported)
//   out [S…, D…] = table[indices[s], …]; batched when the indices are.
//
// The map is linear in the table and constant in the indices, so jvp applies the same lookup to
// the table's tangent, vjp is its transpose (a scatter-add of the rows' cotangents, written in
// gather form by the kernels: kernels/src/ops/kernels/gather.hpp), and rvjp has no second-order
// term. Token ids out of [0, V) are refused: constant indices here, the input's values by
// check_gather_indices (request validation) before any kernel runs; a kernel that still meets one
// reads a zero row. docs/ARCHITECTURE.md ("Ops").
#include "gather.hpp"

#include <algorithm>
#include <cmath>

#include "basin/error.hpp"
#include "op_util.hpp"

namespace basin {
namespace {

using Inputs = std::vector<const GraphValue*>;

std::string str(int64_t v) { return std::to_string(v); }

// "id 12 at position 3 of example 0 is out of range [0, 11)" for messages.
void check_ids(const GraphNode& node, const double* ids, int64_t count, int64_t per_example, int64_t vocab,
               const std::string& where) {
  for (int64_t i = 0; i < count; ++i) {
    const double v = ids[i];
    if (std::isfinite(v) && v == std::floor(v) && v >= 0 && v < static_cast<double>(vocab)) continue;
    std::string at = per_example > 0 ? "example " + str(i / per_example) + ", position " + str(i % per_example)
                                     : "position " + str(i);
    std::string shown = std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15 ? str(static_cast<int64_t>(v))
                                                                                        : std::to_string(v);
    op_error(node, where + " token id " + shown + " (" + at + ") is out of range; expected an integer id in [0, " +
                       str(vocab) + ") (the embedding table has " + str(vocab) + " rows)");
  }
}

Shape infer_gather(const GraphNode& node, const Inputs& in) {
  if (in.size() != 2) op_error(node, "expects 2 inputs (table, indices), got " + str(static_cast<int64_t>(in.size())));
  const GraphValue& table = *in[0];
  const GraphValue& idx = *in[1];
  if (attr_int(node.attrs, "axis", 0) != 0)
    op_error(node, "axis " + str(attr_int(node.attrs, "axis", 0)) + ": only axis 0 (rows of the table) is supported", true);
  if (table.batched)
    op_error(node, "the table depends on the example (batched " + shape_string(table.shape) +
                       "); Basin gathers rows of an unbatched table (an embedding)", true);
  if (table.shape.empty()) op_error(node, "the table is a scalar; expected [V, D…]");
  if (idx.differentiable)
    op_error(node, "the indices depend on a parameter; indices must be integer data (the token input) or a constant");
  if (idx.kind == ValueKind::kInput && !idx.integer)
    op_error(node, "the indices are the float input '" + idx.name + "'; expected integer token ids (int32/int64 data)");
  if (idx.kind == ValueKind::kConstant)
    check_ids(node, idx.data.data(), static_cast<int64_t>(idx.data.size()), 0, table.shape[0], "constant indices:");
  Shape out = idx.shape;
  out.insert(out.end(), table.shape.begin() + 1, table.shape.end());
  return out;
}

template <class T>
class Gather final : public Op<T> {
 public:
  using value_type = T;
  Gather(const GraphNode& node, const Inputs& in)
      : vocab_(in[0]->shape[0]), width_(shape_numel(in[0]->shape) / in[0]->shape[0]), positions_(shape_numel(in[1]->shape)) {
    (void)node;
  }

  void forward(const OpCall<T>& c, Tensor<T> out) override { lookup(c, c.in[0], out, T(0)); }
  void jvp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, Tensor<T> out) override {
    if (t.size() > 0 && t[0]) lookup(c, t[0], out, T(1));
  }
  void vjp(const OpCall<T>& c, const Tensor<T>& g, const std::vector<Tensor<T>>& gin) override {
    if (g && gin.size() > 0 && gin[0]) scatter(c, g, gin[0]);
  }
  void rvjp(const OpCall<T>& c, const std::vector<Tensor<T>>&, const Tensor<T>&, const Tensor<T>& dg,
            const std::vector<Tensor<T>>& gin) override {
    if (dg && gin.size() > 0 && gin[0]) scatter(c, dg, gin[0]);  // linear in the table
  }

 private:
  GatherGeometry geometry(const Tensor<T>& idx, int64_t table_E, int64_t table_R, int64_t R) const {
    GatherGeometry g;
    g.vocab = vocab_, g.width = width_, g.positions = positions_, g.rows = R;
    g.table_row_stride = table_R == 1 ? 0 : vocab_ * width_;
    g.table_example_stride = table_E == 1 ? 0 : table_R * vocab_ * width_;
    g.index_example_stride = idx.E == 1 ? 0 : positions_;
    return g;
  }
  // out = beta·out + table[idx] (out E = max(table E, idx E), R = table R).
  void lookup(const OpCall<T>& c, const Tensor<T>& table, Tensor<T> out, T beta) const {
    const Tensor<T>& idx = c.in[1];
    if (out.E != std::max(table.E, idx.E) || out.R != table.R)
      throw Error(ErrorCode::kInternal, "node '" + c.node.name + "' (gather): output E/R do not match its inputs");
    c.kernels.gather_rows(geometry(idx, table.E, table.R, out.R), out.E, T(1), beta, idx.data, table.data, out.data);
  }
  // gx += scatter-add of g (summed over examples when gx.E == 1 < g.E).
  void scatter(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& gx) const {
    const Tensor<T>& idx = c.in[1];
    if (g.R != gx.R || (gx.E != 1 && gx.E != g.E) || (idx.E != 1 && idx.E != g.E))
      throw Error(ErrorCode::kInternal, "node '" + c.node.name + "' (gather): cotangent E/R do not match");
    const int64_t sum = gx.E == g.E ? 1 : g.E;
    GatherGeometry geo = geometry(idx, 1, 1, g.R);
    if (idx.E == 1 && g.E > 1) {
      // Shared indices, per-example cotangents: one call per example (the body reads one index row).
      for (int64_t e = 0; e < g.E; ++e)
        c.kernels.gather_rows_transpose(geo, 1, 1, T(1), idx.data, g.at(e, 0), gx.E == 1 ? gx.data : gx.at(e, 0));
      return;
    }
    c.kernels.gather_rows_transpose(geo, gx.E, sum, T(1), idx.data, g.data, gx.data);
  }

  int64_t vocab_, width_, positions_;
};

const OpDef kGather{"gather", &infer_gather, &make_op_as<Gather<double>>, &make_op_as<Gather<float>>};

}  // namespace

void check_gather_indices(const Graph& graph, const std::vector<double>& inputs, int64_t num_examples) {
  const int in = graph.input();
  if (in < 0) return;
  const int64_t per = graph.input_size();
  for (const GraphNode& node : graph.nodes()) {
    if (node.op != "gather" || node.inputs.size() != 2 || node.inputs[1] != in) continue;
    const int64_t vocab = graph.value(node.inputs[0]).shape.at(0);
    const int64_t count = std::min<int64_t>(static_cast<int64_t>(inputs.size()), num_examples * per);
    check_ids(node, inputs.data(), count, per, vocab, "inputs:");
  }
}

void register_gather_ops(std::vector<const OpDef*>& table) { table.push_back(&kGather); }

}  // namespace basin
