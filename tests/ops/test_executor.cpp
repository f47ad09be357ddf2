// The graph executor against the chain engine (network.hpp) on the same networks: a chain turned
// into a graph (graph_from_model) must give the chain's outputs, gradient, Gram, GᵀG, TSQR
// factor, G and residual Hessian to round-off; and graphs the chain cannot express (shared
// weights, parameter × parameter) against finite differences of the executor's own forward pass.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "basin/backend.hpp"
#include "basin/graph.hpp"
#include "basin/model.hpp"
#include "graph/executor.hpp"
#include "chain_network.hpp"

namespace basin {
namespace test {
namespace {

std::vector<double> randv(size_t count, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> nd(0.0, scale);
  std::vector<double> v(count);
  for (double& x : v) x = nd(rng);
  return v;
}

template <class T>
std::vector<double> host(Backend<T>& be, const Buffer<T>& b, size_t count) {
  std::vector<T> h(count);
  be.download(h.data(), b.get(), count);
  return std::vector<double>(h.begin(), h.end());
}

// Lower triangles compared (upper parts are unspecified).
void expect_lower_close(const std::vector<double>& a, const std::vector<double>& b, int64_t n, double tol,
                        const char* what) {
  double scale = 0, worst = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) scale = std::max(scale, std::fabs(b[i * n + j]));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) worst = std::max(worst, std::fabs(a[i * n + j] - b[i * n + j]));
  EXPECT_LE(worst, tol * std::max(scale, 1e-300)) << what << " (scale " << scale << ")";
}

void expect_close(const std::vector<double>& a, const std::vector<double>& b, double tol, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double scale = 0, worst = 0;
  for (size_t i = 0; i < a.size(); ++i) scale = std::max(scale, std::fabs(b[i]));
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  EXPECT_LE(worst, tol * std::max(scale, 1e-300)) << what << " (scale " << scale << ")";
}

Model chain(bool bias) {
  Model m;
  m.input_dim = 4;
  m.layers = {Layer::dense(5, bias), Layer::act(Activation::kTanh), Layer::dense(3, bias),
              Layer::act(Activation::kGelu),  Layer::dense(2, bias)};
  return m;
}

TEST(GraphExecutor, ChainMatchesTheChainEngine) {
  for (bool bias : {true, false}) {
    const Model model = chain(bias);
    std::mt19937_64 rng(7);
    const int64_t n = 6, k = model.output_dim(), N = model.num_params();
    const std::vector<double> params = randv(static_cast<size_t>(N), rng, 0.7);
    const std::vector<double> x = randv(static_cast<size_t>(n * model.input_dim), rng);
    auto be = make_cpu_backend<double>();
    Network<double> net(*be, model, params, x, n, nullptr);
    GraphNetwork<double> gnet(*be, std::make_shared<const Graph>(graph_from_model(model)), params, x, n, nullptr);
    ASSERT_EQ(gnet.num_params(), N);
    ASSERT_EQ(gnet.num_outputs(), k);
    net.forward();
    gnet.forward();
    expect_close(gnet.outputs(), net.outputs(), 1e-14, "outputs");
    // Seeds: the identity (rows of G) and a random 2-column factor (rows of G̃).
    std::vector<double> id(static_cast<size_t>(n * k * k), 0.0);
    for (int64_t row = 0; row < n * k; ++row) id[row * k + row % k] = 1;
    const std::vector<double> s2 = randv(static_cast<size_t>(n * 2 * k), rng);
    for (const auto& [seeds, r] : {std::pair{id, k}, std::pair{s2, int64_t{2}}}) {
      const int64_t m = n * r;
      expect_lower_close(host(*be, gnet.gram(seeds, r), m * m), host(*be, net.gram(seeds, r), m * m), m, 1e-13, "gram");
      expect_lower_close(host(*be, gnet.gram(seeds, r, 5), m * m), host(*be, net.gram(seeds, r), m * m), m, 1e-13,
                         "gram in row tiles");
      expect_lower_close(host(*be, gnet.normal(seeds, r, 1000), N * N), host(*be, net.normal(seeds, r, 1000), N * N), N,
                         1e-13, "normal");
      expect_close(host(*be, gnet.jacobian(seeds, r), m * N), host(*be, net.jacobian(seeds, r), m * N), 1e-14,
                   "jacobian");
    }
    const std::vector<double> dl = randv(static_cast<size_t>(n * k), rng);
    expect_close(gnet.gradient(dl, true), net.gradient(dl, true), 1e-13, "gradient");
    for (uint64_t block : {uint64_t{1}, uint64_t{8} << 20}) {
      const std::vector<double> a = host(*be, gnet.residual_hessian(block), N * N);
      const std::vector<double> b = host(*be, net.residual_hessian(block), N * N);
      expect_close(a, b, 1e-12, "residual hessian");
    }
  }
}

// f(x) = W₂ tanh(W₁ x) + W₁-tied: the same W (3×3) used twice; residual Hessian against finite
// differences of the gradient, Jacobian against finite differences of the outputs.
TEST(GraphExecutor, TiedWeightsAgainstFiniteDifferences) {
  Graph g;
  int x = g.add_input("x", {3});
  const int w = g.add_parameter("w", {3, 3});
  const int b = g.add_parameter("b", {3});
  Attributes tb;
  tb["trans_b"] = attr_of(int64_t{1});
  int h = g.add_node("matmul", {x, w, b}, tb, "l1");
  Attributes fn;
  fn["fn"] = attr_of(std::string("tanh"));
  h = g.add_node("unary", {h}, fn, "act");
  h = g.add_node("matmul", {h, w}, tb, "l2");  // tied
  g.set_output(h);
  g.validate(100);
  auto graph = std::make_shared<const Graph>(g);
  std::mt19937_64 rng(3);
  const int64_t n = 4, k = 3, N = graph->num_params();
  ASSERT_EQ(N, 12);
  std::vector<double> params = randv(static_cast<size_t>(N), rng, 0.8);
  const std::vector<double> xs = randv(static_cast<size_t>(n * 3), rng);
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
  const std::vector<double> G = host(*be, net.jacobian(id, k), n * k * N);
  const double h_fd = 1e-6;
  std::vector<double> fd(G.size());
  for (int64_t p = 0; p < N; ++p) {
    std::vector<double> pp = params, pm = params;
    pp[p] += h_fd;
    pm[p] -= h_fd;
    const std::vector<double> fp = outputs_at(pp), fm = outputs_at(pm);
    for (int64_t row = 0; row < n * k; ++row) fd[row * N + p] = (fp[row] - fm[row]) / (2 * h_fd);
  }
  expect_close(G, fd, 1e-8, "tied jacobian vs finite differences");
  // Gram through the materialised path (tied: no structured factors) = G Gᵀ.
  const std::vector<double> gram = host(*be, net.gram(id, k), n * k * n * k);
  std::vector<double> ggt(gram.size(), 0.0);
  for (int64_t i = 0; i < n * k; ++i)
    for (int64_t j = 0; j < n * k; ++j)
      for (int64_t p = 0; p < N; ++p) ggt[i * n * k + j] += G[i * N + p] * G[j * N + p];
  expect_lower_close(gram, ggt, n * k, 1e-13, "tied gram");
  // Residual Hessian of φ = Σ r·f = gradient of ⟨r, f⟩: finite differences of the gradient.
  const std::vector<double> r = randv(static_cast<size_t>(n * k), rng);
  auto grad_at = [&](const std::vector<double>& p) {
    GraphNetwork<double> nn(*be, graph, p, xs, n, nullptr);
    nn.forward();
    return nn.gradient(r, false);
  };
  net.gradient(r, true);
  const std::vector<double> H = host(*be, net.residual_hessian(1000), N * N);
  std::vector<double> hfd(H.size());
  for (int64_t p = 0; p < N; ++p) {
    std::vector<double> pp = params, pm = params;
    pp[p] += h_fd;
    pm[p] -= h_fd;
    const std::vector<double> gp = grad_at(pp), gm = grad_at(pm);
    for (int64_t q = 0; q < N; ++q) hfd[p * N + q] = (gp[q] - gm[q]) / (2 * h_fd);
  }
  expect_close(H, hfd, 1e-7, "tied residual hessian vs finite differences");
}

}  // namespace
}  // namespace test
}  // namespace basin
