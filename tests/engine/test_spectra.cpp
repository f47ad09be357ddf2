// Matrix-free spectra (issue 12): the executor's H·V and GGN·V against the dense matrices the
// engine assembles independently (GᵀMG by normal(), R by residual_hessian); block Lanczos's
// extreme eigenvalues, Hutch++'s trace and SLQ's moments against the exact dense spectra of
// --want hessian / ggn, for MLPs and a small CNN; the bad inputs.
#include <gtest/gtest.h>

#include <limits>
#include <lapacke.h>

#include <cmath>
#include <numeric>

#include "graph/executor.hpp"
#include "loss.hpp"
#include "spectra/spectra.hpp"
#include "test_util.hpp"

namespace basin {
namespace {

// x [2, 6, 6] → conv 3×3 stride 2 pad 1 (+b) → tanh → conv 2×2 (+b) → softplus → reshape →
// matmul to 3 classes.
std::shared_ptr<const Graph> small_cnn() {
  Graph g;
  int h = g.add_input("x", {2, 6, 6});
  const int w1 = g.add_parameter("w1", {3, 2, 3, 3}), b1 = g.add_parameter("b1", {3});
  const int w2 = g.add_parameter("w2", {2, 3, 2, 2}), b2 = g.add_parameter("b2", {2});
  Attributes a1;
  a1["strides"] = attr_of(std::vector<int64_t>{2, 2});
  a1["pads"] = attr_of(std::vector<int64_t>{1, 1, 1, 1});
  h = g.add_node("conv", {h, w1, b1}, a1, "conv1");  // [3, 3, 3]
  Attributes fn;
  fn["fn"] = attr_of(std::string("tanh"));
  h = g.add_node("unary", {h}, fn, "act1");
  h = g.add_node("conv", {h, w2, b2}, {}, "conv2");  // [2, 2, 2]
  fn["fn"] = attr_of(std::string("softplus"));
  h = g.add_node("unary", {h}, fn, "act2");
  Attributes rs;
  rs["shape"] = attr_of(std::vector<int64_t>{8});
  h = g.add_node("reshape", {h}, rs, "flatten");
  const int w3 = g.add_parameter("w3", {8, 3});
  h = g.add_node("matmul", {h, w3}, {}, "fc");
  g.set_output(h);
  g.validate(100);
  return std::make_shared<const Graph>(g);
}

AnalysisRequest cnn_request(Loss loss, int64_t n, uint64_t seed) {
  AnalysisRequest r;
  r.graph = small_cnn();
  std::mt19937_64 rng(seed);
  r.num_examples = n;
  r.params = test::random_vector(static_cast<size_t>(r.graph->num_params()), rng, 0.6);
  r.inputs = test::random_vector(static_cast<size_t>(n * r.graph->input_size()), rng);
  r.loss = loss;
  r.device = Device::kCpu;
  const int64_t k = r.graph->output_dim();
  if (loss == Loss::kMse) r.targets = test::random_vector(static_cast<size_t>(n * k), rng);
  if (loss == Loss::kCrossEntropy)
    for (int64_t i = 0; i < n; ++i) r.labels.push_back(static_cast<int64_t>(rng() % k));
  return r;
}

std::shared_ptr<const Graph> graph_of(const AnalysisRequest& r) {
  return r.graph ? r.graph : std::make_shared<const Graph>(graph_from_model(r.model));
}

// M_i u from the loss factor (the same rule as the engine's, written out again).
GraphNetwork<double>::OutputMap output_map(const LossTerms& t, int64_t k) {
  return [&t, k](std::vector<double>& u, int64_t i0, int64_t count) {
    const int64_t b = static_cast<int64_t>(u.size()) / (count * k), rc = t.factor_cols;
    for (int64_t i = 0; i < count; ++i)
      for (int64_t d = 0; d < b; ++d) {
        std::vector<double> out(static_cast<size_t>(k), 0.0);
        double* ui = u.data() + (i * b + d) * k;
        for (int64_t j = 0; j < rc; ++j) {
          const double* s = t.factor_seeds.data() + ((i0 + i) * rc + j) * k;
          double c = 0;
          for (int64_t q = 0; q < k; ++q) c += s[q] * ui[q];
          for (int64_t q = 0; q < k; ++q) out[q] += c * s[q];
        }
        std::copy(out.begin(), out.end(), ui);
      }
  };
}

// H·V and GGN·V of the executor against the dense H = normal(factor seeds) + residual_hessian,
// with the examples in one pass and in passes of one example each.
void check_products(const AnalysisRequest& r) {
  auto be = make_cpu_backend<double>();
  GraphNetwork<double> net(*be, graph_of(r), r.params, r.inputs, r.num_examples, nullptr);
  net.forward();
  const int64_t k = net.num_outputs(), N = net.num_params();
  const LossTerms t = loss_terms(r.loss, r.reduction, net.outputs(), r.num_examples, k, r.targets, r.labels);
  net.gradient(t.dloss_df, true);
  const std::vector<double> ggn = test::download(*be, net.normal(t.factor_seeds, t.factor_cols, 1 << 20));
  const std::vector<double> res = test::download(*be, net.residual_hessian(1 << 12));
  std::vector<double> h(static_cast<size_t>(N * N)), gn(static_cast<size_t>(N * N));
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j) {
      gn[i * N + j] = ggn[std::max(i, j) * N + std::min(i, j)];
      h[i * N + j] = gn[i * N + j] + 0.5 * (res[i * N + j] + res[j * N + i]);
    }
  const int64_t b = 5;
  std::mt19937_64 rng(3);
  const std::vector<double> v = test::random_vector(static_cast<size_t>(b * N), rng);
  Buffer<double> vd(*be, v.size()), yd(*be, v.size());
  be->upload(vd.get(), v.data(), v.size());
  const auto m = output_map(t, k);
  for (const bool hessian : {true, false}) {
    const std::vector<double>& a = hessian ? h : gn;
    for (const uint64_t pass_bytes : {uint64_t(1) << 30, uint64_t(1)}) {  // all examples; one per pass
      if (hessian) net.hessian_product(vd.get(), b, m, yd.get(), pass_bytes);
      else net.gauss_newton_product(vd.get(), b, m, yd.get(), pass_bytes);
      const std::vector<double> y = test::download(*be, yd);
      double worst = 0, scale = test::max_abs(a);
      for (int64_t d = 0; d < b; ++d)
        for (int64_t i = 0; i < N; ++i) {
          double ref = 0;
          for (int64_t j = 0; j < N; ++j) ref += a[i * N + j] * v[d * N + j];
          worst = std::max(worst, std::fabs(ref - y[d * N + i]));
        }
      EXPECT_LT(worst, 1e-11 * (1 + scale) * std::sqrt(double(N)))
          << (hessian ? "H·V" : "GGN·V") << " pass_bytes " << pass_bytes;
    }
  }
}

TEST(SpectraProducts, MlpCrossEntropyMatchesDense) {
  Model model = test::mlp(4, {6, 5}, 3, Activation::kTanh, true, 0.2);
  check_products(test::random_request(model, 7, Loss::kCrossEntropy, 5));
}
TEST(SpectraProducts, MlpMseMatchesDense) {
  Model model = test::mlp(3, {5}, 2, Activation::kSoftplus, true, 0.2);
  check_products(test::random_request(model, 6, Loss::kMse, 9));
}
TEST(SpectraProducts, CnnMatchesDense) { check_products(cnn_request(Loss::kCrossEntropy, 4, 21)); }

// The exact spectra of --want hessian / ggn (dense assembly, independent of the products).
AnalysisResult exact(AnalysisRequest r) {
  r.want = Want{false, true, true, false};
  return analyze(r);
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

void check_lanczos_against_exact(AnalysisRequest r, const std::string& what) {
  const AnalysisResult ex = exact(r);
  r.want = Want{false, false, false, false};
  r.want.hessian_top = true;
  r.spectra.method = "matrix_free";
  r.spectra.top_k = 5;
  r.spectra.bottom_k = 4;
  r.spectra.tol = 1e-10;
  r.spectra.lanczos_steps = 40;
  AnalysisResult mf = analyze(r);
  // The GGN's smallest eigenvalues are its null space's zeros (rank ≤ n·r < N), far more of
  // them than the block size: projected onto null(G̃) (method "null_space"), each certified by
  // its residual like the Lanczos pairs.
  r.want.hessian_top = false;
  r.want.ggn_top = true;
  r.spectra.lanczos_block = 3;  // 4 zeros wanted, more than a block of 3 can hold
  const AnalysisResult mg = analyze(r);
  EXPECT_EQ(mg.ggn_bottom->method, "null_space") << what;
  EXPECT_GT(mg.ggn_bottom->matvecs, 0) << what;
  mf.ggn_top = mg.ggn_top;
  mf.ggn_bottom = mg.ggn_bottom;
  for (const bool hessian : {true, false}) {
    std::vector<double> lam = hessian ? ex.hessian->eigenvalues : ex.ggn->eigenvalues;  // descending
    const int64_t N = r.num_params();
    lam.resize(static_cast<size_t>(N), 0.0);  // the GGN's structural zeros beyond min(n·k, N)
    std::sort(lam.begin(), lam.end(), std::greater<double>());
    const double scale = max_abs(lam);
    const EigenEnds& top = hessian ? *mf.hessian_top : *mf.ggn_top;
    const std::string name = what + (hessian ? " hessian" : " ggn");
    ASSERT_EQ(top.eigenvalues.size(), 5u) << name;
    EXPECT_TRUE(top.converged) << name;
    EXPECT_EQ(top.method, "lanczos");
    for (size_t j = 0; j < 5; ++j) {
      EXPECT_NEAR(top.eigenvalues[j], lam[j], 1e-10 * scale) << name << " top " << j;
      EXPECT_LE(top.residual_norms[j], 1e-10 * scale) << name;
    }
    const EigenEnds& bottom = hessian ? *mf.hessian_bottom : *mf.ggn_bottom;
    ASSERT_EQ(bottom.eigenvalues.size(), 4u) << name;
    EXPECT_TRUE(bottom.converged) << name;
    for (size_t j = 0; j < 4; ++j) {
      EXPECT_NEAR(bottom.eigenvalues[j], lam[lam.size() - 1 - j], 1e-10 * scale) << name << " bottom " << j;
      EXPECT_LE(bottom.residual_norms[j], 1e-10 * scale) << name;
    }
    EXPECT_GT(top.matvecs, 0);
  }
}

TEST(SpectraLanczos, MlpCrossEntropyTopAndBottomMatchDense) {
  Model model = test::mlp(8, {12, 10}, 4, Activation::kTanh, true, 0.2);  // N = 108 + 130 + 44
  check_lanczos_against_exact(test::random_request(model, 20, Loss::kCrossEntropy, 31), "mlp ce");
}
TEST(SpectraLanczos, MlpMseTopAndBottomMatchDense) {
  Model model = test::mlp(6, {10}, 3, Activation::kGelu, true, 0.2);
  check_lanczos_against_exact(test::random_request(model, 15, Loss::kMse, 8), "mlp mse");
}
TEST(SpectraLanczos, CnnTopAndBottomMatchDense) {
  check_lanczos_against_exact(cnn_request(Loss::kCrossEntropy, 10, 4), "cnn ce");
}

TEST(SpectraLanczos, AutoTakesTheDensePathWhereItFitsAndAgrees) {
  Model model = test::mlp(5, {8}, 3, Activation::kTanh, true, 0.2);
  AnalysisRequest r = test::random_request(model, 10, Loss::kCrossEntropy, 12);
  r.want = Want{false, false, false, false};
  r.want.hessian_top = true;
  r.spectra.top_k = 4;
  r.spectra.tol = 1e-10;
  const AnalysisResult dense = analyze(r);
  EXPECT_EQ(dense.hessian_top->method, "dense");
  r.spectra.method = "matrix_free";
  const AnalysisResult mf = analyze(r);
  EXPECT_EQ(mf.hessian_top->method, "lanczos");
  const double scale = std::fabs(dense.hessian_top->eigenvalues[0]);
  for (size_t j = 0; j < 4; ++j) {
    EXPECT_NEAR(mf.hessian_top->eigenvalues[j], dense.hessian_top->eigenvalues[j], 1e-10 * scale);
    EXPECT_LE(dense.hessian_top->residual_norms[j], 1e-10 * scale);
  }
}

TEST(SpectraLanczos, UnmeetableToleranceIsReportedNotConverged) {
  Model model = test::mlp(6, {10}, 3, Activation::kTanh, true, 0.2);
  AnalysisRequest r = test::random_request(model, 12, Loss::kCrossEntropy, 2);
  r.want = Want{false, false, false, false};
  r.want.hessian_top = true;
  r.spectra.method = "matrix_free";
  r.spectra.top_k = 3;
  r.spectra.tol = 1e-300;
  r.spectra.max_restarts = 2;
  const AnalysisResult res = analyze(r);
  EXPECT_FALSE(res.hessian_top->converged);
  ASSERT_EQ(res.hessian_top->residual_norms.size(), 3u);
  for (double x : res.hessian_top->residual_norms) EXPECT_GT(x, 0.0);
}

TEST(SpectraTrace, HutchPlusPlusWithinThreeStandardErrors) {
  Model model = test::mlp(8, {12, 10}, 4, Activation::kTanh, true, 0.2);
  AnalysisRequest r = test::random_request(model, 40, Loss::kCrossEntropy, 7);
  const AnalysisResult ex = exact(r);
  r.want = Want{false, false, false, false};
  r.want.hessian_trace = r.want.ggn_trace = true;
  r.spectra.method = "matrix_free";
  r.spectra.probes = 60;
  const AnalysisResult mf = analyze(r);
  for (const bool hessian : {true, false}) {
    const std::vector<double>& lam = hessian ? ex.hessian->eigenvalues : ex.ggn->eigenvalues;
    const double tr = std::accumulate(lam.begin(), lam.end(), 0.0);
    const TraceEstimate& t = hessian ? *mf.hessian_trace : *mf.ggn_trace;
    EXPECT_EQ(t.method, "hutch++");
    EXPECT_EQ(t.matvecs, 60);
    EXPECT_GT(t.std_error, 0.0);
    EXPECT_LE(std::fabs(t.estimate - tr), 3 * t.std_error) << (hessian ? "hessian" : "ggn") << " exact " << tr;
  }
}

TEST(SpectraTrace, ExactForALowRankGgn) {
  // n·(k−1) = 3·2 = 6 ≤ the sketch's 10 columns: QQᵀ captures the whole range of the GGN.
  Model model = test::mlp(5, {8}, 3, Activation::kTanh, true, 0.2);
  AnalysisRequest r = test::random_request(model, 3, Loss::kCrossEntropy, 17);
  const AnalysisResult ex = exact(r);
  r.want = Want{false, false, false, false};
  r.want.ggn_trace = true;
  r.spectra.method = "matrix_free";
  r.spectra.probes = 30;
  const AnalysisResult mf = analyze(r);
  const double tr = std::accumulate(ex.ggn->eigenvalues.begin(), ex.ggn->eigenvalues.end(), 0.0);
  EXPECT_NEAR(mf.ggn_trace->estimate, tr, 1e-10 * tr);
  EXPECT_LT(mf.ggn_trace->std_error, 1e-10 * tr);
}

TEST(SpectraDensity, SlqMomentsMatchTracesOfPowers) {
  Model model = test::mlp(6, {10, 8}, 3, Activation::kTanh, true, 0.2);
  AnalysisRequest r = test::random_request(model, 20, Loss::kCrossEntropy, 23);
  const AnalysisResult ex = exact(r);
  r.want = Want{false, false, false, false};
  r.want.hessian_density = true;
  r.spectra.method = "matrix_free";
  r.spectra.probes = 40;
  r.spectra.lanczos_steps = 12;
  r.spectra.seed = 5;
  const AnalysisResult mf = analyze(r);
  const SpectralDensity& d = *mf.hessian_density;
  ASSERT_EQ(d.nodes.size(), 40u);
  const double N = double(r.num_params());
  for (int j = 0; j <= 4; ++j) {
    double exact_moment = 0;
    for (double l : ex.hessian->eigenvalues) exact_moment += std::pow(l, j);
    exact_moment /= N;
    std::vector<double> per_probe;
    for (size_t p = 0; p < d.nodes.size(); ++p) {
      double m = 0;
      for (size_t i = 0; i < d.nodes[p].size(); ++i) m += d.weights[p][i] * std::pow(d.nodes[p][i], j);
      per_probe.push_back(m);
    }
    const double mean = std::accumulate(per_probe.begin(), per_probe.end(), 0.0) / double(per_probe.size());
    double var = 0;
    for (double m : per_probe) var += (m - mean) * (m - mean);
    const double se = std::sqrt(var / double(per_probe.size() - 1) / double(per_probe.size()));
    EXPECT_LE(std::fabs(mean - exact_moment), 4 * se + 1e-12 * std::fabs(exact_moment) + 1e-15) << "moment " << j;
  }
  // Seeded: the same seed gives the same nodes, another seed others.
  const AnalysisResult again = analyze(r);
  EXPECT_EQ(again.hessian_density->nodes, d.nodes);
  r.spectra.seed = 6;
  EXPECT_NE(analyze(r).hessian_density->nodes, d.nodes);
}

// The smoothed density on the grid: it integrates to 1, its mean is the SLQ estimate of tr(H)/N
// and so matches the exact dense trace within the SLQ's standard error; the exact path's grid is
// the exact spectrum smoothed the same way.
TEST(SpectraDensity, SmoothedDensityOnTheGridIntegratesToOneWithTheTraceAsMean) {
  Model model = test::mlp(6, {10, 8}, 3, Activation::kTanh, true, 0.2);
  AnalysisRequest r = test::random_request(model, 20, Loss::kCrossEntropy, 29);
  const AnalysisResult ex = exact(r);
  const double N = double(r.num_params());
  const double tr_n = std::accumulate(ex.hessian->eigenvalues.begin(), ex.hessian->eigenvalues.end(), 0.0) / N;
  r.want = Want{false, false, false, false};
  r.want.hessian_density = r.want.ggn_density = true;
  r.spectra.probes = 30;
  r.spectra.lanczos_steps = 20;
  for (const std::string method : {"matrix_free", "dense"}) {
    r.spectra.method = method;
    const AnalysisResult mf = analyze(r);
    for (const bool hessian : {true, false}) {
      const SpectralDensity& d = hessian ? *mf.hessian_density : *mf.ggn_density;
      const std::string name = method + (hessian ? " hessian" : " ggn");
      ASSERT_EQ(d.grid.size(), 400u) << name;
      ASSERT_EQ(d.density.size(), 400u) << name;
      double lo = INFINITY, hi = -INFINITY;
      for (const auto& v : d.nodes)
        for (double x : v) lo = std::min(lo, x), hi = std::max(hi, x);
      EXPECT_NEAR(d.bandwidth, 0.01 * (hi - lo), 1e-12 * (hi - lo)) << name;
      EXPECT_LE(d.grid.front(), lo - 4.9 * d.bandwidth) << name;
      EXPECT_GE(d.grid.back(), hi + 4.9 * d.bandwidth) << name;
      double mass = 0, mean = 0;  // trapezoid rule on the grid
      for (size_t g = 1; g < d.grid.size(); ++g) {
        const double h = d.grid[g] - d.grid[g - 1];
        EXPECT_GT(h, 0) << name;
        mass += 0.5 * h * (d.density[g] + d.density[g - 1]);
        mean += 0.5 * h * (d.grid[g] * d.density[g] + d.grid[g - 1] * d.density[g - 1]);
      }
      for (double v : d.density) EXPECT_GE(v, 0.0);
      EXPECT_NEAR(mass, 1.0, 1e-5) << name;
      // The per-probe first moments and their standard error.
      std::vector<double> m1;
      for (size_t p = 0; p < d.nodes.size(); ++p) {
        double m = 0;
        for (size_t i = 0; i < d.nodes[p].size(); ++i) m += d.weights[p][i] * d.nodes[p][i];
        m1.push_back(m);
      }
      const double slq_mean = std::accumulate(m1.begin(), m1.end(), 0.0) / double(m1.size());
      double var = 0;
      for (double m : m1) var += (m - slq_mean) * (m - slq_mean);
      const double se = m1.size() > 1 ? std::sqrt(var / double(m1.size() - 1) / double(m1.size())) : 0.0;
      const double scale = std::max(std::fabs(hi), std::fabs(lo));
      EXPECT_NEAR(mean, slq_mean, 1e-5 * scale) << name;  // ∫tφ = Σ w θ up to the grid's error
      const std::vector<double>& lam = hessian ? ex.hessian->eigenvalues : ex.ggn->eigenvalues;
      const double exact_mean = std::accumulate(lam.begin(), lam.end(), 0.0) / N;
      EXPECT_NEAR(mean, exact_mean, 4 * se + 1e-5 * scale) << name << " (tr(H)/N = " << tr_n << ")";
      if (method == "dense") EXPECT_EQ(se, 0.0);
    }
  }
}

TEST(SpectraValidation, BadInputIsRefusedBeforeAnyWork) {
  Model model = test::mlp(4, {6}, 3, Activation::kTanh, true, 0.2);  // N = 30 + 21 = 51
  AnalysisRequest r = test::random_request(model, 5, Loss::kCrossEntropy, 1);
  r.want = Want{false, false, false, false};
  r.want.hessian_top = true;
  r.spectra.method = "matrix_free";
  auto code_of = [&](const AnalysisRequest& q, std::string* msg) {
    try {
      analyze(q);
    } catch (const Error& e) {
      *msg = e.what();
      return e.code();
    }
    return ErrorCode::kInternal;
  };
  std::string msg;
  AnalysisRequest q = r;
  q.spectra.top_k = 51;
  EXPECT_EQ(code_of(q, &msg), ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("less than N = 51"), std::string::npos) << msg;
  q = r;  // sizes whose sum overflows int64 (the request fuzzer's): refused, not wrapped
  q.spectra.top_k = std::numeric_limits<int64_t>::max();
  q.spectra.bottom_k = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(code_of(q, &msg), ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("each must be less than N = 51"), std::string::npos) << msg;
  q = r;
  q.spectra.top_k = 10;
  q.spectra.lanczos_steps = 12;
  EXPECT_EQ(code_of(q, &msg), ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("lanczos_steps = 12 is too short"), std::string::npos) << msg;
  q = r;
  q.want.hessian_top = false;
  q.want.hessian_trace = true;
  q.spectra.probes = 2;
  EXPECT_EQ(code_of(q, &msg), ErrorCode::kInvalidArgument);
  EXPECT_NE(msg.find("probes"), std::string::npos) << msg;
  q = r;
  q.loss = Loss::kNone;
  q.labels.clear();
  EXPECT_EQ(code_of(q, &msg), ErrorCode::kInvalidArgument);
  q = r;
  q.spectra.tol = -1;
  EXPECT_EQ(code_of(q, &msg), ErrorCode::kInvalidArgument);
  // Memory the restart length would exceed: refused, saying what fits.
  Model big = test::mlp(100, {1000}, 10, Activation::kTanh, true, 0.2);  // N = 111,010
  AnalysisRequest b = test::random_request(big, 2, Loss::kCrossEntropy, 1);
  b.want = r.want;
  b.spectra.method = "matrix_free";
  b.spectra.lanczos_steps = 400;
  b.limits.max_memory_bytes = 400ull << 20;
  EXPECT_EQ(code_of(b, &msg), ErrorCode::kResourceExhausted);
  EXPECT_NE(msg.find("--lanczos-steps"), std::string::npos) << msg;
  EXPECT_NE(msg.find("would fit"), std::string::npos) << msg;
}

}  // namespace
}  // namespace basin

