// How Basin's row-major calls become cuBLAS / cuSOLVER's column-major calls.
//
// Kept apart from cuda_backend.cu, in plain C++, so that the exact argument mapping handed to
// the libraries is tested on the host against a naive column-major BLAS reference
// (tests/cuda/test_cuda_elementwise.cpp) -- a swapped operand or flag is the classic bug here.
//
// The one fact everything rests on: a row-major X [r×c] with leading dimension ld occupies
// memory exactly as the column-major Xᵀ [c×r] with the same ld.
#pragma once

#include <cstdint>

namespace basin {
namespace cuda {

// Column-major GEMM  C' [m×n] = op(first) [m×k] · op(second) [k×n]  (BLAS argument order).
template <class T>
struct ColumnMajorGemm {
  bool trans_first, trans_second;
  int64_t m, n, k;
  const T* first;
  int64_t ld_first;
  const T* second;
  int64_t ld_second;
};

// Row-major C [m×n] = op(A)·op(B)  ⇔  column-major Cᵀ [n×m] = op(B)ᵀ·op(A)ᵀ. The column-major view
// of the row-major B buffer is Bᵀ, so "op(B)ᵀ" is that view with B's own flag: B goes first with
// trans_b, A second with trans_a, and m and n swap. Leading dimensions are unchanged.
template <class T>
ColumnMajorGemm<T> row_major_gemm_as_column_major(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                                  const T* a, int64_t lda, const T* b, int64_t ldb) {
  return ColumnMajorGemm<T>{trans_b, trans_a, n, m, k, b, ldb, a, lda};
}

// Column-major SYRK: the triangle it writes and its trans flag
// (trans = false: C = X·Xᵀ with X [n×k]; trans = true: C = Xᵀ·X with X [k×n]).
struct ColumnMajorSyrk {
  bool upper;
  bool trans;
};

// Row-major lower triangle of C = A·Aᵀ (trans = false, A [n×k]) or Aᵀ·A (trans = true, A [k×n]).
// The row-major lower triangle is the column-major upper triangle, and the column-major view of
// A is Aᵀ, so A·Aᵀ = (Aᵀ)ᵀ·(Aᵀ) is a column-major "trans" SYRK and vice versa: flip the flag.
inline ColumnMajorSyrk row_major_lower_syrk_as_column_major(bool trans) { return ColumnMajorSyrk{true, !trans}; }

// cuSOLVER's gesvd handles only rows ≥ cols (column-major). A row-major A [m×n] is the
// column-major Aᵀ [n×m] (same singular values): use it in place when n ≥ m, else transpose into a
// column-major A [m×n] first.
struct GesvdShape {
  bool transpose;  // copy A into a column-major m×n buffer (lda = m) first
  int64_t rows, cols, ld;
};
inline GesvdShape gesvd_shape_for_row_major(int64_t m, int64_t n) {
  const bool transpose = n < m;
  return transpose ? GesvdShape{true, m, n, m} : GesvdShape{false, n, m, n};
}

}  // namespace cuda
}  // namespace basin
