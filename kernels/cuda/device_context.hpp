// The resources CUDA backends work with, made once per GPU and shared by every job on it
// (docs/ARCHITECTURE.md, "The CUDA module": one long-lived device context per GPU).
//
//   DeviceContext   one per device for the life of the process (DeviceContext::get): the device's
//                   properties, its stream-ordered memory pool, and a pool of DeviceStreams.
//   DeviceStream    a non-blocking stream with the cuBLAS and cuSOLVER handles bound to it.
//                   Created the first time a job needs one, then reused by later jobs.
//   StreamContext   what one backend (one job) holds: its device's context and a DeviceStream
//                   leased from it for the backend's whole life, returned when the backend goes.
//
// Why leases rather than one shared stream and handle set: cuBLAS and cuSOLVER handles are not
// safe to use from two threads at once, and two jobs on one stream would serialise and share a
// workspace. A leased DeviceStream belongs to one backend at a time, so concurrent jobs (server
// workers) each run on their own stream with their own handles, while creating streams and
// handles -- tens of milliseconds and a cuBLAS workspace each -- happens once per concurrent
// job the device ever had, not once per request. The pool is guarded by a mutex
// (lease_pool.hpp); everything else a job does goes through its own lease.
//
// Plain C++ header; the implementation is device_context.cu.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "lease_pool.hpp"

namespace basin {
namespace cuda {

class DeviceStream {
 public:
  // On `device` (made current by the caller): a non-blocking stream and the handles bound to it.
  explicit DeviceStream(int device);
  ~DeviceStream();
  DeviceStream(const DeviceStream&) = delete;
  DeviceStream& operator=(const DeviceStream&) = delete;

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  cusolverDnHandle_t cusolver() const { return cusolver_; }
  cusolverDnParams_t cusolver_params() const { return cusolver_params_; }

 private:
  void destroy() noexcept;

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cusolverDnHandle_t cusolver_ = nullptr;
  cusolverDnParams_t cusolver_params_ = nullptr;
};

class DeviceContext {
 public:
  // The context of `device`, created on first use and kept for the life of the process (never
  // destroyed: at static destruction the CUDA runtime may already be gone). Thread-safe. Throws
  // basin::Error (kUnavailable for a bad index, kInternal when the runtime fails); a failed
  // creation is not remembered, so the next call tries again.
  static DeviceContext& get(int device);

  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;

  int device() const { return device_; }
  const std::string& device_name() const { return device_name_; }
  // Makes this device current on the calling thread (the current device is per host thread,
  // and one backend may be called from different server threads over its life).
  void activate() const;
  // (free, total) bytes of device memory: cudaMemGetInfo's free plus what the memory pool holds
  // cached but unused (any job's next allocation gets that first).
  void memory_info(uint64_t* free_bytes, uint64_t* total_bytes) const;
  // Streams ever created on this device and those idle now (tests and diagnostics).
  size_t streams_created() const { return streams_.created(); }
  size_t streams_idle() const { return streams_.idle(); }

 private:
  friend class StreamContext;
  explicit DeviceContext(int device);

  int device_ = 0;
  std::string device_name_;
  cudaMemPool_t pool_ = nullptr;  // the device's default pool; null: no stream-ordered allocator
  LeasePool<DeviceStream> streams_;
};

class StreamContext {
 public:
  // Leases a stream of `device` (an idle one, or a new one); the backend's whole life.
  explicit StreamContext(DeviceContext& device);
  // Waits for the stream's work, gives cached pool memory back to the driver, and returns the
  // stream to the pool for the next job.
  ~StreamContext();
  StreamContext(const StreamContext&) = delete;
  StreamContext& operator=(const StreamContext&) = delete;

  int device() const { return device_.device(); }
  const std::string& device_name() const { return device_.device_name(); }
  cudaStream_t stream() const { return stream_->stream(); }
  cublasHandle_t cublas() const { return stream_->cublas(); }
  cusolverDnHandle_t cusolver() const { return stream_->cusolver(); }
  cusolverDnParams_t cusolver_params() const { return stream_->cusolver_params(); }

  void activate() const { device_.activate(); }
  // Waits for everything enqueued on this lease's stream; surfaces asynchronous kernel errors.
  void synchronize() const;
  void memory_info(uint64_t* free_bytes, uint64_t* total_bytes) const { device_.memory_info(free_bytes, total_bytes); }

  // Device memory, ordered on this stream: cudaMallocAsync / cudaFreeAsync from the device's
  // default pool, or plain cudaMalloc / cudaFree where the device has no memory pools.
  // allocate_bytes throws kResourceExhausted when the device is out of memory; free_bytes never
  // throws (it reports to stderr).
  void* allocate_bytes(size_t bytes) const;
  void free_bytes(void* ptr) const noexcept;

 private:
  DeviceContext& device_;
  std::unique_ptr<DeviceStream> stream_;
};

}  // namespace cuda
}  // namespace basin
