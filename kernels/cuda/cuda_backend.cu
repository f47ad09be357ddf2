// The CUDA backend: custom kernels for everything element-wise, cuBLAS for GEMM/SYRK, cuSOLVER
// (64-bit API) for the eigen/singular-value solves and the QR of TSQR. Same contract and results
// as kernels/cpu/cpu_backend.cpp (see basin/backend.hpp); tests/cuda/test_gpu_parity.cpp holds the
// two against each other.
//
// Row-major ↔ cuBLAS/cuSOLVER (column-major), without copies:
//   * a row-major X [r×c] with leading dimension ld IS the column-major Xᵀ [c×r] with the same ld;
//   * so row-major C = op(A)·op(B) is computed as column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the
//     operands (B first), keep each one's transpose flag, swap m and n;
//   * a row-major symmetric matrix kept in its lower triangle is the column-major matrix kept in
//     its upper triangle: CUBLAS_FILL_MODE_UPPER everywhere, with SYRK's trans flag flipped
//     (row-major A·Aᵀ of A [n×k] is column-major XᵀX of X = Aᵀ [k×n]).
//
// Everything is enqueued on the one stream this backend leases from its device's context
// (device_context.hpp: one context per GPU, shared by every job; a stream and handles per
// concurrent job). Only the calls that hand results to the
// host (download, the solvers) and upload (whose host source may be freed on return)
// synchronise; kernel faults therefore surface at the next of those, named by that call.
#include <cuda_runtime.h>
#include <thrust/execution_policy.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/transform_reduce.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "blas_mapping.hpp"
#include "check.hpp"
#include "device_context.hpp"
#include "elementwise.hpp"
#include "launch.cuh"
#include "ops/cuda_op_kernels.hpp"

// cusolverDnXsyevBatched arrived in cuSOLVER 11.7.1 (CUDA 12.6 Update 2); older headers do not
// declare it, so its call is compiled only where it exists (the guard below is a compile-time
// one: an older toolkit builds this file and solves large batches one syevd call per matrix).
// -DBASIN_ASSUME_OLD_CUSOLVER=1 compiles the old-toolkit branch with a new toolkit, to check that
// it builds (kernels/cuda/CMakeLists.txt, basin_cuda_old_cusolver_check).
#if defined(CUSOLVER_VERSION)
#define BASIN_CUSOLVER_VERSION_SEEN CUSOLVER_VERSION
#else
#define BASIN_CUSOLVER_VERSION_SEEN 0
#endif
#if BASIN_CUSOLVER_VERSION_SEEN >= 11701 && !defined(BASIN_ASSUME_OLD_CUSOLVER)
#define BASIN_HAVE_XSYEV_BATCHED 1
#else
#define BASIN_HAVE_XSYEV_BATCHED 0
#endif

