// How every CUDA kernel of the backend is shaped and launched (cuda_backend.cu, ops/*.cu): a
// grid-stride loop around one element body (elementwise.hpp, kernels/src/ops/kernels/), launched
// on the caller's stream and checked. CUDA-only (nvcc); the bodies themselves are plain C++.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.hpp"

namespace basin {
namespace cuda {
namespace kernels {

constexpr int kThreadsPerBlock = 256;
// Grid-stride loops: a grid of at most this many blocks covers any size (2^16·256 = 16.7M
// threads, far more than an H100 keeps resident), so no launch exceeds the grid limits.
constexpr int64_t kMaxBlocks = int64_t(1) << 16;

inline unsigned blocks_for(int64_t count) {
  return static_cast<unsigned>(std::min<int64_t>((count + kThreadsPerBlock - 1) / kThreadsPerBlock, kMaxBlocks));
}

}  // namespace kernels
}  // namespace cuda
}  // namespace basin

// idx runs over [0, count) across the whole grid; consecutive threads get consecutive indices.
#define BASIN_FOR_EACH_INDEX(idx, count)                                                         \
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < (count); \
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Launches `kernel` over `count` indices on `stream` and checks the launch. The kernel's first
// parameter is the count.
#define BASIN_LAUNCH(kernel, count, stream, ...)                                                          \
  do {                                                                                                    \
    const int64_t basin_count_ = (count);                                                                 \
    if (basin_count_ > 0) {                                                                               \
      kernel<<<::basin::cuda::kernels::blocks_for(basin_count_), ::basin::cuda::kernels::kThreadsPerBlock, 0, \
               (stream)>>>(basin_count_, __VA_ARGS__);                                                    \
      BASIN_CUDA_CHECK_LAUNCH();                                                                          \
    }                                                                                                     \
  } while (0)