namespace basin {
namespace {

// A = U diag(d) Uᵀ [N × N] with a random orthogonal U (LAPACK QR of a Gaussian matrix).
struct DenseOperator {
  int64_t n;
  std::vector<double> a;
  SymmetricOperator op(int64_t max_block) const {
    SymmetricOperator s;
    s.dim = n;
    s.max_block = max_block;
    s.apply = [this](const double* x, int64_t b, double* y) {
      for (int64_t j = 0; j < b; ++j)
        for (int64_t i = 0; i < n; ++i) {
          double v = 0;
          for (int64_t l = 0; l < n; ++l) v += a[i * n + l] * x[j * n + l];
          y[j * n + i] = v;
        }
    };
    return s;
  }
};
DenseOperator with_spectrum(const std::vector<double>& d, uint64_t seed) {
  const int64_t n = static_cast<int64_t>(d.size());
  std::mt19937_64 rng(seed);
  std::vector<double> u = test::random_vector(static_cast<size_t>(n * n), rng), tau(static_cast<size_t>(n));
  LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, n, n, u.data(), n, tau.data());
  LAPACKE_dorgqr(LAPACK_ROW_MAJOR, n, n, n, u.data(), n, tau.data());
  DenseOperator o{n, std::vector<double>(static_cast<size_t>(n * n), 0.0)};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double v = 0;
      for (int64_t l = 0; l < n; ++l) v += u[i * n + l] * d[l] * u[j * n + l];
      o.a[i * n + j] = v;
    }
  return o;
}

