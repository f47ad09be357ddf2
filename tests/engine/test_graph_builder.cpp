// GraphBuilder: composite layers as primitive nodes — their structure (ops, shapes, names, which
// values are constants) and, through the executor's forward pass, their values against a direct
// computation. Tests whose primitive ops are not registered yet skip, naming the missing ops.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "basin/graph.hpp"
#include "graph/executor.hpp"
#include "graph/graph_builder.hpp"
#include "ops/op.hpp"

namespace basin {
namespace {

std::string missing_ops(std::initializer_list<const char*> ops) {
  std::string missing;
  for (const char* op : ops)
    if (find_op(op) == nullptr) missing += std::string(missing.empty() ? "" : ", ") + op;
  return missing;
}
#define REQUIRE_OPS(...)                                                                      \
  do {                                                                                        \
    const std::string missing_ = missing_ops({__VA_ARGS__});                                  \
    if (!missing_.empty()) GTEST_SKIP() << "primitive ops not registered yet: " << missing_; \
  } while (0)

std::vector<double> ramp(int64_t count, double scale, double offset = 0) {
  std::vector<double> v(static_cast<size_t>(count));
  for (size_t i = 0; i < v.size(); ++i) v[i] = offset + scale * static_cast<double>(i) + 0.01 * std::sin(3.0 * i);
  return v;
}

const GraphNode* node_named(const Graph& g, const std::string& name) {
  for (const GraphNode& n : g.nodes())
    if (n.name == name) return &n;
  return nullptr;
}

// The executor's forward outputs [n × k] for θ and inputs x [n × input_size].
std::vector<double> forward(Graph g, const std::vector<double>& theta, const std::vector<double>& x, int64_t n) {
  auto be = make_cpu_backend<double>();
  GraphNetwork<double> net(*be, std::make_shared<const Graph>(std::move(g)), theta, x, n, nullptr);
  net.forward();
  return net.outputs();
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-12) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i]))) << "entry " << i;
}

TEST(GraphBuilder, DenseIsMatmulWithTransposedWeight) {
  Graph g;
  GraphBuilder b(g);
  const int x = g.add_input("x", {3});
  const int w = g.add_parameter("w", {2, 3});
  const int bias = g.add_parameter("b", {2});
  const int y = b.dense(x, w, bias, "fc");
  g.set_output(y);
  ASSERT_EQ(g.nodes().size(), 1u);
  EXPECT_EQ(g.nodes()[0].op, "matmul");
  EXPECT_EQ(attr_int(g.nodes()[0].attrs, "trans_b", 0), 1);
  EXPECT_EQ(g.value(y).shape, Shape{2});
  const std::vector<double> theta = {1, 2, 3, 4, 5, 6, 0.5, -0.5};
  const std::vector<double> xs = {1, 0, -1, 2, 1, 0};
  expect_near(forward(g, theta, xs, 2), {1 - 3 + 0.5, 4 - 6 - 0.5, 2 + 2 + 0.5, 8 + 5 - 0.5});
}

TEST(GraphBuilder, DivByAConstantIsMulByItsReciprocalAndRefusesZero) {
  REQUIRE_OPS("mul");
  Graph g;
  GraphBuilder b(g);
  const int x = g.add_input("x", {2});
  const int y = b.div(x, b.constant("c", {2}, {4, 0.5}), "/div");
  ASSERT_EQ(g.nodes().size(), 1u);
  EXPECT_EQ(g.nodes()[0].op, "mul");
  EXPECT_EQ(g.value(g.nodes()[0].inputs[1]).data, (std::vector<double>{0.25, 2}));
  g.set_output(y);
  expect_near(forward(g, {}, {1, 3}, 1), {0.25, 6});
  try {
    b.div(x, b.constant("z", {2}, {1, 0}), "/div0");
    ADD_FAILURE() << "division by a zero constant was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("/div0"), std::string::npos) << e.what();
  }
}

TEST(GraphBuilder, DivByATensorIsMulByItsReciprocal) {
  REQUIRE_OPS("mul");
  Graph g;
  GraphBuilder b(g);
  const int x = g.add_input("x", {2});
  const int y = b.div(x, b.unary(x, "sigmoid", "s"), "/div");
  EXPECT_EQ(node_named(g, "/div:reciprocal")->op, "unary");
  EXPECT_EQ(attr_string(node_named(g, "/div:reciprocal")->attrs, "fn"), "reciprocal");
  g.set_output(y);
  const double s = 1 / (1 + std::exp(-0.5));
  expect_near(forward(g, {}, {0.5, 0.5}, 1), {0.5 / s, 0.5 / s});
}

