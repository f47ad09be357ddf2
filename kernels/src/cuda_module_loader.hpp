// Opening libbasin_cuda.so (internal; used by cuda_loader.cpp, tested by tests/cuda).
#pragma once

#include <string>
#include <vector>

namespace basin {

// The C entry points of the module (kernels/cuda/cuda_module.cpp).
using CudaModuleAvailableFn = int (*)(char*, size_t);
using CudaModuleCreateFn = void* (*)(int, int*, char*, size_t);

struct CudaModule {
  bool loaded = false;
  std::string why;  // when not loaded: every candidate tried and why it was refused
  CudaModuleAvailableFn available = nullptr;
  CudaModuleCreateFn create_f64 = nullptr;
  CudaModuleCreateFn create_f32 = nullptr;
};

// Opens the first candidate that loads, exports every entry point and was built against the
// Backend interface `abi` (the digest both sides are compiled with, see kernels/CMakeLists.txt).
// A module of another ABI is refused with both digests named, so a stale libbasin_cuda.so falls
// back to the CPU with a reason instead of being called through a mismatched vtable.
CudaModule open_cuda_module(const std::vector<std::string>& candidates, const std::string& abi);

}  // namespace basin
