#include "device_context.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>

#include "basin/error.hpp"
#include "check.hpp"

namespace basin {
namespace cuda {

// ---- DeviceStream ----

DeviceStream::DeviceStream(int device) : device_(device) {
  try {
    // Non-blocking: the stream does not synchronise with the legacy default stream, which
    // other libraries in the same process (the server, PyTorch in a test) may use.
    BASIN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));

    BASIN_CUBLAS_CHECK(cublasCreate(&cublas_));
    BASIN_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // Precision is a contract (DESIGN.md: "TF32 is never enabled implicitly"): float32 GEMMs must
    // not be computed with TF32's 10-bit mantissas, which would move singular values far past
    // the 1e-4 float32 parity bound and flip rank decisions. CUBLAS_DEFAULT_MATH (not
    // CUBLAS_TF32_TENSOR_OP_MATH) keeps full-precision FP32/FP64 arithmetic. It is cuBLAS's
    // default for a new handle, but it is set explicitly so the choice is visible and does not
    // depend on library defaults. (PEDANTIC would also forbid reduced-precision reductions; it
    // is not needed because Basin never asks for them.)
    BASIN_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
    // Scalars (alpha, beta) are passed from host memory.
    BASIN_CUBLAS_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));

    BASIN_CUSOLVER_CHECK(cusolverDnCreate(&cusolver_));
    BASIN_CUSOLVER_CHECK(cusolverDnSetStream(cusolver_, stream_));
    // Parameters of the 64-bit API (cusolverDnX*); the defaults select the standard algorithms.
    BASIN_CUSOLVER_CHECK(cusolverDnCreateParams(&cusolver_params_));
  } catch (...) {
    destroy();
    throw;
  }
}

DeviceStream::~DeviceStream() { destroy(); }

void DeviceStream::destroy() noexcept {
  if (stream_ != nullptr || cublas_ != nullptr || cusolver_ != nullptr)
    BASIN_CUDA_CHECK_NO_THROW(cudaSetDevice(device_));
  if (stream_ != nullptr) BASIN_CUDA_CHECK_NO_THROW(cudaStreamSynchronize(stream_));
  if (cusolver_params_ != nullptr) BASIN_CUSOLVER_CHECK_NO_THROW(cusolverDnDestroyParams(cusolver_params_));
  if (cusolver_ != nullptr) BASIN_CUSOLVER_CHECK_NO_THROW(cusolverDnDestroy(cusolver_));
  if (cublas_ != nullptr) BASIN_CUBLAS_CHECK_NO_THROW(cublasDestroy(cublas_));
  if (stream_ != nullptr) BASIN_CUDA_CHECK_NO_THROW(cudaStreamDestroy(stream_));
  cusolver_params_ = nullptr;
  cusolver_ = nullptr;
  cublas_ = nullptr;
  stream_ = nullptr;
}

// ---- DeviceContext ----

DeviceContext& DeviceContext::get(int device) {
  static std::mutex mu;
  static std::map<int, DeviceContext*>* contexts = new std::map<int, DeviceContext*>();  // never freed
  std::lock_guard<std::mutex> lock(mu);
  auto it = contexts->find(device);
  if (it != contexts->end()) return *it->second;
  DeviceContext* ctx = new DeviceContext(device);  // throws: nothing remembered
  contexts->emplace(device, ctx);
  return *ctx;
}

DeviceContext::DeviceContext(int device) : device_(device) {
  int count = 0;
  BASIN_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count)
    throw Error(ErrorCode::kUnavailable, "device cuda: device index " + std::to_string(device) +
                                             " requested, but " + std::to_string(count) +
                                             " CUDA device(s) are visible");
  BASIN_CUDA_CHECK(cudaSetDevice(device_));
  cudaDeviceProp prop{};
  BASIN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
  device_name_ = prop.name;
  // Stream-ordered allocation from the default pool. Its release threshold is 0 by default, so
  // every synchronisation would hand freed blocks back to the driver and the next allocation
  // would map them again; the engine allocates and frees per layer and synchronises on every
  // upload, so keep freed memory cached while a job runs, and trim the pool when a job's stream
  // is returned (StreamContext's destructor): one analysis' scratch must not stay mapped for
  // other processes, and memory_info counts what is cached as free for the next one.
  int pools = 0;
  BASIN_CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device_));
  if (pools != 0) {
    BASIN_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool_, device_));
    uint64_t keep_all = ~uint64_t(0);  // the attribute is a cuuint64_t (= uint64_t)
    BASIN_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep_all));
  }
}

void DeviceContext::activate() const { BASIN_CUDA_CHECK(cudaSetDevice(device_)); }

void DeviceContext::memory_info(uint64_t* free_bytes, uint64_t* total_bytes) const {
  activate();
  size_t free_b = 0, total_b = 0;
  BASIN_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  uint64_t cached = 0;
  if (pool_ != nullptr) {
    // Reserved by the pool but not handed out: reusable by the next allocation of any job.
    uint64_t reserved = 0, used = 0;
    BASIN_CUDA_CHECK(cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrReservedMemCurrent, &reserved));
    BASIN_CUDA_CHECK(cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrUsedMemCurrent, &used));
    if (reserved > used) cached = reserved - used;
  }
  *free_bytes = std::min<uint64_t>(uint64_t(free_b) + cached, uint64_t(total_b));
  *total_bytes = total_b;
}

// ---- StreamContext ----

StreamContext::StreamContext(DeviceContext& device) : device_(device) {
  device_.activate();
  stream_ = device_.streams_.take([&] { return std::make_unique<DeviceStream>(device_.device()); });
}

StreamContext::~StreamContext() {
  BASIN_CUDA_CHECK_NO_THROW(cudaSetDevice(device_.device()));
  // The next holder of this stream must not see this job's work still queued, nor its errors.
  const cudaError_t st = cudaStreamSynchronize(stream_->stream());
  if (st == cudaErrorCudartUnloading) {
    // Process exit (a backend destroyed during static destruction): the runtime is going away
    // and takes the stream with it; calling into it again would only print errors.
    (void)stream_.release();
    return;
  }
  if (st != cudaSuccess) {
    // A stream whose work faulted is not handed to the next job: destroy it (a sticky error
    // poisons the whole context anyway, and then nothing here helps).
    std::fprintf(stderr, "basin: cudaStreamSynchronize failed when a job returned its stream: %s\n",
                 cudaGetErrorString(st));
    (void)cudaGetLastError();
    stream_.reset();
    return;
  }
  // Give cached, unused pool memory back (memory other jobs still hold is not touched).
  if (device_.pool_ != nullptr) BASIN_CUDA_CHECK_NO_THROW(cudaMemPoolTrimTo(device_.pool_, 0));
  device_.streams_.put(std::move(stream_));
}

void StreamContext::synchronize() const { BASIN_CUDA_CHECK(cudaStreamSynchronize(stream())); }

void* StreamContext::allocate_bytes(size_t bytes) const {
  void* p = nullptr;
  if (bytes == 0) return p;
  if (device_.pool_ != nullptr) BASIN_CUDA_CHECK(cudaMallocAsync(&p, bytes, stream()));
  else BASIN_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void StreamContext::free_bytes(void* ptr) const noexcept {
  if (ptr == nullptr) return;
  if (device_.pool_ != nullptr) {
    BASIN_CUDA_CHECK_NO_THROW(cudaFreeAsync(ptr, stream()));
  } else {
    // cudaFree synchronises the device, so work still queued on the stream cannot touch freed
    // memory.
    BASIN_CUDA_CHECK_NO_THROW(cudaFree(ptr));
  }
}

}  // namespace cuda
}  // namespace basin
