// The resources one CUDA backend works with: a device, a stream, and the cuBLAS and cuSOLVER
// handles bound to that stream (faiss's GpuResources, in small). Everything the backend enqueues
// goes to this one stream, so work is ordered without extra synchronisation, and two backends
// (two server workers) never share a handle -- cuBLAS/cuSOLVER handles are not thread-safe.
//
// Plain C++ header; the implementation is device_context.cu.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace basin {
namespace cuda {

class DeviceContext {
 public:
  // Selects `device`, creates a non-blocking stream and the handles. Throws basin::Error
  // (kUnavailable for a bad index, kInternal / kResourceExhausted when a library call fails).
  explicit DeviceContext(int device);
  ~DeviceContext();
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;

  int device() const { return device_; }
  const std::string& device_name() const { return device_name_; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  cusolverDnHandle_t cusolver() const { return cusolver_; }
  cusolverDnParams_t cusolver_params() const { return cusolver_params_; }

  // Makes this context's device current on the calling thread. The current device is per host
  // thread, and the server may call one backend from different worker threads over its life,
  // so every backend entry point calls this first (cheap when the device is already current).
  void activate() const;
  // Waits for everything enqueued on the stream; surfaces asynchronous kernel errors.
  void synchronize() const;
  // (free, total) bytes of device memory, from cudaMemGetInfo.
  void memory_info(uint64_t* free_bytes, uint64_t* total_bytes) const;

  // Device memory, ordered on the stream: cudaMallocAsync / cudaFreeAsync from the device's
  // default pool, or plain cudaMalloc / cudaFree where the device has no memory pools.
  // allocate_bytes throws kResourceExhausted when the device is out of memory; free_bytes never
  // throws (it reports to stderr).
  void* allocate_bytes(size_t bytes) const;
  void free_bytes(void* ptr) const noexcept;

 private:
  void destroy() noexcept;

  int device_ = 0;
  std::string device_name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cusolverDnHandle_t cusolver_ = nullptr;
  cusolverDnParams_t cusolver_params_ = nullptr;
  cudaMemPool_t pool_ = nullptr;  // the device's default pool; null: no stream-ordered allocator
};

}  // namespace cuda
}  // namespace basin
