// The engine's memory plan against a device that really runs out of memory: the host emulation
// of the CUDA backend with BASIN_EMULATED_FREE_BYTES set reports that much free memory and fails
// any allocation beyond it (emulated_cuda_backend.hpp). Linked into basin_gpu_parity_emulated,
// whose make_cuda_backend returns the emulation.
//
// What must hold (issue: "a memory plan before launching"):
//   * a request whose Gram does not fit whole is run with the Gram tiled over row blocks, within
//     the free memory, with the same spectrum as the CPU;
//   * when nothing fits, a kResourceExhausted error before any work that says how much was
//     needed, what is free, and what would fit -- and what it says would fit does fit.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "basin/analysis.hpp"
#include "basin/error.hpp"
#include "emulated_cuda_backend.hpp"

namespace basin {
namespace {

// Sets BASIN_EMULATED_FREE_BYTES for the scope.
class FreeDeviceMemory {
 public:
  explicit FreeDeviceMemory(size_t bytes) { setenv("BASIN_EMULATED_FREE_BYTES", std::to_string(bytes).c_str(), 1); }
  ~FreeDeviceMemory() { unsetenv("BASIN_EMULATED_FREE_BYTES"); }
};

AnalysisRequest wide_request(int64_t n) {
  // N = 16·40 + 40 + 40·3 + 3 = 803 parameters, n·k = 3n rows: the Gram is the small side.
  AnalysisRequest r;
  r.model.input_dim = 16;
  r.model.layers = {Layer::dense(40), Layer::act(Activation::kTanh), Layer::dense(3)};
  std::mt19937_64 rng(41);
  std::normal_distribution<double> normal(0.0, 1.0);
  r.params.resize(static_cast<size_t>(r.model.num_params()));
  for (double& p : r.params) p = 0.3 * normal(rng);
  r.num_examples = n;
  r.inputs.resize(static_cast<size_t>(n * 16));
  for (double& x : r.inputs) x = normal(rng);
  r.loss = Loss::kMse;
  r.targets.resize(static_cast<size_t>(n * 3));
  for (double& y : r.targets) y = normal(rng);
  r.want = Want{true, true, false};
  r.method = Method::kGram;
  return r;
}

void expect_same_spectrum(const AnalysisResult& cpu, const AnalysisResult& dev, const std::string& what) {
  ASSERT_TRUE(cpu.jacobian && dev.jacobian) << what;
  const std::vector<double>& a = cpu.jacobian->singular_values;
  const std::vector<double>& b = dev.jacobian->singular_values;
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i] * a[i], b[i] * b[i], 1e-10 * a[0] * a[0]) << what << " σ" << i;
  EXPECT_EQ(cpu.jacobian->rank, dev.jacobian->rank) << what;
  ASSERT_TRUE(cpu.ggn && dev.ggn) << what;
  for (size_t i = 0; i < cpu.ggn->eigenvalues.size(); ++i)
    EXPECT_NEAR(cpu.ggn->eigenvalues[i], dev.ggn->eigenvalues[i], 1e-10 * cpu.ggn->eigenvalues[0]) << what;
}

TEST(MemoryPlan, GramIsTiledWhenTheWholeSquareDoesNotFit) {
  AnalysisRequest r = wide_request(200);  // n·k = 600: Δ Δᵀ whole is 600² doubles = 2.9 MB
  r.device = Device::kCpu;
  const AnalysisResult cpu = analyze(r);
  r.device = Device::kCuda;
  test::EmulatedMemory::reset();
  const AnalysisResult untiled = analyze(r);
  const size_t untiled_peak = test::EmulatedMemory::peak;
  expect_same_spectrum(cpu, untiled, "untiled");
  // Free memory well below what the untiled Gram used: the plan must tile, and stay within it.
  for (double fraction : {0.85, 0.75}) {
    const size_t free_bytes = static_cast<size_t>(fraction * double(untiled_peak));
    FreeDeviceMemory limit(free_bytes);
    test::EmulatedMemory::reset();
    AnalysisResult tiled;
    ASSERT_NO_THROW(tiled = analyze(r)) << "free " << free_bytes << " of the untiled peak " << untiled_peak;
    EXPECT_LE(test::EmulatedMemory::peak, free_bytes);
    EXPECT_EQ(tiled.jacobian->method, "gram");
    expect_same_spectrum(cpu, tiled, "tiled at " + std::to_string(fraction) + " of the untiled peak");
  }
}

TEST(MemoryPlan, NothingFitsSaysWhatWasNeededWhatIsFreeAndWhatWouldFit) {
  AnalysisRequest r = wide_request(200);
  r.device = Device::kCuda;
  const size_t free_bytes = 400 * 1024;  // the Gram square alone is 2.9 MB
  FreeDeviceMemory limit(free_bytes);
  test::EmulatedMemory::reset();
  std::string message;
  try {
    analyze(r);
    FAIL() << "expected kResourceExhausted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted) << e.what();
    message = e.what();
  }
  EXPECT_NE(message.find("needs about"), std::string::npos) << message;
  EXPECT_NE(message.find("free of"), std::string::npos) << message;
  EXPECT_NE(message.find("n·k = 600"), std::string::npos) << message;
  EXPECT_EQ(test::EmulatedMemory::peak, 0u) << "refused before allocating anything";
  std::smatch match;
  ASSERT_TRUE(std::regex_search(message, match, std::regex("at most n = ([0-9]+) examples would fit"))) << message;
  const int64_t n_fit = std::stoll(match[1]);
  EXPECT_GT(n_fit, 0);
  EXPECT_LT(n_fit, 200);
  // What it says would fit does fit, and one example more does not.
  AnalysisRequest smaller = wide_request(n_fit);
  smaller.device = Device::kCuda;
  test::EmulatedMemory::reset();
  EXPECT_NO_THROW(analyze(smaller)) << message;
  EXPECT_LE(test::EmulatedMemory::peak, free_bytes);
  AnalysisRequest one_more = wide_request(n_fit + 1);
  one_more.device = Device::kCuda;
  EXPECT_THROW(analyze(one_more), Error);
}

TEST(MemoryPlan, AHessianThatCannotFitSaysToDropIt) {
  AnalysisRequest r = wide_request(20);
  r.want.hessian = true;  // N = 803: GGN + R are 2 × 5.2 MB
  r.device = Device::kCuda;
  FreeDeviceMemory limit(2 * 1024 * 1024);
  try {
    analyze(r);
    FAIL() << "expected kResourceExhausted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
    EXPECT_NE(std::string(e.what()).find("drop hessian"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace basin
