// The per-example Jacobian and its spectrum: G against central finite differences, the
// structured Gram against G Gᵀ, the blockwise normal matrix against GᵀG, singular values of
// all three methods against LAPACK's gesdd on the materialised G, and ranks on networks that
// are rank-deficient by construction.
#include <gtest/gtest.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "test_util.hpp"

namespace basin {
namespace {

using test::max_abs;

std::vector<double> lapack_singular_values(std::vector<double> g, int64_t m, int64_t N) {
  std::vector<double> s(static_cast<size_t>(std::min(m, N)));
  // Row-major m×N is column-major N×m.
  EXPECT_EQ(LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', N, m, g.data(), N, s.data(), nullptr, 1, nullptr, 1), 0);
  return s;
}

using JacobianCase = std::tuple<Activation, bool /*bias*/, int /*hidden layers*/>;
class JacobianFiniteDifference : public ::testing::TestWithParam<JacobianCase> {};

TEST_P(JacobianFiniteDifference, RowsMatchCentralDifferences) {
  const auto [act, bias, depth] = GetParam();
  std::vector<int64_t> hidden(static_cast<size_t>(depth), 5);
  const Model model = test::mlp(3, hidden, 2, act, bias, 0.13);
  AnalysisRequest r = test::random_request(model, 4, Loss::kNone, 7 + depth);
  const int64_t n = r.num_examples, k = model.output_dim(), N = model.num_params();
  const std::vector<double> g = test::materialised_jacobian(r);
  ASSERT_EQ(static_cast<int64_t>(g.size()), n * k * N);
  const double h = 1e-6;
  double worst = 0;
  for (int64_t p = 0; p < N; ++p) {
    std::vector<double> plus = r.params, minus = r.params;
    plus[p] += h;
    minus[p] -= h;
    const std::vector<double> fp = test::forward(model, plus, r.inputs, n), fm = test::forward(model, minus, r.inputs, n);
    for (int64_t row = 0; row < n * k; ++row) {
      const double fd = (fp[row] - fm[row]) / (2 * h);
      worst = std::max(worst, std::fabs(fd - g[row * N + p]) / (1 + std::fabs(fd)));
    }
  }
  // Central differences: O(h²) truncation + O(ε/h) rounding ≈ 1e-10; a wrong entry is O(1).
  EXPECT_LT(worst, 1e-7) << activation_name(act) << " bias=" << bias << " depth=" << depth;
}

INSTANTIATE_TEST_SUITE_P(AllActivations, JacobianFiniteDifference,
                         ::testing::Combine(::testing::ValuesIn(test::kAllActivations), ::testing::Bool(),
                                            ::testing::Values(0, 1, 3)),
                         [](const auto& info) {
                           return std::string(activation_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) ? "_bias" : "_nobias") + "_depth" +
                                  std::to_string(std::get<2>(info.param));
                         });

TEST(StructuredGram, EqualsMaterialisedGGtForEverySeeding) {
  for (const Activation act : {Activation::kTanh, Activation::kGelu, Activation::kRelu}) {
    const Model model = test::mlp(4, {6, 3}, 3, act);
    const AnalysisRequest r = test::random_request(model, 5, Loss::kNone, 11);
    auto be = make_cpu_backend<double>();
    Network<double> net(*be, r.model, r.params, r.inputs, r.num_examples, nullptr);
    net.forward();
    const int64_t n = 5, k = 3, m = n * k, N = model.num_params();
    // A generic seeding (not the identity) exercises the GGN path too.
    std::mt19937_64 rng(3);
    const std::vector<double> seeds = test::random_vector(static_cast<size_t>(m * k), rng);
    const std::vector<double> gram = test::download(*be, net.gram(seeds, k));
    const std::vector<double> g = test::download(*be, net.jacobian(seeds, k));
    for (int64_t a = 0; a < m; ++a) {
      for (int64_t b = 0; b <= a; ++b) {
        double ref = 0;
        for (int64_t p = 0; p < N; ++p) ref += g[a * N + p] * g[b * N + p];
        EXPECT_NEAR(gram[a * m + b], ref, 1e-12 * (1 + std::fabs(ref))) << "(" << a << "," << b << ")";
      }
    }
  }
}

TEST(NormalMatrix, EqualsMaterialisedGtGAcrossBlockSizes) {
  const Model model = test::mlp(3, {4}, 2, Activation::kSilu);
  const AnalysisRequest r = test::random_request(model, 9, Loss::kNone, 5);
  auto be = make_cpu_backend<double>();
  Network<double> net(*be, r.model, r.params, r.inputs, r.num_examples, nullptr);
  net.forward();
  const int64_t n = 9, k = 2, N = model.num_params();
  const std::vector<double> seeds = test::identity_seeds(n, k);
  const std::vector<double> g = test::download(*be, net.jacobian(seeds, k));
  // block_bytes = 1 forces one example per block; 1 GiB puts all in one block.
  for (uint64_t block_bytes : {uint64_t(1), uint64_t(3 * k * N * 8), uint64_t(1) << 30}) {
    const std::vector<double> normal = test::download(*be, net.normal(seeds, k, block_bytes));
    for (int64_t a = 0; a < N; ++a)
      for (int64_t b = 0; b <= a; ++b) {
        double ref = 0;
        for (int64_t row = 0; row < n * k; ++row) ref += g[row * N + a] * g[row * N + b];
        EXPECT_NEAR(normal[a * N + b], ref, 1e-12 * (1 + std::fabs(ref)));
      }
  }
}

class MethodsAgree : public ::testing::TestWithParam<std::tuple<int64_t /*n*/, Method>> {};

TEST_P(MethodsAgree, SingularValuesMatchLapackOnMaterialisedG) {
  const auto [n, method] = GetParam();
  const Model model = test::mlp(4, {7, 5}, 3, Activation::kTanh);  // N = 35 + 40 + 18 = 93
  AnalysisRequest r = test::random_request(model, n, Loss::kNone, 21);
  r.method = method;
  const AnalysisResult res = analyze(r);
  const int64_t m = n * 3, N = model.num_params();
  const std::vector<double> ref = lapack_singular_values(test::materialised_jacobian(r), m, N);
  ASSERT_TRUE(res.jacobian);
  ASSERT_EQ(res.jacobian->singular_values.size(), ref.size());
  const double smax = ref.front();
  for (size_t j = 0; j < ref.size(); ++j) {
    const double got = res.jacobian->singular_values[j];
    if (method == Method::kSvd) {
      EXPECT_NEAR(got, ref[j], 1e-12 * smax) << j;
    } else {
      // The Gram squares σ: its eigenvalues are exact to ~ε·σ_max², so compare σ².
      EXPECT_NEAR(got * got, ref[j] * ref[j], 1e-12 * smax * smax) << j;
    }
  }
  EXPECT_EQ(res.jacobian->method, method_name(method));
  EXPECT_EQ(res.jacobian->level_set_dim, N - res.jacobian->rank);
}

INSTANTIATE_TEST_SUITE_P(WideAndTall, MethodsAgree,
                         ::testing::Combine(::testing::Values<int64_t>(6, 50),
                                            ::testing::Values(Method::kGram, Method::kNormal, Method::kSvd)));

// Numerical rank from LAPACK σ with NumPy's matrix_rank rule.
int64_t reference_rank(const std::vector<double>& s, int64_t m, int64_t N) {
  const double tol = s.front() * double(std::max(m, N)) * 2.220446049250313e-16;
  return std::count_if(s.begin(), s.end(), [&](double v) { return v > tol; });
}

TEST(Rank, LinearBottleneckLowersRankAndAllMethodsAgree) {
  // 4 → 8 → tanh → 2 → 8 (no activation between: W₃W₂ is invariant under W₂ → A W₂,
  // W₃ → W₃ A⁻¹, b₂ → A b₂ for A ∈ GL(2)) → tanh → 3. That symmetry is a 4-dimensional
  // direction set G annihilates for any data, so rank(G) <= N − 4: the behaviour manifold
  // is at least 4-dimensional even with more equations (n·k) than parameters (N = 109).
  Model model;
  model.input_dim = 4;
  model.layers = {Layer::dense(8), Layer::act(Activation::kTanh), Layer::dense(2), Layer::dense(8),
                  Layer::act(Activation::kTanh), Layer::dense(3)};
  const int64_t N = model.num_params();
  ASSERT_EQ(N, 109);
  const int64_t n = 60, m = n * 3;
  AnalysisRequest r = test::random_request(model, n, Loss::kNone, 99);
  const std::vector<double> ref_sigma = lapack_singular_values(test::materialised_jacobian(r), m, N);
  const int64_t ref = reference_rank(ref_sigma, m, N);
  EXPECT_LE(ref, N - 4);
  for (Method method : {Method::kGram, Method::kNormal, Method::kSvd, Method::kAuto}) {
    r.method = method;
    const JacobianSpectrum j = *analyze(r).jacobian;
    EXPECT_EQ(j.rank, ref) << method_name(method);
    EXPECT_EQ(j.level_set_dim, N - ref) << method_name(method);
    ASSERT_TRUE(j.gap.has_value());
    // A structural deficiency is clear-cut: the SVD sees round-off (~1e-16·σ_max) below the
    // cut, the Gram its own floor (~1e-8·σ_max), both far below the smallest true σ.
    EXPECT_GT(*j.gap, j.method == "svd" ? 1e6 : 10.0) << method_name(method);
  }
}

TEST(Rank, AutoDecidesADeficientRankWithTheSvdOfG) {
  // A tanh bottleneck of width 1 gives singular values that decay smoothly towards 1e-13·σ_max.
  // The Gram resolves σ only to ~1e-8·σ_max, so once it sees values below that, auto recomputes
  // with the SVD of G and the rank is NumPy's matrix_rank of G.
  Model model;
  model.input_dim = 4;
  model.layers = {Layer::dense(8), Layer::act(Activation::kTanh), Layer::dense(1), Layer::act(Activation::kTanh),
                  Layer::dense(8), Layer::act(Activation::kTanh), Layer::dense(3)};
  AnalysisRequest r = test::random_request(model, 10, Loss::kNone, 1);
  const int64_t m = 30, N = model.num_params();
  const int64_t ref = reference_rank(lapack_singular_values(test::materialised_jacobian(r), m, N), m, N);
  r.method = Method::kGram;
  const JacobianSpectrum gram = *analyze(r).jacobian;
  ASSERT_LT(gram.rank, m) << "the Gram must see values below its resolution here";
  EXPECT_TRUE(gram.refined_from.empty());
  r.method = Method::kAuto;
  const JacobianSpectrum j = *analyze(r).jacobian;
  EXPECT_EQ(j.refined_from, "gram");
  EXPECT_EQ(j.method, "svd");
  EXPECT_EQ(j.rank, ref);
  // The SVD runs on the G that pass 1 materialised for the Gram (no second Jacobian pass).
  const std::vector<double> ref_sigma = lapack_singular_values(test::materialised_jacobian(r), m, N);
  ASSERT_EQ(j.singular_values.size(), ref_sigma.size());
  for (size_t i = 0; i < ref_sigma.size(); ++i)
    EXPECT_NEAR(j.singular_values[i], ref_sigma[i], 1e-13 * ref_sigma[0]) << "σ_" << i;
  // The same for a cross-entropy GGN's factor G̃ = SᵀG (its own kept G̃), against method svd.
  AnalysisRequest ce = test::random_request(model, 10, Loss::kCrossEntropy, 1);
  ce.want = Want{true, true, false};
  ce.method = Method::kSvd;
  const AnalysisResult svd_ce = analyze(ce);
  ce.method = Method::kAuto;
  const AnalysisResult auto_ce = analyze(ce);
  EXPECT_EQ(auto_ce.ggn->method, "svd");
  EXPECT_EQ(auto_ce.ggn->refined_from, "gram");
  ASSERT_EQ(auto_ce.ggn->eigenvalues.size(), svd_ce.ggn->eigenvalues.size());
  for (size_t i = 0; i < svd_ce.ggn->eigenvalues.size(); ++i)
    EXPECT_NEAR(auto_ce.ggn->eigenvalues[i], svd_ce.ggn->eigenvalues[i], 1e-13 * svd_ce.ggn->eigenvalues[0]) << i;
  EXPECT_EQ(auto_ce.ggn->rank, svd_ce.ggn->rank);
  EXPECT_EQ(auto_ce.jacobian->rank, ref);
  // Over the memory budget the SVD is not attempted and the Gram's answer stands.
  r.limits.max_memory_bytes = 30 * 1024;  // the Gram (~24 KiB) fits, G plus gesdd work (~60 KiB) does not
  const JacobianSpectrum small = *analyze(r).jacobian;
  EXPECT_TRUE(small.refined_from.empty());
  EXPECT_EQ(small.rank, gram.rank);
}

TEST(Rank, AutoKeepsTheGramWhenItResolvesEverything) {
  const Model model = test::mlp(4, {6}, 2, Activation::kTanh);  // N = 44 > n·k = 8
  AnalysisRequest r = test::random_request(model, 4, Loss::kNone, 3);
  const JacobianSpectrum j = *analyze(r).jacobian;
  EXPECT_EQ(j.method, "gram");
  EXPECT_TRUE(j.refined_from.empty());
  EXPECT_EQ(j.rank, 8);
}

TEST(Rank, DeadReluUnitsLowerRank) {
  const Model model = test::mlp(3, {10}, 2, Activation::kRelu);  // N = 30 + 10 + 20 + 2 = 62
  AnalysisRequest alive = test::random_request(model, 30, Loss::kNone, 4);
  AnalysisRequest dead = alive;
  // Biases of hidden units 0..4 (after the 10×3 weight block) very negative: those units never
  // fire, so their weights, biases and outgoing weights drop out of G. G then has exactly the
  // rank of the network made of the 5 live units alone.
  for (int u = 0; u < 5; ++u) dead.params[30 + u] = -100.0;
  AnalysisRequest live_only = alive;
  live_only.model = test::mlp(3, {5}, 2, Activation::kRelu);
  live_only.params.clear();
  for (int u = 5; u < 10; ++u)
    for (int q = 0; q < 3; ++q) live_only.params.push_back(alive.params[u * 3 + q]);
  for (int u = 5; u < 10; ++u) live_only.params.push_back(alive.params[30 + u]);
  for (int c = 0; c < 2; ++c)
    for (int u = 5; u < 10; ++u) live_only.params.push_back(alive.params[40 + c * 10 + u]);
  live_only.params.push_back(alive.params[60]);
  live_only.params.push_back(alive.params[61]);
  for (Method method : {Method::kGram, Method::kSvd}) {
    alive.method = dead.method = live_only.method = method;
    const int64_t r_alive = analyze(alive).jacobian->rank, r_dead = analyze(dead).jacobian->rank;
    EXPECT_LT(r_dead, r_alive) << method_name(method);
    EXPECT_EQ(r_dead, analyze(live_only).jacobian->rank) << method_name(method);
    EXPECT_LE(r_dead, 32);
  }
}

TEST(Precision, Float32AgreesWithFloat64) {
  const Model model = test::mlp(5, {8}, 3, Activation::kGelu);
  AnalysisRequest r = test::random_request(model, 12, Loss::kCrossEntropy, 8);
  r.want = Want{true, true, true};
  const AnalysisResult d = analyze(r);
  r.dtype = DType::kFloat32;
  const AnalysisResult f = analyze(r);
  EXPECT_EQ(f.dtype, "float32");
  for (size_t j = 0; j < 5; ++j) {
    EXPECT_NEAR(f.jacobian->singular_values[j], d.jacobian->singular_values[j], 1e-4 * d.jacobian->singular_values[0]);
    EXPECT_NEAR(f.hessian->eigenvalues[j], d.hessian->eigenvalues[j], 1e-4 * std::fabs(d.hessian->eigenvalues[0]));
  }
  EXPECT_NEAR(*f.loss_value, *d.loss_value, 1e-5 * *d.loss_value);
}

TEST(Gap, ReportsTheRatioAtTheCut) {
  Model model;
  model.input_dim = 3;
  model.layers = {Layer::dense(4), Layer::act(Activation::kTanh), Layer::dense(1), Layer::dense(4)};
  AnalysisRequest r = test::random_request(model, 20, Loss::kNone, 2);
  r.method = Method::kSvd;
  const JacobianSpectrum j = *analyze(r).jacobian;
  ASSERT_LT(j.rank, static_cast<int64_t>(j.singular_values.size()));
  ASSERT_TRUE(j.gap.has_value());
  EXPECT_DOUBLE_EQ(*j.gap, j.singular_values[j.rank - 1] / j.singular_values[j.rank]);
  EXPECT_GT(*j.gap, 1e6);  // a structural rank deficiency is clear-cut
}

}  // namespace
}  // namespace basin

