// "conv": ONNX Conv in 1-D and 2-D, y = w ⋆ x (+ b), NCHW like PyTorch.
//   x  per-example [C, L] (1-D) or [C, H, W] (2-D); unbatched also [1, C, …]
//   w  [Cout, C/group, k] or [Cout, C/group, kh, kw]
//   b  (optional) [Cout], added to every output position
//   attributes (ONNX defaults): strides (1s), pads (begins…, ends…; 0s), dilations (1s),
//   group (1; group = C is depthwise), kernel_shape (optional, must match w), auto_pad (NOTSET only)
//   y  per-example [Cout, L_out] or [Cout, oh, ow], out = (in + pad_begin + pad_end − ((k − 1)·d + 1)) / s + 1
//
// Bilinear in (x, w) (BilinearOp) plus the affine bias. Every product is im2col + GEMM per group
// (docs/ARCHITECTURE.md "Ops"): cols(x) [C·kh·kw × oh·ow] once per stored x entry, shared by every
// direction r and every example that uses it, and the R directions of a weight-shaped operand stacked
// into one GEMM where the strides allow (gw[e, 0..R) = g[e, 0..R) · cols(x[e])ᵀ). A pointwise conv
// (1×1, stride 1, no padding) uses x as its own cols. Scratch for cols is bounded (kColsBudget).
#include <algorithm>

#include "basin/error.hpp"
#include "op_util.hpp"