namespace basin {
namespace cuda {
namespace kernels {

template <class T>
__global__ void fill(int64_t count, T value, T* dst) {
  BASIN_FOR_EACH_INDEX(idx, count) fill_element(idx, value, dst);
}
template <class T>
__global__ void axpy(int64_t count, T alpha, const T* x, T* y) {
  BASIN_FOR_EACH_INDEX(idx, count) axpy_element(idx, alpha, x, y);
}
template <class T>
__global__ void scale_matrix(int64_t count, int64_t cols, T beta, T* c, int64_t ldc) {
  BASIN_FOR_EACH_INDEX(idx, count) scale_matrix_element(idx, cols, beta, c, ldc);
}
template <class T>
__global__ void add_row_vector(int64_t count, int64_t cols, const T* v, T* c, int64_t ldc) {
  BASIN_FOR_EACH_INDEX(idx, count) add_row_vector_element(idx, cols, v, c, ldc);
}
template <class T>
__global__ void activation_forward(int64_t count, ActivationFn<T> fn, const T* z, T* a) {
  BASIN_FOR_EACH_INDEX(idx, count) activation_forward_element(idx, fn, z, a);
}
template <class T>
__global__ void scale_by_activation_derivative(int64_t count, ActivationFn<T> fn, int64_t rpe, int64_t d,
                                               const T* z, T* x) {
  BASIN_FOR_EACH_INDEX(idx, count) scale_by_activation_derivative_element(idx, fn, rpe, d, z, x);
}
template <class T>
__global__ void rop_activation_backward(int64_t count, ActivationFn<T> fn, int64_t rpe, int64_t d, const T* z,
                                        const T* rz, const T* g, T* rg) {
  BASIN_FOR_EACH_INDEX(idx, count) rop_activation_backward_element(idx, fn, rpe, d, z, rz, g, rg);
}
template <class T>
__global__ void combine_hessian(int64_t count, int64_t n, T* g, T* r) {
  BASIN_FOR_EACH_INDEX(idx, count) combine_hessian_element(idx, n, g, r);
}
// Thrust functor: idx → its term of ‖X‖_F² for a symmetric X kept in its lower triangle.
template <class T>
struct SymmetricSquareTerm {
  const T* x;
  int64_t n;
  __host__ __device__ double operator()(int64_t idx) const { return symmetric_square_term(idx, n, x); }
};
template <class T>
__global__ void hadamard_expand_accumulate(int64_t count, int64_t n, int64_t r, const T* k, T kappa,
                                           int64_t row0, int64_t rows, const T* d, int64_t ldd, T* c) {
  BASIN_FOR_EACH_INDEX(idx, count) hadamard_expand_element(idx, n, r, k, kappa, row0, rows, d, ldd, c);
}
template <class T>
__global__ void assemble_jacobian_block(int64_t count, int64_t row0, int64_t rpe, int64_t d_out, int64_t d_in,
                                        bool has_bias, const T* delta, const T* a, T* out, int64_t ldo,
                                        int64_t col0) {
  BASIN_FOR_EACH_INDEX(idx, count)
  assemble_jacobian_element(idx, row0, rpe, d_out, d_in, has_bias, delta, a, out, ldo, col0);
}
template <class T>
__global__ void strided_axpby(int64_t count, int64_t rows, int64_t cols, T alpha, const T* x, int64_t ldx,
                              int64_t x_stride, T beta, T* y, int64_t ldy, int64_t y_stride) {
  BASIN_FOR_EACH_INDEX(idx, count)
  strided_axpby_element(idx, rows, cols, alpha, x, ldx, x_stride, beta, y, ldy, y_stride);
}
template <class T>
__global__ void column_sums(int64_t cols, int64_t rows, const T* x, int64_t ldx, T* y) {
  BASIN_FOR_EACH_INDEX(idx, cols) column_sum_element(idx, rows, x, ldx, y);
}
template <class T>
__global__ void symmetrize_lower(int64_t count, int64_t n, T* c, int64_t ldc) {
  BASIN_FOR_EACH_INDEX(idx, count) symmetrize_lower_element(idx, n, c, ldc);
}
template <class T>
__global__ void nonfinite_flag(int64_t count, const T* a, int* flag) {
  BASIN_FOR_EACH_INDEX(idx, count) nonfinite_flag_element(idx, a, flag);
}
template <class T>
__global__ void transpose(int64_t count, int64_t rows, int64_t cols, const T* src, T* dst) {
  BASIN_FOR_EACH_INDEX(idx, count) transpose_element(idx, rows, cols, src, dst);
}
template <class T>
__global__ void reverse_rows(int64_t count, int64_t rows, int64_t cols, const T* src, T* dst) {
  BASIN_FOR_EACH_INDEX(idx, count) reverse_rows_element(idx, rows, cols, src, dst);
}
template <class T>
__global__ void qr_r_row_major(int64_t count, int64_t m, int64_t n, const T* qr, T* a) {
  BASIN_FOR_EACH_INDEX(idx, count) qr_r_row_major_element(idx, m, n, qr, a);
}

}  // namespace kernels

// ---- typed wrappers: one algorithm, float and double (RAFT's shape) ----
namespace {

template <class T>
constexpr cudaDataType data_type();
template <>
constexpr cudaDataType data_type<double>() { return CUDA_R_64F; }
template <>
constexpr cudaDataType data_type<float>() { return CUDA_R_32F; }

inline cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

inline cublasStatus_t gemm_64(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n,
                              int64_t k, const double* alpha, const double* a, int64_t lda, const double* b,
                              int64_t ldb, const double* beta, double* c, int64_t ldc) {
  return cublasDgemm_64(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline cublasStatus_t gemm_64(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n,
                              int64_t k, const float* alpha, const float* a, int64_t lda, const float* b,
                              int64_t ldb, const float* beta, float* c, int64_t ldc) {
  return cublasSgemm_64(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline cublasStatus_t syrk_64(cublasHandle_t h, cublasFillMode_t uplo, cublasOperation_t trans, int64_t n,
                              int64_t k, const double* alpha, const double* a, int64_t lda, const double* beta,
                              double* c, int64_t ldc) {
  return cublasDsyrk_64(h, uplo, trans, n, k, alpha, a, lda, beta, c, ldc);
}
inline cublasStatus_t syrk_64(cublasHandle_t h, cublasFillMode_t uplo, cublasOperation_t trans, int64_t n,
                              int64_t k, const float* alpha, const float* a, int64_t lda, const float* beta,
                              float* c, int64_t ldc) {
  return cublasSsyrk_64(h, uplo, trans, n, k, alpha, a, lda, beta, c, ldc);
}

std::string human_bytes(double b) {
  char buf[64];
  if (b >= double(1ull << 30)) std::snprintf(buf, sizeof buf, "%.3g GiB", b / double(1ull << 30));
  else if (b >= double(1ull << 20)) std::snprintf(buf, sizeof buf, "%.3g MiB", b / double(1ull << 20));
  else std::snprintf(buf, sizeof buf, "%.0f bytes", b);
  return buf;
}

}  // namespace

// Stream-ordered scratch memory for the solvers (workspace, eigenvalues, devInfo), freed in
// stream order when it goes out of scope.
class Scratch {
 public:
  Scratch(const StreamContext& ctx, size_t bytes) : ctx_(ctx), bytes_(bytes), ptr_(ctx.allocate_bytes(bytes)) {}
  ~Scratch() { ctx_.free_bytes(ptr_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class U>
  U* as() const { return static_cast<U*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  const StreamContext& ctx_;
  size_t bytes_;
  void* ptr_;
};

// syevjBatched handles matrices up to 32 × 32 (cuSOLVER documentation).
constexpr int64_t kSyevjBatchedMaxDim = 32;

// The legacy syevjBatched API is typed (S/D); these overloads pick the right one.
inline cusolverStatus_t syevj_batched_buffer_size(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo,
                                                  int n, const double* a, int lda, const double* w, int* lwork,
                                                  syevjInfo_t params, int batch) {
  return cusolverDnDsyevjBatched_bufferSize(h, jobz, uplo, n, a, lda, w, lwork, params, batch);
}
inline cusolverStatus_t syevj_batched_buffer_size(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo,
                                                  int n, const float* a, int lda, const float* w, int* lwork,
                                                  syevjInfo_t params, int batch) {
  return cusolverDnSsyevjBatched_bufferSize(h, jobz, uplo, n, a, lda, w, lwork, params, batch);
}
inline cusolverStatus_t syevj_batched(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n,
                                      double* a, int lda, double* w, double* work, int lwork, int* info,
                                      syevjInfo_t params, int batch) {
  return cusolverDnDsyevjBatched(h, jobz, uplo, n, a, lda, w, work, lwork, info, params, batch);
}
inline cusolverStatus_t syevj_batched(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n,
                                      float* a, int lda, float* w, float* work, int lwork, int* info,
                                      syevjInfo_t params, int batch) {
  return cusolverDnSsyevjBatched(h, jobz, uplo, n, a, lda, w, work, lwork, info, params, batch);
}

// Owner of a syevjInfo_t (Jacobi controls). Defaults: tolerance = machine ε, 100 sweeps;
// eigenvalues sorted ascending (cusolverDnXsyevjSetSortEig default).
class SyevjParams {
 public:
  SyevjParams() { BASIN_CUSOLVER_CHECK(cusolverDnCreateSyevjInfo(&info_)); }
  ~SyevjParams() { BASIN_CUSOLVER_CHECK_NO_THROW(cusolverDnDestroySyevjInfo(info_)); }
  SyevjParams(const SyevjParams&) = delete;
  SyevjParams& operator=(const SyevjParams&) = delete;
  syevjInfo_t get() const { return info_; }

 private:
  syevjInfo_t info_ = nullptr;
};

template <class T>
class CudaBackend final : public Backend<T> {
 public:
  explicit CudaBackend(int device) : ctx_(DeviceContext::get(device)), op_kernels_(ctx_) {}
  OpKernels<T>& op_kernels() override { return op_kernels_; }

  BackendInfo info() const override {
    BackendInfo info;
    info.name = "cuda";
    info.device_name = ctx_.device_name();
    ctx_.memory_info(&info.memory_free_bytes, &info.memory_total_bytes);
    return info;
  }

  // ---- memory ----
  T* allocate(size_t count) override {
    if (count == 0) return nullptr;
    if (count > std::numeric_limits<size_t>::max() / sizeof(T))
      resource_exhausted("cuda backend: cannot allocate " + std::to_string(count) + " elements (the size overflows)");
    ctx_.activate();
    const size_t bytes = count * sizeof(T);
    void* p = nullptr;
    try {
      p = ctx_.allocate_bytes(bytes);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kResourceExhausted) throw;
      uint64_t free_b = 0, total_b = 0;
      ctx_.memory_info(&free_b, &total_b);
      resource_exhausted("cuda backend: cannot allocate " + human_bytes(double(bytes)) + " of device memory on " +
                         ctx_.device_name() + " (" + human_bytes(double(free_b)) + " free of " +
                         human_bytes(double(total_b)) + "): " + e.what());
    }
    // allocate() zero-fills (backend contract): accumulating primitives rely on it.
    try {
      BASIN_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, ctx_.stream()));
    } catch (...) {
      ctx_.free_bytes(p);
      throw;
    }
    return static_cast<T*>(p);
  }
  void release(T* ptr) noexcept override {
    if (ptr == nullptr) return;
    BASIN_CUDA_CHECK_NO_THROW(cudaSetDevice(ctx_.device()));
    ctx_.free_bytes(ptr);
  }
  void synchronize() override {
    ctx_.activate();
    ctx_.synchronize();
  }
  void upload(T* dst, const T* host_src, size_t count) override {
    if (count == 0) return;
    ctx_.activate();
    BASIN_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, count * sizeof(T), cudaMemcpyHostToDevice, ctx_.stream()));
    // The caller may free or reuse host_src as soon as we return; with pageable memory the copy
    // is not guaranteed to have consumed it yet, so wait.
    ctx_.synchronize();
  }
  void download(T* host_dst, const T* src, size_t count) override {
    if (count == 0) return;
    ctx_.activate();
    BASIN_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, count * sizeof(T), cudaMemcpyDeviceToHost, ctx_.stream()));
    ctx_.synchronize();
  }
  void fill(T* dst, size_t count, T value) override {
    ctx_.activate();
    BASIN_LAUNCH(kernels::fill<T>, static_cast<int64_t>(count), ctx_.stream(), value, dst);
  }
  void copy(T* dst, const T* src, size_t count) override {
    if (count == 0) return;
    ctx_.activate();
    BASIN_CUDA_CHECK(cudaMemcpyAsync(dst, src, count * sizeof(T), cudaMemcpyDeviceToDevice, ctx_.stream()));
  }

