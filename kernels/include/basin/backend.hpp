// The backend interface: the primitives Basin's spectral algorithms are written in.
//
// The algorithms (forward pass, back-propagation of all k output directions, the structured
// Gram, Jacobian assembly, the Hessian R-op, the eigen-solves) live once in kernels/src and
// call only these primitives, so a backend is a small table of operations -- the faiss/ggml
// shape. `cpu` implements them with OpenBLAS + LAPACKE and loops over the shared
// __host__ __device__ element functions; `cuda` with kernels, cuBLAS and cuSOLVER.
//
// Conventions: every matrix is row-major with an explicit leading dimension (elements between
// consecutive rows). Pointers returned by allocate() live in the backend's memory space
// (host for cpu, device for cuda) and are only touched through the backend.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "basin/activation.hpp"
#include "basin/op_kernels.hpp"

namespace basin {

struct BackendInfo {
  std::string name;         // "cpu" | "cuda"
  std::string device_name;  // "OpenBLAS on 2 cores", "NVIDIA H100 80GB HBM3"
  uint64_t memory_total_bytes = 0;
  uint64_t memory_free_bytes = 0;
};

template <class T>
class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendInfo info() const = 0;
  // Waits for queued work (a no-op on the CPU); called before reading a clock for timings.
  virtual void synchronize() {}
  // The per-op device kernels (im2col, pooling, strided copies, broadcast arithmetic) the
  // graph's primitive ops are written in: op_kernels.hpp.
  virtual OpKernels<T>& op_kernels() = 0;

  // ---- memory (count = number of T elements) ----
  virtual T* allocate(size_t count) = 0;  // zero-filled; throws kResourceExhausted
  virtual void release(T* ptr) noexcept = 0;
  virtual void upload(T* dst, const T* host_src, size_t count) = 0;
  virtual void download(T* host_dst, const T* src, size_t count) = 0;
  virtual void fill(T* dst, size_t count, T value) = 0;
  virtual void copy(T* dst, const T* src, size_t count) = 0;  // within the backend's memory

