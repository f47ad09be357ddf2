// The loader opens only a libbasin_cuda.so built against this Backend interface: a stale module
// of another ABI (or one that predates the check) is refused with both digests named, and the
// next candidate is tried.
#include <gtest/gtest.h>

#include <string>

#include "cuda_module_loader.hpp"

namespace basin {
namespace {

TEST(CudaModuleLoader, OpensAModuleOfTheSameAbi) {
  const CudaModule m = open_cuda_module({FAKE_MODULE_SAME}, BASIN_BACKEND_ABI);
  ASSERT_TRUE(m.loaded) << m.why;
  char why[64] = {0};
  EXPECT_EQ(m.available(why, sizeof why), 0);
  EXPECT_STREQ(why, "fake module: no device");
}

TEST(CudaModuleLoader, RefusesAModuleOfAnotherAbiNamingBothDigests) {
  const CudaModule m = open_cuda_module({FAKE_MODULE_OTHER}, BASIN_BACKEND_ABI);
  EXPECT_FALSE(m.loaded);
  EXPECT_EQ(m.available, nullptr);
  EXPECT_NE(m.why.find("another Backend interface"), std::string::npos) << m.why;
  EXPECT_NE(m.why.find("ABI 0123456789abcdef"), std::string::npos) << m.why;
  EXPECT_NE(m.why.find(BASIN_BACKEND_ABI), std::string::npos) << m.why;
  EXPECT_NE(m.why.find(FAKE_MODULE_OTHER), std::string::npos) << m.why;
}

TEST(CudaModuleLoader, RefusesAModuleWithoutAnAbi) {
  const CudaModule m = open_cuda_module({FAKE_MODULE_NONE}, BASIN_BACKEND_ABI);
  EXPECT_FALSE(m.loaded);
  EXPECT_NE(m.why.find("ABI unknown"), std::string::npos) << m.why;
}

TEST(CudaModuleLoader, SkipsStaleAndMissingCandidatesForAGoodOne) {
  const CudaModule m =
      open_cuda_module({"/nonexistent/libbasin_cuda.so", FAKE_MODULE_OTHER, FAKE_MODULE_SAME}, BASIN_BACKEND_ABI);
  EXPECT_TRUE(m.loaded) << m.why;
}

// The module this build produced passes its own loader's check (it exports the digest it was
// compiled with, and the digest is the loader's). Loading it needs the CUDA libraries, not a GPU.
TEST(CudaModuleLoader, TheBuiltModuleHasThisBuildsAbi) {
  const CudaModule m = open_cuda_module({REAL_CUDA_MODULE}, BASIN_BACKEND_ABI);
  EXPECT_TRUE(m.loaded) << m.why;
}

TEST(CudaModuleLoader, NoCandidateSaysSo) {
  const CudaModule m = open_cuda_module({"/nonexistent/libbasin_cuda.so"}, BASIN_BACKEND_ABI);
  EXPECT_FALSE(m.loaded);
  EXPECT_NE(m.why.find("/nonexistent/libbasin_cuda.so"), std::string::npos) << m.why;
}

}  // namespace
}  // namespace basin