  // ---- dense linear algebra ----
  void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
            int64_t ldb, T beta, T* c, int64_t ldc) override {
    if (m == 0 || n == 0) return;
    ctx_.activate();
    if (k == 0) {  // empty product: C = beta·C, as the CPU backend defines it
      BASIN_LAUNCH(kernels::scale_matrix<T>, m * n, ctx_.stream(), n, beta, c, ldc);
      return;
    }
    // Row-major C [m×n] = op(A)·op(B)  ⇔  column-major Cᵀ [n×m] = op(B)ᵀ·op(A)ᵀ (blas_mapping.hpp).
    const ColumnMajorGemm<T> g = row_major_gemm_as_column_major(ta, tb, m, n, k, a, lda, b, ldb);
    BASIN_CUBLAS_CHECK(gemm_64(ctx_.cublas(), op(g.trans_first), op(g.trans_second), g.m, g.n, g.k, &alpha,
                               g.first, g.ld_first, g.second, g.ld_second, &beta, c, ldc));
  }
  void syrk_lower(bool trans, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, T beta, T* c,
                  int64_t ldc) override {
    if (n == 0) return;
    ctx_.activate();
    // Row-major lower triangle = column-major upper triangle, trans flag flipped (blas_mapping.hpp).
    const ColumnMajorSyrk sy = row_major_lower_syrk_as_column_major(trans);
    BASIN_CUBLAS_CHECK(syrk_64(ctx_.cublas(), sy.upper ? CUBLAS_FILL_MODE_UPPER : CUBLAS_FILL_MODE_LOWER, op(sy.trans),
                               n, k, &alpha, a, lda, &beta, c, ldc));
  }
  void axpy(size_t count, T alpha, const T* x, T* y) override {
    ctx_.activate();
    BASIN_LAUNCH(kernels::axpy<T>, static_cast<int64_t>(count), ctx_.stream(), alpha, x, y);
  }

