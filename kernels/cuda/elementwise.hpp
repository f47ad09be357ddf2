// Bodies of the CUDA backend's element-wise kernels: one function per primitive, taking the
// index of ONE output element.
//
// The CUDA kernels in cuda_backend.cu are a grid-stride loop around these calls, nothing more, so
// every index computation and every formula here is what runs on the device. This header is plain
// C++ (BASIN_HD is empty outside nvcc), and tests/cuda/test_cuda_elementwise.cpp runs each body
// over all indices on the host and compares with the CPU backend -- the GPU logic is tested on
// machines without a GPU (DESIGN.md, "Testing CUDA logic without a GPU").
//
// Index conventions (all matrices row-major, as in backend.hpp):
//   * the index enumerates OUTPUT elements in row-major order, so consecutive threads write
//     consecutive columns: coalesced stores, and coalesced loads wherever the input shares the
//     output's layout;
//   * every function writes exactly one element, so no two threads ever touch the same address
//     (no atomics, results independent of the launch shape);
//   * floating-point expressions are written in the same order as kernels/cpu/cpu_backend.cpp so
//     the host run of a body is bit-identical to the CPU backend (the device may still contract
//     a·b + c into an FMA, which changes the last bit only).
#pragma once

#include <cstdint>

#include "basin/activation.hpp"

