// Normalisation layers (GraphBuilder composites) after a parameterised layer: the residual
// Hessian against finite differences of the executor's gradient. The second derivatives
// couple the upstream weights, the statistics and γ/β.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "basin/backend.hpp"
#include "basin/graph.hpp"
#include "graph/executor.hpp"
#include "graph/graph_builder.hpp"

namespace basin {
namespace test {
namespace {

std::vector<double> host_of(Backend<double>& be, const Buffer<double>& b, size_t count) {
  std::vector<double> h(count);
  be.download(h.data(), b.get(), count);
  return h;
}

void check_residual_hessian(const std::shared_ptr<const Graph>& graph, int64_t n, const char* what) {
  std::mt19937_64 rng(11);
  std::normal_distribution<double> nd(0.0, 1.0);
  const int64_t N = graph->num_params(), k = graph->output_dim(), d = graph->input_size();
  std::vector<double> params(static_cast<size_t>(N)), x(static_cast<size_t>(n * d)), r(static_cast<size_t>(n * k));
  for (double& v : params) v = 0.7 * nd(rng);
  for (double& v : x) v = nd(rng);
  for (double& v : r) v = nd(rng);
  auto be = make_cpu_backend<double>();
  auto grad_at = [&](const std::vector<double>& p) {
    GraphNetwork<double> net(*be, graph, p, x, n, nullptr);
    net.forward();
    return net.gradient(r, false);
  };
  GraphNetwork<double> net(*be, graph, params, x, n, nullptr);
  net.forward();
  net.gradient(r, true);
  const std::vector<double> H = host_of(*be, net.residual_hessian(1 << 20), static_cast<size_t>(N * N));
  const double h = 1e-5;
  double worst = 0, scale = 0, worst_sym = 0;
  for (int64_t p = 0; p < N; ++p) {
    std::vector<double> pp = params, pm = params;
    pp[p] += h;
    pm[p] -= h;
    const std::vector<double> gp = grad_at(pp), gm = grad_at(pm);
    for (int64_t q = 0; q < N; ++q) {
      const double fd = (gp[q] - gm[q]) / (2 * h);
      scale = std::max(scale, std::fabs(fd));
      worst = std::max(worst, std::fabs(H[p * N + q] - fd));
      worst_sym = std::max(worst_sym, std::fabs(H[p * N + q] - H[q * N + p]));
    }
  }
  EXPECT_LE(worst, 1e-6 * std::max(scale, 1.0)) << what << ": residual Hessian vs finite differences (scale " << scale << ")";
  EXPECT_LE(worst_sym, 1e-9 * std::max(scale, 1.0)) << what << ": rows and columns disagree";
}

// x [5] → dense(4) → norm → dense(3)
std::shared_ptr<const Graph> dense_norm_dense(const std::string& norm, bool affine) {
  Graph g;
  GraphBuilder b(g);
  const int x = g.add_input("x", {2, 6});
  const int w = g.add_parameter("w", {4, 6});
  const int bias = g.add_parameter("b", {4});
  Attributes tb;
  tb["trans_b"] = attr_of(int64_t{1});
  int h = g.add_node("matmul", {x, w, bias}, tb, "l1");  // [2, 4]
  const int gamma = affine ? g.add_parameter("gamma", norm == "layer" ? Shape{4} : Shape{2}) : -1;
  const int beta = affine ? g.add_parameter("beta", norm == "layer" ? Shape{4} : Shape{2}) : -1;
  if (norm == "layer") h = b.layer_norm(h, 1, 1e-5, gamma, beta, "ln");
  else if (norm == "instance") h = b.instance_norm(h, 1e-5, gamma, beta, "in");
  else h = b.group_norm(h, 1, 1e-5, gamma, beta, "gn");
  const int w2 = g.add_parameter("w2", {3, 4});
  h = g.add_node("matmul", {h, w2}, tb, "l2");  // [2, 3]
  g.set_output(h);
  g.validate(1000);
  return std::make_shared<const Graph>(std::move(g));
}

TEST(NormHessian, LayerNormAfterDense) {
  check_residual_hessian(dense_norm_dense("layer", true), 3, "layer norm with γ, β");
  check_residual_hessian(dense_norm_dense("layer", false), 3, "layer norm without γ, β");
}

// Per-example vectors: the dense layers take the matmul's vector paths.
TEST(NormHessian, LayerNormOfAVector) {
  Graph g;
  GraphBuilder b(g);
  const int x = g.add_input("x", {6});
  const int w = g.add_parameter("w", {6, 6});
  const int bias = g.add_parameter("b", {6});
  Attributes tb;
  tb["trans_b"] = attr_of(int64_t{1});
  int h = g.add_node("matmul", {x, w, bias}, tb, "pre");
  const int gamma = g.add_parameter("gamma", {6}), beta = g.add_parameter("beta", {6});
  h = b.layer_norm(h, 0, 1e-5, gamma, beta, "ln");
  Attributes fn;
  fn["fn"] = attr_of(std::string("tanh"));
  h = g.add_node("unary", {h}, fn, "act");
  const int w2 = g.add_parameter("w2", {2, 6}), b2 = g.add_parameter("b2", {2});
  h = g.add_node("matmul", {h, w2, b2}, tb, "fc");
  g.set_output(h);
  g.validate(1000);
  check_residual_hessian(std::make_shared<const Graph>(std::move(g)), 3, "linear → layer norm → tanh → linear");
}

TEST(NormHessian, InstanceNormAfterDense) {
  check_residual_hessian(dense_norm_dense("instance", true), 3, "instance norm with γ, β");
  check_residual_hessian(dense_norm_dense("instance", false), 3, "instance norm without γ, β");
}

TEST(NormHessian, GroupNormAfterDense) {
  check_residual_hessian(dense_norm_dense("group", false), 3, "group norm");
}

}  // namespace
}  // namespace test
}  // namespace basin