  // ---- element-wise (bodies in elementwise.hpp) ----
  void add_row_vector(int64_t rows, int64_t cols, const T* v, T* c, int64_t ldc) override {
    ctx_.activate();
    BASIN_LAUNCH(kernels::add_row_vector<T>, rows * cols, ctx_.stream(), cols, v, c, ldc);
  }
  void activation_forward(const ActivationFn<T>& fn, size_t count, const T* z, T* a) override {
    ctx_.activate();
    BASIN_LAUNCH(kernels::activation_forward<T>, static_cast<int64_t>(count), ctx_.stream(), fn, z, a);
  }
  void scale_by_activation_derivative(const ActivationFn<T>& fn, int64_t n, int64_t rpe, int64_t d, const T* z,
                                      T* x) override {
    ctx_.activate();
    BASIN_LAUNCH(kernels::scale_by_activation_derivative<T>, n * rpe * d, ctx_.stream(), fn, rpe, d, z, x);
  }
  void rop_activation_backward(const ActivationFn<T>& fn, int64_t n, int64_t rpe, int64_t d, const T* z,
                               const T* rz, const T* g, T* rg) override {
    ctx_.activate();
    BASIN_LAUNCH(kernels::rop_activation_backward<T>, n * rpe * d, ctx_.stream(), fn, rpe, d, z, rz, g, rg);
  }
  void hadamard_expand_accumulate(int64_t n, int64_t r, const T* k, T kappa, int64_t row0, int64_t rows,
                                  const T* d, int64_t ldd, T* c) override {
    ctx_.activate();
    BASIN_LAUNCH(kernels::hadamard_expand_accumulate<T>, rows * (row0 + rows), ctx_.stream(), n, r, k, kappa, row0,
                 rows, d, ldd, c);
  }
  std::array<double, 2> combine_hessian(int64_t n, T* g, T* r) override {
    ctx_.activate();
    BASIN_LAUNCH(kernels::combine_hessian<T>, n * n, ctx_.stream(), n, g, r);
    // ‖H‖_F² and ‖R‖_F² as Thrust reductions on the stream, so the two N×N matrices never
    // travel to the host (the eigen-solves that follow work on them in place).
    // Thrust reports failures as thrust::system_error; Basin's callers expect basin::Error.
    auto norm_sq = [&](const T* x) {
      try {
        return thrust::transform_reduce(thrust::cuda::par.on(ctx_.stream()), thrust::counting_iterator<int64_t>(0),
                                        thrust::counting_iterator<int64_t>(n * n),
                                        kernels::SymmetricSquareTerm<T>{x, n}, 0.0, thrust::plus<double>());
      } catch (const std::exception& e) {
        throw Error(ErrorCode::kInternal, std::string("thrust::transform_reduce (Hessian norms) failed: ") + e.what());
      }
    };
    const double h_sq = norm_sq(g), r_sq = norm_sq(r);
    BASIN_CUDA_CHECK(cudaGetLastError());
    return {h_sq, r_sq};
  }
  void assemble_jacobian_block(int64_t rows, int64_t row0, int64_t rpe, int64_t d_out, int64_t d_in,
                               bool has_bias, const T* delta, const T* a, T* out, int64_t ldo,
                               int64_t col0) override {
    ctx_.activate();
    // One thread per output element of the [rows × width] block: consecutive threads write
    // consecutive columns of a row of G (coalesced).
    BASIN_LAUNCH(kernels::assemble_jacobian_block<T>, rows * jacobian_block_width(d_out, d_in, has_bias),
                 ctx_.stream(), row0, rpe, d_out, d_in, has_bias, delta, a, out, ldo, col0);
  }
  void strided_axpby(int64_t batch, int64_t rows, int64_t cols, T alpha, const T* x, int64_t ldx,
                     int64_t x_stride, T beta, T* y, int64_t ldy, int64_t y_stride) override {
    ctx_.activate();
    BASIN_LAUNCH(kernels::strided_axpby<T>, batch * rows * cols, ctx_.stream(), rows, cols, alpha, x, ldx,
                 x_stride, beta, y, ldy, y_stride);
  }
  void column_sums(int64_t rows, int64_t cols, const T* x, int64_t ldx, T* y) override {
    ctx_.activate();
    BASIN_LAUNCH(kernels::column_sums<T>, cols, ctx_.stream(), rows, x, ldx, y);
  }
  void symmetrize_lower(int64_t n, T* c, int64_t ldc) override {
    ctx_.activate();
    BASIN_LAUNCH(kernels::symmetrize_lower<T>, n * n, ctx_.stream(), n, c, ldc);
  }

  // ---- solvers ----
  std::vector<T> symmetric_eigenvalues(int64_t n, T* a) override { return syevd(CUSOLVER_EIG_MODE_NOVECTOR, n, a); }

