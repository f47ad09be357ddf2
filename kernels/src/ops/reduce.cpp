// "reduce_sum", "reduce_mean", "reduce_max": over attribute `axes` (the axes of the shape the op
// sees: per-example axes for a batched value, full axes otherwise; negative axes count from the
// end; empty or absent = every axis), keeping them as size-1 axes when `keepdims` is 1 (the
// default, as in ONNX).
//   reduce_sum, reduce_mean: linear (LinearOp): apply sums (× 1/count for the mean), the
//     transpose broadcasts the cotangent back over the reduced axes (broadcast_plan.hpp);
//   reduce_max: a stop-gradient (OpDef.differentiable = false: the shift Softmax subtracts),
//     forward only.
#include <algorithm>

#include "basin/error.hpp"
#include "broadcast_plan.hpp"

namespace basin {
namespace {

struct Reduction {
  Shape in;      // the input's dims
  Shape kept;    // the input's dims with the reduced axes set to 1 (the output's layout)
  Shape out;     // the output shape (keepdims: = kept; else the reduced axes removed)
  int64_t count = 1;  // elements summed into each output element
};

Reduction reduction_of(const GraphNode& node, const std::vector<const GraphValue*>& in) {
  if (in.size() != 1) op_error(node, "expects 1 input, got " + std::to_string(in.size()));
  const Shape& s = in[0]->shape;
  const int64_t rank = static_cast<int64_t>(s.size());
  const int64_t keepdims = attr_int(node.attrs, "keepdims", 1);
  if (keepdims != 0 && keepdims != 1) op_error(node, "keepdims must be 0 or 1, got " + std::to_string(keepdims));
  std::vector<int64_t> axes = attr_ints(node.attrs, "axes");
  std::vector<bool> reduced(s.size(), axes.empty());
  for (int64_t a : axes) {
    const int64_t norm = a < 0 ? a + rank : a;
    if (norm < 0 || norm >= rank)
      op_error(node, "axis " + std::to_string(a) + " is out of range for input " + shape_string(s) +
                         (in[0]->batched ? " (per example; the example axis cannot be reduced)" : "") +
                         "; expected -" + std::to_string(rank) + " <= axis < " + std::to_string(rank));
    if (reduced[static_cast<size_t>(norm)])  // (all false to begin with: axes is not empty)
      op_error(node, "axis " + std::to_string(norm) + " is listed twice in axes");
    reduced[static_cast<size_t>(norm)] = true;
  }
  Reduction r;
  r.in = s;
  for (size_t d = 0; d < s.size(); ++d) {
    r.kept.push_back(reduced[d] ? 1 : s[d]);
    if (reduced[d]) r.count *= s[d];
    if (!reduced[d] || keepdims) r.out.push_back(reduced[d] ? 1 : s[d]);
  }
  if (folded_rank({&r.in, &r.kept}) + 2 > kMaxRank)
    op_error(node, "reducing " + shape_string(s) + " over these axes needs more than " + std::to_string(kMaxRank - 2) +
                       " strided dims; Basin supports at most that many", true);
  return r;
}

Shape infer(const GraphNode& node, const std::vector<const GraphValue*>& in) { return reduction_of(node, in).out; }

template <class T>
class ReduceSum final : public LinearOp<T> {
 public:
  using value_type = T;
  ReduceSum(const GraphNode& node, const std::vector<const GraphValue*>& in) : r_(reduction_of(node, in)) {
    scale_ = node.op == "reduce_mean" && r_.count > 0 ? T(1) / T(r_.count) : T(1);
  }
  void forward(const OpCall<T>& c, Tensor<T> out) override {  // overwrite: no zero fill first
    accumulate(c, scale_, c.in[0].data, layout_of(c.in[0], r_.in), T(0), out.data, layout_of(out, r_.kept));
  }
  void apply(const OpCall<T>& c, int, const Tensor<T>& x, Tensor<T> out) override {
    accumulate(c, scale_, x.data, layout_of(x, r_.in), T(1), out.data, layout_of(out, r_.kept));
  }
  void transpose(const OpCall<T>& c, int, const Tensor<T>& g, Tensor<T> gx) override {
    if (!g) return;
    accumulate(c, scale_, g.data, layout_of(g, r_.kept), T(1), gx.data, layout_of(gx, r_.in));
  }

 private:
  Reduction r_;
  T scale_ = T(1);
};

template <class T>
class ReduceMax final : public Op<T> {
 public:
  using value_type = T;
  ReduceMax(const GraphNode& node, const std::vector<const GraphValue*>& in) : r_(reduction_of(node, in)) {}
  bool differentiable() const override { return false; }
  void forward(const OpCall<T>& c, Tensor<T> out) override {
    maximum(c, c.in[0].data, layout_of(c.in[0], r_.in), out.data, layout_of(out, r_.kept));
  }
  void jvp(const OpCall<T>& c, const std::vector<Tensor<T>>&, Tensor<T>) override { never(c); }
  void vjp(const OpCall<T>& c, const Tensor<T>&, const std::vector<Tensor<T>>&) override { never(c); }
  void rvjp(const OpCall<T>& c, const std::vector<Tensor<T>>&, const Tensor<T>&, const Tensor<T>&,
            const std::vector<Tensor<T>>&) override {
    never(c);
  }

 private:
  [[noreturn]] static void never(const OpCall<T>& c) {
    throw Error(ErrorCode::kInternal, "node '" + c.node.name +
                                          "' (reduce_max): a stop-gradient has no derivatives; the executor must "
                                          "treat its output as a constant");
  }
  Reduction r_;
};

const OpDef kReduceSum{"reduce_sum", &infer, &make_op_as<ReduceSum<double>>, &make_op_as<ReduceSum<float>>};
const OpDef kReduceMean{"reduce_mean", &infer, &make_op_as<ReduceSum<double>>, &make_op_as<ReduceSum<float>>};
const OpDef kReduceMax{"reduce_max", &infer, &make_op_as<ReduceMax<double>>, &make_op_as<ReduceMax<float>>, false};

}  // namespace

void register_reduce_ops(std::vector<const OpDef*>& table) {
  table.push_back(&kReduceSum);
  table.push_back(&kReduceMean);
  table.push_back(&kReduceMax);
}

}  // namespace basin
