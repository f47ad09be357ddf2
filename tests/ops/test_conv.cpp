// conv against finite differences (op_check.hpp) for every attribute combination, its forward
// against a direct convolution loop written here, the im2col/col2im pair against each other
// (adjointness) and against their element bodies, a small CNN through the graph executor
// against finite differences, and its shape errors.
#include <map>

#include "graph/executor.hpp"
#include "ops/kernels/conv.hpp"
#include "ops/op_check.hpp"

namespace basin {
namespace test {
namespace {

using Ints = std::vector<int64_t>;

struct ConvAttrs {
  Ints strides, pads, dilations;
  int64_t group = 0;  // 0: attribute absent (ONNX default 1)
};

Attributes attrs_of(const ConvAttrs& a) {
  Attributes at;
  if (!a.strides.empty()) at["strides"] = attr_of(a.strides);
  if (!a.pads.empty()) at["pads"] = attr_of(a.pads);
  if (!a.dilations.empty()) at["dilations"] = attr_of(a.dilations);
  if (a.group != 0) at["group"] = attr_of(a.group);
  return at;
}

// x batched [C, ...spatial], w an unbatched parameter, optional bias parameter.
OpCase conv_case(const Shape& x, const Shape& w, const ConvAttrs& a, bool bias) {
  OpCase c;
  c.op = "conv";
  c.attrs = attrs_of(a);
  c.inputs = {{x}, {w, false}};
  if (bias) c.inputs.push_back({{w[0]}, false});
  return c;
}

// ---- forward against a direct loop ----

// y[co, oy, ox] = b[co] + Σ_{ci in group, i, j} w[co, ci, i, j]·x[g·Cg + ci, oy·sh − pt + i·dh, ox·sw − pl + j·dw]
// for one example; 1-D is H = 1 with the 2-D loop's vertical attributes trivial.
std::vector<double> direct_conv(const std::vector<double>& x, const Shape& xs, const std::vector<double>& w,
                                const Shape& ws, const std::vector<double>* b, const ConvAttrs& a,
                                const Shape& out) {
  const bool one_d = xs.size() == 2;
  const int64_t C = xs[0], H = one_d ? 1 : xs[1], W = xs.back();
  const int64_t Cout = ws[0], Cg = ws[1], kh = one_d ? 1 : ws[2], kw = ws.back();
  const int64_t oh = one_d ? 1 : out[1], ow = out.back();
  const int64_t G = a.group == 0 ? 1 : a.group, Coutg = Cout / G;
  auto at = [](const Ints& v, size_t i, int64_t fallback) { return v.empty() ? fallback : v[i]; };
  const int64_t sh = one_d ? 1 : at(a.strides, 0, 1), sw = at(a.strides, one_d ? 0 : 1, 1);
  const int64_t dh = one_d ? 1 : at(a.dilations, 0, 1), dw = at(a.dilations, one_d ? 0 : 1, 1);
  const int64_t pt = one_d ? 0 : at(a.pads, 0, 0), pl = at(a.pads, one_d ? 0 : 1, 0);
  (void)C;
  std::vector<double> y(static_cast<size_t>(Cout * oh * ow), 0.0);
  for (int64_t co = 0; co < Cout; ++co) {
    const int64_t g = co / Coutg;
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        double s = b != nullptr ? (*b)[static_cast<size_t>(co)] : 0.0;
        for (int64_t ci = 0; ci < Cg; ++ci)
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) {
              const int64_t iy = oy * sh - pt + i * dh, ix = ox * sw - pl + j * dw;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              s += w[static_cast<size_t>(((co * Cg + ci) * kh + i) * kw + j)] *
                   x[static_cast<size_t>(((g * Cg + ci) * H + iy) * W + ix)];
            }
        y[static_cast<size_t>((co * oh + oy) * ow + ox)] = s;
      }
  }
  return y;
}

void expect_forward_matches_direct(const OpCase& c, const ConvAttrs& a) {
  detail::Harness h(c);
  const std::vector<double> got = h.forward(h.x);
  const Shape& xs = c.inputs[0].shape;
  const Shape& ws = c.inputs[1].shape;
  const int64_t xsize = shape_numel(xs), osize = shape_numel(h.out_shape);
  const bool w_batched = c.inputs[1].batched;
  const int64_t wsize = shape_numel(ws);
  ASSERT_EQ(static_cast<int64_t>(got.size()), c.n * osize);
  for (int64_t e = 0; e < c.n; ++e) {
    const std::vector<double> xe(h.x[0].begin() + e * xsize, h.x[0].begin() + (e + 1) * xsize);
    const int64_t we = w_batched ? e : 0;
    const std::vector<double> wv(h.x[1].begin() + we * wsize, h.x[1].begin() + (we + 1) * wsize);
    const std::vector<double>* b = c.inputs.size() > 2 ? &h.x[2] : nullptr;
    const std::vector<double> want = direct_conv(xe, xs, wv, ws, b, a, h.out_shape);
    const std::vector<double> gote(got.begin() + e * osize, got.begin() + (e + 1) * osize);
    detail::expect_close(gote, want, 1e-12, "conv forward vs direct loop, example " + std::to_string(e));
  }
}

// Forward vs the direct loop and every derivative vs finite differences.
void check_conv(const Shape& x, const Shape& w, const ConvAttrs& a, bool bias, const Shape& want_out) {
  const OpCase c = conv_case(x, w, a, bias);
  expect_forward_matches_direct(c, a);
  EXPECT_EQ(check_op(c), want_out);
}

// ---- 2-D ----

TEST(ConvOp, TwoDPlain) { check_conv({2, 5, 6}, {3, 2, 3, 3}, {}, false, {3, 3, 4}); }

TEST(ConvOp, TwoDBias) { check_conv({2, 5, 6}, {3, 2, 3, 3}, {}, true, {3, 3, 4}); }

TEST(ConvOp, TwoDStride2) {
  check_conv({2, 7, 6}, {3, 2, 3, 3}, {{2, 2}, {}, {}}, true, {3, 3, 2});
  check_conv({2, 7, 6}, {3, 2, 3, 3}, {{1, 2}, {}, {}}, false, {3, 5, 2});  // mixed strides
}

TEST(ConvOp, TwoDSymmetricPadding) {
  check_conv({2, 5, 5}, {4, 2, 3, 3}, {{}, {1, 1, 1, 1}, {}}, true, {4, 5, 5});  // "same"
  check_conv({2, 8, 8}, {3, 2, 3, 3}, {{2, 2}, {1, 1, 1, 1}, {}}, false, {3, 4, 4});  // ResNet downsampling
}

TEST(ConvOp, TwoDAsymmetricPadding) {
  check_conv({2, 5, 6}, {3, 2, 3, 2}, {{}, {0, 2, 1, 0}, {}}, true, {3, 4, 7});
  check_conv({1, 4, 4}, {2, 1, 2, 2}, {{2, 1}, {1, 0, 0, 3}, {}}, false, {2, 2, 6});
}

// Stride 1, dilation 1, pads below the kernel: the transposed product runs as one GEMM per
// kernel tap over g padded (no cols); these pin its offsets, groups and 1-D form.
TEST(ConvOp, TransposeWithoutCols) {
  check_conv({2, 5, 6}, {3, 2, 3, 3}, {{}, {1, 0, 0, 2}, {}}, true, {3, 4, 6});     // asymmetric
  check_conv({2, 5, 6}, {3, 2, 2, 3}, {{}, {1, 2, 0, 1}, {}}, false, {3, 5, 7});    // non-square
  check_conv({2, 4, 4}, {3, 2, 3, 3}, {{}, {0, 0, 4, 3}, {}}, false, {3, 6, 5});    // pads past the kernel
  check_conv({4, 5, 4}, {32, 2, 3, 3}, {{}, {1, 1, 1, 1}, {}, 2}, true, {32, 5, 4});  // groups, 16 per group
  check_conv({2, 11}, {3, 2, 5}, {{}, {3, 1}, {}}, true, {3, 11});                  // 1-D, 5 taps
  check_conv({32, 5, 5}, {32, 16, 3, 3}, {{}, {1, 1, 1, 1}, {}, 2}, false, {32, 5, 5});  // groups of 16 in and out
}

TEST(ConvOp, TransposeWithoutColsInSeveralBatches) {
  // Padded input and output grid of one (e, r): 16·67·68 + 16·64·68 ≈ 143k elements, so the op's
  // 2^20 scratch holds 7 pairs and n·R = 12 pairs run in two batches (the q0 > 0 offsets).
  OpCase c = conv_case({16, 64, 64}, {16, 16, 3, 3}, {{}, {1, 1, 1, 1}, {}}, true);
  c.n = 4;
  c.R = 3;
  EXPECT_EQ(check_op(c), (Shape{16, 64, 64}));
}

TEST(ConvOp, TwoDDilation2) {
  check_conv({2, 7, 7}, {3, 2, 3, 3}, {{}, {}, {2, 2}}, true, {3, 3, 3});
  check_conv({2, 7, 8}, {2, 2, 2, 3}, {{2, 1}, {1, 2, 1, 2}, {2, 3}}, false, {2, 4, 6});
}

TEST(ConvOp, TwoDNonSquareKernel) {
  check_conv({2, 6, 7}, {3, 2, 1, 3}, {}, true, {3, 6, 5});
  check_conv({2, 6, 7}, {3, 2, 4, 2}, {{2, 1}, {}, {}}, false, {3, 2, 6});
}

TEST(ConvOp, TwoDGroups2) {
  check_conv({4, 5, 5}, {6, 2, 3, 3}, {{}, {1, 1, 1, 1}, {}, 2}, true, {6, 5, 5});
  check_conv({4, 5, 5}, {2, 2, 2, 3}, {{2, 1}, {}, {}, 2}, false, {2, 2, 3});  // one output channel per group
}

TEST(ConvOp, TwoDDepthwise) {
  check_conv({3, 5, 5}, {3, 1, 3, 3}, {{}, {1, 1, 1, 1}, {}, 3}, true, {3, 5, 5});
  check_conv({3, 6, 6}, {6, 1, 3, 3}, {{2, 2}, {1, 1, 1, 1}, {}, 3}, false, {6, 3, 3});  // multiplier 2
}

TEST(ConvOp, OneByOneKernel) {  // pointwise (cols = x) and the strided / padded 1×1 kernels that are not
  check_conv({4, 3, 3}, {5, 4, 1, 1}, {}, true, {5, 3, 3});
  check_conv({4, 3, 3}, {6, 2, 1, 1}, {{}, {}, {}, 2}, false, {6, 3, 3});
  check_conv({4, 5, 5}, {5, 4, 1, 1}, {{2, 2}, {}, {}}, true, {5, 3, 3});  // ResNet projection shortcut
  check_conv({4, 3, 3}, {5, 4, 1, 1}, {{}, {1, 0, 0, 1}, {}}, false, {5, 4, 4});
  check_conv({3, 7}, {2, 3, 1}, {}, true, {2, 7});  // 1-D
  OpCase c = conv_case({4, 3, 3}, {4, 2, 1, 1}, {{}, {}, {}, 2}, true);
  c.R = 3;
  check_op(c);
  c = conv_case({2, 3, 3}, {3, 2, 1, 1}, {}, false);
  c.inputs[1].batched = true;  // both batched
  check_op(c);
}

TEST(ConvOp, ManyDirections) {  // R larger than the per-group rows: the row-stacked GEMMs
  OpCase c = conv_case({4, 4, 4}, {4, 2, 2, 2}, {{}, {}, {}, 2}, true);
  c.R = 5;
  check_op(c);
  c = conv_case({2, 4, 4}, {3, 2, 2, 2}, {}, true);
  c.R = 4;
  c.n = 1;
  check_op(c);
}

TEST(ConvOp, ScratchInSeveralBatches) {
  // cols of one (e, r) are 4·9 × 30·30 = 32,400 elements: n·R = 40 of them exceed the op's 2^20
  // scratch, so im2col (tangents of x) and col2im (cotangents of x) run in two batches.
  OpCase c = conv_case({4, 32, 32}, {3, 4, 3, 3}, {}, true);
  c.n = 8;
  c.R = 5;
  EXPECT_EQ(check_op(c), (Shape{3, 30, 30}));
}

// ---- 1-D ----

TEST(ConvOp, OneDPlain) { check_conv({2, 9}, {3, 2, 3}, {}, false, {3, 7}); }

TEST(ConvOp, OneDStridePaddingBias) {
  check_conv({2, 9}, {3, 2, 3}, {{2}, {1, 1}, {}}, true, {3, 5});
  check_conv({2, 9}, {3, 2, 4}, {{1}, {2, 0}, {}}, true, {3, 8});  // asymmetric
}

TEST(ConvOp, OneDDilationGroups) {
  check_conv({4, 10}, {4, 2, 3}, {{}, {}, {2}, 2}, true, {4, 6});
  check_conv({3, 10}, {3, 1, 3}, {{2}, {1, 1}, {2}, 3}, false, {3, 4});  // depthwise
}

// ---- operand layouts (the broadcast contract) ----

TEST(ConvOp, BothBatched) {  // x and w per-example (a bilinear product of activations)
  OpCase c;
  c.op = "conv";
  const ConvAttrs a{{2, 1}, {1, 0, 1, 1}, {}, 2};
  c.attrs = attrs_of(a);
  c.inputs = {{{4, 5, 5}}, {{2, 2, 3, 2}}, {{2}, false}};
  expect_forward_matches_direct(c, a);
  EXPECT_EQ(check_op(c), (Shape{2, 3, 5}));
  c.inputs = {{{2, 7}}, {{3, 2, 2}}};  // 1-D, no bias
  c.attrs = {};
  expect_forward_matches_direct(c, {});
  EXPECT_EQ(check_op(c), (Shape{3, 6}));
}

TEST(ConvOp, ConstantWeightOrInput) {
  OpCase c = conv_case({2, 5, 5}, {3, 2, 3, 3}, {{}, {1, 1, 1, 1}, {}}, true);
  c.inputs[1].differentiable = false;  // a fixed filter: only x (and b) are differentiated
  check_op(c);
  c = conv_case({2, 5, 5}, {3, 2, 3, 3}, {}, false);
  c.inputs[0].differentiable = false;  // a constant input: only the weight
  check_op(c);
}

TEST(ConvOp, UnbatchedInput) {  // x a parameter too (unbatched [1, C, H, W]), w batched
  OpCase c;
  c.op = "conv";
  c.inputs = {{{1, 2, 4, 4}, false}, {{3, 2, 2, 2}}};
  EXPECT_EQ(check_op(c), (Shape{3, 3, 3}));
  c.inputs = {{{2, 4, 4}, false}, {{3, 2, 2, 2}, false}};  // both unbatched
  EXPECT_EQ(check_op(c), (Shape{3, 3, 3}));
}

TEST(ConvOp, FloatMatchesDouble) {
  const OpCase c = conv_case({2, 6, 6}, {4, 1, 3, 3}, {{2, 2}, {1, 1, 1, 1}, {}, 2}, true);
  detail::Harness h(c);
  const std::vector<double> want = h.forward(h.x);
  std::vector<GraphValue> values = h.values;
  std::vector<const GraphValue*> ptrs;
  for (const GraphValue& v : values) ptrs.push_back(&v);
  std::unique_ptr<Op<float>> op = make_op<float>(*h.def, h.node, ptrs);
  std::unique_ptr<Backend<float>> be = make_cpu_backend<float>();
  std::vector<Buffer<float>> keep;
  std::vector<Tensor<float>> in;
  for (size_t j = 0; j < h.x.size(); ++j) {
    std::vector<float> f(h.x[j].begin(), h.x[j].end());
    keep.emplace_back(*be, f.size());
    be->upload(keep.back().get(), f.data(), f.size());
    in.push_back(Tensor<float>{keep.back().get(), h.E_of(j), 1, c.inputs[j].shape});
  }
  keep.emplace_back(*be, want.size());
  Tensor<float> out{keep.back().get(), c.n, 1, h.out_shape};
  OpCall<float> oc{*be, be->op_kernels(), h.node, in, out};
  op->forward(oc, out);
  std::vector<float> got(want.size());
  be->download(got.data(), out.data, got.size());
  detail::expect_close(std::vector<double>(got.begin(), got.end()), want, 1e-5, "float forward vs double");
}

// ---- the kernels: col2im is the transpose of im2col ----

TEST(ConvKernels, Col2imIsTheTransposeOfIm2col) {
  std::unique_ptr<Backend<double>> be = make_cpu_backend<double>();
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd;
  struct G { int64_t C, H, W, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw; };
  for (const G& s : {G{2, 5, 6, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1}, G{3, 7, 5, 2, 3, 2, 1, 1, 0, 2, 1, 2, 1},
                     G{1, 1, 9, 1, 4, 1, 3, 0, 2, 0, 1, 1, 2}, G{2, 6, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
                     G{2, 5, 7, 2, 3, 3, 3, 2, 4, 3, 1, 2, 2}, G{1, 3, 3, 3, 3, 1, 1, 3, 3, 3, 3, 1, 1}}) {
    WindowGeometry g;
    g.channels = s.C, g.height = s.H, g.width = s.W, g.kernel_h = s.kh, g.kernel_w = s.kw;
    g.stride_h = s.sh, g.stride_w = s.sw, g.pad_top = s.pt, g.pad_left = s.pl, g.dilation_h = s.dh, g.dilation_w = s.dw;
    g.out_h = (s.H + s.pt + s.pb - (s.kh - 1) * s.dh - 1) / s.sh + 1;
    g.out_w = (s.W + s.pl + s.pr - (s.kw - 1) * s.dw - 1) / s.sw + 1;
    const int64_t batch = 2, xn = batch * s.C * s.H * s.W, cn = batch * s.C * s.kh * s.kw * g.out_h * g.out_w;
    std::vector<double> x(xn), u(cn), cols(cn), back(xn);
    for (double& v : x) v = nd(rng);
    for (double& v : u) v = nd(rng);
    for (double& v : back) v = nd(rng);
    const std::vector<double> back0 = back;
    Buffer<double> dx(*be, xn), dc(*be, cn), du(*be, cn), db(*be, xn);
    be->upload(dx.get(), x.data(), xn);
    be->upload(du.get(), u.data(), cn);
    be->upload(db.get(), back.data(), xn);
    // (the table's methods are not const; Backend hands it out const)
    OpKernels<double>& k = const_cast<OpKernels<double>&>(be->op_kernels());
    k.im2col(g, batch, dx.get(), dc.get());
    k.col2im(g, batch, du.get(), db.get());  // accumulates onto back0
    be->download(cols.data(), dc.get(), cn);
    be->download(back.data(), db.get(), xn);
    double lhs = 0, rhs = 0;  // ⟨u, im2col x⟩ = ⟨col2im u, x⟩
    for (int64_t i = 0; i < cn; ++i) lhs += u[i] * cols[i];
    for (int64_t i = 0; i < xn; ++i) rhs += (back[i] - back0[i]) * x[i];
    EXPECT_NEAR(lhs, rhs, 1e-10 * std::max(1.0, std::fabs(lhs)));
    // The CPU loops give exactly what the per-index element bodies (the CUDA kernels' code) give.
    std::vector<double> cols_body(cn), back_body = back0;
    for (int64_t i = 0; i < cn; ++i) conv_kernels::im2col_element(g, i, x.data(), cols_body.data());
    for (int64_t i = 0; i < xn; ++i) conv_kernels::col2im_element(g, i, u.data(), back_body.data());
    EXPECT_EQ(cols, cols_body) << "im2col: CPU loop vs element body";
    EXPECT_EQ(back, back_body) << "col2im: CPU loop vs element body";
    // Zero padding: a padded position reads 0 (the first tap of the first output with pad_top/left).
    if (s.pt > 0 && s.pl > 0) EXPECT_EQ(cols[0], 0.0);
  }
}

// ---- a small CNN through the executor ----

// x [2, 7, 7] → conv 3×3 stride 2 pad 1 (+b) → tanh → depthwise 2×2 dilation 2 (+b) → softplus →
// 1×1 conv (no bias): the Jacobian against finite differences of the outputs, the Gram against
// G Gᵀ and the residual Hessian against finite differences of the gradient.
TEST(ConvOp, SmallCnnThroughTheExecutor) {
  Graph g;
  int h = g.add_input("x", {2, 7, 7});
  const int w1 = g.add_parameter("w1", {4, 2, 3, 3}), b1 = g.add_parameter("b1", {4});
  const int w2 = g.add_parameter("w2", {4, 1, 2, 2}), b2 = g.add_parameter("b2", {4});
  const int w3 = g.add_parameter("w3", {2, 4, 1, 1});
  h = g.add_node("conv", {h, w1, b1}, attrs_of({{2, 2}, {1, 1, 1, 1}, {}}), "conv1");
  Attributes fn;
  fn["fn"] = attr_of(std::string("tanh"));
  h = g.add_node("unary", {h}, fn, "act1");
  h = g.add_node("conv", {h, w2, b2}, attrs_of({{}, {}, {2, 2}, 4}), "conv2");
  fn["fn"] = attr_of(std::string("softplus"));
  h = g.add_node("unary", {h}, fn, "act2");
  h = g.add_node("conv", {h, w3}, {}, "conv3");
  g.set_output(h);
  g.validate(100);
  auto graph = std::make_shared<const Graph>(g);
  ASSERT_EQ(graph->value(h).shape, (Shape{2, 2, 2}));
  const int64_t n = 3, k = graph->output_dim(), N = graph->num_params();
  ASSERT_EQ(N, 4 * 2 * 9 + 4 + 4 * 4 + 4 + 2 * 4);
  std::mt19937_64 rng(11);
  std::normal_distribution<double> nd(0.0, 0.6);
  std::vector<double> params(static_cast<size_t>(N)), xs(static_cast<size_t>(n * 2 * 49));
  for (double& v : params) v = nd(rng);
  for (double& v : xs) v = nd(rng) / 0.6;
  auto be = make_cpu_backend<double>();
  auto outputs_at = [&](const std::vector<double>& p) {
    GraphNetwork<double> net(*be, graph, p, xs, n, nullptr);
    net.forward();
    return net.outputs();
  };
  GraphNetwork<double> net(*be, graph, params, xs, n, nullptr);
  net.forward();
  std::vector<double> id(static_cast<size_t>(n * k * k), 0.0);
  for (int64_t row = 0; row < n * k; ++row) id[row * k + row % k] = 1;
  std::vector<double> G(static_cast<size_t>(n * k * N));
  {
    Buffer<double> gb = net.jacobian(id, k);
    be->download(G.data(), gb.get(), G.size());
  }
  const double step = 1e-6;
  std::vector<double> fd(G.size());
  for (int64_t p = 0; p < N; ++p) {
    std::vector<double> pp = params, pm = params;
    pp[p] += step;
    pm[p] -= step;
    const std::vector<double> fp = outputs_at(pp), fm = outputs_at(pm);
    for (int64_t row = 0; row < n * k; ++row) fd[row * N + p] = (fp[row] - fm[row]) / (2 * step);
  }
  detail::expect_close(G, fd, 1e-8, "CNN jacobian vs finite differences");
  const int64_t m = n * k;
  std::vector<double> gram(static_cast<size_t>(m * m));
  {
    Buffer<double> gg = net.gram(id, k);
    be->download(gram.data(), gg.get(), gram.size());
  }
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double want = 0;
      for (int64_t p = 0; p < N; ++p) want += G[i * N + p] * G[j * N + p];
      worst = std::max(worst, std::fabs(gram[i * m + j] - want));
      scale = std::max(scale, std::fabs(want));
    }
  EXPECT_LE(worst, 1e-12 * scale) << "CNN gram vs G Gᵀ";
  // The same Gram with the conv kernels' blocks taken in column ranges of one or two output
  // channels (w1, w3; w2 is grouped and comes whole).
  net.set_param_chunk_bytes(1000);
  {
    Buffer<double> gg = net.gram(id, k);
    be->download(gram.data(), gg.get(), gram.size());
  }
  worst = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double want = 0;
      for (int64_t p = 0; p < N; ++p) want += G[i * N + p] * G[j * N + p];
      worst = std::max(worst, std::fabs(gram[i * m + j] - want));
    }
  EXPECT_LE(worst, 1e-12 * scale) << "CNN gram from column ranges vs G Gᵀ";
  std::vector<double> r(static_cast<size_t>(n * k));
  for (double& v : r) v = nd(rng);
  auto grad_at = [&](const std::vector<double>& p) {
    GraphNetwork<double> nn(*be, graph, p, xs, n, nullptr);
    nn.forward();
    return nn.gradient(r, false);
  };
  net.gradient(r, true);
  std::vector<double> H(static_cast<size_t>(N * N)), hfd(H.size());
  {
    Buffer<double> hb = net.residual_hessian(4000);
    be->download(H.data(), hb.get(), H.size());
  }
  for (int64_t p = 0; p < N; ++p) {
    std::vector<double> pp = params, pm = params;
    pp[p] += step;
    pm[p] -= step;
    const std::vector<double> gp = grad_at(pp), gm = grad_at(pm);
    for (int64_t q = 0; q < N; ++q) hfd[p * N + q] = (gp[q] - gm[q]) / (2 * step);
  }
  detail::expect_close(H, hfd, 1e-7, "CNN residual hessian vs finite differences");
}

