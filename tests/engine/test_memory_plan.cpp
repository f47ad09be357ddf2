// The memory planner on its own (kernels/src/memory_plan.hpp): which method auto picks, the host
// limit validate_request enforces with the estimate, and the device plan -- whole, tiled or
// refused -- for the free memory a backend reports. No backend and no analysis: the planner is
// a pure function of the request's sizes, so every expectation is derived from the estimates
// themselves rather than from hard-coded byte counts.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <string>

#include "memory_plan.hpp"
#include "request_validation.hpp"
#include "test_util.hpp"

namespace basin {
namespace {

// N = 16·40 + 40 + 40·3 + 3 = 803 parameters, k = 3 outputs: n·k = 3n.
AnalysisRequest request(int64_t n) {
  AnalysisRequest r = test::random_request(test::mlp(16, {40}, 3, Activation::kTanh), n, Loss::kMse, 7);
  r.want = Want{true, true, false};
  return r;
}

BackendInfo device_with_free(double free_bytes) {
  BackendInfo info;
  info.name = "cuda";
  info.device_name = "Test GPU 1";
  info.memory_free_bytes = static_cast<uint64_t>(free_bytes);
  info.memory_total_bytes = 2 * info.memory_free_bytes;
  return info;
}

// Free memory whose 90 % (the planner's budget) is `budget`.
double free_for_budget(double budget) { return std::ceil(budget / 0.9); }

std::string error_of(const AnalysisRequest& r, const BackendInfo& info, ErrorCode* code) {
  try {
    plan_memory(r, info);
  } catch (const Error& e) {
    *code = e.code();
    return e.what();
  }
  return "";
}

TEST(MemoryPlan, AutoWorksOnTheSmallSide) {
  EXPECT_EQ(request(200).model.num_params(), 803);
  EXPECT_EQ(resolve_method(request(200)), Method::kGram);    // n·k = 600 <= N
  EXPECT_EQ(resolve_method(request(300)), Method::kNormal);  // n·k = 900 > N
  // The boundary n·k = N goes to the Gram: N = 2·2 + 2 + 2·2 + 2 = 12, k = 2.
  AnalysisRequest square = test::random_request(test::mlp(2, {2}, 2, Activation::kTanh), 6, Loss::kMse, 1);
  ASSERT_EQ(square.model.num_params(), 12);
  EXPECT_EQ(resolve_method(square), Method::kGram);
  square.num_examples = 7;
  EXPECT_EQ(resolve_method(square), Method::kNormal);
  // A method the request names is kept.
  AnalysisRequest svd = request(200);
  svd.method = Method::kSvd;
  EXPECT_EQ(resolve_method(svd), Method::kSvd);
  svd.method = Method::kNormal;
  EXPECT_EQ(resolve_method(svd), Method::kNormal);
}

TEST(MemoryPlan, EstimatesScaleWithTheProblem) {
  const AnalysisRequest r = request(200);
  // Every term of a Gram estimate is a count of elements: float32 is exactly half of float64.
  AnalysisRequest single = r;
  single.dtype = DType::kFloat32;
  EXPECT_DOUBLE_EQ(estimate_bytes(r, Method::kGram), 2 * estimate_bytes(single, Method::kGram));
  // More examples never need less; a tile smaller than n·k needs less than the whole square.
  EXPECT_LT(estimate_bytes(request(100), Method::kGram), estimate_bytes(r, Method::kGram));
  EXPECT_LT(estimate_bytes(r, Method::kGram, 64), estimate_bytes(r, Method::kGram));
  EXPECT_DOUBLE_EQ(estimate_bytes(r, Method::kGram, 600), estimate_bytes(r, Method::kGram));
  // The device adds eigen-solver workspace on top of the host estimate, and for the SVD of a
  // tall G (n·k > N) its transposed copy; a wide G's SVD needs nothing more.
  for (Method m : {Method::kGram, Method::kNormal})
    EXPECT_GT(device_estimate_bytes(r, m), estimate_bytes(r, m)) << method_name(m);
  EXPECT_DOUBLE_EQ(device_estimate_bytes(r, Method::kSvd), estimate_bytes(r, Method::kSvd));
  const AnalysisRequest tall = request(300);
  EXPECT_GE(device_estimate_bytes(tall, Method::kSvd) - estimate_bytes(tall, Method::kSvd), 8.0 * 900 * 803);
  // Returning G adds G itself.
  AnalysisRequest with_g = r;
  with_g.return_jacobian = true;
  EXPECT_DOUBLE_EQ(base_bytes(with_g) - base_bytes(r), 8.0 * 600 * 803);
}

TEST(MemoryPlan, HostLimitRefusesOverTheEstimateAndNamesTheLimit) {
  AnalysisRequest r = request(200);
  const double need = estimate_bytes(r, resolve_method(r));
  r.limits.max_memory_bytes = static_cast<uint64_t>(std::ceil(need));
  EXPECT_NO_THROW(validate_request(r));
  r.limits.max_memory_bytes = static_cast<uint64_t>(std::floor(need)) - 1;
  try {
    validate_request(r);
    FAIL() << "expected a memory refusal under a limit of " << r.limits.max_memory_bytes << " bytes";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted) << e.what();
    const std::string what = e.what();
    EXPECT_NE(what.find("over the limit of " + human_bytes(double(r.limits.max_memory_bytes))), std::string::npos)
        << what;
    EXPECT_NE(what.find("method gram"), std::string::npos) << what;
    EXPECT_NE(what.find("needs about " + human_bytes(need)), std::string::npos) << what;
  }
}

TEST(MemoryPlan, HostBackendsAreNotPlanned) {
  const AnalysisRequest r = request(300);
  BackendInfo cpu;
  cpu.name = "cpu";
  const MemoryPlan plan = plan_memory(r, cpu);  // memory_free_bytes = 0
  EXPECT_EQ(plan.method, Method::kNormal);
  EXPECT_EQ(plan.gram_tile_rows, 0);
  EXPECT_EQ(plan.device_budget, 0);
}

TEST(MemoryPlan, AWholeFitIsNotTiled) {
  const AnalysisRequest r = request(200);
  const double free = free_for_budget(device_estimate_bytes(r, Method::kGram));
  const MemoryPlan plan = plan_memory(r, device_with_free(free));
  EXPECT_EQ(plan.method, Method::kGram);
  EXPECT_EQ(plan.gram_tile_rows, 0);
  EXPECT_DOUBLE_EQ(plan.device_budget, 0.9 * double(static_cast<uint64_t>(free)));
}

TEST(MemoryPlan, TileRowsShrinkWithTheBudgetAndAreTheLargestThatFit) {
  const AnalysisRequest r = request(200);
  const int64_t m = 600;
  const double whole = device_estimate_bytes(r, Method::kGram);
  const double smallest = device_estimate_bytes(r, Method::kGram, kMinGramTileRows);
  ASSERT_LT(smallest, whole);
  int64_t previous = m;
  for (double f : {0.9, 0.6, 0.3, 0.05}) {
    const double free = free_for_budget(smallest + f * (whole - smallest));
    const MemoryPlan plan = plan_memory(r, device_with_free(free));
    const int64_t tile = plan.gram_tile_rows;
    EXPECT_EQ(plan.method, Method::kGram);
    EXPECT_GE(tile, kMinGramTileRows) << f;
    EXPECT_LT(tile, previous) << "a smaller budget must give a smaller tile (" << f << ")";
    EXPECT_LE(device_estimate_bytes(r, Method::kGram, tile), plan.device_budget) << f;
    EXPECT_GT(device_estimate_bytes(r, Method::kGram, tile + 1), plan.device_budget) << "not the largest (" << f << ")";
    EXPECT_EQ(largest_gram_tile(r, plan.device_budget), tile);
    previous = tile;
  }
}

TEST(MemoryPlan, NothingFitsSaysWhatIsFreeAndWhatWouldFitAndItDoes) {
  AnalysisRequest r = request(200);
  const double free = free_for_budget(device_estimate_bytes(r, Method::kGram, kMinGramTileRows)) * 0.7;
  const BackendInfo info = device_with_free(free);
  ErrorCode code = ErrorCode::kInternal;
  const std::string what = error_of(r, info, &code);
  ASSERT_FALSE(what.empty()) << "expected a refusal with " << free << " bytes free";
  EXPECT_EQ(code, ErrorCode::kResourceExhausted);
  EXPECT_NE(what.find("Test GPU 1"), std::string::npos) << what;
  EXPECT_NE(what.find(human_bytes(double(info.memory_free_bytes)) + " free"), std::string::npos) << what;
  EXPECT_NE(what.find("n·k = 600, N = 803"), std::string::npos) << what;
  EXPECT_NE(what.find("--dtype float32"), std::string::npos) << what;
  EXPECT_EQ(what.find("drop hessian"), std::string::npos) << what;
  std::smatch match;
  ASSERT_TRUE(std::regex_search(what, match, std::regex("at most n = ([0-9]+) examples would fit"))) << what;
  const int64_t n_fit = std::stoll(match[1]);
  ASSERT_GT(n_fit, 0);
  ASSERT_LT(n_fit, 200);
  r.num_examples = n_fit;
  EXPECT_NO_THROW(plan_memory(r, info)) << "n = " << n_fit << " was said to fit";
  r.num_examples = n_fit + 1;
  EXPECT_FALSE(error_of(r, info, &code).empty()) << "n = " << n_fit + 1 << " fits too: not the largest";
}

TEST(MemoryPlan, AHessianThatCannotFitSaysToDropIt) {
  AnalysisRequest r = request(200);
  r.want.hessian = true;
  r.dtype = DType::kFloat32;
  const BackendInfo info = device_with_free(free_for_budget(0.5 * device_estimate_bytes(r, Method::kGram, 1)));
  ErrorCode code = ErrorCode::kInternal;
  const std::string what = error_of(r, info, &code);
  EXPECT_EQ(code, ErrorCode::kResourceExhausted) << what;
  EXPECT_NE(what.find("drop hessian"), std::string::npos) << what;
  EXPECT_EQ(what.find("--dtype float32"), std::string::npos) << "already float32: " << what;
}

TEST(MemoryPlan, TsqrBlocksFitTheHostAndTheDeviceBudgets) {
  const AnalysisRequest r = request(300);  // tall: n·k = 900 > N = 803
  const int64_t k = 3;
  EXPECT_EQ(tsqr_block_examples(r, tsqr_estimate_bytes(r, 5 * k, false), 0), 5);
  EXPECT_EQ(tsqr_block_examples(r, tsqr_estimate_bytes(r, 5 * k, false) - 1, 0), 4);
  EXPECT_EQ(tsqr_block_examples(r, 1e18, tsqr_estimate_bytes(r, 3 * k, true)), 3);
  EXPECT_EQ(tsqr_block_examples(r, tsqr_estimate_bytes(r, k, false) - 1, 0), 0);
  // Unbounded, a block is capped by the request's examples.
  EXPECT_EQ(tsqr_block_examples(r, 1e18, 0), 300);
}

}  // namespace
}  // namespace basin
