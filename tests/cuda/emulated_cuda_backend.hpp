// A host emulation of the CUDA backend: every primitive does what kernels/cuda/cuda_backend.cu
// does, with the device replaced by the host --
//   * each kernel → a loop over its element body (kernels/cuda/elementwise.hpp), indices in a
//     shuffled order (threads have no order); the op kernels likewise over
//     kernels/src/ops/kernels/ with the device launches' plans (emulated_op_kernels.hpp);
//   * each cuBLAS call → a naive column-major BLAS fed the arguments of blas_mapping.hpp;
//   * cuSOLVER → LAPACK through the CPU backend, behind the CUDA backend's gesvd orientation and
//     transpose logic (geqrf: LAPACKE on the host directly, with the same transpose and R
//     write-back as the device).
// Used by test_cuda_emulated_engine.cpp (the engine on it vs the CPU backend) and by
// basin_gpu_parity_emulated (the GPU parity suite run against it, to check the suite itself --
// its tolerances, cases and plumbing -- on machines without a GPU). It checks the CUDA backend's
// logic, not CUDA: streams, memory, the libraries and the kernels' launch are for a real GPU.
#pragma once

#include <gtest/gtest.h>
#include <lapacke.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <numeric>
#include <random>
#include <vector>

#include <unistd.h>

#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "blas_mapping.hpp"
#include "column_major_reference.hpp"
#include "elementwise.hpp"
#include "emulated_op_kernels.hpp"
#include "shuffled_index.hpp"

namespace basin {
namespace test {

// Device-memory accounting of all emulated backends. With BASIN_EMULATED_FREE_BYTES set, the
// emulated device has that much memory: info() reports it free, and allocations beyond it fail
// like cudaMallocAsync does (kResourceExhausted), so the engine's memory plan is tested against
// a device that really runs out. `peak` is the high-water mark since reset().
struct EmulatedMemory {
  static inline std::mutex mu;
  static inline std::unordered_map<const void*, size_t> sizes;
  static inline size_t current = 0, peak = 0;
  static void reset() {
    std::lock_guard<std::mutex> lock(mu);
    peak = current;
  }
  static size_t limit() {
    const char* free_bytes = std::getenv("BASIN_EMULATED_FREE_BYTES");
    return free_bytes ? static_cast<size_t>(std::strtoull(free_bytes, nullptr, 10)) : SIZE_MAX;
  }
};

template <class T>
class EmulatedCudaBackend final : public Backend<T> {
 public:
  // The CUDA op kernels' launch plans and element bodies, in shuffled order (emulated_op_kernels.hpp).
  OpKernels<T>& op_kernels() override { return op_kernels_; }
  BackendInfo info() const override {
    BackendInfo i;
    i.name = "cuda";  // stands in for the CUDA backend wherever "cuda" is expected
    i.device_name = "host emulation of the CUDA backend (no GPU)";
    const long page = sysconf(_SC_PAGESIZE);  // host memory stands in for device memory
    i.memory_total_bytes = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(page);
    i.memory_free_bytes = static_cast<uint64_t>(sysconf(_SC_AVPHYS_PAGES)) * static_cast<uint64_t>(page);
    // Tests of the memory plan pretend to be a device with little free memory.
    if (EmulatedMemory::limit() != SIZE_MAX) {
      std::lock_guard<std::mutex> lock(EmulatedMemory::mu);
      i.memory_total_bytes = EmulatedMemory::limit();
      i.memory_free_bytes = i.memory_total_bytes - std::min(EmulatedMemory::current, i.memory_total_bytes);
    }
    return i;
  }
  // Like the CUDA backend, so the engine's batched-solve path runs here too (the solves
  // themselves are the default loop).
  bool has_batched_solver() const override { return true; }
  T* allocate(size_t count) override {
    if (count == 0) return nullptr;
    const size_t bytes = count * sizeof(T);
    std::lock_guard<std::mutex> lock(EmulatedMemory::mu);
    if (EmulatedMemory::current + bytes > EmulatedMemory::limit())
      resource_exhausted("emulated device: cannot allocate " + std::to_string(bytes) + " bytes (" +
                         std::to_string(EmulatedMemory::current) + " of " + std::to_string(EmulatedMemory::limit()) +
                         " in use)");
    T* p = static_cast<T*>(std::calloc(count, sizeof(T)));
    if (p == nullptr) resource_exhausted("emulated device: host calloc failed");
    ++live_;
    EmulatedMemory::sizes[p] = bytes;
    EmulatedMemory::current += bytes;
    EmulatedMemory::peak = std::max(EmulatedMemory::peak, EmulatedMemory::current);
    return p;
  }
  void release(T* ptr) noexcept override {
    if (ptr == nullptr) return;
    {
      std::lock_guard<std::mutex> lock(EmulatedMemory::mu);
      auto it = EmulatedMemory::sizes.find(ptr);
      if (it != EmulatedMemory::sizes.end()) {
        EmulatedMemory::current -= it->second;
        EmulatedMemory::sizes.erase(it);
      }
    }
    --live_;
    std::free(ptr);
  }
  void upload(T* dst, const T* src, size_t count) override { std::memcpy(dst, src, count * sizeof(T)); }
  void download(T* dst, const T* src, size_t count) override { std::memcpy(dst, src, count * sizeof(T)); }
  void copy(T* dst, const T* src, size_t count) override { std::memcpy(dst, src, count * sizeof(T)); }
  void fill(T* dst, size_t count, T value) override {
    for_each_index(static_cast<int64_t>(count), [&](int64_t i) { cuda::fill_element(i, value, dst); });
  }

