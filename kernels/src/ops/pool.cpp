// Primitive ops, pool family: max_pool and avg_pool over per-example [C, L] (1-D) or [C, H, W]
// (2-D) inputs (leading axes beyond C are folded into the channels), PyTorch's semantics.
//
//   max_pool  x   kernel_shape, strides, pads (begins…, ends…), dilations, ceil_mode
//   avg_pool  x   kernel_shape, strides, pads, count_include_pad, ceil_mode
//
// Both are linear ops (LinearOp). avg_pool is linear in x. max_pool is linear GIVEN the arg-max
// of its primal input: y = P(x)·x with P picking each window's first maximum; its derivatives
// are P's apply and transpose (the arg-max is piecewise constant). Ops are stateless, so every
// call recomputes the arg-max from the primal c.in[0]. The kernels (op_kernels.hpp) take whole
// (E·R) blocks; inputs and outputs that broadcast over E or R (op.hpp's contract) are expanded
// into scratch first, and an output with E == 1 < E_max gets the examples' sum.
#include <algorithm>

#include "basin/error.hpp"
#include "op_util.hpp"
#include "strided_add.hpp"

namespace basin {
namespace {

using Ints = std::vector<int64_t>;
using Inputs = std::vector<const GraphValue*>;

std::string str(int64_t v) { return std::to_string(v); }

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// PyTorch's pooling_output_shape_pad_lr.
int64_t pooled_size(int64_t in, int64_t k, int64_t pad_l, int64_t pad_r, int64_t stride, int64_t dilation, bool ceil) {
  int64_t out = floor_div(in + pad_l + pad_r - dilation * (k - 1) - 1 + (ceil ? stride - 1 : 0), stride) + 1;
  if (ceil && (out - 1) * stride >= in + pad_l) --out;  // the last window must start inside the input or left pad
  return out;
}

struct Pooling {
  WindowGeometry g;
  Shape out;
};

Pooling pooling_of(const GraphNode& node, const Inputs& in, bool is_max) {
  if (in.size() != 1) op_error(node, "expects 1 input, got " + str(static_cast<int64_t>(in.size())));
  if (node.attrs.count("kernel_shape") == 0) op_error(node, "attribute 'kernel_shape' is missing");
  const Ints ks = attr_ints(node.attrs, "kernel_shape");
  const size_t k = ks.size();
  if (k != 1 && k != 2)
    op_error(node, "kernel_shape " + shape_string(ks) + ": Basin pools in 1-D ([C, L]) and 2-D ([C, H, W]) only", true);
  const Shape& s = in[0]->shape;
  if (s.size() < k + 1)
    op_error(node, "input shape " + shape_string(s) + (in[0]->batched ? " per example" : "") + " must be " +
                       (k == 1 ? "[C, L]" : "[C, H, W]") + " for a " + str(static_cast<int64_t>(k)) + "-D kernel " +
                       shape_string(ks));
  const Ints strides = attr_ints(node.attrs, "strides", Ints(k, 1));
  const Ints pads = attr_ints(node.attrs, "pads", Ints(2 * k, 0));
  const Ints dil = is_max ? attr_ints(node.attrs, "dilations", Ints(k, 1)) : Ints(k, 1);
  const int64_t ceil_mode = attr_int(node.attrs, "ceil_mode", 0);
  if (strides.size() != k) op_error(node, "strides " + shape_string(strides) + " must have " + str(k) + " entries");
  if (pads.size() != 2 * k)
    op_error(node, "pads " + shape_string(pads) + " must have " + str(2 * k) + " entries (begins…, ends…)");
  if (dil.size() != k) op_error(node, "dilations " + shape_string(dil) + " must have " + str(k) + " entries");
  if (ceil_mode != 0 && ceil_mode != 1) op_error(node, "ceil_mode must be 0 or 1, got " + str(ceil_mode));
  if (!is_max && node.attrs.count("dilations") != 0) {
    for (int64_t d : attr_ints(node.attrs, "dilations"))
      if (d != 1) op_error(node, "average pooling with dilations is not supported", true);
  }
  for (size_t a = 0; a < k; ++a) {
    if (ks[a] < 1) op_error(node, "kernel_shape " + shape_string(ks) + " must be positive");
    if (strides[a] < 1) op_error(node, "strides " + shape_string(strides) + " must be positive");
    if (dil[a] < 1) op_error(node, "dilations " + shape_string(dil) + " must be positive");
    if (pads[a] < 0 || pads[k + a] < 0) op_error(node, "pads " + shape_string(pads) + " must be non-negative");
  }
  // Spatial axes: the last k; everything before them is channels.
  const size_t lead = s.size() - k;
  int64_t channels = 1;
  for (size_t d = 0; d < lead; ++d) channels *= s[d];
  Pooling p;
  WindowGeometry& g = p.g;
  g.channels = channels;
  const size_t h = k == 2 ? 0 : k;  // index of the H axis in the attributes (none in 1-D)
  const size_t w = k - 1;
  g.height = k == 2 ? s[lead] : 1;
  g.width = s[lead + w];
  if (h < k) {
    g.kernel_h = ks[h], g.stride_h = strides[h], g.pad_top = pads[h], g.pad_bottom = pads[k + h];
    g.dilation_h = dil[h];
  }
  g.kernel_w = ks[w], g.stride_w = strides[w], g.pad_left = pads[w], g.pad_right = pads[k + w];
  g.dilation_w = dil[w];
  g.count_include_pad = !is_max && attr_int(node.attrs, "count_include_pad", 0) != 0;
  g.out_h = pooled_size(g.height, g.kernel_h, g.pad_top, g.pad_bottom, g.stride_h, g.dilation_h, ceil_mode != 0);
  g.out_w = pooled_size(g.width, g.kernel_w, g.pad_left, g.pad_right, g.stride_w, g.dilation_w, ceil_mode != 0);
  if (g.out_h < 1 || g.out_w < 1)
    op_error(node, "the " + shape_string(ks) + " window (dilations " + shape_string(dil) + ") does not fit the input " +
                       shape_string(s) + " padded by " + shape_string(pads));
  if (is_max) {
    // A max over padding alone would be −∞: refuse windows with no input element.
    auto check = [&](int64_t out, int64_t in_size, int64_t kk, int64_t st, int64_t pad, int64_t d, const char* axis) {
      for (int64_t o = 0; o < out; ++o) {
        bool hit = false;
        for (int64_t t = 0; t < kk && !hit; ++t) {
          const int64_t i = o * st - pad + t * d;
          hit = i >= 0 && i < in_size;
        }
        if (!hit)
          op_error(node, std::string("window ") + str(o) + " along " + axis + " lies entirely in the padding (pads " +
                             shape_string(pads) + ", input " + shape_string(s) + ")");
      }
    };
    check(g.out_h, g.height, g.kernel_h, g.stride_h, g.pad_top, g.dilation_h, "H");
    check(g.out_w, g.width, g.kernel_w, g.stride_w, g.pad_left, g.dilation_w, k == 2 ? "W" : "L");
  }
  p.out = Shape(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(lead));
  if (k == 2) p.out.push_back(g.out_h);
  p.out.push_back(g.out_w);
  return p;
}

Shape infer_max(const GraphNode& node, const Inputs& in) { return pooling_of(node, in, true).out; }
Shape infer_avg(const GraphNode& node, const Inputs& in) { return pooling_of(node, in, false).out; }

// dst += K(src) where K maps (E·R) blocks of src's per-example size to dst's: K(E, R, s, d) is
// called with both in the (E, R) layout, E = max(src.E, dst.E, min_E), R = max(src.R, dst.R).
template <class T, class K>
void blockwise(const OpCall<T>& c, const Tensor<T>& src, const Tensor<T>& dst, int64_t min_E, K kernel) {
  if (!src || !dst) return;
  const int64_t E = std::max({src.E, dst.E, min_E}), R = std::max(src.R, dst.R);
  Buffer<T> s_store, d_store;
  Tensor<T> s = src, d = dst;
  if (src.E != E || src.R != R) {
    s = tensor_in(s_store, c.be, E, R, src.shape);
    broadcast_add(c, src, s);
  }
  if (dst.E != E || dst.R != R) d = tensor_in(d_store, c.be, E, R, dst.shape);
  kernel(E, R, s.data, d.data);
  if (d.data != dst.data) broadcast_add(c, d, dst);
}

template <class T>
class AvgPool final : public LinearOp<T> {
 public:
  using value_type = T;
  AvgPool(const GraphNode& node, const Inputs& in) : g_(pooling_of(node, in, false).g) {}
  void apply(const OpCall<T>& c, int, const Tensor<T>& x, Tensor<T> out) override {
    blockwise(c, x, out, 1, [&](int64_t E, int64_t R, const T* s, T* d) { c.kernels.avg_pool(g_, E * R, s, d); });
  }
  void transpose(const OpCall<T>& c, int, const Tensor<T>& g, Tensor<T> gx) override {
    blockwise(c, g, gx, 1,
              [&](int64_t E, int64_t R, const T* s, T* d) { c.kernels.avg_pool_transpose(g_, E * R, s, d); });
  }