namespace basin {
namespace {

// Elements of cols scratch per batch of im2col / col2im (bounds the memory of a pass).
constexpr int64_t kColsBudget = int64_t(1) << 20;

struct ConvDims {
  int spatial = 2;  // 1 or 2
  int64_t C = 0, Cout = 0, groups = 1, Cg = 0, Coutg = 0;
  WindowGeometry geo;
  bool has_bias = false;
  Shape out;
  int64_t P() const { return geo.out_h * geo.out_w; }                  // output positions
  int64_t CgK() const { return Cg * geo.kernel_h * geo.kernel_w; }     // cols rows of one group
  int64_t CK() const { return C * geo.kernel_h * geo.kernel_w; }       // cols rows
  int64_t x_size() const { return C * geo.height * geo.width; }
  int64_t cols_size() const { return CK() * P(); }
  // A 1×1 kernel at stride 1 without padding reads x as it is: cols(x) = x [C × H·W].
  bool pointwise() const {
    return geo.kernel_h == 1 && geo.kernel_w == 1 && geo.stride_h == 1 && geo.stride_w == 1 && geo.pad_top == 0 &&
           geo.pad_left == 0 && geo.out_h == geo.height && geo.out_w == geo.width;
  }
};

std::string dim_name(int spatial) { return spatial == 1 ? "1-D" : "2-D"; }

ConvDims dims_of(const GraphNode& node, const std::vector<const GraphValue*>& in) {
  if (in.size() != 2 && in.size() != 3)
    op_error(node, "expects 2 or 3 inputs (x, w[, b]), got " + std::to_string(in.size()));
  for (const auto& kv : node.attrs) {
    static const char* const kKnown[] = {"strides", "pads", "dilations", "group", "kernel_shape", "auto_pad"};
    if (std::none_of(std::begin(kKnown), std::end(kKnown), [&](const char* k) { return kv.first == k; }))
      op_error(node, "unknown attribute '" + kv.first +
                         "' (expected strides, pads, dilations, group, kernel_shape, auto_pad)");
  }
  const std::string auto_pad = attr_string(node.attrs, "auto_pad", "NOTSET");
  if (auto_pad != "NOTSET" && !auto_pad.empty())
    op_error(node, "auto_pad '" + auto_pad + "' is not supported; expected NOTSET with explicit pads", true);

  ConvDims d;
  const Shape& ws = in[1]->shape;
  if (ws.size() == 5)
    op_error(node, "3-D convolution (w " + shape_string(ws) + ") is not supported; expected 1-D or 2-D", true);
  if (ws.size() != 3 && ws.size() != 4)
    op_error(node, "weight w has shape " + shape_string(ws) +
                       "; expected [Cout, C/group, k] (1-D) or [Cout, C/group, kh, kw] (2-D)");
  d.spatial = static_cast<int>(ws.size()) - 2;
  const size_t S = static_cast<size_t>(d.spatial);
  Shape xs = in[0]->shape;
  if (!in[0]->batched && xs.size() == S + 2 && xs[0] == 1) xs.erase(xs.begin());  // unbatched [1, C, …]
  if (xs.size() != S + 1) {
    if (xs.size() == 4 && S == 2)
      op_error(node, "input x has per-example shape " + shape_string(in[0]->shape) +
                         " (3-D convolution?) but w " + shape_string(ws) + " is 2-D; 3-D convolution is not supported",
               true);
    op_error(node, "input x has " + std::string(in[0]->batched ? "per-example " : "") + "shape " +
                       shape_string(in[0]->shape) + "; a " + dim_name(d.spatial) + " conv (w " + shape_string(ws) +
                       ") expects " + (d.spatial == 1 ? "[C, L]" : "[C, H, W]"));
  }
  for (int64_t v : xs)
    if (v <= 0) op_error(node, "input x has an empty axis: " + shape_string(in[0]->shape));
  for (int64_t v : ws)
    if (v <= 0) op_error(node, "weight w has an empty axis: " + shape_string(ws));

  d.groups = attr_int(node.attrs, "group", 1);
  if (d.groups < 1) op_error(node, "group must be at least 1, got " + std::to_string(d.groups));
  d.C = xs[0];
  d.Cout = ws[0];
  d.Cg = ws[1];
  if (d.C % d.groups != 0)
    op_error(node, "input channels C = " + std::to_string(d.C) + " are not divisible by group = " +
                       std::to_string(d.groups));
  if (d.Cout % d.groups != 0)
    op_error(node, "output channels Cout = " + std::to_string(d.Cout) + " (w " + shape_string(ws) +
                       ") are not divisible by group = " + std::to_string(d.groups));
  if (d.Cg * d.groups != d.C)
    op_error(node, "channel mismatch: x has C = " + std::to_string(d.C) + " channels but w " + shape_string(ws) +
                       " with group = " + std::to_string(d.groups) + " expects C = " + std::to_string(d.Cg * d.groups) +
                       " (w's C/group = " + std::to_string(d.Cg) + " times group)");
  d.Coutg = d.Cout / d.groups;

  const Shape kernel(ws.begin() + 2, ws.end());
  if (node.attrs.count("kernel_shape") != 0 && attr_ints(node.attrs, "kernel_shape") != kernel)
    op_error(node, "kernel_shape " + shape_string(attr_ints(node.attrs, "kernel_shape")) +
                       " differs from w's spatial shape " + shape_string(kernel));
  const std::vector<int64_t> strides = attr_ints(node.attrs, "strides", std::vector<int64_t>(S, 1));
  const std::vector<int64_t> dilations = attr_ints(node.attrs, "dilations", std::vector<int64_t>(S, 1));
  const std::vector<int64_t> pads = attr_ints(node.attrs, "pads", std::vector<int64_t>(2 * S, 0));
  if (strides.size() != S)
    op_error(node, "strides " + shape_string(strides) + " has " + std::to_string(strides.size()) + " values; a " +
                       dim_name(d.spatial) + " conv expects " + std::to_string(S));
  if (dilations.size() != S)
    op_error(node, "dilations " + shape_string(dilations) + " has " + std::to_string(dilations.size()) +
                       " values; a " + dim_name(d.spatial) + " conv expects " + std::to_string(S));
  if (pads.size() != 2 * S)
    op_error(node, "pads " + shape_string(pads) + " has " + std::to_string(pads.size()) + " values; a " +
                       dim_name(d.spatial) + " conv expects " + std::to_string(2 * S) + " (begins…, ends…)");
  for (int64_t v : strides)
    if (v <= 0) op_error(node, "strides must be positive, got " + shape_string(strides));
  for (int64_t v : dilations)
    if (v <= 0) op_error(node, "dilations must be positive, got " + shape_string(dilations));
  for (int64_t v : pads)
    if (v < 0) op_error(node, "pads must be non-negative, got " + shape_string(pads));

  Shape out_spatial;
  for (size_t a = 0; a < S; ++a) {
    const int64_t extent = (kernel[a] - 1) * dilations[a] + 1;
    const int64_t padded = xs[1 + a] + pads[a] + pads[S + a];
    if (extent > padded)
      op_error(node, "kernel " + shape_string(kernel) + " with dilations " + shape_string(dilations) +
                         " spans " + std::to_string(extent) + " positions along spatial axis " + std::to_string(a) +
                         ", more than the padded input's " + std::to_string(padded) + " (x " +
                         shape_string(in[0]->shape) + ", pads " + shape_string(pads) + ")");
    out_spatial.push_back((padded - extent) / strides[a] + 1);
  }

  WindowGeometry& g = d.geo;
  g.channels = d.C;
  if (d.spatial == 2) {
    g.height = xs[1], g.width = xs[2];
    g.kernel_h = kernel[0], g.kernel_w = kernel[1];
    g.stride_h = strides[0], g.stride_w = strides[1];
    g.pad_top = pads[0], g.pad_left = pads[1];
    g.dilation_h = dilations[0], g.dilation_w = dilations[1];
    g.out_h = out_spatial[0], g.out_w = out_spatial[1];
  } else {
    g.height = 1, g.width = xs[1];
    g.kernel_h = 1, g.kernel_w = kernel[0];
    g.stride_h = 1, g.stride_w = strides[0];
    g.pad_top = 0, g.pad_left = pads[0];
    g.dilation_h = 1, g.dilation_w = dilations[0];
    g.out_h = 1, g.out_w = out_spatial[0];
  }

  if (in.size() == 3) {
    d.has_bias = true;
    if (in[2]->shape != Shape{d.Cout})
      op_error(node, "bias b has shape " + shape_string(in[2]->shape) + "; expected [" + std::to_string(d.Cout) +
                         "] (Cout of w " + shape_string(ws) + ")");
    if (in[2]->batched) op_error(node, "the bias must not depend on the input", true);
  }
  d.out = Shape{d.Cout};
  d.out.insert(d.out.end(), out_spatial.begin(), out_spatial.end());
  return d;
}

Shape infer(const GraphNode& node, const std::vector<const GraphValue*>& in) { return dims_of(node, in).out; }

template <class T>
class Conv final : public BilinearOp<T> {
 public:
  using value_type = T;
  Conv(const GraphNode& node, const std::vector<const GraphValue*>& in) : d_(dims_of(node, in)) {}