  void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
            int64_t ldb, T beta, T* c, int64_t ldc) override {
    if (m == 0 || n == 0) return;
    if (k == 0) {
      for_each_index(m * n, [&](int64_t i) { cuda::scale_matrix_element(i, n, beta, c, ldc); });
      return;
    }
    gemm_col_major(cuda::row_major_gemm_as_column_major(ta, tb, m, n, k, a, lda, b, ldb), alpha, beta, c, ldc);
  }
  void syrk_lower(bool trans, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, T beta, T* c,
                  int64_t ldc) override {
    if (n == 0) return;
    syrk_col_major(cuda::row_major_lower_syrk_as_column_major(trans), n, k, alpha, a, lda, beta, c, ldc);
  }
  void axpy(size_t count, T alpha, const T* x, T* y) override {
    for_each_index(static_cast<int64_t>(count), [&](int64_t i) { cuda::axpy_element(i, alpha, x, y); });
  }
  void add_row_vector(int64_t rows, int64_t cols, const T* v, T* c, int64_t ldc) override {
    for_each_index(rows * cols, [&](int64_t i) { cuda::add_row_vector_element(i, cols, v, c, ldc); });
  }
  void activation_forward(const ActivationFn<T>& fn, size_t count, const T* z, T* a) override {
    for_each_index(static_cast<int64_t>(count), [&](int64_t i) { cuda::activation_forward_element(i, fn, z, a); });
  }
  void scale_by_activation_derivative(const ActivationFn<T>& fn, int64_t n, int64_t rpe, int64_t d, const T* z,
                                      T* x) override {
    for_each_index(n * rpe * d, [&](int64_t i) { cuda::scale_by_activation_derivative_element(i, fn, rpe, d, z, x); });
  }
  void rop_activation_backward(const ActivationFn<T>& fn, int64_t n, int64_t rpe, int64_t d, const T* z, const T* rz,
                               const T* g, T* rg) override {
    for_each_index(n * rpe * d,
                   [&](int64_t i) { cuda::rop_activation_backward_element(i, fn, rpe, d, z, rz, g, rg); });
  }
  std::array<double, 2> combine_hessian(int64_t n, T* g, T* r) override {
    for_each_index(n * n, [&](int64_t i) { cuda::combine_hessian_element(i, n, g, r); });
    // The device reduces with Thrust (a tree, any order); here: a plain sum.
    double h_sq = 0, r_sq = 0;
    for (int64_t i = 0; i < n * n; ++i) {
      h_sq += cuda::symmetric_square_term(i, n, g);
      r_sq += cuda::symmetric_square_term(i, n, r);
    }
    return {h_sq, r_sq};
  }
  void hadamard_expand_accumulate(int64_t n, int64_t r, const T* k, T kappa, int64_t row0, int64_t rows,
                                  const T* d, int64_t ldd, T* c) override {
    for_each_index(rows * (row0 + rows),
                   [&](int64_t i) { cuda::hadamard_expand_element(i, n, r, k, kappa, row0, rows, d, ldd, c); });
  }
  void assemble_jacobian_block(int64_t rows, int64_t row0, int64_t rpe, int64_t d_out, int64_t d_in, bool has_bias,
                               const T* delta, const T* a, T* out, int64_t ldo, int64_t col0) override {
    for_each_index(rows * cuda::jacobian_block_width(d_out, d_in, has_bias), [&](int64_t i) {
      cuda::assemble_jacobian_element(i, row0, rpe, d_out, d_in, has_bias, delta, a, out, ldo, col0);
    });
  }
  void strided_axpby(int64_t batch, int64_t rows, int64_t cols, T alpha, const T* x, int64_t ldx,
                     int64_t x_stride, T beta, T* y, int64_t ldy, int64_t y_stride) override {
    for_each_index(batch * rows * cols, [&](int64_t i) {
      cuda::strided_axpby_element(i, rows, cols, alpha, x, ldx, x_stride, beta, y, ldy, y_stride);
    });
  }
  void column_sums(int64_t rows, int64_t cols, const T* x, int64_t ldx, T* y) override {
    for_each_index(cols, [&](int64_t j) { cuda::column_sum_element(j, rows, x, ldx, y); });
  }
  void symmetrize_lower(int64_t n, T* c, int64_t ldc) override {
    for_each_index(n * n, [&](int64_t i) { cuda::symmetrize_lower_element(i, n, c, ldc); });
  }
  std::vector<T> symmetric_eigenvalues(int64_t n, T* a) override {
    // cusolverDnXsyevd gets the same column-major upper-triangle call LAPACK gets on the CPU.
    return lapack_->symmetric_eigenvalues(n, a);
  }
  std::vector<T> singular_values(int64_t m, int64_t n, T* a) override {
    if (std::min(m, n) == 0) return {};
    const cuda::GesvdShape shape = cuda::gesvd_shape_for_row_major(m, n);
    EXPECT_GE(shape.rows, shape.cols);  // what cuSOLVER's gesvd requires
    std::vector<T> transposed;
    T* mat = a;
    if (shape.transpose) {
      transposed.resize(static_cast<size_t>(m * n));
      for_each_index(m * n, [&](int64_t i) { cuda::transpose_element(i, m, n, a, transposed.data()); });
      mat = transposed.data();
    }
    // Column-major rows×cols with ld = rows is row-major cols×rows, which LAPACK (via the CPU
    // backend) decomposes in place.
    return lapack_->singular_values(shape.cols, shape.rows, mat);
  }
  void qr_r(int64_t m, int64_t n, T* a) override {
    if (n == 0) return;
    EXPECT_GE(m, n);  // the contract, and what geqrf's R [n×n] needs
    // As the CUDA backend: transpose into a column-major A [m×n] (ld = m), geqrf it (LAPACK on
    // the host for cuSOLVER's Xgeqrf), write R back row-major through the kernel's element body.
    std::vector<T> qr(static_cast<size_t>(m * n)), tau(static_cast<size_t>(n));
    for_each_index(m * n, [&](int64_t i) { cuda::transpose_element(i, m, n, a, qr.data()); });
    ASSERT_EQ(geqrf(m, n, qr.data(), tau.data()), 0);
    for_each_index(n * n, [&](int64_t i) { cuda::qr_r_row_major_element(i, m, n, qr.data(), a); });
  }