  // Many small symmetric problems at once (the Grams of the checkpoints of a training run):
  //   n ≤ 32: syevjBatched (Jacobi, one thread block per matrix; cuSOLVER's size limit is 32),
  //           tolerance = machine ε and up to 100 sweeps (the defaults), eigenvalues sorted;
  //   n > 32: cusolverDnXsyevBatched (64-bit API; needs n·n·batch ≤ INT32_MAX, which the
  //           engine's 256 MiB cap on a batch keeps: ≤ 67M elements).
  // One call instead of `batch` syevd calls: for n ≈ 100, one syevd is a few hundred µs of
  // launch-bound work, so a batch of 1,000 would take ~0.5 s alone.
  bool has_batched_solver() const override { return true; }
  std::vector<T> symmetric_eigenvalues_batched(int64_t batch, int64_t n, T* a) override {
    if (batch == 1) return symmetric_eigenvalues(n, a);
    const bool jacobi = n <= kSyevjBatchedMaxDim && batch <= std::numeric_limits<int>::max();
#if !BASIN_HAVE_XSYEV_BATCHED
    // No cusolverDnXsyevBatched in this cuSOLVER: one syevd call per matrix (same results).
    if (!jacobi) return Backend<T>::symmetric_eigenvalues_batched(batch, n, a);
#endif
    std::vector<T> w(static_cast<size_t>(batch * n));
    if (w.empty()) return w;
    ctx_.activate();
    require_finite(a, batch * n * n, "matrices handed to the batched eigen-solver");
    const cublasFillMode_t uplo = CUBLAS_FILL_MODE_UPPER;  // row-major lower = column-major upper
    Scratch w_dev(ctx_, w.size() * sizeof(T));
    Scratch info_dev(ctx_, static_cast<size_t>(batch) * sizeof(int));
    const char* solver = nullptr;
    if (jacobi) {
      solver = "syevjBatched";
      SyevjParams params;
      int lwork = 0;
      BASIN_CUSOLVER_CHECK(syevj_batched_buffer_size(ctx_.cusolver(), CUSOLVER_EIG_MODE_NOVECTOR, uplo,
                                                     static_cast<int>(n), a, static_cast<int>(n), w_dev.as<T>(),
                                                     &lwork, params.get(), static_cast<int>(batch)));
      Scratch work(ctx_, static_cast<size_t>(std::max(lwork, 1)) * sizeof(T));
      BASIN_CUSOLVER_CHECK(syevj_batched(ctx_.cusolver(), CUSOLVER_EIG_MODE_NOVECTOR, uplo, static_cast<int>(n), a,
                                         static_cast<int>(n), w_dev.as<T>(), work.as<T>(), lwork, info_dev.as<int>(),
                                         params.get(), static_cast<int>(batch)));
      check_batch_info(info_dev, solver, batch, n);
    } else {
#if BASIN_HAVE_XSYEV_BATCHED
      constexpr cudaDataType dt = data_type<T>();
      solver = "cusolverDnXsyevBatched";
      size_t device_bytes = 0, host_bytes = 0;
      BASIN_CUSOLVER_CHECK(cusolverDnXsyevBatched_bufferSize(ctx_.cusolver(), ctx_.cusolver_params(),
                                                             CUSOLVER_EIG_MODE_NOVECTOR, uplo, n, dt, a, n, dt,
                                                             w_dev.as<T>(), dt, &device_bytes, &host_bytes, batch));
      Scratch work(ctx_, std::max<size_t>(device_bytes, 1));
      std::vector<char> host_work(host_bytes);
      BASIN_CUSOLVER_CHECK(cusolverDnXsyevBatched(ctx_.cusolver(), ctx_.cusolver_params(), CUSOLVER_EIG_MODE_NOVECTOR,
                                                  uplo, n, dt, a, n, dt, w_dev.as<T>(), dt, work.as<void>(),
                                                  device_bytes, host_work.empty() ? nullptr : host_work.data(),
                                                  host_bytes, info_dev.as<int>(), batch));
      check_batch_info(info_dev, solver, batch, n);
#else
      // Unreachable (handled above before any allocation); kept so that a change to the
      // dispatch cannot silently skip the solve on an old cuSOLVER.
      throw Error(ErrorCode::kInternal, "symmetric_eigenvalues_batched: cusolverDnXsyevBatched (n = " +
                                            std::to_string(n) + " > 32) is not available in cuSOLVER " +
                                            std::to_string(BASIN_CUSOLVER_VERSION_SEEN) +
                                            "; it needs cuSOLVER 11.7.1 (CUDA 12.6 Update 2)");
#endif
    }
    BASIN_CUDA_CHECK(cudaMemcpyAsync(w.data(), w_dev.as<T>(), w.size() * sizeof(T), cudaMemcpyDeviceToHost,
                                     ctx_.stream()));
    ctx_.synchronize();
    for (int64_t b = 0; b < batch; ++b)  // ascending per matrix; the contract: descending
      std::reverse(w.begin() + b * n, w.begin() + (b + 1) * n);
    return w;
  }

