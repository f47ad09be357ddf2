// The CUDA backend, loaded on demand from libbasin_cuda.so (see kernels/cuda/cuda_module.cpp
// for why it is not linked in). Order of checks, cheapest first:
//   1. the NVIDIA driver library libcuda.so.1 can be opened (no driver → CPU, at no cost);
//   2. the module is found: $BASIN_CUDA_MODULE, next to the executable, ../lib beside it, then
//      the build tree it was compiled in;
//   3. it was built against this Backend interface (its ABI digest equals ours);
//   4. the module's own device check (cudaGetDeviceCount).
#include <dlfcn.h>
#include <unistd.h>

#include <mutex>
#include <string>
#include <vector>

#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "cuda_module_loader.hpp"

#ifndef BASIN_CUDA_MODULE_BUILD_PATH
#define BASIN_CUDA_MODULE_BUILD_PATH ""
#endif
#ifndef BASIN_BACKEND_ABI
#error "BASIN_BACKEND_ABI must be defined by the build (kernels/CMakeLists.txt)"
#endif

namespace basin {
namespace {

std::string executable_dir() {
  std::vector<char> buf(4096);
  const ssize_t len = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (len <= 0) return "";
  std::string path(buf.data(), static_cast<size_t>(len));
  return path.substr(0, path.find_last_of('/'));
}

CudaModule load_module() {
  CudaModule m;
  if (dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL) == nullptr) {
    m.why = "no NVIDIA driver on this machine (libcuda.so.1 cannot be loaded)";
    return m;
  }
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("BASIN_CUDA_MODULE")) candidates.emplace_back(env);
  const std::string dir = executable_dir();
  if (!dir.empty()) {
    candidates.push_back(dir + "/libbasin_cuda.so");
    candidates.push_back(dir + "/../lib/libbasin_cuda.so");
  }
  if (*BASIN_CUDA_MODULE_BUILD_PATH) candidates.emplace_back(BASIN_CUDA_MODULE_BUILD_PATH);
  return open_cuda_module(candidates, BASIN_BACKEND_ABI);
}

const CudaModule& module() {
  static std::once_flag once;
  static CudaModule m;
  std::call_once(once, [] { m = load_module(); });
  return m;
}

}  // namespace

bool cuda_available(std::string* why) {
  const CudaModule& m = module();
  if (!m.loaded) {
    if (why) *why = m.why;
    return false;
  }
  char reason[512] = {0};
  const bool ok = m.available(reason, sizeof reason) != 0;
  if (why) *why = reason;
  return ok;
}

template <class T>
std::unique_ptr<Backend<T>> make_cuda_backend(int device_index) {
  const CudaModule& m = module();
  if (!m.loaded) throw Error(ErrorCode::kUnavailable, "device cuda: " + m.why);
  int code = static_cast<int>(ErrorCode::kInternal);
  char message[1024] = {0};
  CudaModuleCreateFn create = sizeof(T) == 8 ? m.create_f64 : m.create_f32;
  void* backend = create(device_index, &code, message, sizeof message);
  if (backend == nullptr) throw Error(static_cast<ErrorCode>(code), message);
  return std::unique_ptr<Backend<T>>(static_cast<Backend<T>*>(backend));
}
template std::unique_ptr<Backend<double>> make_cuda_backend<double>(int);
template std::unique_ptr<Backend<float>> make_cuda_backend<float>(int);

}  // namespace basin

namespace basin {

CudaModule open_cuda_module(const std::vector<std::string>& candidates, const std::string& abi) {
  using AbiFn = const char* (*)();
  CudaModule m;
  std::string errors;
  for (const std::string& path : candidates) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* e = dlerror();
      errors += "; " + path + ": " + (e ? e : "not loadable");
      continue;
    }
    const auto module_abi = reinterpret_cast<AbiFn>(dlsym(handle, "basin_cuda_module_abi"));
    if (module_abi == nullptr || abi != module_abi()) {
      errors += "; " + path + ": built against another Backend interface (ABI " +
                (module_abi ? std::string(module_abi()) : std::string("unknown")) + ", this program's is " + abi +
                "); rebuild it with this source tree";
      dlclose(handle);
      continue;
    }
    m.available = reinterpret_cast<CudaModuleAvailableFn>(dlsym(handle, "basin_cuda_module_available"));
    m.create_f64 = reinterpret_cast<CudaModuleCreateFn>(dlsym(handle, "basin_cuda_module_create_f64"));
    m.create_f32 = reinterpret_cast<CudaModuleCreateFn>(dlsym(handle, "basin_cuda_module_create_f32"));
    if (m.available && m.create_f64 && m.create_f32) {
      m.loaded = true;
      return m;
    }
    errors += "; " + path + ": missing basin_cuda_module_* entry points";
    dlclose(handle);
  }
  m.why = "no usable CUDA backend module libbasin_cuda.so was found" + errors;
  return m;
}

}  // namespace basin
