// "add", "sub", "mul": element-wise a ∘ b with NumPy broadcasting, right-aligned, on the shapes
// the op sees (per-example shapes for batched values, full shapes otherwise). A batched operand
// (per-example shape s) with an unbatched one (full shape u): when rank(u) > rank(s), u's extra
// leading dims face the example axis and must be 1; they are dropped. The output is batched when
// either input is.
//   add, sub: linear in each input (LinearOp), so a constant input takes part in forward only;
//   mul:      bilinear (BilinearOp).
// Transposes sum over the axes an input was broadcast along, and over the examples when the
// input is unbatched (broadcast_plan.hpp).
#include <algorithm>

#include "broadcast_plan.hpp"
#include "op_util.hpp"

namespace basin {
namespace {

// The operands' dims aligned to the output's rank, and the output's dims.
struct Shapes {
  Shape a, b, out;
};

std::string describe(const GraphValue& v) {
  return shape_string(v.shape) + (v.batched ? " (per example)" : "");
}

Shapes shapes_of(const GraphNode& node, const std::vector<const GraphValue*>& in) {
  if (in.size() != 2) op_error(node, "expects 2 inputs (a, b), got " + std::to_string(in.size()));
  Shape sa = in[0]->shape, sb = in[1]->shape;
  const auto both = [&] { return "a " + describe(*in[0]) + " and b " + describe(*in[1]); };
  if (in[0]->batched != in[1]->batched) {
    Shape& u = in[0]->batched ? sb : sa;
    const Shape& s = in[0]->batched ? sa : sb;
    if (u.size() > s.size()) {
      const size_t extra = u.size() - s.size();
      for (size_t d = 0; d < extra; ++d)
        if (u[d] != 1)
          op_error(node, "cannot broadcast " + both() + ": the unbatched operand's leading " +
                             std::to_string(extra) + " dim(s) face the example axis and must be 1");
      u.erase(u.begin(), u.begin() + static_cast<std::ptrdiff_t>(extra));
    }
  }
  const size_t rank = std::max(sa.size(), sb.size());
  Shapes s{align_to(sa, rank), align_to(sb, rank), Shape(rank)};
  for (size_t d = 0; d < rank; ++d) {
    if (s.a[d] != s.b[d] && s.a[d] != 1 && s.b[d] != 1)
      op_error(node, "cannot broadcast " + both() + ": axis " + std::to_string(d) + " (right-aligned) has " +
                         std::to_string(s.a[d]) + " vs " + std::to_string(s.b[d]));
    s.out[d] = s.a[d] == 1 ? s.b[d] : s.a[d];
  }
  if (folded_rank({&s.a, &s.b, &s.out}) + 2 > kMaxRank)
    op_error(node, "broadcasting " + both() + " needs more than " + std::to_string(kMaxRank - 2) +
                       " strided dims; Basin supports at most that many", true);
  return s;
}

Shape infer(const GraphNode& node, const std::vector<const GraphValue*>& in) {
  Shape out = shapes_of(node, in).out;
  return out;
}

// a + b (coefficient +1) or a − b (−1).
template <class T>
class AddSub final : public LinearOp<T> {
 public:
  using value_type = T;
  AddSub(const GraphNode& node, const std::vector<const GraphValue*>& in)
      : s_(shapes_of(node, in)), sign_(node.op == "sub" ? T(-1) : T(1)) {}

  void apply(const OpCall<T>& c, int j, const Tensor<T>& x, Tensor<T> out) override {
    accumulate(c, coef(j), x.data, layout_of(x, dims(j)), T(1), out.data, layout_of(out, s_.out));
  }
  void transpose(const OpCall<T>& c, int j, const Tensor<T>& g, Tensor<T> gx) override {
    if (!g) return;
    accumulate(c, coef(j), g.data, layout_of(g, s_.out), T(1), gx.data, layout_of(gx, dims(j)));
  }

  // One pass for the common case (no zero fill, no second sweep).
  void forward(const OpCall<T>& c, Tensor<T> out) override {
    const Tensor<T>& a = c.in[0];
    const Tensor<T>& b = c.in[1];
    if (sign_ == T(1)) {
      combine(c, BinaryKind::kAdd, T(1), a.data, layout_of(a, s_.a), b.data, layout_of(b, s_.b), T(0), out.data,
              layout_of(out, s_.out));
    } else {
      accumulate(c, T(1), a.data, layout_of(a, s_.a), T(0), out.data, layout_of(out, s_.out));
      accumulate(c, T(-1), b.data, layout_of(b, s_.b), T(1), out.data, layout_of(out, s_.out));
    }
  }
  void jvp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, Tensor<T> out) override {
    const int64_t E = max_examples<T>({&t[0], &t[1], &out}), R = max_rows<T>({&t[0], &t[1], &out});
    if (sign_ == T(1) && t[0] && t[1] && out.E == E && out.R == R) {
      combine(c, BinaryKind::kAdd, T(1), t[0].data, layout_of(t[0], s_.a), t[1].data, layout_of(t[1], s_.b), T(1),
              out.data, layout_of(out, s_.out));
      return;
    }
    LinearOp<T>::jvp(c, t, out);
  }

 private:
  T coef(int j) const { return j == 0 ? T(1) : sign_; }
  const Shape& dims(int j) const { return j == 0 ? s_.a : s_.b; }
  Shapes s_;
  T sign_;
};

template <class T>
class Mul final : public BilinearOp<T> {
 public:
  using value_type = T;
  Mul(const GraphNode& node, const std::vector<const GraphValue*>& in) : s_(shapes_of(node, in)) {}

  void forward(const OpCall<T>& c, Tensor<T> out) override {  // no zero fill: overwrite
    combine(c, BinaryKind::kMul, T(1), c.in[0].data, layout_of(c.in[0], s_.a), c.in[1].data,
            layout_of(c.in[1], s_.b), T(0), out.data, layout_of(out, s_.out));
  }
  void apply(const OpCall<T>& c, const Tensor<T>& a, const Tensor<T>& b, Tensor<T> out) override {
    combine(c, BinaryKind::kMul, T(1), a.data, layout_of(a, s_.a), b.data, layout_of(b, s_.b), T(1), out.data,
            layout_of(out, s_.out));
  }
  void transpose_a(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& b, Tensor<T> ga) override {
    combine(c, BinaryKind::kMul, T(1), g.data, layout_of(g, s_.out), b.data, layout_of(b, s_.b), T(1), ga.data,
            layout_of(ga, s_.a));
  }
  void transpose_b(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& a, Tensor<T> gb) override {
    combine(c, BinaryKind::kMul, T(1), g.data, layout_of(g, s_.out), a.data, layout_of(a, s_.a), T(1), gb.data,
            layout_of(gb, s_.b));
  }

 private:
  Shapes s_;
};

const OpDef kAdd{"add", &infer, &make_op_as<AddSub<double>>, &make_op_as<AddSub<float>>};
const OpDef kSub{"sub", &infer, &make_op_as<AddSub<double>>, &make_op_as<AddSub<float>>};
const OpDef kMul{"mul", &infer, &make_op_as<Mul<double>>, &make_op_as<Mul<float>>};

}  // namespace

void register_binary_ops(std::vector<const OpDef*>& table) {
  table.push_back(&kAdd);
  table.push_back(&kSub);
  table.push_back(&kMul);
}

}  // namespace basin
