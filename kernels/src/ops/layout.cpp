// Primitive ops, layout family: reshape, transpose, concat, slice, expand, pad. Each is linear
// (LinearOp) and, but for expand's transpose, one strided_copy per input and direction: a View
// says which index space the op walks and where each index sits in the output's and in the
// input's per-example block; apply copies input → output along it, transpose output → input
// (every view is injective on both sides). expand's transpose sums the broadcast axes (a copy
// that puts them last, then one GEMM with a ones vector). docs/ARCHITECTURE.md ("Ops") has the
// design; attribute axes are the axes of the shape the op sees (per-example for batched values).
//
//   reshape    x           shape (ints, resolved: no -1 or 0)
//   transpose  x           perm (default: reversed axes)
//   concat     x0, x1, …   axis (an unbatched input beside batched ones may carry a leading 1)
//   slice      x           starts, ends[, axes][, steps] (resolved, in range, steps > 0)
//   expand     x           shape (NumPy broadcasting of x to it)
//   pad        x           pads (begins…, ends…; negative crops), zero constant
#include <algorithm>
#include <numeric>

#include "basin/error.hpp"
#include "op_util.hpp"
#include "ops/kernels/layout.hpp"
#include "strided_add.hpp"

namespace basin {
namespace {

using Ints = std::vector<int64_t>;
using Inputs = std::vector<const GraphValue*>;

// E and R take two of the maps' kMaxRank dimensions.
constexpr size_t kMaxOpRank = kMaxRank - 2;

Ints strides_of(const Shape& s) { return contiguous_strides(s); }

std::string str(int64_t v) { return std::to_string(v); }
std::string ints_string(const Ints& v) { return shape_string(v); }

void check_rank(const GraphNode& node, const Shape& s, const std::string& what) {
  if (s.size() > kMaxOpRank)
    op_error(node,
             what + " has rank " + str(static_cast<int64_t>(s.size())) + " " + shape_string(s) +
                 "; Basin's layout ops take at most " + str(kMaxOpRank) + " axes",
             true);
}

int64_t normalized_axis(const GraphNode& node, int64_t axis, size_t rank, const std::string& what) {
  const int64_t r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r)
    op_error(node, what + " " + str(axis) + " is out of range for rank " + str(r) + " (expected " + str(-r) + " ≤ " +
                       what + " < " + str(r) + ")");
  return axis < 0 ? axis + r : axis;
}

void expect_inputs(const GraphNode& node, const Inputs& in, size_t n) {
  if (in.size() != n) op_error(node, "expects " + str(static_cast<int64_t>(n)) + " input(s), got " + str(in.size()));
}

// ---- views ----

// An index space `dims` (row-major) and, for every index, its offset in the output's per-example
// block (out_strides, out_offset) and in the input's (in_strides, in_offset).
struct View {
  Shape dims;
  Ints out_strides, in_strides;
  int64_t out_offset = 0, in_offset = 0;
};

struct Plan {
  Shape out;
  std::vector<View> views;  // one per input
};

// The ops whose every input is one View: apply copies along it, transpose back.
template <class T, Plan (*PlanOf)(const GraphNode&, const Inputs&)>
class ViewOp final : public LinearOp<T> {
 public:
  using value_type = T;
  ViewOp(const GraphNode& node, const Inputs& in) : plan_(PlanOf(node, in)) {}
  void apply(const OpCall<T>& c, int j, const Tensor<T>& x, Tensor<T> out) override {
    const View& v = plan_.views.at(static_cast<size_t>(j));
    strided_add(c, x, v.in_strides, v.in_offset, out, v.out_strides, v.out_offset, v.dims);
  }
  void transpose(const OpCall<T>& c, int j, const Tensor<T>& g, Tensor<T> gx) override {
    const View& v = plan_.views.at(static_cast<size_t>(j));
    strided_add(c, g, v.out_strides, v.out_offset, gx, v.in_strides, v.in_offset, v.dims);
  }

