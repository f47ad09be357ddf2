// Naive column-major BLAS with reference semantics, standing in for cuBLAS in host tests: fed the
// exact arguments kernels/cuda/blas_mapping.hpp produces, it shows the row-major → column-major
// mapping is right without a GPU.
#pragma once

#include <cstdint>

#include "blas_mapping.hpp"

namespace basin {
namespace test {

// Column-major X[row, col] with leading dimension ld, read through op (trans = Xᵀ).
template <class T>
T op_at(const T* x, int64_t ld, bool trans, int64_t row, int64_t col) {
  return trans ? x[row * ld + col] : x[col * ld + row];
}

// C [m×n] = alpha·op(first)·op(second) + beta·C, column-major (BLAS xGEMM). beta = 0 does not
// read C.
template <class T>
void gemm_col_major(const cuda::ColumnMajorGemm<T>& g, T alpha, T beta, T* c, int64_t ldc) {
  for (int64_t j = 0; j < g.n; ++j)
    for (int64_t i = 0; i < g.m; ++i) {
      T s = T(0);
      for (int64_t p = 0; p < g.k; ++p)
        s += op_at(g.first, g.ld_first, g.trans_first, i, p) * op_at(g.second, g.ld_second, g.trans_second, p, j);
      T& cij = c[j * ldc + i];
      cij = beta == T(0) ? alpha * s : alpha * s + beta * cij;
    }
}

// One triangle of C [n×n] = alpha·op(X)·op(X)ᵀ + beta·C, column-major (BLAS xSYRK):
// trans = false: op(X) = X [n×k]; trans = true: op(X) = Xᵀ with X [k×n].
template <class T>
void syrk_col_major(const cuda::ColumnMajorSyrk& sy, int64_t n, int64_t k, T alpha, const T* x, int64_t ldx, T beta,
                    T* c, int64_t ldc) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < n; ++i) {
      if (sy.upper ? i > j : i < j) continue;
      T s = T(0);
      for (int64_t p = 0; p < k; ++p) s += op_at(x, ldx, sy.trans, i, p) * op_at(x, ldx, sy.trans, j, p);
      T& cij = c[j * ldc + i];
      cij = beta == T(0) ? alpha * s : alpha * s + beta * cij;
    }
}

}  // namespace test
}  // namespace basin