namespace basin {
namespace {

TEST(Rank, GgnRankFollowsTheRefinedJacobianForMse) {
  // MSE: GGN = (2/(n·k))·GᵀG, so rank(GGN) must equal rank(G) however the rank was decided.
  Model model;
  model.input_dim = 4;
  model.layers = {Layer::dense(8), Layer::act(Activation::kTanh), Layer::dense(1), Layer::act(Activation::kTanh),
                  Layer::dense(8), Layer::act(Activation::kTanh), Layer::dense(3)};
  for (Method method : {Method::kAuto, Method::kGram, Method::kSvd}) {
    AnalysisRequest r = test::random_request(model, 10, Loss::kMse, 1);
    r.method = method;
    r.want = Want{true, true, false};
    const AnalysisResult res = analyze(r);
    EXPECT_EQ(res.ggn->rank, res.jacobian->rank) << method_name(method);
  }
}

TEST(Rank, CrossEntropyGgnIsRefinedUnderAutoToo) {
  Model model;
  model.input_dim = 4;
  model.layers = {Layer::dense(8), Layer::act(Activation::kTanh), Layer::dense(1), Layer::act(Activation::kTanh),
                  Layer::dense(8), Layer::act(Activation::kTanh), Layer::dense(3)};
  AnalysisRequest r = test::random_request(model, 10, Loss::kCrossEntropy, 1);
  r.want = Want{false, true, false};
  r.method = Method::kSvd;
  const int64_t svd_rank = analyze(r).ggn->rank;
  r.method = Method::kAuto;
  EXPECT_EQ(analyze(r).ggn->rank, svd_rank);
}

}  // namespace
}  // namespace basin