 private:
  Plan plan_;
};

template <Plan (*PlanOf)(const GraphNode&, const Inputs&)>
Shape infer_of(const GraphNode& node, const Inputs& in) {
  return PlanOf(node, in).out;
}

// ---- reshape ----

Plan plan_reshape(const GraphNode& node, const Inputs& in) {
  expect_inputs(node, in, 1);
  if (node.attrs.count("shape") == 0) op_error(node, "attribute 'shape' is missing");
  const Shape shape = attr_ints(node.attrs, "shape");
  for (int64_t d : shape)
    if (d <= 0)
      op_error(node, "shape " + shape_string(shape) + " has a dimension ≤ 0; the importer resolves -1 and 0 first");
  const int64_t n = shape_numel(in[0]->shape);
  if (shape_numel(shape) != n)
    op_error(node, "cannot reshape " + shape_string(in[0]->shape) + " (" + str(n) + " elements" +
                       (in[0]->batched ? " per example" : "") + ") to " + shape_string(shape) + " (" +
                       str(shape_numel(shape)) + " elements)");
  return Plan{shape, {View{Shape{n}, Ints{1}, Ints{1}}}};
}

// ---- transpose ----

Plan plan_transpose(const GraphNode& node, const Inputs& in) {
  expect_inputs(node, in, 1);
  const Shape& s = in[0]->shape;
  check_rank(node, s, "the input");
  const size_t r = s.size();
  Ints perm = attr_ints(node.attrs, "perm");
  if (perm.empty()) {
    perm.resize(r);
    for (size_t d = 0; d < r; ++d) perm[d] = static_cast<int64_t>(r - 1 - d);
  }
  if (perm.size() != r)
    op_error(node, "perm " + ints_string(perm) + " has " + str(perm.size()) + " entries for an input of rank " +
                       str(r) + " " + shape_string(s));
  std::vector<bool> seen(r, false);
  for (int64_t p : perm) {
    if (p < 0 || p >= static_cast<int64_t>(r) || seen[static_cast<size_t>(p)])
      op_error(node, "perm " + ints_string(perm) + " is not a permutation of 0.." + str(static_cast<int64_t>(r) - 1));
    seen[static_cast<size_t>(p)] = true;
  }
  const Ints xs = strides_of(s);
  View v;
  Shape out(r);
  v.in_strides.resize(r);
  for (size_t d = 0; d < r; ++d) {
    out[d] = s[static_cast<size_t>(perm[d])];
    v.in_strides[d] = xs[static_cast<size_t>(perm[d])];
  }
  v.dims = out;
  v.out_strides = strides_of(out);
  return Plan{out, {v}};
}

// ---- concat ----

Plan plan_concat(const GraphNode& node, const Inputs& in) {
  if (in.empty()) op_error(node, "expects at least one input");
  if (node.attrs.count("axis") == 0) op_error(node, "attribute 'axis' is missing");
  bool batched = false;
  size_t rank = 0;
  for (const GraphValue* v : in)
    if (v->batched && !batched) batched = true, rank = v->shape.size();
  if (!batched) rank = in[0]->shape.size();
  // The shapes as the op sees them: an unbatched input beside batched ones drops a leading 1
  // (the axis facing the example axis).
  std::vector<Shape> shapes;
  for (size_t j = 0; j < in.size(); ++j) {
    Shape s = in[j]->shape;
    if (batched && !in[j]->batched && s.size() == rank + 1 && s[0] == 1) s.erase(s.begin());
    if (s.size() != rank)
      op_error(node, "input " + str(j) + " '" + in[j]->name + "' has shape " + shape_string(in[j]->shape) +
                         (in[j]->batched ? " per example" : "") + "; expected rank " + str(rank) + " like input 0" +
                         (batched ? " (per-example shapes)" : ""));
    shapes.push_back(s);
  }
  if (rank == 0) op_error(node, "cannot concatenate scalars");
  check_rank(node, shapes[0], "the inputs");
  const size_t axis = static_cast<size_t>(normalized_axis(node, attr_int(node.attrs, "axis", 0), rank, "axis"));
  Shape out = shapes[0];
  out[axis] = 0;
  for (size_t j = 0; j < shapes.size(); ++j) {
    for (size_t d = 0; d < rank; ++d)
      if (d != axis && shapes[j][d] != shapes[0][d])
        op_error(node, "input " + str(j) + " '" + in[j]->name + "' has shape " + shape_string(shapes[j]) +
                           ", input 0 " + shape_string(shapes[0]) + ": they must agree on every axis but " +
                           str(static_cast<int64_t>(axis)));
    out[axis] += shapes[j][axis];
  }
  const Ints os = strides_of(out);
  Plan p{out, {}};
  int64_t at = 0;
  for (const Shape& s : shapes) {
    View v;
    v.dims = s;
    v.out_strides = os;
    v.out_offset = at * os[axis];
    v.in_strides = strides_of(s);
    p.views.push_back(v);
    at += s[axis];
  }
  return p;
}

// ---- slice ----

Plan plan_slice(const GraphNode& node, const Inputs& in) {
  expect_inputs(node, in, 1);
  const Shape& s = in[0]->shape;
  check_rank(node, s, "the input");
  const size_t r = s.size();
  if (node.attrs.count("starts") == 0 || node.attrs.count("ends") == 0)
    op_error(node, "attributes 'starts' and 'ends' are required");
  const Ints starts = attr_ints(node.attrs, "starts"), ends = attr_ints(node.attrs, "ends");
  Ints axes = attr_ints(node.attrs, "axes");
  if (axes.empty()) {
    axes.resize(starts.size());
    std::iota(axes.begin(), axes.end(), int64_t{0});
  }
  const Ints steps = attr_ints(node.attrs, "steps", Ints(starts.size(), 1));
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    op_error(node, "starts " + ints_string(starts) + ", ends " + ints_string(ends) + ", axes " + ints_string(axes) +
                       " and steps " + ints_string(steps) + " must have the same length");
  Ints start(r, 0), step(r, 1);
  Shape out = s;
  std::vector<bool> seen(r, false);
  for (size_t k = 0; k < starts.size(); ++k) {
    if (axes[k] < 0 || axes[k] >= static_cast<int64_t>(r))
      op_error(node, "axis " + str(axes[k]) + " is out of range for the input's shape " + shape_string(s) +
                         " (the importer resolves negative axes)");
    const size_t a = static_cast<size_t>(axes[k]);
    if (seen[a]) op_error(node, "axis " + str(axes[k]) + " is sliced twice");
    seen[a] = true;
    if (steps[k] == 0) op_error(node, "step 0 on axis " + str(axes[k]));
    if (steps[k] < 0) op_error(node, "negative step " + str(steps[k]) + " on axis " + str(axes[k]), true);
    if (starts[k] < 0 || ends[k] > s[a] || starts[k] >= ends[k])
      op_error(node, "slice [" + str(starts[k]) + ", " + str(ends[k]) + ") of axis " + str(axes[k]) + " (size " +
                         str(s[a]) + ") must satisfy 0 ≤ start < end ≤ size (resolved by the importer, non-empty)");
    start[a] = starts[k];
    step[a] = steps[k];
    out[a] = (ends[k] - starts[k] + steps[k] - 1) / steps[k];
  }
  const Ints xs = strides_of(s);
  View v;
  v.dims = out;
  v.out_strides = strides_of(out);
  v.in_strides.resize(r);
  for (size_t d = 0; d < r; ++d) {
    v.in_strides[d] = xs[d] * step[d];
    v.in_offset += start[d] * xs[d];
  }
  return Plan{out, {v}};
}

// ---- pad ----

Plan plan_pad(const GraphNode& node, const Inputs& in) {
  expect_inputs(node, in, 1);
  const Shape& s = in[0]->shape;
  check_rank(node, s, "the input");
  const size_t r = s.size();
  const std::string mode = attr_string(node.attrs, "mode", "constant");
  if (mode != "constant") op_error(node, "mode '" + mode + "' is not supported (only constant zero padding)", true);
  if (attr_float(node.attrs, "value", 0.0) != 0.0)
    op_error(node,
             "padding value " + std::to_string(attr_float(node.attrs, "value", 0.0)) +
                 " is not supported (only zero: the op is linear)",
             true);
  const Ints pads = attr_ints(node.attrs, "pads");
  if (pads.size() != 2 * r)
    op_error(node, "pads " + ints_string(pads) + " must have 2 × rank = " + str(2 * r) +
                       " entries (begins…, ends…) for " + shape_string(s));
  const Ints xs = strides_of(s);
  Shape out(r);
  for (size_t d = 0; d < r; ++d) {
    out[d] = s[d] + pads[d] + pads[r + d];
    if (out[d] <= 0)
      op_error(node, "pads " + ints_string(pads) + " leave axis " + str(static_cast<int64_t>(d)) + " of " +
                         shape_string(s) + " with " + str(out[d]) + " elements");
  }
  const Ints os = strides_of(out);
  View v;
  v.dims.resize(r);
  v.out_strides = os;
  v.in_strides = xs;
  for (size_t d = 0; d < r; ++d) {
    const int64_t b = pads[d], e = pads[r + d];
    const int64_t lo = std::max<int64_t>(0, -b);  // first input index kept
    v.dims[d] = std::max<int64_t>(0, s[d] - lo - std::max<int64_t>(0, -e));
    v.in_offset += lo * xs[d];
    v.out_offset += std::max<int64_t>(0, b) * os[d];
  }
  return Plan{out, {v}};
}

// ---- expand ----

// out = x broadcast to `shape` (NumPy rules: right-aligned, 1 stretches). apply is a copy with
// stride 0 along the broadcast axes; transpose sums over them.
struct Expansion {
  Shape out;
  Ints in_strides;  // per output axis: x's stride, 0 where x is broadcast
  std::vector<bool> broadcast;
};

Expansion expansion_of(const GraphNode& node, const Inputs& in) {
  expect_inputs(node, in, 1);
  if (node.attrs.count("shape") == 0) op_error(node, "attribute 'shape' is missing");
  const Shape& s = in[0]->shape;
  const Shape t = attr_ints(node.attrs, "shape");
  for (int64_t d : t)
    if (d <= 0) op_error(node, "shape " + shape_string(t) + " has a dimension ≤ 0");
  const size_t ro = std::max(s.size(), t.size());
  Expansion x;
  x.out.resize(ro);
  x.in_strides.assign(ro, 0);
  x.broadcast.assign(ro, true);
  const Ints xs = strides_of(s);
  for (size_t d = 0; d < ro; ++d) {
    const bool has_x = d + s.size() >= ro, has_t = d + t.size() >= ro;
    const int64_t a = has_x ? s[d + s.size() - ro] : 1, b = has_t ? t[d + t.size() - ro] : 1;
    if (a != b && a != 1 && b != 1)
      op_error(node, "cannot broadcast " + shape_string(s) + (in[0]->batched ? " (per example)" : "") + " to " +
                         shape_string(t) + ": axis " + str(static_cast<int64_t>(d)) + " has " + str(a) + " and " +
                         str(b));
    x.out[d] = std::max(a, b);
    if (has_x && a == x.out[d]) {
      x.in_strides[d] = xs[d + s.size() - ro];
      x.broadcast[d] = false;
    }
  }
  check_rank(node, x.out, "the output");
  return x;
}

Shape infer_expand(const GraphNode& node, const Inputs& in) { return expansion_of(node, in).out; }

template <class T>
class Expand final : public LinearOp<T> {
 public:
  using value_type = T;
  Expand(const GraphNode& node, const Inputs& in) : x_(expansion_of(node, in)) {}