 private:
  WindowGeometry g_;
};

template <class T>
class MaxPool final : public LinearOp<T> {
 public:
  using value_type = T;
  MaxPool(const GraphNode& node, const Inputs& in) : g_(pooling_of(node, in, true).g) {}

  void forward(const OpCall<T>& c, Tensor<T> out) override {
    const Tensor<T>& x = primal(c);
    Buffer<T> argmax(c.be, static_cast<size_t>(x.E * out_block()));
    c.kernels.max_pool_forward(g_, x.E, x.data, out.data, argmax.get());
  }
  void apply(const OpCall<T>& c, int, const Tensor<T>& x, Tensor<T> out) override {
    const Tensor<T>& p = primal(c);
    Buffer<T> argmax = argmax_of(c, p);
    blockwise(c, x, out, p.E, [&](int64_t E, int64_t R, const T* s, T* d) {
      c.kernels.max_pool_apply(g_, p.E, E * R / p.E, argmax.get(), s, d);
    });
  }
  bool reads_primal(int) const override { return true; }  // the arg-max is recomputed from it
  void transpose(const OpCall<T>& c, int, const Tensor<T>& g, Tensor<T> gx) override {
    const Tensor<T>& p = primal(c);
    Buffer<T> argmax = argmax_of(c, p);
    blockwise(c, g, gx, p.E, [&](int64_t E, int64_t R, const T* s, T* d) {
      c.kernels.max_pool_transpose(g_, p.E, E * R / p.E, argmax.get(), s, d);
    });
  }

