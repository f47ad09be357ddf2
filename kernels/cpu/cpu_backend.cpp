// The CPU backend: OpenBLAS for GEMM/SYRK, LAPACKE for the eigen/singular-value solves, and
// plain loops over the shared element functions (activation.hpp) for everything element-wise.
//
// Row-major ↔ LAPACK: a row-major n×n symmetric matrix with its lower triangle filled is the
// column-major matrix with its upper triangle filled, and a row-major m×n matrix is the
// column-major n×m matrix Aᵀ with the same singular values -- so no copies are needed.
#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "block_cache.hpp"
#include "check.hpp"
#include "ops/cpu_op_kernels.hpp"

namespace basin {
namespace {

CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

void gemm_impl(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
               int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void gemm_impl(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void syrk_impl(bool t, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
               double beta, double* c, int64_t ldc) {
  cblas_dsyrk(CblasRowMajor, CblasLower, tr(t), n, k, alpha, a, lda, beta, c, ldc);
}
void syrk_impl(bool t, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               float beta, float* c, int64_t ldc) {
  cblas_ssyrk(CblasRowMajor, CblasLower, tr(t), n, k, alpha, a, lda, beta, c, ldc);
}
lapack_int syevd_impl(int64_t n, double* a, double* w) {
  return LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'N', 'U', n, a, n, w);
}
lapack_int syevd_impl(int64_t n, float* a, float* w) {
  return LAPACKE_ssyevd(LAPACK_COL_MAJOR, 'N', 'U', n, a, n, w);
}
lapack_int gesdd_impl(int64_t m, int64_t n, double* a, double* s) {
  return LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', m, n, a, m, s, nullptr, 1, nullptr, 1);
}
lapack_int gesdd_impl(int64_t m, int64_t n, float* a, float* s) {
  return LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'N', m, n, a, m, s, nullptr, 1, nullptr, 1);
}
lapack_int syevd_vectors_impl(int64_t n, double* a, double* w) {
  return LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', n, a, n, w);
}
lapack_int syevd_vectors_impl(int64_t n, float* a, float* w) {
  return LAPACKE_ssyevd(LAPACK_COL_MAJOR, 'V', 'U', n, a, n, w);
}
lapack_int gesdd_vectors_impl(char jobz, int64_t m, int64_t n, double* a, double* s, double* u, int64_t ldu,
                              double* vt, int64_t ldvt) {
  return LAPACKE_dgesdd(LAPACK_COL_MAJOR, jobz, m, n, a, m, s, u, ldu, vt, ldvt);
}
lapack_int gesdd_vectors_impl(char jobz, int64_t m, int64_t n, float* a, float* s, float* u, int64_t ldu,
                              float* vt, int64_t ldvt) {
  return LAPACKE_sgesdd(LAPACK_COL_MAJOR, jobz, m, n, a, m, s, u, ldu, vt, ldvt);
}
lapack_int gelqf_impl(int64_t m, int64_t n, double* a, double* tau) {
  return LAPACKE_dgelqf(LAPACK_COL_MAJOR, m, n, a, m, tau);
}
lapack_int gelqf_impl(int64_t m, int64_t n, float* a, float* tau) {
  return LAPACKE_sgelqf(LAPACK_COL_MAJOR, m, n, a, m, tau);
}

template <class T>
class CpuBackend final : public Backend<T> {
 public:
  OpKernels<T>& op_kernels() override { return cpu_op_kernels<T>(); }
  BackendInfo info() const override {
    BackendInfo info;
    info.name = "cpu";
    info.device_name = "OpenBLAS on " + std::to_string(openblas_get_num_threads()) + " threads";
    return info;
  }

  T* allocate(size_t count) override {
    if (count > std::numeric_limits<size_t>::max() / sizeof(T))
      resource_exhausted("cpu backend: cannot allocate " + std::to_string(count) + " elements (the size overflows)");
    void* p = blocks_.allocate(count * sizeof(T));
    if (p == nullptr)
      resource_exhausted("cpu backend: cannot allocate " + std::to_string(count * sizeof(T)) +
                         " bytes of host memory");
    return static_cast<T*>(p);
  }
  void release(T* ptr) noexcept override { blocks_.release(ptr); }
  void upload(T* dst, const T* src, size_t count) override { std::memcpy(dst, src, count * sizeof(T)); }
  void download(T* dst, const T* src, size_t count) override { std::memcpy(dst, src, count * sizeof(T)); }
  void fill(T* dst, size_t count, T value) override { std::fill(dst, dst + count, value); }
  void copy(T* dst, const T* src, size_t count) override { std::memcpy(dst, src, count * sizeof(T)); }