TEST(SpectraLanczosOperator, RepeatedEigenvaluesBeyondTheBlockSize) {
  // 40 exact zeros (a GGN's null space), a cluster of 6 at 0.5 and spread values up to 3.
  std::vector<double> d(40, 0.0);
  for (int i = 0; i < 6; ++i) d.push_back(0.5);
  for (int i = 0; i < 114; ++i) d.push_back(0.6 + 2.4 * i / 113.0);
  const DenseOperator a = with_spectrum(d, 5);
  for (const int64_t block : {2, 3}) {
    LanczosOptions o;
    o.top = 3;
    o.bottom = 10;
    o.block = block;
    o.tol = 1e-10;
    o.seed = 11;
    const LanczosResult r = block_lanczos(a.op(block), o, {});
    ASSERT_EQ(r.bottom.eigenvalues.size(), 10u);
    EXPECT_TRUE(r.bottom.converged) << "block " << block;
    for (int j = 0; j < 10; ++j) {
      EXPECT_NEAR(r.bottom.eigenvalues[j], 0.0, 1e-10 * 3) << "block " << block << " bottom " << j;
      EXPECT_LE(r.bottom.residual_norms[j], 1e-10 * 3) << "block " << block << " bottom " << j;
    }
    EXPECT_TRUE(r.top.converged);
    EXPECT_NEAR(r.top.eigenvalues[0], 3.0, 1e-10 * 3);
  }
}