  std::vector<T> symmetric_eigensystem(int64_t n, T* a) override {
    // cusolverDnXsyevd (vector mode) = LAPACK syevd 'V' on the column-major upper triangle;
    // then the CUDA backend's scratch copy and reverse_rows kernel.
    std::vector<T> w(static_cast<size_t>(n));
    if (n == 0) return w;
    EXPECT_EQ(syevd(n, a, w.data()), 0);
    std::vector<T> ascending(a, a + n * n);
    for_each_index(n * n, [&](int64_t i) { cuda::reverse_rows_element(i, n, n, ascending.data(), a); });
    std::reverse(w.begin(), w.end());
    return w;
  }
  std::vector<T> singular_value_decomposition(int64_t m, int64_t n, T* a, T* u, T* vt, bool full_v) override {
    // The CUDA backend's orientation logic, with LAPACK's gesvd for cusolverDnXgesvd (same
    // arguments: column-major rows×cols, ld, jobu/jobvt, ldu = rows, ldvt = cols).
    const int64_t p = std::min(m, n);
    std::vector<T> s(static_cast<size_t>(p));
    if (p == 0) return s;
    const cuda::GesvdShape shape = cuda::gesvd_shape_for_row_major(m, n);
    EXPECT_GE(shape.rows, shape.cols);
    std::vector<T> transposed, u_col, vt_col;
    T* mat = a;
    T* u_out = nullptr;
    T* vt_out = nullptr;
    char jobu = 'N', jobvt = 'N';
    if (shape.transpose) {
      transposed.resize(static_cast<size_t>(m * n));
      for_each_index(m * n, [&](int64_t i) { cuda::transpose_element(i, m, n, a, transposed.data()); });
      mat = transposed.data();
      if (u != nullptr) {
        u_col.resize(static_cast<size_t>(m * n));
        u_out = u_col.data();
        jobu = 'S';
      }
      vt_col.resize(static_cast<size_t>(n * n));
      vt_out = vt_col.data();
      jobvt = 'S';
    } else {
      u_out = vt;
      jobu = full_v ? 'A' : 'S';
      if (u != nullptr) {
        vt_out = u;
        jobvt = 'S';
      }
    }
    T dummy = T(0);
    EXPECT_EQ(gesvd(jobu, jobvt, shape.rows, shape.cols, mat, shape.ld, s.data(), u_out ? u_out : &dummy, shape.rows,
                    vt_out ? vt_out : &dummy, shape.cols),
              0);
    if (shape.transpose) {
      if (u != nullptr) for_each_index(m * n, [&](int64_t i) { cuda::transpose_element(i, n, m, u_out, u); });
      for_each_index(n * n, [&](int64_t i) { cuda::transpose_element(i, n, n, vt_out, vt); });
    }
    return s;
  }