  void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
            const T* b, int64_t ldb, T beta, T* c, int64_t ldc) override {
    if (m == 0 || n == 0) return;
    if (k == 0) {  // BLAS leaves C untouched only for beta = 1; make k = 0 mean C = beta·C.
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
      return;
    }
    gemm_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void syrk_lower(bool trans, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, T beta, T* c,
                  int64_t ldc) override {
    if (n == 0) return;
    syrk_impl(trans, n, k, alpha, a, lda, beta, c, ldc);
  }
  void axpy(size_t count, T alpha, const T* x, T* y) override {
    for (size_t i = 0; i < count; ++i) y[i] += alpha * x[i];
  }

  void add_row_vector(int64_t rows, int64_t cols, const T* v, T* c, int64_t ldc) override {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] += v[j];
  }
  void activation_forward(const ActivationFn<T>& fn, size_t count, const T* z, T* a) override {
    for (size_t i = 0; i < count; ++i) a[i] = fn.value(z[i]);
  }
  void scale_by_activation_derivative(const ActivationFn<T>& fn, int64_t n, int64_t rpe, int64_t d,
                                      const T* z, T* x) override {
    std::vector<T> deriv(static_cast<size_t>(d));
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t p = 0; p < d; ++p) deriv[p] = fn.first(z[i * d + p]);
      for (int64_t r = 0; r < rpe; ++r) {
        T* row = x + (i * rpe + r) * d;
        for (int64_t p = 0; p < d; ++p) row[p] *= deriv[p];
      }
    }
  }
  void rop_activation_backward(const ActivationFn<T>& fn, int64_t n, int64_t rpe, int64_t d,
                               const T* z, const T* rz, const T* g, T* rg) override {
    std::vector<T> d1(static_cast<size_t>(d)), d2g(static_cast<size_t>(d));
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t p = 0; p < d; ++p) {
        d1[p] = fn.first(z[i * d + p]);
        d2g[p] = fn.second(z[i * d + p]) * g[i * d + p];
      }
      for (int64_t r = 0; r < rpe; ++r) {
        const size_t off = static_cast<size_t>((i * rpe + r) * d);
        for (int64_t p = 0; p < d; ++p) rg[off + p] = d2g[p] * rz[off + p] + d1[p] * rg[off + p];
      }
    }
  }
  void hadamard_expand_accumulate(int64_t n, int64_t r, const T* k, T kappa, int64_t row0, int64_t rows,
                                  const T* d, int64_t ldd, T* c) override {
    const int64_t m = n * r;
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t row = row0 + t, i = row / r;
      const T* drow = d + t * ldd;
      T* crow = c + row * m;
      for (int64_t col = 0; col <= row; ++col) crow[col] += drow[col] * (k[i * n + col / r] + kappa);
    }
  }
  std::array<double, 2> combine_hessian(int64_t n, T* g, T* r) override {
    // Tiles of 64 × 64 so the transposed reads r_ji stay in cache (a plain row sweep reads them
    // with stride n: ~70 ms at n = 1000).
    constexpr int64_t kTile = 64;
    double h_sq = 0, r_sq = 0;
    for (int64_t i0 = 0; i0 < n; i0 += kTile)
      for (int64_t j0 = 0; j0 <= i0; j0 += kTile)
        for (int64_t i = i0; i < std::min(n, i0 + kTile); ++i)
          for (int64_t j = j0; j < std::min(i + 1, j0 + kTile); ++j) {
            const T rij = T(0.5) * (r[i * n + j] + r[j * n + i]);
            const T hij = g[i * n + j] + rij;
            r[i * n + j] = rij;
            g[i * n + j] = hij;
            const double w = i == j ? 1.0 : 2.0;
            h_sq += w * double(hij) * double(hij);
            r_sq += w * double(rij) * double(rij);
          }
    return {h_sq, r_sq};
  }
  void assemble_jacobian_block(int64_t rows, int64_t row0, int64_t rpe, int64_t d_out, int64_t d_in,
                               bool has_bias, const T* delta, const T* a, T* out, int64_t ldo,
                               int64_t col0) override {
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t i = (row0 + t) / rpe;
      const T* drow = delta + t * d_out;
      const T* arow = a + i * d_in;
      T* orow = out + t * ldo + col0;
      for (int64_t p = 0; p < d_out; ++p) {
        const T dp = drow[p];
        T* o = orow + p * d_in;
        for (int64_t q = 0; q < d_in; ++q) o[q] = dp * arow[q];
      }
      if (has_bias)
        for (int64_t p = 0; p < d_out; ++p) orow[d_out * d_in + p] = drow[p];
    }
  }
  void column_sums(int64_t rows, int64_t cols, const T* x, int64_t ldx, T* y) override {
    std::fill(y, y + cols, T(0));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) y[j] += x[r * ldx + j];
  }
  void strided_axpby(int64_t batch, int64_t rows, int64_t cols, T alpha, const T* x, int64_t ldx,
                     int64_t x_stride, T beta, T* y, int64_t ldy, int64_t y_stride) override {
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t r = 0; r < rows; ++r) {
        const T* xr = x + b * x_stride + r * ldx;
        T* yr = y + b * y_stride + r * ldy;
        if (beta == T(0))
          for (int64_t c = 0; c < cols; ++c) yr[c] = alpha * xr[c];
        else
          for (int64_t c = 0; c < cols; ++c) yr[c] = alpha * xr[c] + beta * yr[c];
      }
  }
  void symmetrize_lower(int64_t n, T* c, int64_t ldc) override {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < i; ++j) c[j * ldc + i] = c[i * ldc + j];
  }

  // Overflow in the assembly (huge but finite inputs) would reach LAPACK as Inf/NaN and come
  // back as "illegal argument"; say what happened instead.
  static void require_finite(const T* a, size_t count, const char* what) {
    for (size_t i = 0; i < count; ++i)
      if (!std::isfinite(a[i]))
        throw Error(ErrorCode::kInvalidArgument,
                    std::string("inputs/params: the ") + what +
                        " overflowed (non-finite entries); rescale the data or parameters, or use float64");
  }

  std::vector<T> symmetric_eigenvalues(int64_t n, T* a) override {
    std::vector<T> w(static_cast<size_t>(n));
    if (n == 0) return w;
    require_finite(a, static_cast<size_t>(n * n), "matrix handed to the eigen-solver");
    BASIN_LAPACK_CHECK(syevd_impl(n, a, w.data()));
    std::reverse(w.begin(), w.end());  // LAPACK: ascending
    return w;
  }
  std::vector<T> singular_values(int64_t m, int64_t n, T* a) override {
    std::vector<T> s(static_cast<size_t>(std::min(m, n)));
    if (s.empty()) return s;
    require_finite(a, static_cast<size_t>(m * n), "Jacobian handed to the SVD");
    // Row-major m×n A is column-major n×m Aᵀ.
    BASIN_LAPACK_CHECK(gesdd_impl(n, m, a, s.data()));
    return s;  // LAPACK: descending
  }
  std::vector<T> symmetric_eigensystem(int64_t n, T* a) override {
    std::vector<T> w(static_cast<size_t>(n));
    if (n == 0) return w;
    require_finite(a, static_cast<size_t>(n * n), "matrix handed to the eigen-solver");
    // Column-major upper triangle in, column-major eigenvectors out: column j of the
    // column-major V is row j of the row-major buffer, i.e. the buffer is Vᵀ row-major.
    BASIN_LAPACK_CHECK(syevd_vectors_impl(n, a, w.data()));
    // LAPACK: ascending; the contract: descending, rows in the same order.
    std::reverse(w.begin(), w.end());
    for (int64_t i = 0, j = n - 1; i < j; ++i, --j) std::swap_ranges(a + i * n, a + (i + 1) * n, a + j * n);
    return w;
  }
  std::vector<T> singular_value_decomposition(int64_t m, int64_t n, T* a, T* u, T* vt, bool full_v) override {
    const int64_t p = std::min(m, n);
    std::vector<T> s(static_cast<size_t>(p));
    if (p == 0) return s;
    require_finite(a, static_cast<size_t>(m * n), "Jacobian handed to the SVD");
    // Row-major A [m×n] is column-major Aᵀ [n×m] = V·Σ·Uᵀ. LAPACK's "U" of Aᵀ (n × p, or n × n
    // with jobz 'A') is V column-major = Vᵀ row-major (ld n): `vt` as it is. Its "VT" (p × m,
    // ld p) is Uᵀ column-major = U row-major [m×p]: `u` as it is. No copies.
    const char jobz = full_v && n > m ? 'A' : 'S';
    std::vector<T> u_scratch;
    if (u == nullptr) {
      u_scratch.resize(static_cast<size_t>(m * p));
      u = u_scratch.data();
    }
    BASIN_LAPACK_CHECK(gesdd_vectors_impl(jobz, n, m, a, s.data(), vt, n, u, p));
    return s;  // LAPACK: descending
  }
  void qr_r(int64_t m, int64_t n, T* a) override {
    if (n == 0) return;
    require_finite(a, static_cast<size_t>(m * n), "matrix handed to the QR");
    // Row-major A [m×n] is column-major Aᵀ [n×m]; its LQ factorisation Aᵀ = L·Q₁ is A = Q₁ᵀ·Lᵀ,
    // so R = Lᵀ. gelqf leaves L in the column-major lower triangle, which IS the row-major upper
    // triangle of rows 0..n-1 holding Lᵀ = R: no transposes, no copy. The Householder vectors sit
    // above the column-major diagonal, i.e. in the row-major strictly lower part: zeroed.
    std::vector<T> tau(static_cast<size_t>(n));
    BASIN_LAPACK_CHECK(gelqf_impl(n, m, a, tau.data()));
    for (int64_t i = 1; i < n; ++i) std::fill(a + i * n, a + i * n + i, T(0));
  }

 private:
  cpu::BlockCache blocks_;
};

}  // namespace

template <class T>
std::unique_ptr<Backend<T>> make_cpu_backend() {
  return std::make_unique<CpuBackend<T>>();
}
template std::unique_ptr<Backend<double>> make_cpu_backend<double>();
template std::unique_ptr<Backend<float>> make_cpu_backend<float>();

}  // namespace basin