TEST(GraphBuilder, SoftmaxAndLogSoftmax) {
  REQUIRE_OPS("reduce_max", "reduce_sum", "sub", "mul");
  const std::vector<double> xs = ramp(12, 0.7, -2);  // 2 examples of [2, 3]
  for (bool log : {false, true}) {
    Graph g;
    GraphBuilder b(g);
    const int x = g.add_input("x", {2, 3});
    const int y = log ? b.log_softmax(x, {1}, "sm") : b.softmax(x, {1}, "sm");
    g.set_output(y);
    EXPECT_EQ(g.value(y).shape, (Shape{2, 3}));
    EXPECT_EQ(g.nodes().back().name, "sm");
    EXPECT_FALSE(g.value(node_named(g, "sm:max")->output).differentiable);
    std::vector<double> want(xs.size());
    for (size_t row = 0; row < 4; ++row) {
      double m = -1e300, z = 0;
      for (size_t c = 0; c < 3; ++c) m = std::max(m, xs[row * 3 + c]);
      for (size_t c = 0; c < 3; ++c) z += std::exp(xs[row * 3 + c] - m);
      for (size_t c = 0; c < 3; ++c)
        want[row * 3 + c] = log ? xs[row * 3 + c] - m - std::log(z) : std::exp(xs[row * 3 + c] - m) / z;
    }
    expect_near(forward(g, {}, xs, 2), want);
  }
}

TEST(GraphBuilder, LayerNormWithAffine) {
  REQUIRE_OPS("reduce_mean", "sub", "mul", "add");
  Graph g;
  GraphBuilder b(g);
  const int x = g.add_input("x", {2, 4});
  const int gamma = g.add_parameter("ln.weight", {4});
  const int beta = g.add_parameter("ln.bias", {4});
  const int y = b.layer_norm(x, 1, 1e-5, gamma, beta, "/ln");
  g.set_output(y);
  EXPECT_EQ(node_named(g, "/ln:mean")->op, "reduce_mean");
  EXPECT_EQ(g.value(node_named(g, "/ln:mean")->output).shape, (Shape{2, 1}));
  EXPECT_EQ(g.nodes().back().name, "/ln");
  const std::vector<double> theta = {1, 2, 0.5, -1, 0.1, 0.2, 0.3, 0.4};
  const std::vector<double> xs = ramp(16, 0.9, -3);
  std::vector<double> want(16);
  for (size_t row = 0; row < 4; ++row) {
    double mu = 0, var = 0;
    for (size_t c = 0; c < 4; ++c) mu += xs[row * 4 + c] / 4;
    for (size_t c = 0; c < 4; ++c) var += (xs[row * 4 + c] - mu) * (xs[row * 4 + c] - mu) / 4;
    for (size_t c = 0; c < 4; ++c)
      want[row * 4 + c] = (xs[row * 4 + c] - mu) / std::sqrt(var + 1e-5) * theta[c] + theta[4 + c];
  }
  expect_near(forward(g, theta, xs, 2), want, 1e-10);
}

TEST(GraphBuilder, BatchNormInferenceFoldsConstantsAndKeepsParameters) {
  REQUIRE_OPS("sub", "mul", "add", "reshape");
  const std::vector<double> mean = {0.5, -1}, var = {4, 0.25};
  const std::vector<double> xs = ramp(16, 0.3, -1);  // 2 examples of [2, 2, 2]
  for (bool params : {false, true}) {
    SCOPED_TRACE(params ? "γ, β parameters" : "γ, β constants");
    Graph g;
    GraphBuilder b(g);
    const int x = g.add_input("x", {2, 2, 2});
    const int gamma = params ? g.add_parameter("bn.weight", {2}) : b.constant("bn.weight", {2}, {2, 3});
    const int beta = params ? g.add_parameter("bn.bias", {2}) : b.constant("bn.bias", {2}, {0.1, 0.2});
    const int y = b.batch_norm_inference(x, gamma, beta, b.constant("m", {2}, mean), b.constant("v", {2}, var), 1e-5, "bn");
    g.set_output(y);
    EXPECT_EQ(g.value(y).shape, (Shape{2, 2, 2}));
    EXPECT_EQ(g.nodes().back().name, "bn");
    EXPECT_EQ(g.nodes().size(), params ? 6u : 2u);  // sub, mul, reshape γ, mul, reshape β, add | mul, add
    std::vector<double> want(16);
    for (size_t e = 0; e < 2; ++e)
      for (size_t c = 0; c < 2; ++c)
        for (size_t s = 0; s < 4; ++s) {
          const size_t k = e * 8 + c * 4 + s;
          want[k] = (xs[k] - mean[c]) / std::sqrt(var[c] + 1e-5) * (c ? 3 : 2) + (c ? 0.2 : 0.1);
        }
    expect_near(forward(g, params ? std::vector<double>{2, 3, 0.1, 0.2} : std::vector<double>{}, xs, 2), want, 1e-10);
  }
}