  // out[e, r] += w[e, r] ⋆ x[e, r]: per stored x entry, cols(x) then W_g · cols_g per group.
  void apply(const OpCall<T>& c, const Tensor<T>& x, const Tensor<T>& w, Tensor<T> out) override {
    const int64_t E = max_examples<T>({&x, &w, &out}), R = max_rows<T>({&x, &w, &out});
    if (x.E == E && x.R == R && out.E == E && out.R == R && w.E == 1 && w.R == 1 && E * R > 1 && direct_apply()) {
      apply_direct(c, x, w, out);
      return;
    }
    const int64_t P = d_.P(), CgK = d_.CgK(), wsize = d_.Cout * CgK, osize = d_.Cout * P;
    for_each_cols(c, x, [&](int64_t xe, int64_t xr, const T* cols) {
      for (int64_t e = x.E == 1 ? 0 : xe; e < (x.E == 1 ? E : xe + 1); ++e) {
        const T* W = w.at(w.E == 1 ? 0 : e, 0);
        T* O = out.at(out.E == 1 ? 0 : e, 0);
        if (x.R == 1)  // these cols serve all R directions: w's R rows stacked
          grouped_gemm(c.be, R, d_.Coutg, P, CgK, W, CgK, w.R == 1 ? 0 : wsize, cols, false, P, O, P, osize);
        else
          grouped_gemm(c.be, 1, d_.Coutg, P, CgK, W + (w.R == 1 ? 0 : xr) * wsize, CgK, 0, cols, false, P,
                       O + xr * osize, P, 0);
      }
    });
  }