  std::vector<T> singular_values(int64_t m, int64_t n, T* a) override {
    std::vector<T> s(static_cast<size_t>(std::min(m, n)));
    if (s.empty()) return s;
    ctx_.activate();
    require_finite(a, m * n, "Jacobian handed to the SVD");
    constexpr cudaDataType dt = data_type<T>();
    // Row-major A [m×n] is the column-major Aᵀ [n×m], with the same singular values. cuSOLVER's
    // gesvd only supports matrices with at least as many rows as columns (rows ≥ cols), so:
    //   n ≥ m (the usual case for G: n·k rows ≤ N parameters): decompose Aᵀ in place;
    //   n < m: transpose into a scratch column-major A [m×n] (one extra m·n buffer) first.
    // gesvd (Householder bidiagonalisation + implicit QR) rather than gesvdj: this is the
    // accuracy path, meant for singular values far below √ε·σ_max that the Gram loses, and
    // gesvd matches LAPACK's dgesdd to round-off without a convergence tolerance to choose.
    const GesvdShape shape = gesvd_shape_for_row_major(m, n);
    const int64_t rows = shape.rows, cols = shape.cols, ld = shape.ld;
    std::unique_ptr<Scratch> transposed;
    T* mat = a;
    if (shape.transpose) {
      transposed = std::make_unique<Scratch>(ctx_, static_cast<size_t>(m * n) * sizeof(T));
      mat = transposed->as<T>();
      BASIN_LAUNCH(kernels::transpose<T>, m * n, ctx_.stream(), m, n, a, mat);
    }
    Scratch s_dev(ctx_, s.size() * sizeof(T));
    Scratch info_dev(ctx_, sizeof(int));
    size_t device_bytes = 0, host_bytes = 0;
    // jobu = jobvt = 'N': values only; U and VT are not referenced (ldu/ldvt given valid sizes
    // anyway).
    BASIN_CUSOLVER_CHECK(cusolverDnXgesvd_bufferSize(ctx_.cusolver(), ctx_.cusolver_params(), 'N', 'N', rows,
                                                     cols, dt, mat, ld, dt, s_dev.as<T>(), dt, nullptr, rows,
                                                     dt, nullptr, cols, dt, &device_bytes, &host_bytes));
    Scratch work(ctx_, device_bytes);
    std::vector<char> host_work(host_bytes);
    BASIN_CUSOLVER_CHECK(cusolverDnXgesvd(ctx_.cusolver(), ctx_.cusolver_params(), 'N', 'N', rows, cols, dt, mat,
                                          ld, dt, s_dev.as<T>(), dt, nullptr, rows, dt, nullptr, cols, dt,
                                          work.as<void>(), device_bytes,
                                          host_work.empty() ? nullptr : host_work.data(), host_bytes,
                                          info_dev.as<int>()));
    check_info(info_dev, "cusolverDnXgesvd", rows, cols);
    BASIN_CUDA_CHECK(cudaMemcpyAsync(s.data(), s_dev.as<T>(), s.size() * sizeof(T), cudaMemcpyDeviceToHost,
                                     ctx_.stream()));
    ctx_.synchronize();
    return s;  // cuSOLVER: descending, as the contract
  }

  // Eigenpairs of a symmetric matrix (--vectors hessian): cusolverDnXsyevd with
  // CUSOLVER_EIG_MODE_VECTOR on the column-major upper triangle (= the row-major lower one).
  // The column-major eigenvectors it leaves in A are row-major Vᵀ, ascending; the rows are
  // reversed through a scratch copy to match the descending eigenvalues.
  std::vector<T> symmetric_eigensystem(int64_t n, T* a) override {
    std::vector<T> w = syevd(CUSOLVER_EIG_MODE_VECTOR, n, a);
    if (n == 0) return w;
    Scratch ascending(ctx_, static_cast<size_t>(n * n) * sizeof(T));
    BASIN_CUDA_CHECK(cudaMemcpyAsync(ascending.as<T>(), a, static_cast<size_t>(n * n) * sizeof(T),
                                     cudaMemcpyDeviceToDevice, ctx_.stream()));
    BASIN_LAUNCH(kernels::reverse_rows<T>, n * n, ctx_.stream(), n, n, ascending.as<T>(), a);
    ctx_.synchronize();
    return w;
  }