namespace basin {
namespace {

// TSQR (auto's accuracy path for a tall G that does not fit in memory). The tanh bottleneck of
// AutoDecidesADeficientRankWithTheSvdOfG, now with n·k = 180 > N = 92: the normal matrix GᵀG
// resolves σ only to ~1e-8·σ_max, the bottleneck's values decay far below that.
Model tall_bottleneck_model() {
  Model model;
  model.input_dim = 4;
  model.layers = {Layer::dense(8), Layer::act(Activation::kTanh), Layer::dense(1), Layer::act(Activation::kTanh),
                  Layer::dense(8), Layer::act(Activation::kTanh), Layer::dense(3)};
  return model;
}

TEST(Tsqr, RIsTheTriangularFactorOfGForAnyBlocking) {
  const Model model = tall_bottleneck_model();
  const AnalysisRequest r = test::random_request(model, 60, Loss::kNone, 1);
  const int64_t k = 3, m = 180, N = model.num_params();
  ASSERT_GT(m, N);
  const std::vector<double> g = test::materialised_jacobian(r);
  const std::vector<double> sigma_g = lapack_singular_values(g, m, N);
  auto be = make_cpu_backend<double>();
  Network<double> net(*be, model, r.params, r.inputs, r.num_examples, nullptr);
  net.forward();
  // 1 example (60 blocks), 7 (9 blocks, the last one short), all 60 (one block).
  for (int64_t examples : {1, 7, 60}) {
    const uint64_t block_bytes = static_cast<uint64_t>(examples * k * N) * sizeof(double);
    std::vector<double> stack = test::download(*be, net.tsqr_r(test::identity_seeds(60, k), k, block_bytes));
    ASSERT_EQ(static_cast<int64_t>(stack.size()), (N + examples * k) * N);
    std::vector<double> rr(stack.begin(), stack.begin() + N * N);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < i; ++j) ASSERT_EQ(rr[i * N + j], 0.0) << "R[" << i << ", " << j << "], " << examples;
    // RᵀR = GᵀG (R is unique only up to the signs of its rows).
    double worst = 0;
    for (int64_t a = 0; a < N; ++a)
      for (int64_t c = 0; c <= a; ++c) {
        double rtr = 0, gtg = 0;
        for (int64_t i = 0; i < N; ++i) rtr += rr[i * N + a] * rr[i * N + c];
        for (int64_t i = 0; i < m; ++i) gtg += g[i * N + a] * g[i * N + c];
        worst = std::max(worst, std::fabs(rtr - gtg));
      }
    EXPECT_LT(worst, 1e-13 * sigma_g[0] * sigma_g[0]) << "RᵀR vs GᵀG, block " << examples;
    const std::vector<double> sigma_r = lapack_singular_values(rr, N, N);
    double err = 0;
    for (int64_t j = 0; j < N; ++j) err = std::max(err, std::fabs(sigma_r[j] - sigma_g[j]));
    EXPECT_LT(err, 1e-13 * sigma_g[0]) << "σ(R) vs σ(G), block " << examples;
  }
}

TEST(Rank, AutoDecidesATallDeficientRankWithTsqrWhenGDoesNotFit) {
  const Model model = tall_bottleneck_model();
  // Seed 7: 13 genuine values between GᵀG's resolution and matrix_rank's cut, and the values
  // nearest the cut 3.8× above and 9.9× below it (far from round-off, so the rank is robust).
  AnalysisRequest r = test::random_request(model, 60, Loss::kMse, 7);
  r.want = Want{true, true, false};
  const int64_t m = 180, N = model.num_params();
  const std::vector<double> ref_sigma = lapack_singular_values(test::materialised_jacobian(r), m, N);
  const int64_t ref = reference_rank(ref_sigma, m, N);
  r.method = Method::kNormal;
  const JacobianSpectrum normal = *analyze(r).jacobian;
  ASSERT_LT(normal.rank, ref) << "GᵀG must lose genuine values below its resolution here";
  // Estimates (float64, analysis.cpp): shared buffers 47,776 bytes; normal + 67,712 (GᵀG) +
  // 132,480 (G in one block) = 247,968; svd + 132,480 (G) + 270,848 (gesdd work) = 451,104;
  // TSQR + 67,712 (R) + 48,576 (QR work) + 736 per row of a block. 250 KiB: normal runs, G does
  // not fit, TSQR runs in blocks of 41 examples (123 rows): two blocks, R carried from the first.
  r.method = Method::kAuto;
  r.limits.max_memory_bytes = 250 * 1024;
  const AnalysisResult res = analyze(r);
  const JacobianSpectrum& j = *res.jacobian;
  EXPECT_EQ(j.method, "tsqr");
  EXPECT_EQ(j.refined_from, "normal");
  ASSERT_EQ(j.singular_values.size(), ref_sigma.size());
  for (size_t i = 0; i < ref_sigma.size(); ++i)
    EXPECT_NEAR(j.singular_values[i], ref_sigma[i], 1e-13 * ref_sigma[0]) << "σ_" << i;
  EXPECT_EQ(j.rank, ref);
  EXPECT_EQ(j.level_set_dim, N - ref);
  EXPECT_DOUBLE_EQ(j.tolerance, j.singular_values[0] * double(m) * 2.220446049250313e-16);  // the SVD's rule
  EXPECT_EQ(res.ggn->rank, ref);  // MSE: GGN = (2/(n·k))·GᵀG, ranked with the same values
  // With G in budget, auto refines with the SVD of G instead, to the same rank.
  r.limits = Limits{};
  const JacobianSpectrum svd = *analyze(r).jacobian;
  EXPECT_EQ(svd.method, "svd");
  EXPECT_EQ(svd.refined_from, "normal");
  EXPECT_EQ(svd.rank, ref);
}

}  // namespace
}  // namespace basin