  // gx[e, r] += col2im(Σ_g W_gᵀ · g_g[e, r]).
  void transpose_a(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& w, Tensor<T> gx) override {
    const int64_t E = max_examples<T>({&g, &w, &gx}), R = max_rows<T>({&g, &w, &gx});
    const int64_t P = d_.P(), CgK = d_.CgK(), csize = d_.cols_size(), xsize = d_.x_size();
    if (d_.pointwise()) {  // gx[e, r] += W_gᵀ · g_g[e, r] directly (cols are x itself)
      for (int64_t q = 0; q < E * R; ++q) {
        const int64_t e = q / R, r = q % R;
        const T* W = w.at(w.E == 1 ? 0 : e, w.R == 1 ? 0 : r);
        const T* G = g.at(g.E == 1 ? 0 : e, g.R == 1 ? 0 : r);
        T* GX = gx.at(gx.E == 1 ? 0 : e, gx.R == 1 ? 0 : r);
        for (int64_t gi = 0; gi < d_.groups; ++gi)
          c.be.gemm(true, false, CgK, P, d_.Coutg, T(1), W + gi * d_.Coutg * CgK, CgK, G + gi * d_.Coutg * P, P, T(1),
                    GX + gi * CgK * P, P);
      }
      return;
    }
    const bool contiguous = gx.E == E && gx.R == R;  // pair q = e·R + r is row q of gx
    if (contiguous && g.E == E && g.R == R && w.E == 1 && w.R == 1 && direct_transpose()) {
      transpose_a_direct(c, g, w, gx);
      return;
    }
    const int64_t pairs = E * R, chunk = std::max<int64_t>(1, std::min(pairs, kColsBudget / csize));
    Buffer<T> scratch(c.be, static_cast<size_t>(chunk * csize));
    for (int64_t q0 = 0; q0 < pairs; q0 += chunk) {
      const int64_t q1 = std::min(pairs, q0 + chunk);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t e = q / R, r = q % R;
        const T* W = w.at(w.E == 1 ? 0 : e, w.R == 1 ? 0 : r);
        const T* G = g.at(g.E == 1 ? 0 : e, g.R == 1 ? 0 : r);
        T* cols = scratch.get() + (q - q0) * csize;
        for (int64_t gi = 0; gi < d_.groups; ++gi)
          c.be.gemm(true, false, CgK, P, d_.Coutg, T(1), W + gi * d_.Coutg * CgK, CgK, G + gi * d_.Coutg * P, P, T(0),
                    cols + gi * CgK * P, P);
        if (!contiguous) kernels(c).col2im(d_.geo, 1, cols, gx.at(gx.E == 1 ? 0 : e, gx.R == 1 ? 0 : r));
      }
      if (contiguous) kernels(c).col2im(d_.geo, q1 - q0, scratch.get(), gx.data + q0 * xsize);
    }
  }

  // gw[e, r] += Σ_g g_g[e, r] · cols_g(x[e, r])ᵀ; with x shared by the R rows, one GEMM per example
  // and group over the stacked rows g[e, 0..R).
  void transpose_b(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& x, Tensor<T> gw) override {
    const int64_t E = max_examples<T>({&g, &x, &gw}), R = max_rows<T>({&g, &x, &gw});
    const int64_t P = d_.P(), CgK = d_.CgK(), wsize = d_.Cout * CgK, osize = d_.Cout * P;
    for_each_cols(c, x, [&](int64_t xe, int64_t xr, const T* cols) {
      for (int64_t e = x.E == 1 ? 0 : xe; e < (x.E == 1 ? E : xe + 1); ++e) {
        const T* G = g.at(g.E == 1 ? 0 : e, 0);
        T* GW = gw.at(gw.E == 1 ? 0 : e, 0);
        if (x.R == 1)
          grouped_gemm(c.be, R, d_.Coutg, CgK, P, G, P, g.R == 1 ? 0 : osize, cols, true, P, GW, CgK, wsize);
        else
          grouped_gemm(c.be, 1, d_.Coutg, CgK, P, G + (g.R == 1 ? 0 : xr) * osize, P, 0, cols, true, P,
                       GW + xr * wsize, CgK, 0);
      }
    });
  }