 private:
  int64_t out_block() const { return g_.channels * g_.out_h * g_.out_w; }
  const Tensor<T>& primal(const OpCall<T>& c) const {
    if (c.in.empty() || !c.in[0] || c.in[0].R != 1)
      throw Error(ErrorCode::kInternal, "node '" + c.node.name + "' (max_pool): needs its primal input");
    return c.in[0];
  }
  // The arg-max [p.E, C, out_h, out_w] of the primal.
  Buffer<T> argmax_of(const OpCall<T>& c, const Tensor<T>& p) const {
    Buffer<T> argmax(c.be, static_cast<size_t>(p.E * out_block())), y(c.be, static_cast<size_t>(p.E * out_block()));
    c.kernels.max_pool_forward(g_, p.E, p.data, y.get(), argmax.get());
    return argmax;
  }

  WindowGeometry g_;
};

const OpDef kMaxPool{"max_pool", &infer_max, &make_op_as<MaxPool<double>>, &make_op_as<MaxPool<float>>};
const OpDef kAvgPool{"avg_pool", &infer_avg, &make_op_as<AvgPool<double>>, &make_op_as<AvgPool<float>>};

}  // namespace

void register_pool_ops(std::vector<const OpDef*>& table) {
  table.push_back(&kMaxPool);
  table.push_back(&kAvgPool);
}

}  // namespace basin