TEST(GraphBuilder, GroupNormPerChannelAffineAndInstanceNorm) {
  REQUIRE_OPS("reshape", "reduce_mean", "sub", "mul", "add");
  const std::vector<double> xs = ramp(24, 0.37, -2);  // 2 examples of [4, 3]
  for (int64_t groups : {2, 4}) {
    SCOPED_TRACE(groups);
    Graph g;
    GraphBuilder b(g);
    const int x = g.add_input("x", {4, 3});
    const int gamma = g.add_parameter("gn.weight", {4});
    const int beta = g.add_parameter("gn.bias", {4});
    const int y = groups == 4 ? b.instance_norm(x, 1e-5, gamma, beta, "gn") : b.group_norm(x, groups, 1e-5, gamma, beta, "gn");
    g.set_output(y);
    const GraphNode* grouped = node_named(g, "gn:grouped");
    if (groups == 4) {
      EXPECT_EQ(grouped, nullptr);  // [4, 3] is already one row per channel: no reshape
    } else {
      ASSERT_NE(grouped, nullptr);
      EXPECT_EQ(g.value(grouped->output).shape, (Shape{groups, 12 / groups}));
    }
    const std::vector<double> theta = {1, 2, 3, 4, 0.1, 0.2, 0.3, 0.4};
    std::vector<double> want(24);
    const size_t per = static_cast<size_t>(12 / groups);
    for (size_t e = 0; e < 2; ++e)
      for (size_t gr = 0; gr < static_cast<size_t>(groups); ++gr) {
        double mu = 0, var = 0;
        for (size_t i = 0; i < per; ++i) mu += xs[e * 12 + gr * per + i] / per;
        for (size_t i = 0; i < per; ++i) var += std::pow(xs[e * 12 + gr * per + i] - mu, 2) / per;
        for (size_t i = 0; i < per; ++i) {
          const size_t k = e * 12 + gr * per + i, c = (gr * per + i) / 3;
          want[k] = (xs[k] - mu) / std::sqrt(var + 1e-5) * theta[c] + theta[4 + c];
        }
      }
    expect_near(forward(g, theta, xs, 2), want, 1e-10);
  }
}

TEST(GraphBuilder, GlobalAveragePoolAndFlatten) {
  REQUIRE_OPS("reduce_mean", "reshape");
  Graph g;
  GraphBuilder b(g);
  const int x = g.add_input("x", {2, 2, 3});
  const int p = b.global_avg_pool(x, "gap");
  EXPECT_EQ(g.value(p).shape, (Shape{2, 1, 1}));
  EXPECT_EQ(attr_ints(g.nodes()[0].attrs, "axes"), (std::vector<int64_t>{1, 2}));
  const int f = b.flatten(p, "flat");
  EXPECT_EQ(g.value(f).shape, Shape{2});
  g.set_output(f);
  const std::vector<double> xs = ramp(12, 0.5);
  double a = 0, c = 0;
  for (int i = 0; i < 6; ++i) a += xs[i] / 6;
  for (int i = 6; i < 12; ++i) c += xs[i] / 6;
  expect_near(forward(g, {}, xs, 1), {a, c});
}

TEST(GraphBuilder, PowerOfAConstantExponent) {
  REQUIRE_OPS("mul");
  Graph g;
  GraphBuilder b(g);
  const int x = g.add_input("x", {3});
  EXPECT_EQ(b.pow_constant(x, 1, "p1"), x);
  EXPECT_EQ(g.nodes().size(), 0u);
  const int sq = b.pow_constant(x, 2, "p2");
  EXPECT_EQ(g.nodes().back().op, "mul");
  const int cube = b.pow_constant(sq, 3, "p3");
  g.set_output(cube);
  expect_near(forward(g, {}, {1, -2, 0.5}, 1), {1, 64, 0.015625});
}

}  // namespace
}  // namespace basin
