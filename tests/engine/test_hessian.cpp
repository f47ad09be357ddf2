// Loss, gradient, GGN and the exact Hessian: against finite differences of the loss and of the
// gradient, against an explicitly assembled Gᵀ M G, and the two claims users check with Basin:
// at an interpolating MSE point H = (2/(n·k))·GᵀG exactly; for cross-entropy it is not.
#include <gtest/gtest.h>
#include <lapacke.h>

#include <cmath>

#include "loss.hpp"
#include "test_util.hpp"

namespace basin {
namespace {

double loss_at(const AnalysisRequest& r, const std::vector<double>& params) {
  const std::vector<double> f = test::forward(r.model, params, r.inputs, r.num_examples);
  return loss_terms(r.loss, r.reduction, f, r.num_examples, r.model.output_dim(), r.targets, r.labels).value;
}

// The engine's H = GGN + R as a full matrix (lower triangle of GGN, all of R).
std::vector<double> engine_hessian(const AnalysisRequest& r) {
  auto be = make_cpu_backend<double>();
  Network<double> net(*be, r.model, r.params, r.inputs, r.num_examples, nullptr);
  net.forward();
  const int64_t k = r.model.output_dim(), N = r.model.num_params();
  const LossTerms t = loss_terms(r.loss, r.reduction, net.outputs(), r.num_examples, k, r.targets, r.labels);
  net.gradient(t.dloss_df, true);
  const std::vector<double> ggn = test::download(*be, net.normal(t.factor_seeds, t.factor_cols, 1 << 20));
  const std::vector<double> res = test::download(*be, net.residual_hessian(1 << 12));  // small blocks: many R-op passes
  std::vector<double> h(static_cast<size_t>(N * N));
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j) h[i * N + j] = ggn[std::max(i, j) * N + std::min(i, j)] + res[i * N + j];
  return h;
}

std::vector<double> eigenvalues_desc(std::vector<double> a, int64_t n) {
  std::vector<double> w(static_cast<size_t>(n));
  EXPECT_EQ(LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'L', n, a.data(), n, w.data()), 0);
  std::reverse(w.begin(), w.end());
  return w;
}

using HessianCase = std::tuple<Activation, Loss, Reduction>;
class HessianFiniteDifference : public ::testing::TestWithParam<HessianCase> {};

TEST_P(HessianFiniteDifference, MatchesDifferencesOfTheGradient) {
  const auto [act, loss, reduction] = GetParam();
  Model model = test::mlp(3, {4, 3}, 3, act, true, 0.2);
  model.layers[2].bias = false;  // one bias-free layer in the middle
  AnalysisRequest r = test::random_request(model, 5, loss, 17);
  r.reduction = reduction;
  const int64_t N = model.num_params();
  const std::vector<double> h = engine_hessian(r);
  const double step = 1e-5;
  double worst = 0, scale = test::max_abs(h);
  for (int64_t p = 0; p < N; ++p) {
    std::vector<double> plus = r.params, minus = r.params;
    plus[p] += step;
    minus[p] -= step;
    const std::vector<double> gp = test::gradient_at(r, plus), gm = test::gradient_at(r, minus);
    for (int64_t q = 0; q < N; ++q) worst = std::max(worst, std::fabs((gp[q] - gm[q]) / (2 * step) - h[q * N + p]));
  }
  EXPECT_LT(worst, 1e-7 * (1 + scale)) << activation_name(act) << " " << loss_name(loss);
  // Symmetry of the assembled R-op rows.
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < i; ++j) ASSERT_NEAR(h[i * N + j], h[j * N + i], 1e-12 * (1 + scale));
}

INSTANTIATE_TEST_SUITE_P(
    SmoothActivations, HessianFiniteDifference,
    ::testing::Combine(::testing::Values(Activation::kTanh, Activation::kSigmoid, Activation::kGelu,
                                         Activation::kSoftplus, Activation::kSilu, Activation::kLeakyRelu,
                                         Activation::kIdentity),
                       ::testing::Values(Loss::kMse, Loss::kCrossEntropy),
                       ::testing::Values(Reduction::kMean, Reduction::kSum)),
    [](const auto& info) {
      return std::string(activation_name(std::get<0>(info.param))) + "_" + loss_name(std::get<1>(info.param)) + "_" +
             reduction_name(std::get<2>(info.param));
    });

TEST(Gradient, MatchesDifferencesOfTheLossAndIsReported) {
  for (Loss loss : {Loss::kMse, Loss::kCrossEntropy}) {
    const Model model = test::mlp(4, {5}, 3, Activation::kTanh);
    AnalysisRequest r = test::random_request(model, 6, loss, 3);
    const std::vector<double> g = test::gradient_at(r, r.params);
    double sq = 0;
    for (size_t p = 0; p < g.size(); ++p) {
      std::vector<double> plus = r.params, minus = r.params;
      plus[p] += 1e-6;
      minus[p] -= 1e-6;
      EXPECT_NEAR(g[p], (loss_at(r, plus) - loss_at(r, minus)) / 2e-6, 1e-8);
      sq += g[p] * g[p];
    }
    const AnalysisResult res = analyze(r);
    EXPECT_NEAR(*res.grad_norm, std::sqrt(sq), 1e-14);
    EXPECT_NEAR(*res.loss_value, loss_at(r, r.params), 1e-15);
  }
}