// The stage lines of the jobs: "lanczos i/M …", "hutch++ i/P", "slq probe(s) …/P step s/M", with
// i counting up by one per product and never past M.
TEST(SpectraProgress, IterationLinesCountUp) {
  std::vector<double> d;
  for (int i = 0; i < 90; ++i) d.push_back(std::sin(0.37 * i) + 0.01 * i);
  const DenseOperator a = with_spectrum(d, 9);
  auto parse = [](const std::string& line, const std::string& head, int64_t* i, int64_t* m) {
    if (line.rfind(head, 0) != 0) return false;
    return std::sscanf(line.c_str() + head.size(), "%ld/%ld", reinterpret_cast<long*>(i), reinterpret_cast<long*>(m)) == 2;
  };
  std::vector<std::pair<int64_t, int64_t>> seen;
  std::vector<std::string> lines;
  auto collect = [&](const std::string& head) {
    return [&, head](int64_t it, int64_t total, const std::string& line) {
      int64_t i = 0, m = 0;
      EXPECT_TRUE(parse(line, head, &i, &m)) << line;
      seen.emplace_back(i, m);
      lines.push_back(line);
      EXPECT_LE(it, total);
    };
  };
  LanczosOptions o;
  o.top = 3;
  o.bottom = 2;
  o.block = 2;
  o.tol = 1e-10;
  const LanczosResult r = block_lanczos(a.op(2), o, collect("lanczos "));
  ASSERT_GT(seen.size(), 3u);
  for (size_t j = 0; j < seen.size(); ++j) {
    EXPECT_EQ(seen[j].first, static_cast<int64_t>(j + 1)) << lines[j];
    EXPECT_LE(seen[j].first, seen[j].second) << lines[j];
  }
  // One line per product of a block (the residuals' included).
  EXPECT_EQ(static_cast<int64_t>(seen.size()), (r.matvecs + 1) / 2);
  seen.clear();
  const TraceResult t = hutch_plus_plus(a.op(4), 21, 3, collect("hutch++ "));
  ASSERT_FALSE(seen.empty());
  for (size_t j = 1; j < seen.size(); ++j) EXPECT_GT(seen[j].first, seen[j - 1].first);
  EXPECT_EQ(seen.back().first, t.matvecs);
  EXPECT_EQ(seen.back().second, 21);
  seen.clear();
  lines.clear();
  slq(a.op(3), 5, 7, 1, [&](int64_t, int64_t, const std::string& line) { lines.push_back(line); });
  ASSERT_EQ(lines.size(), 2u * 7u);  // probes 1-3 then 4-5, 7 steps each
  EXPECT_EQ(lines.front(), "slq probes 1-3/5 step 1/7");
  EXPECT_EQ(lines[7], "slq probes 4-5/5 step 1/7");
  EXPECT_EQ(lines.back(), "slq probes 4-5/5 step 7/7");
}

}  // namespace
}  // namespace basin