  // SVD with vectors (--vectors jacobian_*, ggn), by cusolverDnXgesvd (rows ≥ cols only):
  //   n ≥ m: the column-major view of A is Aᵀ [n×m] = V·Σ·Uᵀ, decomposed in place; gesvd's "U"
  //          (n×p, or n×n with jobu 'A', ld n) is V column-major = row-major Vᵀ, i.e. `vt`;
  //          its "VT" (m×m, ld m) is Uᵀ column-major = row-major U, i.e. `u`. No copies.
  //   n < m: A is transposed into a column-major A [m×n] = U·Σ·Vᵀ; gesvd's U (m×n, ld m) and
  //          VT (n×n, ld n) are column-major and transposed back into row-major `u` and `vt`.
  std::vector<T> singular_value_decomposition(int64_t m, int64_t n, T* a, T* u, T* vt, bool full_v) override {
    const int64_t p = std::min(m, n);
    std::vector<T> s(static_cast<size_t>(p));
    if (p == 0) return s;
    ctx_.activate();
    require_finite(a, m * n, "Jacobian handed to the SVD");
    constexpr cudaDataType dt = data_type<T>();
    const GesvdShape shape = gesvd_shape_for_row_major(m, n);
    const int64_t rows = shape.rows, cols = shape.cols, ld = shape.ld;
    std::unique_ptr<Scratch> transposed, u_col, vt_col;
    T* mat = a;
    T* u_out = nullptr;   // gesvd's U
    T* vt_out = nullptr;  // gesvd's VT
    signed char jobu = 'N', jobvt = 'N';
    if (shape.transpose) {
      transposed = std::make_unique<Scratch>(ctx_, static_cast<size_t>(m * n) * sizeof(T));
      mat = transposed->as<T>();
      BASIN_LAUNCH(kernels::transpose<T>, m * n, ctx_.stream(), m, n, a, mat);
      if (u != nullptr) {
        u_col = std::make_unique<Scratch>(ctx_, static_cast<size_t>(m * n) * sizeof(T));
        u_out = u_col->as<T>();
        jobu = 'S';
      }
      vt_col = std::make_unique<Scratch>(ctx_, static_cast<size_t>(n * n) * sizeof(T));
      vt_out = vt_col->as<T>();
      jobvt = 'S';
    } else {
      u_out = vt;
      jobu = full_v ? 'A' : 'S';
      if (u != nullptr) {
        vt_out = u;
        jobvt = 'S';
      }
    }
    const int64_t ldu = rows, ldvt = cols;
    Scratch s_dev(ctx_, s.size() * sizeof(T));
    Scratch info_dev(ctx_, sizeof(int));
    size_t device_bytes = 0, host_bytes = 0;
    BASIN_CUSOLVER_CHECK(cusolverDnXgesvd_bufferSize(ctx_.cusolver(), ctx_.cusolver_params(), jobu, jobvt, rows, cols,
                                                     dt, mat, ld, dt, s_dev.as<T>(), dt, u_out, ldu, dt, vt_out, ldvt,
                                                     dt, &device_bytes, &host_bytes));
    {
      Scratch work(ctx_, device_bytes);
      std::vector<char> host_work(host_bytes);
      BASIN_CUSOLVER_CHECK(cusolverDnXgesvd(ctx_.cusolver(), ctx_.cusolver_params(), jobu, jobvt, rows, cols, dt, mat,
                                            ld, dt, s_dev.as<T>(), dt, u_out, ldu, dt, vt_out, ldvt, dt,
                                            work.as<void>(), device_bytes,
                                            host_work.empty() ? nullptr : host_work.data(), host_bytes,
                                            info_dev.as<int>()));
      check_info(info_dev, "cusolverDnXgesvd", rows, cols);
    }
    if (shape.transpose) {
      // Column-major U [m×n] is row-major Uᵀ [n×m]; column-major VT [n×n] is row-major V.
      if (u != nullptr) BASIN_LAUNCH(kernels::transpose<T>, m * n, ctx_.stream(), n, m, u_out, u);
      BASIN_LAUNCH(kernels::transpose<T>, n * n, ctx_.stream(), n, n, vt_out, vt);
    }
    BASIN_CUDA_CHECK(cudaMemcpyAsync(s.data(), s_dev.as<T>(), s.size() * sizeof(T), cudaMemcpyDeviceToHost,
                                     ctx_.stream()));
    ctx_.synchronize();
    return s;
  }

  void qr_r(int64_t m, int64_t n, T* a) override {
    if (n == 0) return;
    ctx_.activate();
    require_finite(a, m * n, "matrix handed to the QR");
    constexpr cudaDataType dt = data_type<T>();
    // Row-major A [m×n] is the column-major Aᵀ [n×m], and cuSOLVER has no LQ (which would give
    // R = Lᵀ in place, as on the CPU). So: transpose into a scratch column-major A [m×n]
    // (ld = m), Householder QR it with geqrf (R in its upper triangle, the vectors below), and
    // write R back into rows 0..n-1 of `a` row-major, zeros below the diagonal. Memory: one
    // extra m·n buffer plus geqrf's workspace while it runs.
    Scratch qr(ctx_, static_cast<size_t>(m * n) * sizeof(T));
    BASIN_LAUNCH(kernels::transpose<T>, m * n, ctx_.stream(), m, n, a, qr.as<T>());
    Scratch tau(ctx_, static_cast<size_t>(n) * sizeof(T));
    Scratch info_dev(ctx_, sizeof(int));
    size_t device_bytes = 0, host_bytes = 0;
    BASIN_CUSOLVER_CHECK(cusolverDnXgeqrf_bufferSize(ctx_.cusolver(), ctx_.cusolver_params(), m, n, dt, qr.as<T>(),
                                                     m, dt, tau.as<T>(), dt, &device_bytes, &host_bytes));
    Scratch work(ctx_, device_bytes);
    std::vector<char> host_work(host_bytes);
    BASIN_CUSOLVER_CHECK(cusolverDnXgeqrf(ctx_.cusolver(), ctx_.cusolver_params(), m, n, dt, qr.as<T>(), m, dt,
                                          tau.as<T>(), dt, work.as<void>(), device_bytes,
                                          host_work.empty() ? nullptr : host_work.data(), host_bytes,
                                          info_dev.as<int>()));
    check_info(info_dev, "cusolverDnXgeqrf", m, n);
    BASIN_LAUNCH(kernels::qr_r_row_major<T>, n * n, ctx_.stream(), m, n, qr.as<T>(), a);
  }

 private:
  // cusolverDnXsyevd on the symmetric matrix whose row-major lower triangle (= column-major upper
  // triangle, lda = n: A is contiguous) is in A; eigenvalues returned descending (cuSOLVER:
  // ascending). With CUSOLVER_EIG_MODE_VECTOR, A then holds the column-major eigenvectors in
  // cuSOLVER's ascending order.
  std::vector<T> syevd(cusolverEigMode_t mode, int64_t n, T* a) {
    std::vector<T> w(static_cast<size_t>(n));
    if (n == 0) return w;
    ctx_.activate();
    require_finite(a, n * n, "matrix handed to the eigen-solver");
    constexpr cudaDataType dt = data_type<T>();
    const cublasFillMode_t uplo = CUBLAS_FILL_MODE_UPPER;
    Scratch w_dev(ctx_, w.size() * sizeof(T));
    Scratch info_dev(ctx_, sizeof(int));
    size_t device_bytes = 0, host_bytes = 0;
    BASIN_CUSOLVER_CHECK(cusolverDnXsyevd_bufferSize(ctx_.cusolver(), ctx_.cusolver_params(), mode, uplo, n, dt, a, n,
                                                     dt, w_dev.as<T>(), dt, &device_bytes, &host_bytes));
    Scratch work(ctx_, device_bytes);
    std::vector<char> host_work(host_bytes);
    BASIN_CUSOLVER_CHECK(cusolverDnXsyevd(ctx_.cusolver(), ctx_.cusolver_params(), mode, uplo, n, dt, a, n, dt,
                                          w_dev.as<T>(), dt, work.as<void>(), device_bytes,
                                          host_work.empty() ? nullptr : host_work.data(), host_bytes,
                                          info_dev.as<int>()));
    check_info(info_dev, "cusolverDnXsyevd", n, n);
    BASIN_CUDA_CHECK(cudaMemcpyAsync(w.data(), w_dev.as<T>(), w.size() * sizeof(T), cudaMemcpyDeviceToHost,
                                     ctx_.stream()));
    ctx_.synchronize();
    std::reverse(w.begin(), w.end());  // cuSOLVER: ascending; the contract: descending
    return w;
  }