  // gw[e, r][begin..end) += g[e, r][begin..end) · cols(x[e])ᵀ: the output channels [begin, end)
  // of the weight's cotangent (one group only: the rows of a group share its cols).
  bool has_param_rows(const OpCall<T>& c, int slot) const override {
    return slot == 1 && d_.groups == 1 && c.in[0] && c.in[0].R == 1;
  }
  void vjp_param_rows(const OpCall<T>& c, const Tensor<T>& g, int slot, int64_t begin, int64_t end,
                      Tensor<T> gw) override {
    (void)slot;
    if (!g) return;
    const Tensor<T>& x = c.in[0];
    const int64_t E = max_examples<T>({&g, &x, &gw}), R = max_rows<T>({&g, &x, &gw});
    const int64_t P = d_.P(), CK = d_.CgK(), rows = end - begin, osize = d_.Cout * P;
    for_each_cols(c, x, [&](int64_t xe, int64_t, const T* cols) {
      for (int64_t e = x.E == 1 ? 0 : xe; e < (x.E == 1 ? E : xe + 1); ++e) {
        const T* G = g.at(g.E == 1 ? 0 : e, 0) + begin * P;
        T* GW = gw.at(gw.E == 1 ? 0 : e, 0);
        if (R == 1 || g.R == 1) {
          for (int64_t r = 0; r < R; ++r)
            c.be.gemm(false, true, rows, CK, P, T(1), G + (g.R == 1 ? 0 : r * osize), P, cols, P, T(1),
                      GW + r * rows * CK, CK);
        } else {
          grouped_gemm(c.be, R, rows, CK, P, G, P, osize, cols, true, P, GW, CK, rows * CK);
        }
      }
    });
  }

