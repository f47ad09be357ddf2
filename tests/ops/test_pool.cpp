// The pool family (max_pool, avg_pool): derivatives against finite differences (op_check.hpp)
// for every attribute combination, forward against naive window loops written here and
// against values PyTorch computed (float64), tie-breaking of the arg-max, and bad input.
#include "graph/executor.hpp"
#include "ops/broadcast_check.hpp"
#include "ops/kernels/pool.hpp"
#include "ops/op_check.hpp"

namespace basin {
namespace test {
namespace {

using Ints = std::vector<int64_t>;

struct Attrs {
  Ints kernel, strides, pads, dilations;
  bool ceil = false, include_pad = false;
};

OpCase pool_case(const std::string& op, const Shape& shape, const Attrs& a, bool batched = true) {
  OpCase c;
  c.op = op;
  c.inputs = {{shape, batched}};
  c.attrs["kernel_shape"] = attr_of(a.kernel);
  if (!a.strides.empty()) c.attrs["strides"] = attr_of(a.strides);
  if (!a.pads.empty()) c.attrs["pads"] = attr_of(a.pads);
  if (!a.dilations.empty()) c.attrs["dilations"] = attr_of(a.dilations);
  c.attrs["ceil_mode"] = attr_of(int64_t{a.ceil ? 1 : 0});
  if (op == "avg_pool") c.attrs["count_include_pad"] = attr_of(int64_t{a.include_pad ? 1 : 0});
  return c;
}

// One spatial axis of a window, written out: PyTorch's output size (ceil_mode's last window
// must start inside the input or the left padding) and the taps.
struct Axis {
  int64_t in, k, stride, pad_l, pad_r, dilation;
  int64_t out(bool ceil) const {
    const int64_t span = in + pad_l + pad_r - dilation * (k - 1) - 1;
    int64_t o = (ceil ? (span + stride - 1) / stride : span / stride) + 1;
    if (ceil && (o - 1) * stride >= in + pad_l) --o;
    return o;
  }
  int64_t tap(int64_t o, int64_t t) const { return o * stride - pad_l + t * dilation; }
  bool inside(int64_t i) const { return i >= 0 && i < in; }
  bool inside_padded(int64_t i) const { return i >= -pad_l && i < in + pad_r; }
};

// Naive pooling of x [planes, H, W] (1-D: H = 1).
std::vector<double> naive_pool(bool is_max, const std::vector<double>& x, int64_t planes, const Axis& h, const Axis& w,
                               bool ceil, bool include_pad) {
  const int64_t oh = h.out(ceil), ow = w.out(ceil);
  std::vector<double> y;
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        double best = -INFINITY, sum = 0;
        int64_t in_count = 0, padded_count = 0;
        for (int64_t a = 0; a < h.k; ++a)
          for (int64_t b = 0; b < w.k; ++b) {
            const int64_t ih = h.tap(i, a), iw = w.tap(j, b);
            if (h.inside_padded(ih) && w.inside_padded(iw)) ++padded_count;
            if (!h.inside(ih) || !w.inside(iw)) continue;
            const double v = x[(p * h.in + ih) * w.in + iw];
            best = std::max(best, v);
            sum += v;
            ++in_count;
          }
        if (is_max)
          y.push_back(best);
        else
          y.push_back(in_count == 0 ? 0.0 : sum / static_cast<double>(include_pad ? padded_count : in_count));
      }
  return y;
}

// Runs check_op and compares the forward with the naive loops. shape: per-example [.., H, W] or [.., L].
void check_pool(const std::string& op, const Shape& shape, const Attrs& a, bool batched = true) {
  const OpCase c = pool_case(op, shape, a, batched);
  SCOPED_TRACE(op + " " + shape_string(shape) + " kernel " + shape_string(a.kernel) + " strides " +
               shape_string(a.strides) + " pads " + shape_string(a.pads) + " dilations " + shape_string(a.dilations) +
               " ceil " + std::to_string(a.ceil) + " include_pad " + std::to_string(a.include_pad) +
               (batched ? "" : " unbatched"));
  const size_t k = a.kernel.size(), lead = shape.size() - k;
  auto axis = [&](size_t q) {  // q: index into the attributes
    const Ints st = a.strides.empty() ? Ints(k, 1) : a.strides, pd = a.pads.empty() ? Ints(2 * k, 0) : a.pads;
    const Ints dl = a.dilations.empty() ? Ints(k, 1) : a.dilations;
    return Axis{shape[lead + q], a.kernel[q], st[q], pd[q], pd[k + q], dl[q]};
  };
  const Axis w = axis(k - 1), h = k == 2 ? axis(0) : Axis{1, 1, 1, 0, 0, 1};
  Shape out(shape.begin(), shape.begin() + static_cast<std::ptrdiff_t>(lead));
  if (k == 2) out.push_back(h.out(a.ceil));
  out.push_back(w.out(a.ceil));
  ASSERT_EQ(check_op(c), out);
  detail::Harness hr(c);
  const std::vector<double> y = hr.forward(hr.x);
  int64_t planes = 1;
  for (size_t d = 0; d < lead; ++d) planes *= shape[d];
  planes *= hr.E_out();
  detail::expect_close(y, naive_pool(op == "max_pool", hr.x[0], planes, h, w, a.ceil, a.include_pad), 1e-14,
                       op + " forward vs naive windows");
}

std::vector<double> forward_of(const OpCase& c) {
  detail::Harness h(c);
  return h.forward(h.x);
}

// ---- against PyTorch (F.max_pool2d / F.avg_pool2d, float64) on x[i] = (7·i) mod 20, [1, 4, 5] ----

OpCase torch_case(const std::string& op, const Attrs& a) {
  OpCase c = pool_case(op, {1, 4, 5}, a);
  c.n = 1;
  c.inputs[0].values.resize(20);
  for (int i = 0; i < 20; ++i) c.inputs[0].values[i] = (7 * i) % 20;
  return c;
}

TEST(PoolTorch, MaxPool2d) {
  EXPECT_EQ(forward_of(torch_case("max_pool", {{2, 2}, {1, 1}})),
            (std::vector<double>{15, 14, 16, 16, 17, 17, 16, 18, 17, 19, 19, 18}));
  EXPECT_EQ(forward_of(torch_case("max_pool", {{3, 3}, {2, 2}, {1, 1, 1, 1}, {}, true})),
            (std::vector<double>{15, 16, 16, 17, 19, 18, 12, 19, 13}));
  EXPECT_EQ(forward_of(torch_case("max_pool", {{2, 3}, {2, 1}, {1, 1, 1, 1}, {1, 2}})),
            (std::vector<double>{7, 14, 7, 17, 18, 17, 12, 19, 12}));
}

TEST(PoolTorch, AvgPool2d) {
  const double tol = 1e-15;
  detail::expect_close(forward_of(torch_case("avg_pool", {{3, 3}, {2, 2}, {1, 1, 1, 1}, {}, true, true})),
                       {2.6666666666666665, 5.444444444444445, 3.111111111111111, 6.777777777777778, 10.666666666666666,
                        7.444444444444445, 2.8333333333333335, 6.166666666666667, 3.1666666666666665},
                       tol, "ceil_mode, count_include_pad");
  detail::expect_close(forward_of(torch_case("avg_pool", {{3, 3}, {2, 2}, {1, 1, 1, 1}, {}, true, false})),
                       {6.0, 8.166666666666666, 7.0, 10.166666666666666, 10.666666666666666, 11.166666666666666, 8.5,
                        12.333333333333334, 9.5},
                       tol, "ceil_mode, pads excluded");
  detail::expect_close(
      forward_of(torch_case("avg_pool", {{2, 3}, {1, 2}, {1, 1, 1, 1}, {}, false, true})),
      {1.1666666666666667, 3.6666666666666665, 1.5, 4.0, 8.166666666666666, 4.666666666666667, 7.333333333333333,
       9.833333333333334, 8.0, 7.333333333333333, 11.5, 8.0, 2.8333333333333335, 6.166666666666667, 3.1666666666666665},
      tol, "count_include_pad");
  detail::expect_close(forward_of(torch_case("avg_pool", {{2, 3}, {1, 2}, {1, 1, 1, 1}, {}, false, false})),
                       {3.5, 7.333333333333333, 4.5, 6.0, 8.166666666666666, 7.0, 11.0, 9.833333333333334, 12.0, 11.0,
                        11.5, 12.0, 8.5, 12.333333333333334, 9.5},
                       tol, "pads excluded");
}

// ---- hand-computed 1-D windows (values PyTorch's max_pool1d / avg_pool1d give) ----

OpCase one_d(const std::string& op, std::vector<double> x, const Attrs& a) {
  OpCase c = pool_case(op, {1, static_cast<int64_t>(x.size())}, a);
  c.n = 1;
  c.inputs[0].values = std::move(x);
  return c;
}

TEST(PoolWindows, HandComputed1d) {
  const std::vector<double> x{1, 3, 2, 5, 4};
  EXPECT_EQ(forward_of(one_d("max_pool", x, {{2}, {2}})), (std::vector<double>{3, 5}));
  EXPECT_EQ(forward_of(one_d("max_pool", x, {{2}, {2}, {}, {}, true})), (std::vector<double>{3, 5, 4}));
  EXPECT_EQ(forward_of(one_d("max_pool", x, {{3}, {2}, {1, 1}})), (std::vector<double>{3, 5, 5}));
  // ceil_mode: the window that would start in the right padding is dropped (4 → 3 outputs)
  EXPECT_EQ(forward_of(one_d("max_pool", x, {{2}, {2}, {1, 1}, {}, true})), (std::vector<double>{1, 3, 5}));
  EXPECT_EQ(forward_of(one_d("avg_pool", x, {{2}, {2}, {1, 1}, {}, true, true})), (std::vector<double>{0.5, 2.5, 4.5}));
  const std::vector<double> r{1, 2, 3, 4, 5};
  EXPECT_EQ(forward_of(one_d("avg_pool", r, {{2}, {2}, {}, {}, true})), (std::vector<double>{1.5, 3.5, 5}));
  EXPECT_EQ(forward_of(one_d("avg_pool", r, {{3}, {2}, {1, 1}, {}, false, true})), (std::vector<double>{1, 3, 3}));
  EXPECT_EQ(forward_of(one_d("avg_pool", r, {{3}, {2}, {1, 1}, {}, false, false})), (std::vector<double>{1.5, 3, 4.5}));
  // ceil_mode with count_include_pad: the last window is clipped at the padded extent (÷2, not ÷3)
  const std::vector<double> s{1, 2, 3, 4, 5, 6};
  EXPECT_EQ(forward_of(one_d("avg_pool", s, {{3}, {2}, {1, 1}, {}, true, true})), (std::vector<double>{1, 3, 5, 3}));
  EXPECT_EQ(forward_of(one_d("avg_pool", s, {{3}, {2}, {1, 1}, {}, true, false})), (std::vector<double>{1.5, 3, 5, 6}));
  // dilation: taps 0, 2 of each window
  EXPECT_EQ(forward_of(one_d("max_pool", x, {{2}, {1}, {}, {2}})), (std::vector<double>{2, 5, 4}));
}

TEST(PoolWindows, MaxTiesGoToTheFirstMaximum) {
  // PyTorch: max_pool1d([1, 1, 1, 1], 2, stride 1) backward of ones = [1, 1, 1, 0].
  OpCase c = one_d("max_pool", {1, 1, 1, 1}, {{2}, {1}});
  c.R = 1;
  detail::Harness h(c);
  OpCall<double> oc = h.call(h.x);
  std::vector<Tensor<double>> gin{h.zeros(1, 1, {1, 4})};
  h.op->vjp(oc, h.upload({1, 1, 1}, 1, 1, {1, 3}), gin);
  EXPECT_EQ(h.download(gin[0]), (std::vector<double>{1, 1, 1, 0}));
  // and a 2-D window of equal values picks its top-left element
  OpCase d = pool_case("max_pool", {1, 2, 2}, {{2, 2}});
  d.n = 1;
  d.R = 1;
  d.inputs[0].values = {3, 3, 3, 3};
  detail::Harness h2(d);
  OpCall<double> oc2 = h2.call(h2.x);
  std::vector<Tensor<double>> gin2{h2.zeros(1, 1, {1, 2, 2})};
  h2.op->vjp(oc2, h2.upload({2}, 1, 1, {1, 1, 1}), gin2);
  EXPECT_EQ(h2.download(gin2[0]), (std::vector<double>{2, 0, 0, 0}));
}

// ---- every attribute combination against finite differences and naive windows ----

TEST(PoolMax, TwoDimensionalCombinations) {
  for (const Ints& kernel : {Ints{2, 2}, Ints{3, 3}, Ints{2, 3}})
    for (const Ints& strides : {Ints{1, 1}, Ints{2, 2}, Ints{2, 1}})
      for (const Ints& pads : {Ints{0, 0, 0, 0}, Ints{1, 1, 1, 1}, Ints{0, 1, 1, 0}})
        for (const Ints& dil : {Ints{1, 1}, Ints{2, 1}})
          for (bool ceil : {false, true}) check_pool("max_pool", {2, 5, 6}, {kernel, strides, pads, dil, ceil});
}

TEST(PoolMax, OneDimensionalCombinations) {
  for (const Ints& kernel : {Ints{2}, Ints{3}})
    for (const Ints& strides : {Ints{1}, Ints{2}, Ints{3}})
      for (const Ints& pads : {Ints{0, 0}, Ints{1, 1}, Ints{1, 0}})
        for (const Ints& dil : {Ints{1}, Ints{2}})
          for (bool ceil : {false, true}) check_pool("max_pool", {3, 7}, {kernel, strides, pads, dil, ceil});
}

TEST(PoolMax, DefaultsUnbatchedAndFoldedChannels) {
  check_pool("max_pool", {2, 4, 4}, {{2, 2}});                 // strides, pads, dilations by default
  check_pool("max_pool", {2, 4, 5}, {{2, 2}, {2, 2}}, false);  // a function of a parameter alone
  check_pool("max_pool", {3, 6}, {{3}, {2}, {1, 1}}, false);
  check_pool("max_pool", {2, 2, 4, 5}, {{3, 2}, {1, 2}, {1, 0, 1, 1}});  // [D, C, H, W]: D·C planes
}

TEST(PoolAvg, TwoDimensionalCombinations) {
  for (const Ints& kernel : {Ints{2, 2}, Ints{3, 3}, Ints{2, 3}})
    for (const Ints& strides : {Ints{1, 1}, Ints{2, 2}, Ints{2, 1}})
      for (const Ints& pads : {Ints{0, 0, 0, 0}, Ints{1, 1, 1, 1}, Ints{0, 1, 1, 0}})
        for (bool ceil : {false, true})
          for (bool include : {false, true})
            check_pool("avg_pool", {2, 5, 6}, {kernel, strides, pads, {}, ceil, include});
}

TEST(PoolAvg, OneDimensionalCombinations) {
  for (const Ints& kernel : {Ints{2}, Ints{3}})
    for (const Ints& strides : {Ints{1}, Ints{2}, Ints{3}})
      for (const Ints& pads : {Ints{0, 0}, Ints{1, 1}, Ints{1, 0}})
        for (bool ceil : {false, true})
          for (bool include : {false, true}) check_pool("avg_pool", {3, 7}, {kernel, strides, pads, {}, ceil, include});
}

TEST(PoolAvg, DefaultsUnbatchedAndLargePads) {
  check_pool("avg_pool", {2, 4, 4}, {{2, 2}});
  check_pool("avg_pool", {2, 4, 5}, {{3, 3}, {2, 2}, {1, 1, 1, 1}, {}, true, true}, false);
  check_pool("avg_pool", {2, 2, 4, 5}, {{2, 2}, {2, 2}, {0, 1, 1, 0}, {}, false, true});
  // pads ≥ the kernel (ONNX allows it): windows entirely in the padding average to 0
  check_pool("avg_pool", {2, 3}, {{2}, {1}, {2, 2}, {}, false, false});
  check_pool("avg_pool", {2, 3}, {{2}, {1}, {2, 2}, {}, false, true});
}

TEST(PoolBroadcast, SharedTangentsAndSummedCotangents) {
  check_broadcast_paths(pool_case("max_pool", {2, 5, 6}, {{3, 2}, {2, 1}, {1, 0, 1, 1}, {1, 2}, true}));
  check_broadcast_paths(pool_case("max_pool", {3, 7}, {{2}, {2}, {1, 1}}));
  check_broadcast_paths(pool_case("avg_pool", {2, 5, 6}, {{3, 2}, {2, 1}, {1, 0, 1, 1}, {}, true, true}));
  check_broadcast_paths(pool_case("avg_pool", {3, 7}, {{3}, {2}, {1, 1}, {}, false, false}));
}

TEST(PoolFloat, MatchesDouble) {
  for (const char* op : {"max_pool", "avg_pool"}) {
    GraphValue v;
    v.name = "x";
    v.shape = {2, 5, 6};
    v.batched = true;
    GraphNode node;
    node.name = "under_test";
    node.op = op;
    node.attrs["kernel_shape"] = attr_of(Ints{3, 2});
    node.attrs["strides"] = attr_of(Ints{2, 1});
    node.attrs["pads"] = attr_of(Ints{1, 0, 1, 1});
    node.attrs["ceil_mode"] = attr_of(int64_t{1});
    const OpDef* def = find_op(op);
    ASSERT_NE(def, nullptr);
    const Shape out = def->infer(node, {&v});
    const int64_t n = 2, in_size = 60, out_size = shape_numel(out);
    std::vector<double> xd(static_cast<size_t>(n * in_size));
    std::mt19937_64 rng(3);
    std::normal_distribution<double> nd;
    for (double& e : xd) e = static_cast<float>(nd(rng));
    std::vector<float> xf(xd.begin(), xd.end());
    auto bd = make_cpu_backend<double>();
    auto bf = make_cpu_backend<float>();
    Buffer<double> xdb(*bd, xd.size()), ydb(*bd, static_cast<size_t>(n * out_size));
    Buffer<float> xfb(*bf, xf.size()), yfb(*bf, static_cast<size_t>(n * out_size));
    bd->upload(xdb.get(), xd.data(), xd.size());
    bf->upload(xfb.get(), xf.data(), xf.size());
    auto od = make_op<double>(*def, node, {&v});
    auto of = make_op<float>(*def, node, {&v});
    Tensor<double> txd{xdb.get(), n, 1, v.shape}, tyd{ydb.get(), n, 1, out};
    Tensor<float> txf{xfb.get(), n, 1, v.shape}, tyf{yfb.get(), n, 1, out};
    OpCall<double> cd{*bd, bd->op_kernels(), node, {txd}, tyd};
    OpCall<float> cf{*bf, bf->op_kernels(), node, {txf}, tyf};
    od->forward(cd, tyd);
    of->forward(cf, tyf);
    std::vector<double> yd(static_cast<size_t>(n * out_size));
    std::vector<float> yf(yd.size());
    bd->download(yd.data(), ydb.get(), yd.size());
    bf->download(yf.data(), yfb.get(), yf.size());
    for (size_t i = 0; i < yd.size(); ++i) EXPECT_NEAR(yf[i], yd[i], 1e-6) << op << " " << i;
  }
}

// ---- layout and pooling through the executor ----

// x [2, 6, 6] → (rows · W0) → tanh → max_pool 2×2 s2 and avg_pool 3×3 s2 p1 (ceil, pads
// counted) → slice → concat → transpose → pad → reshape → dense (W1, b1) → concat with a
// parameter P expanded: the Jacobian against finite differences of the outputs, the Gram
// against G Gᵀ and the residual Hessian against finite differences of the gradient.
TEST(PoolGraph, SmallNetworkThroughTheExecutor) {
  auto ints = [](Ints v) { return attr_of(std::move(v)); };
  Graph g;
  int h = g.add_input("x", {2, 6, 6});
  const int w0 = g.add_parameter("w0", {6, 6}), w1 = g.add_parameter("w1", {3, 60}), b1 = g.add_parameter("b1", {3});
  const int p = g.add_parameter("p", {1});
  Attributes a;
  a["shape"] = ints({12, 6});
  h = g.add_node("reshape", {h}, a, "rows");
  h = g.add_node("matmul", {h, w0}, {}, "mix");
  a["shape"] = ints({2, 6, 6});
  h = g.add_node("reshape", {h}, a, "image");
  Attributes fn;
  fn["fn"] = attr_of(std::string("tanh"));
  h = g.add_node("unary", {h}, fn, "act");
  Attributes mp;
  mp["kernel_shape"] = ints({2, 2});
  mp["strides"] = ints({2, 2});
  const int e = g.add_node("max_pool", {h}, mp, "maxpool");
  Attributes ap;
  ap["kernel_shape"] = ints({3, 3});
  ap["strides"] = ints({2, 2});
  ap["pads"] = ints({1, 1, 1, 1});
  ap["ceil_mode"] = attr_of(int64_t{1});
  ap["count_include_pad"] = attr_of(int64_t{1});
  int f = g.add_node("avg_pool", {h}, ap, "avgpool");
  ASSERT_EQ(g.value(f).shape, (Shape{2, 4, 4}));
  Attributes sl;
  sl["starts"] = ints({0, 1});
  sl["ends"] = ints({3, 4});
  sl["axes"] = ints({1, 2});
  f = g.add_node("slice", {f}, sl, "crop");
  Attributes cat;
  cat["axis"] = attr_of(int64_t{0});
  h = g.add_node("concat", {e, f}, cat, "stack");
  Attributes tr;
  tr["perm"] = ints({2, 0, 1});
  h = g.add_node("transpose", {h}, tr, "perm");
  Attributes pd;
  pd["pads"] = ints({0, 1, 0, 0, 0, 1});
  h = g.add_node("pad", {h}, pd, "pad");
  ASSERT_EQ(g.value(h).shape, (Shape{3, 5, 4}));
  a["shape"] = ints({60});
  h = g.add_node("reshape", {h}, a, "flatten");
  Attributes dense;
  dense["trans_b"] = attr_of(int64_t{1});
  h = g.add_node("matmul", {h, w1, b1}, dense, "fc");
  fn["fn"] = attr_of(std::string("softplus"));
  h = g.add_node("unary", {h}, fn, "act2");
  Attributes ex;
  ex["shape"] = ints({2});
  const int q = g.add_node("expand", {p}, ex, "bias2");
  h = g.add_node("concat", {h, q}, cat, "out");
  g.set_output(h);
  g.validate(100);
  auto graph = std::make_shared<const Graph>(g);
  ASSERT_EQ(graph->value(h).shape, (Shape{5}));
  const int64_t n = 3, k = graph->output_dim(), N = graph->num_params();
  ASSERT_EQ(N, 36 + 180 + 3 + 1);
  std::mt19937_64 rng(5);
  std::normal_distribution<double> nd(0.0, 0.5);
  std::vector<double> params(static_cast<size_t>(N)), xs(static_cast<size_t>(n * 72));
  for (double& v : params) v = nd(rng);
  for (double& v : xs) v = 2 * nd(rng);
  auto be = make_cpu_backend<double>();
  auto outputs_at = [&](const std::vector<double>& pv) {
    GraphNetwork<double> net(*be, graph, pv, xs, n, nullptr);
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
  for (int64_t i = 0; i < N; ++i) {
    std::vector<double> pp = params, pm = params;
    pp[i] += step;
    pm[i] -= step;
    const std::vector<double> fp = outputs_at(pp), fm = outputs_at(pm);
    for (int64_t row = 0; row < n * k; ++row) fd[row * N + i] = (fp[row] - fm[row]) / (2 * step);
  }
  detail::expect_close(G, fd, 1e-8, "jacobian vs finite differences");
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
      for (int64_t c = 0; c < N; ++c) want += G[i * N + c] * G[j * N + c];
      worst = std::max(worst, std::fabs(gram[i * m + j] - want));
      scale = std::max(scale, std::fabs(want));
    }
  EXPECT_LE(worst, 1e-12 * scale) << "gram vs G Gᵀ";
  std::vector<double> r(static_cast<size_t>(n * k));
  for (double& v : r) v = nd(rng);
  auto grad_at = [&](const std::vector<double>& pv) {
    GraphNetwork<double> nn(*be, graph, pv, xs, n, nullptr);
    nn.forward();
    return nn.gradient(r, false);
  };
  net.gradient(r, true);
  std::vector<double> H(static_cast<size_t>(N * N)), hfd(H.size());
  {
    Buffer<double> hb = net.residual_hessian(4000);
    be->download(H.data(), hb.get(), H.size());
  }
  for (int64_t i = 0; i < N; ++i) {
    std::vector<double> pp = params, pm = params;
    pp[i] += step;
    pm[i] -= step;
    const std::vector<double> gp = grad_at(pp), gm = grad_at(pm);
    for (int64_t c = 0; c < N; ++c) hfd[i * N + c] = (gp[c] - gm[c]) / (2 * step);
  }
  detail::expect_close(H, hfd, 1e-7, "residual hessian vs finite differences");
}

// ---- the element bodies (what CUDA runs) against the CPU loops, bit for bit ----

TEST(PoolKernels, ElementBodiesMatchCpuLoops) {
  struct Geo {
    int64_t H, W, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw;
    bool ceil, include;
  };
  auto be = make_cpu_backend<double>();
  auto& k = be->op_kernels();
  std::mt19937_64 rng(9);
  std::normal_distribution<double> nd;
  for (const Geo& q :
       {Geo{5, 6, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, false, false}, Geo{5, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, true, true},
        Geo{7, 5, 3, 2, 2, 1, 1, 0, 1, 1, 2, 2, true, false}, Geo{1, 9, 1, 3, 1, 2, 0, 1, 0, 1, 1, 3, false, true},
        Geo{6, 6, 2, 3, 3, 1, 0, 1, 1, 0, 1, 1, true, true}}) {
    WindowGeometry g;
    g.channels = 3, g.height = q.H, g.width = q.W, g.kernel_h = q.kh, g.kernel_w = q.kw, g.stride_h = q.sh;
    g.stride_w = q.sw, g.pad_top = q.pt, g.pad_left = q.pl, g.pad_bottom = q.pb, g.pad_right = q.pr;
    const Axis h{q.H, q.kh, q.sh, q.pt, q.pb, q.dh}, w{q.W, q.kw, q.sw, q.pl, q.pr, q.dw};
    g.out_h = h.out(q.ceil), g.out_w = w.out(q.ceil);
    const int64_t E = 2, R = 3, in = g.channels * q.H * q.W, out = g.channels * g.out_h * g.out_w;
    auto randv = [&](int64_t count) {
      std::vector<double> v(static_cast<size_t>(count));
      for (double& e : v) e = nd(rng);
      return v;
    };
    const std::vector<double> x = randv(E * in), xr = randv(E * R * in), gy = randv(E * R * out);
    for (bool avg : {false, true}) {
      g.dilation_h = avg ? 1 : q.dh, g.dilation_w = avg ? 1 : q.dw;
      g.count_include_pad = avg && q.include;
      if (!avg) {
        std::vector<double> y(static_cast<size_t>(E * out)), a(y.size()), y2(y.size()), a2(y.size());
        k.max_pool_forward(g, E, x.data(), y.data(), a.data());
        for (int64_t i = 0; i < E * out; ++i) kernels::max_pool_forward_element(i, g, x.data(), y2.data(), a2.data());
        EXPECT_EQ(y, y2);
        EXPECT_EQ(a, a2);
        std::vector<double> z(static_cast<size_t>(E * R * out), 0.5), z2 = z;
        k.max_pool_apply(g, E, R, a.data(), xr.data(), z.data());
        for (int64_t i = 0; i < E * R * out; ++i)
          kernels::max_pool_apply_element(i, g, R, a.data(), xr.data(), z2.data());
        EXPECT_EQ(z, z2);
        std::vector<double> gx(static_cast<size_t>(E * R * in), 0.25), gx2 = gx;
        k.max_pool_transpose(g, E, R, a.data(), gy.data(), gx.data());
        for (int64_t i = 0; i < E * R * in; ++i)
          kernels::max_pool_transpose_element(i, g, R, a.data(), gy.data(), gx2.data());
        EXPECT_EQ(gx, gx2);
      } else {
        std::vector<double> z(static_cast<size_t>(E * R * out), 0.5), z2 = z;
        k.avg_pool(g, E * R, xr.data(), z.data());
        for (int64_t i = 0; i < E * R * out; ++i) kernels::avg_pool_element(i, g, xr.data(), z2.data());
        EXPECT_EQ(z, z2);
        std::vector<double> gx(static_cast<size_t>(E * R * in), 0.25), gx2 = gx;
        k.avg_pool_transpose(g, E * R, gy.data(), gx.data());
        for (int64_t i = 0; i < E * R * in; ++i) kernels::avg_pool_transpose_element(i, g, gy.data(), gx2.data());
        EXPECT_EQ(gx, gx2);
      }
    }
  }
}

// ---- bad input ----

void expect_error(const OpCase& c, ErrorCode code, const std::string& fragment) {
  try {
    infer_shape(c);
    ADD_FAILURE() << c.op << ": no error (expected '" << fragment << "')";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find("under_test"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(PoolBadInput, ShapesAndAttributes) {
  for (const char* op : {"max_pool", "avg_pool"}) {
    expect_error(pool_case(op, {2, 4, 4, 4}, {{2, 2, 2}}), ErrorCode::kUnimplemented, "1-D ([C, L]) and 2-D");
    expect_error(pool_case(op, {4, 4}, {{2, 2}}), ErrorCode::kInvalidArgument, "must be [C, H, W]");
    expect_error(pool_case(op, {2, 4, 4}, {{2, 2}, {1}}), ErrorCode::kInvalidArgument, "strides [1] must have 2");
    expect_error(pool_case(op, {2, 4, 4}, {{2, 2}, {}, {1, 1}}), ErrorCode::kInvalidArgument, "must have 4 entries");
    expect_error(pool_case(op, {2, 4, 4}, {{2, 0}}), ErrorCode::kInvalidArgument, "must be positive");
    expect_error(pool_case(op, {2, 4, 4}, {{2, 2}, {0, 1}}), ErrorCode::kInvalidArgument, "must be positive");
    expect_error(pool_case(op, {2, 4, 4}, {{2, 2}, {}, {-1, 0, 0, 0}}), ErrorCode::kInvalidArgument, "non-negative");
    expect_error(pool_case(op, {2, 2}, {{3}}), ErrorCode::kInvalidArgument, "does not fit the input");
    OpCase missing = pool_case(op, {2, 4, 4}, {{2, 2}});
    missing.attrs.erase("kernel_shape");
    expect_error(missing, ErrorCode::kInvalidArgument, "'kernel_shape' is missing");
    OpCase ceil = pool_case(op, {2, 4, 4}, {{2, 2}});
    ceil.attrs["ceil_mode"] = attr_of(int64_t{2});
    expect_error(ceil, ErrorCode::kInvalidArgument, "ceil_mode must be 0 or 1");
  }
  // a max window with no input element (taps −2 and 2 of an input of length 1)
  expect_error(pool_case("max_pool", {1, 1}, {{2}, {1}, {2, 2}, {4}}), ErrorCode::kInvalidArgument,
               "lies entirely in the padding");
  expect_error(pool_case("avg_pool", {2, 4, 4}, {{2, 2}, {}, {}, {2, 2}}), ErrorCode::kUnimplemented,
               "average pooling with dilations");
}

}  // namespace
}  // namespace test
}  // namespace basin