  void apply(const OpCall<T>& c, int, const Tensor<T>& x, Tensor<T> out) override {
    strided_add(c, x, x_.in_strides, 0, out, strides_of(x_.out), 0, x_.out);
  }

  // gx[e, r, kept axes] += Σ over the broadcast axes (and over e when gx.E == 1 < g.E) of g:
  // g is copied to a scratch [kept × reduced] (kept axes in gx's order, which is gx's layout
  // since x's broadcast axes have size 1), then gx += scratch · 1 (one GEMM with a ones vector).
  void transpose(const OpCall<T>& c, int, const Tensor<T>& g, Tensor<T> gx) override {
    if (!g || !gx) return;
    const int64_t E = std::max(g.E, gx.E), R = std::max(g.R, gx.R);
    if (gx.R != R)
      throw Error(ErrorCode::kInternal, "node '" + c.node.name + "': output with fewer directions than its input");
    const int64_t gs = g.size();
    Ints kd, k_in, rd, r_in;  // kept and reduced: dims and g strides
    if (gx.E == E) {
      kd.push_back(E), k_in.push_back(g.E == 1 ? 0 : g.R * gs);
    } else {
      rd.push_back(E), r_in.push_back(g.R * gs);
    }
    kd.push_back(R), k_in.push_back(g.R == 1 ? 0 : gs);
    const Ints os = strides_of(x_.out);
    for (size_t d = 0; d < x_.out.size(); ++d) {
      if (x_.broadcast[d])
        rd.push_back(x_.out[d]), r_in.push_back(os[d]);
      else
        kd.push_back(x_.out[d]), k_in.push_back(os[d]);
    }
    const int64_t K = shape_numel(kd), Rd = shape_numel(rd);
    if (Rd == 1 && g.E == E && g.R == R) {  // nothing broadcast: gx += g
      c.be.axpy(static_cast<size_t>(gx.count()), T(1), g.data, gx.data);
      return;
    }
    Shape dims = kd;
    dims.insert(dims.end(), rd.begin(), rd.end());
    Ints in = k_in;
    in.insert(in.end(), r_in.begin(), r_in.end());
    Ints out = strides_of(dims);
    int rank = static_cast<int>(dims.size());
    int64_t* strides[2] = {out.data(), in.data()};
    kernels::coalesce(&rank, dims.data(), 2, strides);
    if (rank > kMaxRank)
      op_error(c.node,
               "the reduction needs " + str(rank) + " axes after folding; at most " + str(kMaxRank) + " are supported",
               true);
    StridedMap om, im;
    om.rank = im.rank = rank;
    for (int d = 0; d < rank; ++d) {
      om.dims[d] = im.dims[d] = dims[static_cast<size_t>(d)];
      om.strides[d] = out[static_cast<size_t>(d)];
      im.strides[d] = in[static_cast<size_t>(d)];
    }
    Buffer<T> scratch(c.be, static_cast<size_t>(K * Rd)), ones(c.be, static_cast<size_t>(Rd));
    c.kernels.strided_copy(om, im, T(1), T(0), g.data, scratch.get());
    c.be.fill(ones.get(), static_cast<size_t>(Rd), T(1));
    c.be.gemm(false, false, K, 1, Rd, T(1), scratch.get(), Rd, ones.get(), 1, T(1), gx.data, 1);
  }

 private:
  Expansion x_;
};

#define BASIN_VIEW_OP(var, name, plan) \
  const OpDef var{name, &infer_of<&plan>, &make_op_as<ViewOp<double, &plan>>, &make_op_as<ViewOp<float, &plan>>};
BASIN_VIEW_OP(kReshape, "reshape", plan_reshape)
BASIN_VIEW_OP(kTranspose, "transpose", plan_transpose)
BASIN_VIEW_OP(kConcat, "concat", plan_concat)
BASIN_VIEW_OP(kSlice, "slice", plan_slice)
BASIN_VIEW_OP(kPad, "pad", plan_pad)
#undef BASIN_VIEW_OP
const OpDef kExpand{"expand", &infer_expand, &make_op_as<Expand<double>>, &make_op_as<Expand<float>>};

}  // namespace

void register_layout_ops(std::vector<const OpDef*>& table) {
  for (const OpDef* d : {&kReshape, &kTranspose, &kConcat, &kSlice, &kExpand, &kPad}) table.push_back(d);
}

}  // namespace basin