  int live_allocations() const { return live_; }

 private:
  static lapack_int syevd(int64_t n, double* a, double* w) { return LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', n, a, n, w); }
  static lapack_int syevd(int64_t n, float* a, float* w) { return LAPACKE_ssyevd(LAPACK_COL_MAJOR, 'V', 'U', n, a, n, w); }
  static lapack_int gesvd(char jobu, char jobvt, int64_t rows, int64_t cols, double* a, int64_t ld, double* s,
                          double* u, int64_t ldu, double* vt, int64_t ldvt) {
    std::vector<double> superb(static_cast<size_t>(std::max<int64_t>(std::min(rows, cols), 2)));
    return LAPACKE_dgesvd(LAPACK_COL_MAJOR, jobu, jobvt, rows, cols, a, ld, s, u, ldu, vt, ldvt, superb.data());
  }
  static lapack_int gesvd(char jobu, char jobvt, int64_t rows, int64_t cols, float* a, int64_t ld, float* s, float* u,
                          int64_t ldu, float* vt, int64_t ldvt) {
    std::vector<float> superb(static_cast<size_t>(std::max<int64_t>(std::min(rows, cols), 2)));
    return LAPACKE_sgesvd(LAPACK_COL_MAJOR, jobu, jobvt, rows, cols, a, ld, s, u, ldu, vt, ldvt, superb.data());
  }
  static lapack_int geqrf(int64_t m, int64_t n, double* a, double* tau) {
    return LAPACKE_dgeqrf(LAPACK_COL_MAJOR, m, n, a, m, tau);
  }
  static lapack_int geqrf(int64_t m, int64_t n, float* a, float* tau) {
    return LAPACKE_sgeqrf(LAPACK_COL_MAJOR, m, n, a, m, tau);
  }
  std::unique_ptr<Backend<T>> lapack_ = make_cpu_backend<T>();
  EmulatedOpKernels<T> op_kernels_;
  int live_ = 0;
};

}  // namespace test
}  // namespace basin