  // ---- dense linear algebra ----
  // C[m×n] = alpha·op(A)·op(B) + beta·C, op(X) = Xᵀ when trans_x.
  virtual void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
                    const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c,
                    int64_t ldc) = 0;
  // Lower triangle of C[n×n] = alpha·A·Aᵀ + beta·C with A [n×k] (trans = false), or
  // alpha·Aᵀ·A + beta·C with A [k×n] (trans = true). The upper triangle is not referenced:
  // every symmetric matrix in Basin is kept in its lower triangle.
  virtual void syrk_lower(bool trans, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                          T beta, T* c, int64_t ldc) = 0;
  // y += alpha·x, contiguous.
  virtual void axpy(size_t count, T alpha, const T* x, T* y) = 0;

  // ---- element-wise ----
  // C[r, :] += v for every row r of C [rows×cols].
  virtual void add_row_vector(int64_t rows, int64_t cols, const T* v, T* c, int64_t ldc) = 0;
  // a = φ(z), contiguous, `count` elements.
  virtual void activation_forward(const ActivationFn<T>& fn, size_t count, const T* z, T* a) = 0;
  // X[(i,r), p] *= φ'(Z[i, p]) for i < n, r < rows_per_example, p < d. X is [(n·rpe)×d] and
  // Z is [n×d], both contiguous. This is back-propagation through an activation of all the
  // directions that belong to example i at once.
  virtual void scale_by_activation_derivative(const ActivationFn<T>& fn, int64_t n,
                                              int64_t rows_per_example, int64_t d, const T* z,
                                              T* x) = 0;
  // Hessian R-op through an activation, for directions (i, r):
  //   RG[(i,r), p] = φ''(Z[i,p])·RZ[(i,r),p]·G[i,p] + φ'(Z[i,p])·RG[(i,r),p]
  // where G is the ordinary back-propagated gradient w.r.t. the activation output.
  virtual void rop_activation_backward(const ActivationFn<T>& fn, int64_t n,
                                       int64_t rows_per_example, int64_t d, const T* z,
                                       const T* rz, const T* g, T* rg) = 0;
  // Structured-Gram accumulation for rows [row0, row0 + rows) of the lower triangle:
  //   C[(i,a),(j,b)] += D[t, (j,b)] · (K[i,j] + kappa)   for row (i,a) = row0 + t ≥ column (j,b)
  // C is [(n·r)×(n·r)] (contiguous), D holds the tile's rows [rows × ≥(row0+rows)] with leading
  // dimension ldd, K is [n×n] (lower triangle read). kappa = 1 adds the bias column. The whole
  // square at once is row0 = 0, rows = ldd = n·r; smaller tiles bound the memory of D.
  virtual void hadamard_expand_accumulate(int64_t n, int64_t r, const T* k, T kappa, int64_t row0,
                                          int64_t rows, const T* d, int64_t ldd, T* c) = 0;
  // Rows of the Jacobian block of one dense layer. For row t < rows (example i = row0/r + t/r):
  //   out[t, col0 + p·d_in + q] = Δ[t, p] · A[i, q]   (weight, PyTorch's [out, in] order)
  //   out[t, col0 + d_out·d_in + p] = Δ[t, p]         (bias, when has_bias)
  // Δ is [rows×d_out] (contiguous), A is the layer input [n×d_in] (contiguous, full).
  virtual void assemble_jacobian_block(int64_t rows, int64_t row0, int64_t rows_per_example,
                                       int64_t d_out, int64_t d_in, bool has_bias, const T* delta,
                                       const T* a, T* out, int64_t ldo, int64_t col0) = 0;
  // y[j] = Σ_i X[i, j] over rows (column sums), X [rows×cols] with leading dimension ldx.
  virtual void column_sums(int64_t rows, int64_t cols, const T* x, int64_t ldx, T* y) = 0;
  // For every block b < batch: Y_b = alpha·X_b + beta·Y_b (beta = 0 overwrites Y_b), where
  // X_b [rows×cols] starts at x + b·x_stride with leading dimension ldx, and Y_b likewise.
  // Moves the results of one batched GEMM into strided places (e.g. rows of the Hessian).
  virtual void strided_axpby(int64_t batch, int64_t rows, int64_t cols, T alpha, const T* x, int64_t ldx,
                             int64_t x_stride, T beta, T* y, int64_t ldy, int64_t y_stride) = 0;
  // The Hessian from its two parts, in place, on lower triangles of n×n matrices:
  //   R ← (R + Rᵀ)/2,   G ← G + R
  // (G holds GᵀMG on entry and H = GᵀMG + R on return; R arrives from the R-op passes row by
  // row in full, symmetric only up to round-off). Returns {‖H‖_F², ‖R‖_F²} of the full
  // symmetric matrices (off-diagonal entries count twice), accumulated in double.
  virtual std::array<double, 2> combine_hessian(int64_t n, T* g, T* r) = 0;
  // Copy the lower triangle of an n×n matrix to its upper triangle.
  virtual void symmetrize_lower(int64_t n, T* c, int64_t ldc) = 0;

  // ---- solvers (values only, returned to the host, descending) ----
  // Eigenvalues of the symmetric matrix whose lower triangle is in A [n×n]; A is destroyed.
  virtual std::vector<T> symmetric_eigenvalues(int64_t n, T* a) = 0;
  // True when symmetric_eigenvalues_batched is faster than one call per matrix (a GPU's batched
  // solvers); the engine then collects small problems for it. The default loop gains nothing.
  virtual bool has_batched_solver() const { return false; }
  // Eigenvalues of `batch` symmetric n×n matrices stored one after another in A (matrix b at
  // A + b·n², lower triangles), each one's values descending, concatenated; A is destroyed.
  // For many small problems (the checkpoints of a training run) a device solves them in one
  // batched call; the default solves them one at a time.
  virtual std::vector<T> symmetric_eigenvalues_batched(int64_t batch, int64_t n, T* a) {
    std::vector<T> all;
    all.reserve(static_cast<size_t>(batch * n));
    for (int64_t b = 0; b < batch; ++b) {
      const std::vector<T> values = symmetric_eigenvalues(n, a + b * n * n);
      all.insert(all.end(), values.begin(), values.end());
    }
    return all;
  }
  // Singular values of A [m×n] row-major; A is destroyed.
  virtual std::vector<T> singular_values(int64_t m, int64_t n, T* a) = 0;
  // ---- solvers with vectors (--vectors: eigenvectors and singular bases) ----
  // Eigenvalues (returned, descending) and eigenvectors of the symmetric matrix whose lower
  // triangle is in A [n×n]. On return A holds the eigenvectors as ROWS: row j is the unit
  // eigenvector of eigenvalue j (A is row-major Vᵀ, with H = V·diag(λ)·Vᵀ).
  virtual std::vector<T> symmetric_eigensystem(int64_t n, T* a) = 0;
  // SVD A = U·Σ·Vᵀ of A [m×n] row-major (destroyed), p = min(m, n); returns the p singular
  // values, descending. vt [v_rows×n] row-major receives the right singular vectors as rows,
  // v_rows = n when full_v (the n − p rows after the first p complete an orthonormal basis of
  // ℝⁿ: for m < n they span the null space of A) and p otherwise. u [m×p] row-major, when not
  // nullptr, receives the left singular vectors as columns. u and vt are backend memory.
  virtual std::vector<T> singular_value_decomposition(int64_t m, int64_t n, T* a, T* u, T* vt, bool full_v) = 0;
  // The triangular factor of a Householder QR: A = Q·R for A [m×n] row-major (contiguous),
  // m ≥ n, Q [m×n] with orthonormal columns. On return rows 0..n-1 of A hold R [n×n]: its upper
  // triangle, the strictly lower part set to 0; rows n..m-1 are unspecified (Householder data).
  // Q is not formed. R is unique only up to the signs of its rows, but AᵀA = RᵀR, so
  // σ(A) = σ(R): this is the step of TSQR (a tall G's singular values from R, stacking
  // [R; G_block] block after block) and, unlike AᵀA, it keeps σ accurate to ε·σ_max.
  virtual void qr_r(int64_t m, int64_t n, T* a) = 0;
};

