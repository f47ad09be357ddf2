// C entry points of libbasin_cuda.so, looked up with dlsym by kernels/src/cuda_loader.cpp.
//
// Why a separately loaded module: linking cuBLAS/cuSOLVER into every binary costs ~0.5 s of CPU
// and ~270 MB of memory at start-up (cuBLASLt's static initialisation), even for CPU-only runs
// on machines without a GPU. Loaded on demand, only a machine with an NVIDIA driver pays it.
#include <cstring>
#include <string>

#include "basin/backend.hpp"
#include "basin/error.hpp"

namespace basin::cuda {
bool device_available(std::string* why);
template <class T>
std::unique_ptr<Backend<T>> create_backend(int device_index);
}  // namespace basin::cuda

namespace {

void copy_message(const std::string& text, char* out, size_t size) {
  if (out == nullptr || size == 0) return;
  std::strncpy(out, text.c_str(), size - 1);
  out[size - 1] = '\0';
}

// Creation errors travel as (code, message) so no exception crosses the dlopen boundary there.
template <class T>
basin::Backend<T>* create(int device, int* code, char* message, size_t size) {
  try {
    return basin::cuda::create_backend<T>(device).release();
  } catch (const basin::Error& e) {
    *code = static_cast<int>(e.code());
    copy_message(e.what(), message, size);
  } catch (const std::exception& e) {
    *code = static_cast<int>(basin::ErrorCode::kInternal);
    copy_message(e.what(), message, size);
  }
  return nullptr;
}

}  // namespace

extern "C" {

// The digest of the Backend interface this module was compiled against (kernels/CMakeLists.txt);
// the loader refuses the module when it differs from its own.
__attribute__((visibility("default"))) const char* basin_cuda_module_abi() { return BASIN_BACKEND_ABI; }

__attribute__((visibility("default"))) int basin_cuda_module_available(char* why, size_t size) {
  std::string reason;
  const bool ok = basin::cuda::device_available(&reason);
  copy_message(reason, why, size);
  return ok ? 1 : 0;
}

__attribute__((visibility("default"))) void* basin_cuda_module_create_f64(int device, int* code, char* message,
                                                                           size_t size) {
  return create<double>(device, code, message, size);
}

__attribute__((visibility("default"))) void* basin_cuda_module_create_f32(int device, int* code, char* message,
                                                                           size_t size) {
  return create<float>(device, code, message, size);
}

}  // extern "C"
