// One checking macro per library (CUDA runtime, cuBLAS, cuSOLVER), all built from one generic
// macro, after ggml's CUDA_CHECK_GEN and RAFT's throwing / _NO_THROW pairs.
//
//   BASIN_CUDA_CHECK(cudaMallocAsync(&p, bytes, stream));
//
// A failed call throws basin::Error(kInternal, "<call> failed: <status name> (file:line)"), or
// kResourceExhausted when the status means "out of device memory" (cudaErrorMemoryAllocation,
// CUBLAS_STATUS_ALLOC_FAILED, CUSOLVER_STATUS_ALLOC_FAILED), so the server can answer
// RESOURCE_EXHAUSTED instead of INTERNAL. Nothing here exits or aborts.
// The _NO_THROW forms are for destructors and release(): they print the same message to stderr
// and carry on.
//
// Plain C++ (gcc can compile it with the CUDA include directory), so tests run on the host.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <cstdio>
#include <string>
#include <type_traits>

#include "basin/error.hpp"

namespace basin {
namespace cuda {
namespace detail {

inline const char* status_name(cudaError_t status) { return cudaGetErrorName(status); }
inline const char* status_name(cublasStatus_t status) { return cublasGetStatusName(status); }
// cuSOLVER has no cusolverGetStatusName.
inline const char* status_name(cusolverStatus_t status) {
  switch (status) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_MAPPING_ERROR: return "CUSOLVER_STATUS_MAPPING_ERROR";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED: return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    case CUSOLVER_STATUS_ZERO_PIVOT: return "CUSOLVER_STATUS_ZERO_PIVOT";
    case CUSOLVER_STATUS_INVALID_LICENSE: return "CUSOLVER_STATUS_INVALID_LICENSE";
    case CUSOLVER_STATUS_INVALID_WORKSPACE: return "CUSOLVER_STATUS_INVALID_WORKSPACE";
    default: return "CUSOLVER_STATUS_<unknown>";
  }
}

inline bool is_out_of_memory(cudaError_t status) { return status == cudaErrorMemoryAllocation; }
inline bool is_out_of_memory(cublasStatus_t status) { return status == CUBLAS_STATUS_ALLOC_FAILED; }
inline bool is_out_of_memory(cusolverStatus_t status) { return status == CUSOLVER_STATUS_ALLOC_FAILED; }

template <class Status>
std::string failure_message(Status status, const char* call, const char* file, int line) {
  std::string where(file);
  const size_t slash = where.find_last_of('/');
  if (slash != std::string::npos) where = where.substr(slash + 1);
  return std::string(call) + " failed: " + status_name(status) + " (" + where + ":" + std::to_string(line) + ")";
}

template <class Status>
[[noreturn]] void throw_failure(Status status, const char* call, const char* file, int line) {
  // An allocation failure of the runtime is not sticky, but it is recorded as the thread's last
  // error; clear it so the next unrelated check does not see it.
  if constexpr (std::is_same_v<Status, cudaError_t>) (void)cudaGetLastError();
  throw Error(is_out_of_memory(status) ? ErrorCode::kResourceExhausted : ErrorCode::kInternal,
              failure_message(status, call, file, line));
}

template <class Status>
void report_failure(Status status, const char* call, const char* file, int line) noexcept {
  try {
    std::fprintf(stderr, "basin cuda: %s\n", failure_message(status, call, file, line).c_str());
  } catch (...) {
    std::fprintf(stderr, "basin cuda: %s failed\n", call);
  }
}

}  // namespace detail
}  // namespace cuda
}  // namespace basin

// The generic forms: `call` returns a status of some library; `success` is that library's OK.
#define BASIN_CHECK_GEN(call, success)                                                   \
  do {                                                                                   \
    const auto basin_status_ = (call);                                                   \
    if (basin_status_ != (success))                                                      \
      ::basin::cuda::detail::throw_failure(basin_status_, #call, __FILE__, __LINE__);    \
  } while (0)
#define BASIN_CHECK_GEN_NO_THROW(call, success)                                          \
  do {                                                                                   \
    const auto basin_status_ = (call);                                                   \
    if (basin_status_ != (success))                                                      \
      ::basin::cuda::detail::report_failure(basin_status_, #call, __FILE__, __LINE__);   \
  } while (0)

#define BASIN_CUDA_CHECK(call) BASIN_CHECK_GEN(call, cudaSuccess)
#define BASIN_CUBLAS_CHECK(call) BASIN_CHECK_GEN(call, CUBLAS_STATUS_SUCCESS)
#define BASIN_CUSOLVER_CHECK(call) BASIN_CHECK_GEN(call, CUSOLVER_STATUS_SUCCESS)
#define BASIN_CUDA_CHECK_NO_THROW(call) BASIN_CHECK_GEN_NO_THROW(call, cudaSuccess)
#define BASIN_CUBLAS_CHECK_NO_THROW(call) BASIN_CHECK_GEN_NO_THROW(call, CUBLAS_STATUS_SUCCESS)
#define BASIN_CUSOLVER_CHECK_NO_THROW(call) BASIN_CHECK_GEN_NO_THROW(call, CUSOLVER_STATUS_SUCCESS)

// Kernel launches return nothing: check the launch itself (bad configuration) right after it.
#define BASIN_CUDA_CHECK_LAUNCH() BASIN_CUDA_CHECK(cudaGetLastError())
