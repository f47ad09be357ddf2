// Checkpointed segments (executor.hpp, "Checkpointed segments"; docs/ARCHITECTURE.md): with
// checkpointing the forward keeps only the cut values and the passes recompute each segment's
// primals; gram() runs the nodes below a cut over blocks of examples. Every pass must give what
// the executor gives with every primal resident, and the Gram what G Gᵀ of the materialised G
// gives — after a split, before and after the cut values are restored, and in any order.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "basin/backend.hpp"
#include "basin/graph.hpp"
#include "graph/executor.hpp"

namespace basin {
namespace test {
namespace {

using Ints = std::vector<int64_t>;

Attributes conv_attrs(Ints pads, Ints strides = {}) {
  Attributes a;
  a["pads"] = attr_of(pads);
  if (!strides.empty()) a["strides"] = attr_of(strides);
  return a;
}
Attributes fn_attrs(const std::string& fn) {
  Attributes a;
  a["fn"] = attr_of(fn);
  return a;
}
Attributes pool_2x2() {
  Attributes a;
  a["kernel_shape"] = attr_of(Ints{2, 2});
  a["strides"] = attr_of(Ints{2, 2});
  return a;
}
// reshape to [size] → dense (trans_b) with weight w, bias b: the graph's output.
void flatten_dense(Graph& g, int h, int64_t size, int w, int b) {
  Attributes rs;
  rs["shape"] = attr_of(Ints{size});
  h = g.add_node("reshape", {h}, rs, "flatten");
  Attributes dense;
  dense["trans_b"] = attr_of(int64_t{1});
  h = g.add_node("matmul", {h, w, b}, dense, "head");
  g.set_output(h);
  g.validate(1000);
}

// x [1, 16, 16] → conv 3×3 (2, +b) → tanh → [conv → softplus → conv, + skip → tanh] → max_pool 2
// → conv 3×3 stride 2 (6) → tanh → [conv → tanh, + skip] → ·γ + β → avg_pool 2 → reshape → dense 3.
// The first stage has large activations and few parameters: gram() splits after its pool.
std::shared_ptr<const Graph> resnet_like() {
  Graph g;
  int h = g.add_input("x", {1, 16, 16});
  const int w1 = g.add_parameter("w1", {2, 1, 3, 3}), b1 = g.add_parameter("b1", {2});
  const int wa = g.add_parameter("wa", {2, 2, 3, 3}), wb = g.add_parameter("wb", {2, 2, 3, 3});
  const int w3 = g.add_parameter("w3", {6, 2, 3, 3});
  const int wc = g.add_parameter("wc", {6, 6, 3, 3});
  const int gamma = g.add_parameter("gamma", {6, 1, 1}), beta = g.add_parameter("beta", {6, 1, 1});
  const int wd = g.add_parameter("wd", {3, 24}), bd = g.add_parameter("bd", {3});
  h = g.add_node("conv", {h, w1, b1}, conv_attrs({1, 1, 1, 1}), "stem");
  h = g.add_node("unary", {h}, fn_attrs("tanh"), "stem_act");
  int skip = h;
  h = g.add_node("conv", {h, wa}, conv_attrs({1, 1, 1, 1}), "a1");
  h = g.add_node("unary", {h}, fn_attrs("softplus"), "a1_act");
  h = g.add_node("conv", {h, wb}, conv_attrs({1, 1, 1, 1}), "a2");
  h = g.add_node("add", {h, skip}, {}, "a_res");
  h = g.add_node("unary", {h}, fn_attrs("tanh"), "a_act");
  h = g.add_node("max_pool", {h}, pool_2x2(), "pool");
  h = g.add_node("conv", {h, w3}, conv_attrs({1, 1, 1, 1}, {2, 2}), "down");
  h = g.add_node("unary", {h}, fn_attrs("tanh"), "down_act");
  skip = h;
  h = g.add_node("conv", {h, wc}, conv_attrs({1, 1, 1, 1}), "c1");
  h = g.add_node("unary", {h}, fn_attrs("tanh"), "c1_act");
  h = g.add_node("add", {h, skip}, {}, "c_res");
  h = g.add_node("mul", {h, gamma}, {}, "scale");
  h = g.add_node("add", {h, beta}, {}, "shift");
  h = g.add_node("avg_pool", {h}, pool_2x2(), "gap");
  flatten_dense(g, h, 24, wd, bd);
  return std::make_shared<const Graph>(g);
}

// x [2, 16, 16] → conv (wa) → tanh → max_pool 2 → conv stride 2 (w3) → tanh → conv (wa again)
// → softplus → dense 3: a kernel tied across the cuts of the first stage (N = 171).
std::shared_ptr<const Graph> resnet_tied() {
  Graph g;
  int h = g.add_input("x", {2, 16, 16});
  const int wa = g.add_parameter("wa", {2, 2, 3, 3});
  const int w3 = g.add_parameter("w3", {2, 2, 3, 3});
  const int wd = g.add_parameter("wd", {3, 32}), bd = g.add_parameter("bd", {3});
  h = g.add_node("conv", {h, wa}, conv_attrs({1, 1, 1, 1}), "c0");
  h = g.add_node("unary", {h}, fn_attrs("tanh"), "c0_act");
  h = g.add_node("max_pool", {h}, pool_2x2(), "pool");
  h = g.add_node("conv", {h, w3}, conv_attrs({1, 1, 1, 1}, {2, 2}), "down");
  h = g.add_node("unary", {h}, fn_attrs("tanh"), "down_act");
  h = g.add_node("conv", {h, wa}, conv_attrs({1, 1, 1, 1}), "c1_tied");  // wa again
  h = g.add_node("unary", {h}, fn_attrs("softplus"), "c1_act");
  flatten_dense(g, h, 32, wd, bd);
  return std::make_shared<const Graph>(g);
}

std::vector<double> randv(size_t count, std::mt19937_64& rng, double scale) {
  std::normal_distribution<double> nd(0.0, scale);
  std::vector<double> v(count);
  for (double& x : v) x = nd(rng);
  return v;
}
std::vector<double> host(Backend<double>& be, const Buffer<double>& b, size_t count) {
  std::vector<double> h(count);
  be.download(h.data(), b.get(), count);
  return h;
}
double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}
void expect_close(const std::vector<double>& a, const std::vector<double>& b, double tol, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  EXPECT_LE(worst, tol * std::max(max_abs(b), 1e-300)) << what;
}
// Lower triangle of G Gᵀ from G [m × N].
std::vector<double> gram_of(const std::vector<double>& G, int64_t m, int64_t N) {
  std::vector<double> out(static_cast<size_t>(m * m), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0;
      for (int64_t p = 0; p < N; ++p) s += G[i * N + p] * G[j * N + p];
      out[i * m + j] = s;
    }
  return out;
}
std::vector<double> lower(const std::vector<double>& a, int64_t m) {
  std::vector<double> out(a.size(), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j <= i; ++j) out[i * m + j] = a[i * m + j];
  return out;
}

struct Case {
  std::shared_ptr<const Graph> graph;
  int64_t n, k, N;
  std::vector<double> params, xs, seeds, r;
};
Case make_setup(std::shared_ptr<const Graph> graph, int64_t n, uint64_t seed) {
  Case s;
  s.graph = std::move(graph);
  s.n = n;
  s.k = s.graph->output_dim();
  s.N = s.graph->num_params();
  std::mt19937_64 rng(seed);
  s.params = randv(static_cast<size_t>(s.N), rng, 0.5);
  s.xs = randv(static_cast<size_t>(n * s.graph->input_size()), rng, 1.0);
  s.seeds.assign(static_cast<size_t>(n * s.k * s.k), 0.0);
  for (int64_t row = 0; row < n * s.k; ++row) s.seeds[row * s.k + row % s.k] = 1;
  s.r = randv(static_cast<size_t>(n * s.k), rng, 1.0);
  return s;
}

TEST(Checkpoints, CutsSplitAResidualNetworkIntoSegments) {
  auto be = make_cpu_backend<double>();
  const Case s = make_setup(resnet_like(), 3, 1);
  GraphNetwork<double> net(*be, s.graph, s.params, s.xs, s.n, nullptr);
  // stem, stem_act, a_res, a_act, pool, down, down_act, c_res, scale, shift, gap and flatten end
  // segments; the nodes inside the residual blocks do not (the skip is live across them).
  EXPECT_EQ(net.num_segments(), 13u);
  EXPECT_FALSE(net.checkpointing());  // small primals: off by default
  net.set_checkpointing(true);
  EXPECT_EQ(net.gram_split(s.k), 7);  // after the max_pool (node 7): 92 parameters below, 1/4 of G at most
  net.set_split_block_bytes(0);
  EXPECT_EQ(net.gram_split(s.k), -1);
}

// Every pass with checkpointing (and gram()'s split) against the executor with every primal
// resident, and the Gram against G Gᵀ, in an order that exercises the released cut values.
void check_passes_match(const Case& s, bool expect_split, int64_t split_pass_bytes = int64_t(8) << 20) {
  auto be = make_cpu_backend<double>();
  const int64_t m = s.n * s.k, N = s.N;
  GraphNetwork<double> ref(*be, s.graph, s.params, s.xs, s.n, nullptr);
  ref.set_checkpointing(false);
  ref.forward();
  const std::vector<double> out_ref = ref.outputs();
  const std::vector<double> G = host(*be, ref.jacobian(s.seeds, s.k), static_cast<size_t>(m * N));
  const std::vector<double> gram_ref = gram_of(G, m, N);
  const std::vector<double> grad_ref = ref.gradient(s.r, true);
  const std::vector<double> res_ref = host(*be, ref.residual_hessian(1 << 20), static_cast<size_t>(N * N));

  GraphNetwork<double> net(*be, s.graph, s.params, s.xs, s.n, nullptr);
  net.set_checkpointing(true);
  net.set_split_pass_bytes(split_pass_bytes);
  net.forward();
  EXPECT_EQ(net.gram_split(s.k) >= 0, expect_split);
  expect_close(net.outputs(), out_ref, 1e-15, "outputs");
  // gram() twice (the second after the first released the cut values), then G in blocks of one
  // example (each block recomputes the segments), the gradient, the Gram with column ranges.
  for (int pass = 0; pass < 2; ++pass)
    expect_close(lower(host(*be, net.gram(s.seeds, s.k), static_cast<size_t>(m * m)), m), gram_ref, 1e-13,
                 "checkpointed gram " + std::to_string(pass) + " vs G Gᵀ");
  expect_close(host(*be, net.jacobian(s.seeds, s.k), static_cast<size_t>(m * N)), G, 1e-14, "checkpointed G");
  const std::vector<double> normal_ref = host(*be, ref.normal(s.seeds, s.k, 1), static_cast<size_t>(N * N));
  expect_close(lower(host(*be, net.normal(s.seeds, s.k, 1), static_cast<size_t>(N * N)), N), lower(normal_ref, N),
               1e-13, "checkpointed GᵀG over one-example blocks");
  net.set_param_chunk_bytes(200);
  expect_close(lower(host(*be, net.gram(s.seeds, s.k), static_cast<size_t>(m * m)), m), gram_ref, 1e-13,
               "checkpointed gram from column ranges");
  // A primal of a recomputed segment, on the host.
  const int pooled = s.graph->nodes()[7].output;
  ref.set_checkpointing(false);
  const std::vector<double> pooled_ref = ref.value_on_host(pooled);
  expect_close(net.value_on_host(pooled), pooled_ref, 1e-15, "value_on_host of a released cut value");
  expect_close(net.gradient(s.r, true), grad_ref, 1e-14, "checkpointed gradient");
  // The residual Hessian and the products turn checkpointing off (every primal resident).
  expect_close(host(*be, net.residual_hessian(1 << 20), static_cast<size_t>(N * N)), res_ref, 1e-13,
               "residual hessian after checkpointed passes");
  EXPECT_FALSE(net.checkpointing());
  expect_close(lower(host(*be, net.gram(s.seeds, s.k), static_cast<size_t>(m * m)), m), gram_ref, 1e-13,
               "gram after checkpointing was turned off");
}

TEST(Checkpoints, PassesMatchTheResidentExecutor) { check_passes_match(make_setup(resnet_like(), 5, 2), true); }

TEST(Checkpoints, TiedWeightIsNeverSplitBetweenItsUses) {
  // wa is read by nodes 0 and 5: the cuts after the tanh and the pool would fit the budget (36
  // parameters below, N/4 = 42) but fall between its uses (its block is the sum of both); the
  // cuts above have 72 parameters below: no split.
  const Case s = make_setup(resnet_tied(), 4, 3);
  ASSERT_EQ(s.N, 171);
  auto be = make_cpu_backend<double>();
  GraphNetwork<double> net(*be, s.graph, s.params, s.xs, s.n, nullptr);
  net.set_checkpointing(true);
  EXPECT_EQ(net.gram_split(s.k), -1);
  check_passes_match(s, false);
}

TEST(Checkpoints, BlocksOfExamplesBelowTheSplit) {
  // 8 MiB of rows holds every example here: blocks of 1 and of 3 examples (n = 7, the last block
  // partial) are forced instead.
  const Case s = make_setup(resnet_like(), 7, 4);
  const int64_t per_example = s.k * 2 * 16 * 16 * int64_t(sizeof(double));  // the largest value below
  check_passes_match(s, true, per_example);
  check_passes_match(s, true, 3 * per_example);
}

}  // namespace
}  // namespace test
}  // namespace basin