  // ---- the bias (input 2) ----
  void forward(const OpCall<T>& c, Tensor<T> out) override {
    BilinearOp<T>::forward(c, out);
    if (d_.has_bias) add_bias(c, c.in[2], out);
  }
  void jvp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, Tensor<T> out) override {
    BilinearOp<T>::jvp(c, t, out);
    if (d_.has_bias && t.size() > 2 && t[2]) add_bias(c, t[2], out);
  }
  void vjp(const OpCall<T>& c, const Tensor<T>& g, const std::vector<Tensor<T>>& gin) override {
    BilinearOp<T>::vjp(c, g, gin);
    if (d_.has_bias && gin.size() > 2 && gin[2] && g) bias_transpose(c, g, gin[2]);
  }
  void rvjp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, const Tensor<T>& g, const Tensor<T>& dg,
            const std::vector<Tensor<T>>& gin) override {
    BilinearOp<T>::rvjp(c, t, g, dg, gin);
    if (d_.has_bias && gin.size() > 2 && gin[2] && dg) bias_transpose(c, dg, gin[2]);
  }

 private:
  static OpKernels<T>& kernels(const OpCall<T>& c) { return const_cast<OpKernels<T>&>(c.kernels); }

  // The transposed convolution without cols (docs/ARCHITECTURE.md "Ops"): at stride 1 and
  // dilation 1, gx[c, y, x] = Σ_{a,b} Σ_co W[co, c, kh−1−a, kw−1−b] · g'[co, y + pt + a, x + pl + b],
  // g' = g with kh−1 / kw−1 zeros around it. Flattened at g's padded width Wp, every offset (a, b)
  // is one GEMM W_abᵀ [C × Cout] · g' shifted by (pt + a)·Wp + pl + b, into gx on a grid of width
  // Wp (the columns x ≥ W are discarded). Per pair q = (e, r) both g' and that grid stay in cache,
  // where col2im's cols [C·kh·kw × P] (kh·kw times x's size) do not.
  bool direct_transpose() const {
    const WindowGeometry& g = d_.geo;
    return g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 && g.dilation_w == 1 && g.pad_top < g.kernel_h &&
           g.pad_left < g.kernel_w && (d_.groups == 1 || d_.Coutg >= 16) && !d_.pointwise();
  }
  // The same for the product itself: out[co, y, x] = Σ_{a,b} Σ_c W[co, c, a, b] · x'[c, y + a, x + b],
  // x' = x zero-padded by (pt, pl) before and the kernel's extent after, one GEMM W_ab [Cout × C] ·
  // x' shifted by a·Wp + b per tap into a grid of width Wp. Used where x carries many entries (the
  // tangents of a Hessian's directions) and w is shared, so each entry's cols would be built anew.
  bool direct_apply() const {
    const WindowGeometry& g = d_.geo;
    return g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 && g.dilation_w == 1 &&
           (d_.groups == 1 || d_.Cg >= 16) && !d_.pointwise();
  }
  void apply_direct(const OpCall<T>& c, const Tensor<T>& x, const Tensor<T>& w, Tensor<T> out) const {
    const WindowGeometry& geo = d_.geo;
    const int64_t kh = geo.kernel_h, kw = geo.kernel_w, H = geo.height, W = geo.width;
    const int64_t oh = geo.out_h, ow = geo.out_w, Wp = std::max(W + geo.pad_left, ow + kw - 1) + kw - 1;
    const int64_t Hp = std::max(H + geo.pad_top, oh + kh - 1) + 1;
    const int64_t Cg = d_.Cg, Coutg = d_.Coutg;
    // W_ab per tap and group: wk[(ab·groups + gi)] [Coutg × Cg] from w [Cout, Cg, kh, kw].
    Buffer<T> wk(c.be, static_cast<size_t>(kh * kw * d_.Cout * Cg));
    {
      StridedMap om, im;
      om.rank = im.rank = 4;  // (ab, gi, co, c)
      const int64_t dims[4] = {kh * kw, d_.groups, Coutg, Cg};
      const int64_t ost[4] = {d_.groups * Coutg * Cg, Coutg * Cg, Cg, 1};
      const int64_t ist[4] = {1, Coutg * Cg * kh * kw, Cg * kh * kw, kh * kw};
      for (int d = 0; d < 4; ++d) om.dims[d] = im.dims[d] = dims[d], om.strides[d] = ost[d], im.strides[d] = ist[d];
      c.kernels.strided_copy(om, im, T(1), T(0), w.data, wk.get());
    }
    tap_gemms(c, TapProduct{d_.C, H, W, d_.Cout, oh, ow, Hp, Wp, geo.pad_top, geo.pad_left}, x.E * x.R, x.data,
              wk.get(), [&](int64_t ab) { return (ab / kw) * Wp + ab % kw; }, out.data);
  }

  void transpose_a_direct(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& w, Tensor<T> gx) const {
    const WindowGeometry& geo = d_.geo;
    const int64_t kh = geo.kernel_h, kw = geo.kernel_w, H = geo.height, W = geo.width;
    const int64_t oh = geo.out_h, ow = geo.out_w, Wp = ow + 2 * (kw - 1), Hp = oh + 2 * kh - 1;
    const int64_t Cg = d_.Cg, Coutg = d_.Coutg;
    // W_ab^T per offset and group: wt[(ab·groups + gi)] [Cg × Coutg] from w [Cout, Cg, kh, kw].
    Buffer<T> wt(c.be, static_cast<size_t>(kh * kw * d_.Cout * Cg));
    {
      StridedMap om, im;
      om.rank = im.rank = 5;  // (a, b, gi, c, co)
      const int64_t dims[5] = {kh, kw, d_.groups, Cg, Coutg};
      const int64_t ost[5] = {kw * d_.groups * Cg * Coutg, d_.groups * Cg * Coutg, Cg * Coutg, Coutg, 1};
      // w[gi·Coutg + co, c, kh−1−a, kw−1−b]: a and b run backwards from the last tap.
      const int64_t ist[5] = {-kw, -1, Coutg * Cg * kh * kw, kh * kw, Cg * kh * kw};
      for (int d = 0; d < 5; ++d) om.dims[d] = im.dims[d] = dims[d], om.strides[d] = ost[d], im.strides[d] = ist[d];
      im.offset = kh * kw - 1;
      c.kernels.strided_copy(om, im, T(1), T(0), w.data, wt.get());
    }
    tap_gemms(c, TapProduct{d_.Cout, oh, ow, d_.C, H, W, Hp, Wp, kh - 1, kw - 1}, g.E * g.R, g.data, wt.get(),
              [&](int64_t ab) { return (geo.pad_top + ab / kw) * Wp + geo.pad_left + ab % kw; }, gx.data);
  }

  // The core of both: per batch of entries, `in` [pairs, Ci, Hi, Wi] is copied into zeroed
  // [Ci, Hp, Wp] planes at (row0, col0); for every tap t and group, grid [Co, Ho, Wp] (+)=
  // taps[t, group] [Co/groups × Ci/groups] · the padded planes shifted by off(t); then out
  // [pairs, Co, Ho, Wo] += the grid's first Wo columns.
  struct TapProduct {
    int64_t Ci, Hi, Wi, Co, Ho, Wo, Hp, Wp, row0, col0;
  };
  template <class Off>
  void tap_gemms(const OpCall<T>& c, const TapProduct& p, int64_t pairs, const T* in, const T* taps, Off off,
                 T* out) const {
    const int64_t nt = d_.geo.kernel_h * d_.geo.kernel_w, G = d_.groups, Cig = p.Ci / G, Cog = p.Co / G;
    const int64_t chan = p.Hp * p.Wp, n = p.Ho * p.Wp, isize = p.Ci * chan, osize = p.Co * n;
    const int64_t chunk = std::max<int64_t>(1, std::min(pairs, kColsBudget / (isize + osize)));
    Buffer<T> padded(c.be, static_cast<size_t>(chunk * isize));  // zero borders stay zero
    Buffer<T> grid(c.be, static_cast<size_t>(chunk * osize));
    for (int64_t q0 = 0; q0 < pairs; q0 += chunk) {
      const int64_t Q = std::min(pairs, q0 + chunk) - q0;
      StridedMap om, im;  // in [Q, Ci, Hi, Wi] into [Q, Ci, Hp, Wp] at (row0, col0)
      om.rank = im.rank = 3;
      const int64_t dims[3] = {Q * p.Ci, p.Hi, p.Wi};
      for (int d = 0; d < 3; ++d) om.dims[d] = im.dims[d] = dims[d];
      om.strides[0] = chan, om.strides[1] = p.Wp, om.strides[2] = 1, om.offset = p.row0 * p.Wp + p.col0;
      im.strides[0] = p.Hi * p.Wi, im.strides[1] = p.Wi, im.strides[2] = 1, im.offset = q0 * p.Ci * p.Hi * p.Wi;
      c.kernels.strided_copy(om, im, T(1), T(0), in, padded.get());
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t t = 0; t < nt; ++t)
          for (int64_t gi = 0; gi < G; ++gi)
            c.be.gemm(false, false, Cog, n, Cig, T(1), taps + (t * G + gi) * Cog * Cig, Cig,
                      padded.get() + q * isize + gi * Cig * chan + off(t), chan, t == 0 ? T(0) : T(1),
                      grid.get() + q * osize + gi * Cog * n, n);
      StridedMap ym, gm;  // out [Q, Co, Ho, Wo] += grid [Q, Co, Ho, Wp]'s first Wo columns
      ym.rank = gm.rank = 2;
      ym.dims[0] = gm.dims[0] = Q * p.Co * p.Ho;
      ym.dims[1] = gm.dims[1] = p.Wo;
      ym.strides[0] = p.Wo, ym.strides[1] = 1, ym.offset = q0 * p.Co * p.Ho * p.Wo;
      gm.strides[0] = p.Wp, gm.strides[1] = 1;
      c.kernels.strided_copy(ym, gm, T(1), T(1), grid.get(), out);
    }
  }

  // Calls f(xe, xr, cols) for every stored entry (xe < x.E, xr < x.R) of x with its im2col
  // [C·kh·kw × oh·ow], computed in batches of consecutive entries.
  template <class F>
  void for_each_cols(const OpCall<T>& c, const Tensor<T>& x, F f) const {
    const int64_t entries = x.E * x.R, csize = d_.cols_size();
    if (d_.pointwise()) {
      for (int64_t q = 0; q < entries; ++q) f(q / x.R, q % x.R, x.data + q * csize);
      return;
    }
    const int64_t chunk = std::max<int64_t>(1, std::min(entries, kColsBudget / csize));
    Buffer<T> scratch(c.be, static_cast<size_t>(chunk * csize));
    for (int64_t q0 = 0; q0 < entries; q0 += chunk) {
      const int64_t q1 = std::min(entries, q0 + chunk);
      kernels(c).im2col(d_.geo, q1 - q0, x.data + q0 * d_.x_size(), scratch.get());
      for (int64_t q = q0; q < q1; ++q) f(q / x.R, q % x.R, scratch.get() + (q - q0) * csize);
    }
  }

  // For r < R and every group gi: C_r,gi += A_r,gi · op(B_gi), with
  //   A_r,gi = a + r·a_rs + gi·m·lda  [m × k]   (a_rs = 0: the same A for every r)
  //   B_gi   = cols + gi·CgK·P        [CgK × P] (op = transpose when trans_b)
  //   C_r,gi = cm + r·c_rs + gi·m·ldc [m × n]
  // in as few GEMMs as the strides allow: one over all R·m rows when the r blocks are contiguous
  // (group 1), else min(m, R) GEMMs per group (rows j of every r at stride a_rs, or r by r).
  void grouped_gemm(Backend<T>& be, int64_t R, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
                    int64_t a_rs, const T* cols, bool trans_b, int64_t ldb, T* cm, int64_t ldc, int64_t c_rs) const {
    const int64_t b_gs = d_.CgK() * d_.P();
    for (int64_t gi = 0; gi < d_.groups; ++gi) {
      const T* A = a + gi * m * lda;
      const T* B = cols + gi * b_gs;
      T* C = cm + gi * m * ldc;
      if (R == 1) {
        be.gemm(false, trans_b, m, n, k, T(1), A, lda, B, ldb, T(1), C, ldc);
      } else if (a_rs == m * lda && c_rs == m * ldc) {
        be.gemm(false, trans_b, R * m, n, k, T(1), A, lda, B, ldb, T(1), C, ldc);
      } else if (a_rs > 0 && m < R) {
        for (int64_t j = 0; j < m; ++j)
          be.gemm(false, trans_b, R, n, k, T(1), A + j * lda, a_rs, B, ldb, T(1), C + j * ldc, c_rs);
      } else {
        for (int64_t r = 0; r < R; ++r)
          be.gemm(false, trans_b, m, n, k, T(1), A + r * a_rs, lda, B, ldb, T(1), C + r * c_rs, ldc);
      }
    }
  }

  // out[e, r, co, p] += b[e, r, co]: b expanded over the positions by one rank-1 GEMM.
  void add_bias(const OpCall<T>& c, const Tensor<T>& b, const Tensor<T>& out) const {
    const int64_t P = d_.P(), size = out.size(), rows = b.E * b.R * d_.Cout;
    Buffer<T> ones(c.be, static_cast<size_t>(P));
    c.be.fill(ones.get(), static_cast<size_t>(P), T(1));
    Buffer<T> expanded(c.be, static_cast<size_t>(rows * P));
    c.be.gemm(false, false, rows, P, 1, T(1), b.data, 1, ones.get(), P, T(0), expanded.get(), P);
    if (b.R == out.R) {
      add_into(c.be, Tensor<T>{expanded.get(), b.E, b.R, out.shape}, out);
    } else {  // b.R == 1: the same for every direction
      for (int64_t e = 0; e < out.E; ++e)
        c.be.add_row_vector(out.R, size, expanded.get() + (b.E == 1 ? 0 : e) * size, out.at(e, 0), size);
    }
  }
  // gb[e, r, co] += Σ_p g[e, r, co, p] (summed over examples when gb.E == 1).
  void bias_transpose(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& gb) const {
    const int64_t P = d_.P(), rows = g.E * g.R * d_.Cout;
    Buffer<T> ones(c.be, static_cast<size_t>(P));
    c.be.fill(ones.get(), static_cast<size_t>(P), T(1));
    Buffer<T> sums(c.be, static_cast<size_t>(rows));
    c.be.gemm(false, false, rows, 1, P, T(1), g.data, P, ones.get(), 1, T(0), sums.get(), 1);
    add_into(c.be, Tensor<T>{sums.get(), g.E, g.R, Shape{d_.Cout}}, gb);
  }

  ConvDims d_;
};

const OpDef kConv{"conv", &infer, &make_op_as<Conv<double>>, &make_op_as<Conv<float>>};

}  // namespace

void register_conv_ops(std::vector<const OpDef*>& table) { table.push_back(&kConv); }

}  // namespace basin
