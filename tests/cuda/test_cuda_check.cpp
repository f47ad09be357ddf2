// The CUDA / cuBLAS / cuSOLVER check macros (kernels/cuda/check.hpp): typed errors naming the call
// and the status, RESOURCE_EXHAUSTED for out-of-memory statuses, and no throw from the _NO_THROW
// forms. Runs on the host: only status values and name look-ups are involved, no device.
#include <gtest/gtest.h>

#include <string>

#include "check.hpp"

namespace basin {
namespace {

cudaError_t runtime_returns(cudaError_t status) { return status; }
cublasStatus_t cublas_returns(cublasStatus_t status) { return status; }
cusolverStatus_t cusolver_returns(cusolverStatus_t status) { return status; }

template <class F>
Error caught(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  return Error(ErrorCode::kNotFound, "nothing thrown");
}

TEST(CudaCheck, SuccessDoesNotThrow) {
  EXPECT_NO_THROW(BASIN_CUDA_CHECK(runtime_returns(cudaSuccess)));
  EXPECT_NO_THROW(BASIN_CUBLAS_CHECK(cublas_returns(CUBLAS_STATUS_SUCCESS)));
  EXPECT_NO_THROW(BASIN_CUSOLVER_CHECK(cusolver_returns(CUSOLVER_STATUS_SUCCESS)));
}

TEST(CudaCheck, FailureNamesTheCallAndTheStatus) {
  const Error e = caught([] { BASIN_CUDA_CHECK(runtime_returns(cudaErrorInvalidValue)); });
  EXPECT_EQ(e.code(), ErrorCode::kInternal);
  EXPECT_NE(std::string(e.what()).find("runtime_returns(cudaErrorInvalidValue) failed: cudaErrorInvalidValue"),
            std::string::npos)
      << e.what();

  const Error b = caught([] { BASIN_CUBLAS_CHECK(cublas_returns(CUBLAS_STATUS_EXECUTION_FAILED)); });
  EXPECT_EQ(b.code(), ErrorCode::kInternal);
  EXPECT_NE(std::string(b.what()).find("failed: CUBLAS_STATUS_EXECUTION_FAILED"), std::string::npos) << b.what();

  const Error s = caught([] { BASIN_CUSOLVER_CHECK(cusolver_returns(CUSOLVER_STATUS_INVALID_VALUE)); });
  EXPECT_EQ(s.code(), ErrorCode::kInternal);
  EXPECT_NE(std::string(s.what()).find("failed: CUSOLVER_STATUS_INVALID_VALUE"), std::string::npos) << s.what();
}

TEST(CudaCheck, OutOfMemoryIsResourceExhausted) {
  EXPECT_EQ(caught([] { BASIN_CUDA_CHECK(runtime_returns(cudaErrorMemoryAllocation)); }).code(),
            ErrorCode::kResourceExhausted);
  EXPECT_EQ(caught([] { BASIN_CUBLAS_CHECK(cublas_returns(CUBLAS_STATUS_ALLOC_FAILED)); }).code(),
            ErrorCode::kResourceExhausted);
  EXPECT_EQ(caught([] { BASIN_CUSOLVER_CHECK(cusolver_returns(CUSOLVER_STATUS_ALLOC_FAILED)); }).code(),
            ErrorCode::kResourceExhausted);
}

TEST(CudaCheck, NoThrowFormsOnlyReport) {
  testing::internal::CaptureStderr();
  EXPECT_NO_THROW(BASIN_CUDA_CHECK_NO_THROW(runtime_returns(cudaErrorInvalidValue)));
  EXPECT_NO_THROW(BASIN_CUBLAS_CHECK_NO_THROW(cublas_returns(CUBLAS_STATUS_NOT_INITIALIZED)));
  EXPECT_NO_THROW(BASIN_CUSOLVER_CHECK_NO_THROW(cusolver_returns(CUSOLVER_STATUS_INTERNAL_ERROR)));
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("cudaErrorInvalidValue"), std::string::npos) << err;
  EXPECT_NE(err.find("CUBLAS_STATUS_NOT_INITIALIZED"), std::string::npos) << err;
  EXPECT_NE(err.find("CUSOLVER_STATUS_INTERNAL_ERROR"), std::string::npos) << err;
}

}  // namespace
}  // namespace basin