TEST(Hessian, EngineEigenvaluesMatchLapackOnAssembledMatrix) {
  const Model model = test::mlp(3, {5}, 2, Activation::kGelu);
  AnalysisRequest r = test::random_request(model, 7, Loss::kCrossEntropy, 12);
  r.want = Want{false, false, true};
  const AnalysisResult res = analyze(r);
  const int64_t N = model.num_params();
  const std::vector<double> ref = eigenvalues_desc(engine_hessian(r), N);
  ASSERT_EQ(res.hessian->eigenvalues.size(), ref.size());
  for (int64_t j = 0; j < N; ++j) EXPECT_NEAR(res.hessian->eigenvalues[j], ref[j], 1e-12 * std::fabs(ref[0]));
}

TEST(Ggn, EigenvaluesMatchExplicitGtMG) {
  // Cross-entropy: M_i = (diag p_i − p_i p_iᵀ)/n built here from softmax, independent of the
  // engine's factorisation M_i = S_i S_iᵀ.
  const Model model = test::mlp(3, {6}, 4, Activation::kSilu);
  for (const int64_t n : {3, 30}) {  // gram (n·k < N) and normal (n·k > N)
    AnalysisRequest r = test::random_request(model, n, Loss::kCrossEntropy, 31);
    r.want = Want{false, true, false};
    const AnalysisResult res = analyze(r);
    const int64_t k = 4, N = model.num_params(), m = n * k;
    const std::vector<double> ggn = test::explicit_cross_entropy_ggn(r);
    const std::vector<double> ref = eigenvalues_desc(ggn, N);
    ASSERT_EQ(res.ggn->eigenvalues.size(), static_cast<size_t>(std::min(m, N)));
    for (size_t j = 0; j < res.ggn->eigenvalues.size(); ++j)
      EXPECT_NEAR(res.ggn->eigenvalues[j], ref[j], 1e-12 * ref[0]) << "n=" << n << " j=" << j;
    // Cross-entropy's M_i has rank k − 1, so rank(GGN) <= n·(k − 1).
    EXPECT_LE(res.ggn->rank, n * (k - 1));
  }
}

TEST(Hessian, AtAnInterpolatingMseMinimumEqualsScaledGtG) {
  const Model model = test::mlp(3, {6}, 2, Activation::kTanh);  // N = 24 + 14 = 38
  for (const int64_t n : {4, 30}) {
    AnalysisRequest r = test::random_request(model, n, Loss::kMse, 5);
    r.targets = test::forward(model, r.params, r.inputs, n);  // Y = f(X): residuals vanish
    r.want = Want{true, true, true};
    const AnalysisResult res = analyze(r);
    const int64_t m = n * 2, N = model.num_params();
    const double c = 2.0 / double(m);
    EXPECT_LT(res.hessian->residual_rel, 1e-12) << "n=" << n;
    EXPECT_EQ(*res.loss_value, 0.0);
    std::vector<double> predicted(static_cast<size_t>(N), 0.0);
    for (size_t j = 0; j < res.jacobian->singular_values.size(); ++j)
      predicted[j] = c * res.jacobian->singular_values[j] * res.jacobian->singular_values[j];
    const double top = predicted[0];
    for (int64_t j = 0; j < N; ++j) EXPECT_NEAR(res.hessian->eigenvalues[j], predicted[j], 1e-11 * top) << "n=" << n << " j=" << j;
    EXPECT_EQ(res.hessian->rank, res.jacobian->rank) << "n=" << n;
    // Away from the minimum the residual term appears.
    for (double& y : r.targets) y += 0.5;
    EXPECT_GT(analyze(r).hessian->residual_rel, 1e-3);
  }
}

TEST(Hessian, CrossEntropyIsNotProportionalToGtG) {
  const Model model = test::mlp(3, {5}, 3, Activation::kGelu);
  AnalysisRequest r = test::random_request(model, 8, Loss::kCrossEntropy, 6);
  r.want = Want{true, true, true};
  const AnalysisResult res = analyze(r);
  EXPECT_GT(res.hessian->residual_rel, 1e-2);
  EXPECT_GT(test::max_abs(res.hessian->residual_eigenvalues), 1e-4);
}

TEST(Control, CancelFlagStopsTheAnalysis) {
  const Model model = test::mlp(3, {5}, 2, Activation::kTanh);
  AnalysisRequest r = test::random_request(model, 8, Loss::kMse, 1);
  std::atomic<bool> cancel{true};
  RunControl control;
  control.cancel = &cancel;
  try {
    analyze(r, control);
    FAIL() << "expected cancellation";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
}

TEST(Control, ProgressVisitsStagesInOrder) {
  const Model model = test::mlp(3, {5}, 2, Activation::kTanh);
  AnalysisRequest r = test::random_request(model, 8, Loss::kMse, 1);
  r.want = Want{true, true, true};
  std::vector<Stage> stages;
  RunControl control;
  control.on_progress = [&](Stage s, double) { stages.push_back(s); };
  analyze(r, control);
  ASSERT_GE(stages.size(), 4u);
  EXPECT_EQ(stages.front(), Stage::kValidate);
  EXPECT_EQ(stages.back(), Stage::kDone);
  EXPECT_NE(std::find(stages.begin(), stages.end(), Stage::kHessian), stages.end());
}

}  // namespace
}  // namespace basin