  // Same check, same error as the CPU backend: an assembly that overflowed (huge but finite
  // inputs) must be reported as such, not as a solver failure.
  void require_finite(const T* a, int64_t count, const char* what) {
    Scratch flag(ctx_, sizeof(int));
    BASIN_CUDA_CHECK(cudaMemsetAsync(flag.as<int>(), 0, sizeof(int), ctx_.stream()));
    BASIN_LAUNCH(kernels::nonfinite_flag<T>, count, ctx_.stream(), a, flag.as<int>());
    int found = 0;
    BASIN_CUDA_CHECK(cudaMemcpyAsync(&found, flag.as<int>(), sizeof(int), cudaMemcpyDeviceToHost, ctx_.stream()));
    ctx_.synchronize();
    if (found != 0)
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("inputs/params: the ") + what +
                      " overflowed (non-finite entries); rescale the data or parameters, or use float64");
  }

  // devInfo: 0 = success, -i = the i-th argument was illegal, > 0 = the iteration did not
  // converge (syevd: i off-diagonals; gesvd: i superdiagonals of the bidiagonal form).
  // devInfo of a batched solver: one int per matrix; the first failure is reported.
  void check_batch_info(const Scratch& info_dev, const char* solver, int64_t batch, int64_t n) {
    std::vector<int> info(static_cast<size_t>(batch));
    BASIN_CUDA_CHECK(cudaMemcpyAsync(info.data(), info_dev.as<int>(), info.size() * sizeof(int),
                                     cudaMemcpyDeviceToHost, ctx_.stream()));
    ctx_.synchronize();
    for (int64_t b = 0; b < batch; ++b) {
      if (info[b] == 0) continue;
      throw Error(ErrorCode::kInternal,
                  std::string(solver) + " on matrix " + std::to_string(b) + " of " + std::to_string(batch) + " (" +
                      std::to_string(n) + " × " + std::to_string(n) + ") failed: info = " + std::to_string(info[b]) +
                      (info[b] > 0 ? " (did not converge)" : " (illegal argument)"));
    }
  }

  void check_info(const Scratch& info_dev, const char* solver, int64_t rows, int64_t cols) {
    int info = 0;
    BASIN_CUDA_CHECK(cudaMemcpyAsync(&info, info_dev.as<int>(), sizeof(int), cudaMemcpyDeviceToHost, ctx_.stream()));
    ctx_.synchronize();
    if (info == 0) return;
    throw Error(ErrorCode::kInternal,
                std::string(solver) + " on a " + std::to_string(rows) + " × " + std::to_string(cols) +
                    " matrix failed: devInfo = " + std::to_string(info) +
                    (info > 0 ? " (did not converge; non-finite values in the matrix?)" : " (illegal argument)"));
  }

  // This job's stream and handles, leased from the device's long-lived context
  // (device_context.hpp) and returned when the backend goes.
  StreamContext ctx_;
  CudaOpKernels<T> op_kernels_;  // after ctx_: they launch on its stream
};

// The module's entry points (exported with C linkage by cuda_module.cpp and loaded lazily by
// kernels/src/cuda_loader.cpp, so CPU-only runs never load the CUDA libraries).
bool device_available(std::string* why) {
  // cudaGetDeviceCount leaves `count` untouched on failure (no driver / insufficient driver:
  // cudaErrorInsufficientDriver, 35), so it must start at 0.
  int count = 0;
  const cudaError_t st = cudaGetDeviceCount(&count);
  if (st != cudaSuccess) {
    (void)cudaGetLastError();
    if (why)
      *why = std::string("no CUDA device: cudaGetDeviceCount returned ") + cudaGetErrorName(st) + " (" +
             cudaGetErrorString(st) + ")";
    return false;
  }
  if (count <= 0) {
    if (why) *why = "no CUDA device: cudaGetDeviceCount found 0 devices";
    return false;
  }
  if (why) why->clear();
  return true;
}

template <class T>
std::unique_ptr<Backend<T>> create_backend(int device_index) {
  std::string why;
  if (!device_available(&why)) throw Error(ErrorCode::kUnavailable, "device cuda: " + why);
  try {
    return std::make_unique<CudaBackend<T>>(device_index);
  } catch (const Error& e) {
    // A device that is listed but cannot be initialised (exclusive-process mode, a broken MIG
    // instance, a driver fault) is an unusable backend, not an internal error of the analysis.
    if (e.code() != ErrorCode::kInternal) throw;
    throw Error(ErrorCode::kUnavailable, "device cuda: cannot initialise device " + std::to_string(device_index) +
                                             ": " + e.what());
  }
}
template std::unique_ptr<Backend<double>> create_backend<double>(int);
template std::unique_ptr<Backend<float>> create_backend<float>(int);

}  // namespace cuda
}  // namespace basin