// ---- bad input ----

void expect_error(const OpCase& c, ErrorCode code, const std::vector<std::string>& parts) {
  try {
    infer_shape(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    const std::string what = e.what();
    EXPECT_NE(what.find("under_test"), std::string::npos) << what;
    EXPECT_NE(what.find("(conv)"), std::string::npos) << what;
    for (const std::string& p : parts) EXPECT_NE(what.find(p), std::string::npos) << "'" << p << "' not in: " << what;
  }
}

TEST(ConvOp, RefusesWrongRanks) {
  expect_error(conv_case({2, 5, 5}, {3, 2, 3}, {}, false), ErrorCode::kInvalidArgument, {"[C, L]", "[2, 5, 5]"});
  expect_error(conv_case({2, 5}, {3, 2, 3, 3}, {}, false), ErrorCode::kInvalidArgument, {"[C, H, W]", "[2, 5]"});
  expect_error(conv_case({2, 5, 5}, {3, 2}, {}, false), ErrorCode::kInvalidArgument, {"weight w", "[Cout, C/group"});
  expect_error(conv_case({2, 4, 5, 5}, {3, 2, 3, 3, 3}, {}, false), ErrorCode::kUnimplemented, {"3-D"});
  expect_error(conv_case({2, 4, 5, 5}, {3, 2, 3, 3}, {}, false), ErrorCode::kUnimplemented, {"3-D"});
  OpCase c = conv_case({2, 5, 5}, {3, 2, 3, 3}, {}, false);
  c.inputs.pop_back();
  expect_error(c, ErrorCode::kInvalidArgument, {"expects 2 or 3 inputs"});
}

TEST(ConvOp, RefusesChannelMismatchAndGroups) {
  expect_error(conv_case({3, 5, 5}, {4, 2, 3, 3}, {}, false), ErrorCode::kInvalidArgument,
               {"channel mismatch", "C = 3", "expects C = 2", "C/group = 2"});
  expect_error(conv_case({4, 5, 5}, {4, 2, 3, 3}, {}, false), ErrorCode::kInvalidArgument, {"channel mismatch"});
  expect_error(conv_case({3, 5, 5}, {4, 1, 3, 3}, {{}, {}, {}, 2}, false), ErrorCode::kInvalidArgument,
               {"C = 3", "not divisible by group = 2"});
  expect_error(conv_case({4, 5, 5}, {3, 2, 3, 3}, {{}, {}, {}, 2}, false), ErrorCode::kInvalidArgument,
               {"Cout = 3", "not divisible by group = 2"});
  expect_error(conv_case({4, 5, 5}, {4, 2, 3, 3}, {{}, {}, {}, -1}, false), ErrorCode::kInvalidArgument,
               {"group must be at least 1"});
}

TEST(ConvOp, RefusesKernelLargerThanPaddedInput) {
  expect_error(conv_case({2, 3, 5}, {3, 2, 4, 3}, {}, false), ErrorCode::kInvalidArgument,
               {"spans 4 positions along spatial axis 0", "padded input's 3"});
  expect_error(conv_case({2, 5, 5}, {3, 2, 3, 3}, {{}, {}, {3, 1}}, false), ErrorCode::kInvalidArgument,
               {"spans 7 positions"});
  EXPECT_EQ(infer_shape(conv_case({2, 3, 5}, {3, 2, 4, 3}, {{}, {1, 0, 0, 0}, {}}, false)), (Shape{3, 1, 3}));
  expect_error(conv_case({2, 3}, {3, 2, 5}, {{}, {1, 0}, {}}, false), ErrorCode::kInvalidArgument,
               {"padded input's 4"});
}

TEST(ConvOp, RefusesBadAttributes) {
  const Shape x{2, 5, 5}, w{3, 2, 3, 3};
  expect_error(conv_case(x, w, {{1}, {}, {}}, false), ErrorCode::kInvalidArgument, {"strides", "expects 2"});
  expect_error(conv_case(x, w, {{}, {1, 1}, {}}, false), ErrorCode::kInvalidArgument, {"pads", "expects 4"});
  expect_error(conv_case(x, w, {{}, {}, {1, 1, 1}}, false), ErrorCode::kInvalidArgument, {"dilations", "expects 2"});
  expect_error(conv_case(x, w, {{0, 1}, {}, {}}, false), ErrorCode::kInvalidArgument, {"strides must be positive"});
  expect_error(conv_case(x, w, {{}, {}, {1, -2}}, false), ErrorCode::kInvalidArgument,
               {"dilations must be positive"});
  expect_error(conv_case(x, w, {{}, {0, -1, 0, 0}, {}}, false), ErrorCode::kInvalidArgument,
               {"pads must be non-negative"});
  OpCase c = conv_case(x, w, {}, false);
  c.attrs["auto_pad"] = attr_of(std::string("SAME_UPPER"));
  expect_error(c, ErrorCode::kUnimplemented, {"auto_pad 'SAME_UPPER'", "NOTSET"});
  c.attrs["auto_pad"] = attr_of(std::string("NOTSET"));
  EXPECT_EQ(infer_shape(c), (Shape{3, 3, 3}));
  c.attrs["kernel_shape"] = attr_of(Ints{3, 3});
  EXPECT_EQ(infer_shape(c), (Shape{3, 3, 3}));
  c.attrs["kernel_shape"] = attr_of(Ints{3, 2});
  expect_error(c, ErrorCode::kInvalidArgument, {"kernel_shape [3, 2]", "[3, 3]"});
  c = conv_case(x, w, {}, false);
  c.attrs["stride"] = attr_of(Ints{2, 2});
  expect_error(c, ErrorCode::kInvalidArgument, {"unknown attribute 'stride'"});
}

TEST(ConvOp, RefusesBadBias) {
  OpCase c = conv_case({2, 5, 5}, {3, 2, 3, 3}, {}, true);
  c.inputs[2].shape = {2};
  expect_error(c, ErrorCode::kInvalidArgument, {"bias b has shape [2]", "expected [3]"});
  c.inputs[2] = {{3}, true};
  expect_error(c, ErrorCode::kUnimplemented, {"bias must not depend on the input"});
}

}  // namespace
}  // namespace test
}  // namespace basin