// RAII owner of backend memory.
template <class T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend<T>& backend, size_t count)
      : backend_(&backend), ptr_(count ? backend.allocate(count) : nullptr), count_(count) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      reset();
      backend_ = other.backend_;
      ptr_ = other.ptr_;
      count_ = other.count_;
      other.ptr_ = nullptr;
      other.count_ = 0;
    }
    return *this;
  }
  ~Buffer() { reset(); }
  void reset() noexcept {
    if (ptr_ != nullptr && backend_ != nullptr) backend_->release(ptr_);
    ptr_ = nullptr;
    count_ = 0;
  }
  T* get() const { return ptr_; }
  size_t size() const { return count_; }

 private:
  Backend<T>* backend_ = nullptr;
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

template <class T>
std::unique_ptr<Backend<T>> make_cpu_backend();

// Makes OpenBLAS's idle worker threads sleep at once instead of spinning (kernels/cpu/
// blas_threads.cpp) unless OPENBLAS_THREAD_TIMEOUT is set. Call it at the start of main, before
// any other thread exists (it stops OpenBLAS's threads; the next BLAS call restarts them).
void configure_blas_threads();

// CUDA backend; throws Error(kUnavailable) with the reason when no usable device exists
// (or when Basin was built without CUDA).
template <class T>
std::unique_ptr<Backend<T>> make_cuda_backend(int device_index = 0);
// True when make_cuda_backend would succeed; otherwise fills `why`.
bool cuda_available(std::string* why);

}  // namespace basin