namespace basin {
namespace cuda {

// dst[idx] = value
template <class T>
BASIN_HD inline void fill_element(int64_t idx, T value, T* dst) {
  dst[idx] = value;
}

// y[idx] += alpha·x[idx]
template <class T>
BASIN_HD inline void axpy_element(int64_t idx, T alpha, const T* x, T* y) {
  y[idx] += alpha * x[idx];
}

// C = beta·C over a [rows×cols] matrix with leading dimension ldc; idx < rows·cols.
// beta = 0 writes an exact 0 (BLAS semantics: C is not read, so NaN/Inf in C do not survive).
// Used for GEMM with k = 0, where the product is empty and only the beta term remains.
template <class T>
BASIN_HD inline void scale_matrix_element(int64_t idx, int64_t cols, T beta, T* c, int64_t ldc) {
  const int64_t r = idx / cols, j = idx - r * cols;
  T& x = c[r * ldc + j];
  x = beta == T(0) ? T(0) : beta * x;
}

// C[r, j] += v[j]; idx < rows·cols.
template <class T>
BASIN_HD inline void add_row_vector_element(int64_t idx, int64_t cols, const T* v, T* c, int64_t ldc) {
  const int64_t r = idx / cols, j = idx - r * cols;
  c[r * ldc + j] += v[j];
}

// a[idx] = φ(z[idx])
template <class T>
BASIN_HD inline void activation_forward_element(int64_t idx, const ActivationFn<T>& fn, const T* z, T* a) {
  a[idx] = fn.value(z[idx]);
}

// X[(i,r), p] *= φ'(Z[i, p]); idx enumerates X [(n·rpe)×d] (contiguous), Z is [n×d].
// φ' is recomputed for each of the rpe rows of example i: it is cheap next to the memory traffic,
// and it keeps the kernel free of shared state.
template <class T>
BASIN_HD inline void scale_by_activation_derivative_element(int64_t idx, const ActivationFn<T>& fn,
                                                            int64_t rows_per_example, int64_t d, const T* z,
                                                            T* x) {
  const int64_t row = idx / d, p = idx - row * d;
  const int64_t i = row / rows_per_example;
  x[idx] *= fn.first(z[i * d + p]);
}

// RG[(i,r), p] = φ''(Z[i,p])·G[i,p]·RZ[(i,r),p] + φ'(Z[i,p])·RG[(i,r),p]; idx enumerates RG.
template <class T>
BASIN_HD inline void rop_activation_backward_element(int64_t idx, const ActivationFn<T>& fn,
                                                     int64_t rows_per_example, int64_t d, const T* z,
                                                     const T* rz, const T* g, T* rg) {
  const int64_t row = idx / d, p = idx - row * d;
  const int64_t i = row / rows_per_example;
  const T zi = z[i * d + p];
  const T d2g = fn.second(zi) * g[i * d + p];
  rg[idx] = d2g * rz[idx] + fn.first(zi) * rg[idx];
}

// Structured-Gram accumulation for the tile of rows [row0, row0 + rows), lower triangle only:
//   C[(i,a),(j,b)] += D[t, (j,b)] · (K[i,j] + kappa)   for row (i,a) = row0 + t ≥ column (j,b),
// with C [(n·r)×(n·r)] contiguous, D [rows × w] (leading dimension ldd), K [n×n] (lower triangle
// read: row ≥ col implies i ≥ j). idx enumerates the tile [rows × w], w = row0 + rows (no column
// right of the tile's last row is needed); indices above the diagonal do nothing, so the launch
// stays a flat, coalesced sweep at the cost of idle threads there.
template <class T>
BASIN_HD inline void hadamard_expand_element(int64_t idx, int64_t n, int64_t r, const T* k, T kappa,
                                             int64_t row0, int64_t rows, const T* d, int64_t ldd, T* c) {
  const int64_t m = n * r, w = row0 + rows;
  const int64_t t = idx / w, col = idx - t * w, row = row0 + t;
  if (col > row) return;
  const int64_t i = row / r, j = col / r;
  c[row * m + col] += d[t * ldd + col] * (k[i * n + j] + kappa);
}

// combine_hessian, one lower-triangle element (idx enumerates the n×n square; the strict upper
// triangle does nothing): r_ij ← (r_ij + r_ji)/2, g_ij ← g_ij + r_ij. No race: element (i,j) with
// j ≤ i reads r_ji from the strict upper triangle, which no thread writes.
template <class T>
BASIN_HD inline void combine_hessian_element(int64_t idx, int64_t n, T* g, T* r) {
  const int64_t row = idx / n, col = idx - row * n;
  if (col > row) return;
  const T rij = T(0.5) * (r[idx] + r[col * n + row]);
  g[idx] += rij;
  r[idx] = rij;
}

// Contribution of element idx of a symmetric n×n matrix kept in its lower triangle to ‖X‖_F²:
// x² on the diagonal, 2x² below it (for the mirrored entry), 0 above.
template <class T>
BASIN_HD inline double symmetric_square_term(int64_t idx, int64_t n, const T* x) {
  const int64_t row = idx / n, col = idx - row * n;
  if (col > row) return 0.0;
  const double v = static_cast<double>(x[idx]);
  return (row == col ? 1.0 : 2.0) * v * v;
}

// Number of columns one dense layer contributes to a Jacobian row.
BASIN_HD inline int64_t jacobian_block_width(int64_t d_out, int64_t d_in, bool has_bias) {
  return d_out * d_in + (has_bias ? d_out : 0);
}

// One element of strided_axpby: idx enumerates [batch × rows × cols] (consecutive threads →
// consecutive columns of one block row). beta = 0 overwrites, so stale NaNs in Y do not leak.
template <class T>
BASIN_HD inline void strided_axpby_element(int64_t idx, int64_t rows, int64_t cols, T alpha, const T* x,
                                           int64_t ldx, int64_t x_stride, T beta, T* y, int64_t ldy,
                                           int64_t y_stride) {
  const int64_t per_block = rows * cols;
  const int64_t b = idx / per_block, rest = idx - b * per_block;
  const int64_t r = rest / cols, c = rest - r * cols;
  const T xv = x[b * x_stride + r * ldx + c];
  T* yp = y + b * y_stride + r * ldy + c;
  *yp = beta == T(0) ? alpha * xv : alpha * xv + beta * *yp;
}

// One element of the Jacobian block of a dense layer. idx enumerates the block
// [rows × width] row-major (width = jacobian_block_width), so consecutive threads write
// consecutive columns of `out`. Row t belongs to example i = (row0 + t) / rows_per_example:
//   out[t, col0 + p·d_in + q]      = Δ[t, p] · A[i, q]   (weight, PyTorch's [out, in] order)
//   out[t, col0 + d_out·d_in + p]  = Δ[t, p]             (bias)
// The loads of A[i, q] are coalesced too (consecutive q); Δ[t, p] is a broadcast within a warp.
template <class T>
BASIN_HD inline void assemble_jacobian_element(int64_t idx, int64_t row0, int64_t rows_per_example,
                                               int64_t d_out, int64_t d_in, bool has_bias, const T* delta,
                                               const T* a, T* out, int64_t ldo, int64_t col0) {
  const int64_t width = jacobian_block_width(d_out, d_in, has_bias);
  const int64_t t = idx / width, col = idx - t * width;
  const int64_t weights = d_out * d_in;
  T* o = out + t * ldo + col0 + col;
  if (col < weights) {
    const int64_t p = col / d_in, q = col - p * d_in;
    const int64_t i = (row0 + t) / rows_per_example;
    *o = delta[t * d_out + p] * a[i * d_in + q];
  } else {
    *o = delta[t * d_out + (col - weights)];
  }
}

// y[j] = Σ_r X[r, j], summed in row order from 0 (as the CPU backend does); idx = j < cols.
// One thread per column: consecutive threads read consecutive addresses of each row.
template <class T>
BASIN_HD inline void column_sum_element(int64_t idx, int64_t rows, const T* x, int64_t ldx, T* y) {
  T s = T(0);
  for (int64_t r = 0; r < rows; ++r) s += x[r * ldx + idx];
  y[idx] = s;
}

// Copies the lower triangle to the upper one: C[i, j] = C[j, i] for j > i. idx enumerates the
// n×n square (row i = idx / n); elements on and below the diagonal do nothing. Stores are
// coalesced, loads are strided (a transpose), which is fine for a once-per-solve operation.
template <class T>
BASIN_HD inline void symmetrize_lower_element(int64_t idx, int64_t n, T* c, int64_t ldc) {
  const int64_t i = idx / n, j = idx - i * n;
  if (j > i) c[i * ldc + j] = c[j * ldc + i];
}

// dst = srcᵀ: src [rows×cols] contiguous, dst [cols×rows] contiguous; idx enumerates dst.
// Used to hand cuSOLVER's gesvd a matrix with at least as many rows as columns.
template <class T>
BASIN_HD inline void transpose_element(int64_t idx, int64_t rows, int64_t cols, const T* src, T* dst) {
  const int64_t c = idx / rows, r = idx - c * rows;
  dst[idx] = src[r * cols + c];
}

// dst[i, :] = src[rows − 1 − i, :] for src, dst [rows×cols] contiguous; idx enumerates dst.
// The solvers return eigenpairs ascending; Basin's contract is descending, rows in that order.
template <class T>
BASIN_HD inline void reverse_rows_element(int64_t idx, int64_t rows, int64_t cols, const T* src, T* dst) {
  const int64_t i = idx / cols, j = idx - i * cols;
  dst[idx] = src[(rows - 1 - i) * cols + j];
}

// R of a QR, back to row-major: qr is cuSOLVER geqrf's output, column-major [m×n] (ld = m) with R
// in its upper triangle (Householder vectors below it); idx enumerates the row-major R [n×n]
// (the first n rows of a [m×n], contiguous): a[i, j] = R[i, j] for j ≥ i, 0 below the diagonal.
template <class T>
BASIN_HD inline void qr_r_row_major_element(int64_t idx, int64_t m, int64_t n, const T* qr, T* a) {
  const int64_t i = idx / n, j = idx - i * n;
  a[idx] = j >= i ? qr[j * m + i] : T(0);
}

// *flag = 1 when a[idx] is Inf or NaN (x − x is NaN exactly for those; Basin never compiles
// with fast-math). Threads that find one all store the same value, so no atomics are needed.
// Run before the solvers, which would turn an overflowed matrix into a meaningless devInfo.
template <class T>
BASIN_HD inline void nonfinite_flag_element(int64_t idx, const T* a, int* flag) {
  const T x = a[idx];
  if (!(x - x == T(0))) *flag = 1;
}

}  // namespace cuda
}  // namespace basin
