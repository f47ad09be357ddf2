// analyze_checkpoints: several parameter vectors of one architecture on the same data. The
// batch path shares one backend, one upload of the data and (for small problems) one batched
// eigen-solve; every result must equal the analysis of that checkpoint alone.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace basin {
namespace {

std::vector<std::vector<double>> perturbed_checkpoints(const std::vector<double>& base, size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<double>> out(count, base);
  for (size_t b = 1; b < count; ++b) {
    const std::vector<double> step = test::random_vector(base.size(), rng, 0.2);
    for (size_t j = 0; j < base.size(); ++j) out[b][j] += step[j];
  }
  return out;
}

void expect_values(const std::vector<double>& expected, const std::vector<double>& actual, const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  const double scale = std::max(test::max_abs(expected), 1e-300);
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(expected[i], actual[i], 1e-12 * scale) << what << " [" << i << "]";
}

void expect_same_result(const AnalysisResult& one, const AnalysisResult& batch, const std::string& what) {
  expect_values(one.outputs, batch.outputs, what + " outputs");
  ASSERT_EQ(one.loss_value.has_value(), batch.loss_value.has_value()) << what;
  if (one.loss_value) {
    EXPECT_NEAR(*one.loss_value, *batch.loss_value, 1e-12 * std::fabs(*one.loss_value)) << what;
    EXPECT_NEAR(*one.grad_norm, *batch.grad_norm, 1e-12 * *one.grad_norm) << what;
  }
  ASSERT_EQ(one.jacobian.has_value(), batch.jacobian.has_value()) << what;
  if (one.jacobian) {
    expect_values(one.jacobian->singular_values, batch.jacobian->singular_values, what + " σ(G)");
    EXPECT_EQ(one.jacobian->rank, batch.jacobian->rank) << what;
    EXPECT_EQ(one.jacobian->method, batch.jacobian->method) << what;
    EXPECT_EQ(one.jacobian->refined_from, batch.jacobian->refined_from) << what;
    EXPECT_DOUBLE_EQ(one.jacobian->tolerance, batch.jacobian->tolerance) << what;
  }
  ASSERT_EQ(one.ggn.has_value(), batch.ggn.has_value()) << what;
  if (one.ggn) {
    expect_values(one.ggn->eigenvalues, batch.ggn->eigenvalues, what + " GGN");
    EXPECT_EQ(one.ggn->rank, batch.ggn->rank) << what;
  }
  ASSERT_EQ(one.hessian.has_value(), batch.hessian.has_value()) << what;
  if (one.hessian) {
    expect_values(one.hessian->eigenvalues, batch.hessian->eigenvalues, what + " H");
    expect_values(one.hessian->residual_eigenvalues, batch.hessian->residual_eigenvalues, what + " H - GGN");
    EXPECT_NEAR(one.hessian->residual_rel, batch.hessian->residual_rel, 1e-12) << what;
  }
}

TEST(Checkpoints, EachResultEqualsItsOwnAnalysis) {
  const Model model = test::mlp(3, {6, 5}, 3, Activation::kTanh);  // N = 92
  for (Loss loss : {Loss::kMse, Loss::kCrossEntropy}) {
    for (Method method : {Method::kAuto, Method::kGram, Method::kNormal, Method::kSvd}) {
      for (int64_t n : {int64_t(6), int64_t(40)}) {  // n·k = 18 < N and 120 > N
        AnalysisRequest r = test::random_request(model, n, loss, 11 + n);
        r.want = Want{true, true, n == 6};
        r.method = method;
        const std::vector<std::vector<double>> checkpoints = perturbed_checkpoints(r.params, 5, 3);
        const std::vector<AnalysisResult> batch = analyze_checkpoints(r, checkpoints);
        ASSERT_EQ(batch.size(), checkpoints.size());
        const size_t count = static_cast<size_t>(std::min(n * 3, model.num_params()));
        for (size_t b = 0; b < checkpoints.size(); ++b) {
          EXPECT_EQ(batch[b].jacobian->singular_values.size(), count) << "min(n·k, N) singular values";
          EXPECT_EQ(batch[b].ggn->eigenvalues.size(), count) << "min(n·k, N) GGN eigenvalues";
          r.params = checkpoints[b];
          expect_same_result(analyze(r), batch[b],
                             std::string(loss_name(loss)) + " " + method_name(method) + " n=" + std::to_string(n) +
                                 " checkpoint " + std::to_string(b));
        }
      }
    }
  }
}

TEST(Checkpoints, OnlyTheRankDeficientCheckpointIsRefinedWithTheSvd) {
  // ReLU units with bias −100 are dead for every example: checkpoint 1 has rank k (only the
  // output bias moves the outputs), which the Gram cannot resolve, so auto redoes it by SVD.
  const Model model = test::mlp(3, {6}, 2, Activation::kRelu);  // N = 4·6 + 7·2 = 38
  AnalysisRequest r = test::random_request(model, 4, Loss::kMse, 5);
  r.want = Want{true, true, false};
  std::vector<std::vector<double>> checkpoints = perturbed_checkpoints(r.params, 3, 9);
  for (int64_t u = 0; u < 6; ++u) checkpoints[1][18 + u] = -100.0;  // hidden biases follow the 6×3 weights
  const std::vector<AnalysisResult> batch = analyze_checkpoints(r, checkpoints);
  EXPECT_EQ(batch[1].jacobian->rank, 2);
  EXPECT_EQ(batch[1].jacobian->method, "svd");
  EXPECT_EQ(batch[1].jacobian->refined_from, "gram");
  EXPECT_EQ(batch[0].jacobian->method, "gram");
  EXPECT_EQ(batch[2].jacobian->method, "gram");
  for (size_t b = 0; b < checkpoints.size(); ++b) {
    r.params = checkpoints[b];
    expect_same_result(analyze(r), batch[b], "checkpoint " + std::to_string(b));
  }
}

TEST(Checkpoints, BadCheckpointIsNamedByIndex) {
  const Model model = test::mlp(2, {3}, 2, Activation::kTanh);
  const AnalysisRequest r = test::random_request(model, 4, Loss::kMse, 1);
  auto message_of = [&](const std::vector<std::vector<double>>& checkpoints) {
    try {
      analyze_checkpoints(r, checkpoints);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      return std::string(e.what());
    }
    ADD_FAILURE() << "accepted";
    return std::string();
  };
  std::vector<std::vector<double>> checkpoints(3, r.params);
  checkpoints[2].pop_back();
  EXPECT_NE(message_of(checkpoints).find("params[2]: got 16 values, expected 17"), std::string::npos)
      << message_of(checkpoints);
  checkpoints[2] = r.params;
  checkpoints[1][4] = std::nan("");
  EXPECT_NE(message_of(checkpoints).find("params[1]: value at [4] is NaN"), std::string::npos) << message_of(checkpoints);
  EXPECT_NE(message_of({}).find("no checkpoints"), std::string::npos);
}

TEST(Checkpoints, ProgressRunsOnceOverTheBatchAndCancelStopsIt) {
  const Model model = test::mlp(3, {5}, 2, Activation::kTanh);
  AnalysisRequest r = test::random_request(model, 8, Loss::kMse, 1);
  r.want = Want{true, true, true};
  const std::vector<std::vector<double>> checkpoints = perturbed_checkpoints(r.params, 4, 2);
  std::vector<std::pair<Stage, double>> seen;
  RunControl control;
  control.on_progress = [&](Stage s, double f) { seen.emplace_back(s, f); };
  analyze_checkpoints(r, checkpoints, control);
  ASSERT_GE(seen.size(), 8u);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i].second, seen[i - 1].second) << "step " << i;
  EXPECT_EQ(seen.back().first, Stage::kDone);
  EXPECT_EQ(seen.back().second, 1.0);
  EXPECT_EQ(std::count_if(seen.begin(), seen.end(), [](auto& p) { return p.first == Stage::kDone; }), 1);
  // Cancel once half the batch is done: the engine stops at its next step boundary.
  std::atomic<bool> cancel{false};
  double last = 0;
  control.cancel = &cancel;
  control.on_progress = [&](Stage, double f) {
    last = f;
    if (f >= 0.5) cancel = true;
  };
  try {
    analyze_checkpoints(r, checkpoints, control);
    FAIL() << "expected cancellation";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
  EXPECT_LT(last, 1.0);
}

}  // namespace
}  // namespace basin
