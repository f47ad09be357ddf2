// Host float64 building blocks of the matrix-free solvers (spectra.hpp): seeded random blocks,
// block Gram–Schmidt against a basis (twice: "twice is enough"), small symmetric eigen-solves.
// Vectors are rows of row-major [count × n] arrays.
#pragma once

#include <cblas.h>
#include <lapacke.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "basin/error.hpp"

namespace basin::spectra_detail {

// Rademacher ±1 entries (rademacher) or standard normal ones, from a 64-bit Mersenne twister.
inline void random_block(std::mt19937_64& rng, double* x, int64_t count, bool rademacher) {
  if (rademacher) {
    for (int64_t i = 0; i < count; ++i) x[i] = (rng() & 1) ? 1.0 : -1.0;
    return;
  }
  std::normal_distribution<double> d;
  for (int64_t i = 0; i < count; ++i) x[i] = d(rng);
}

inline double dot(const double* a, const double* b, int64_t n) { return cblas_ddot(n, a, 1, b, 1); }
inline double norm(const double* a, int64_t n) { return cblas_dnrm2(n, a, 1); }

// W [p × n] -= C ᵀ Q with C = Q Wᵀ [q × p], Q [q × n] orthonormal rows; a second time unless
// every row kept more than 1/√2 of its norm in the first (Daniel, Gragg, Kaufman, Stewart 1976:
// then the first pass is already orthogonal to working precision). Adds the coefficients into
// coef [q × p] when given.
inline void project_out(const double* q, int64_t nq, double* w, int64_t p, int64_t n, double* coef) {
  if (nq == 0 || p == 0) return;
  std::vector<double> c(static_cast<size_t>(nq * p)), before(static_cast<size_t>(p));
  for (int64_t i = 0; i < p; ++i) before[i] = norm(w + i * n, n);
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) {
      bool again = false;
      for (int64_t i = 0; i < p && !again; ++i) again = !(norm(w + i * n, n) > 0.7071067811865476 * before[i]);
      if (!again) break;
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, p, n, 1.0, q, n, w, n, 0.0, c.data(), p);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p, n, nq, -1.0, c.data(), p, q, n, 1.0, w, n);
    if (coef != nullptr) cblas_daxpy(nq * p, 1.0, c.data(), 1, coef, 1);
  }
}

// Orthonormalises the rows of W [p × n] against Q [nq × n] and among themselves: W = Rᵀ W'
// with R [p × p] upper (row-major, r[l·p + i]: the coefficient of row l in w_i), after the
// projection onto Q. A row that vanishes (A's range exhausted) is replaced by a random one
// orthogonal to everything, with zero coefficients. coef [nq × p] receives Q W (projection).
inline void orthonormalise_block(const double* q, int64_t nq, double* w, int64_t p, int64_t n, double* coef,
                                 double* r, std::mt19937_64& rng) {
  std::vector<double> before(static_cast<size_t>(p));
  for (int64_t i = 0; i < p; ++i) before[i] = norm(w + i * n, n);
  project_out(q, nq, w, p, n, coef);
  if (r != nullptr) std::fill(r, r + p * p, 0.0);
  for (int64_t i = 0; i < p; ++i) {
    double* wi = w + i * n;
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t l = 0; l < i; ++l) {
        const double c = dot(w + l * n, wi, n);
        cblas_daxpy(n, -c, w + l * n, 1, wi, 1);
        if (r != nullptr) r[l * p + i] += c;
      }
    double nrm = norm(wi, n);
    if (nrm <= 1e-10 * std::max(before[i], 1e-300) || nrm == 0.0) {
      if (r != nullptr) {
        for (int64_t l = 0; l < i; ++l) r[l * p + i] = 0.0;
      }
      nrm = 0.0;
      for (int attempt = 0; attempt < 3 && nrm < 1e-8; ++attempt) {
        random_block(rng, wi, n, false);
        const double b = norm(wi, n);
        project_out(q, nq, wi, 1, n, nullptr);
        for (int pass = 0; pass < 2; ++pass)
          for (int64_t l = 0; l < i; ++l) cblas_daxpy(n, -dot(w + l * n, wi, n), w + l * n, 1, wi, 1);
        nrm = norm(wi, n) / b;
      }
      if (nrm < 1e-8) throw Error(ErrorCode::kInternal, "lanczos: no direction left orthogonal to the basis");
      cblas_dscal(n, 1.0 / norm(wi, n), wi, 1);
      continue;
    }
    if (r != nullptr) r[i * p + i] = nrm;
    cblas_dscal(n, 1.0 / nrm, wi, 1);
  }
}

// Eigenvalues (ascending) and eigenvectors (columns of z, row-major [n × n]) of the symmetric
// a [n × n] (row-major; overwritten by z).
inline std::vector<double> symmetric_eig(int64_t n, std::vector<double>& a) {
  std::vector<double> w(static_cast<size_t>(n));
  if (n == 0) return w;
  const lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', n, a.data(), n, w.data());
  if (info != 0) throw Error(ErrorCode::kInternal, "spectra: dsyevd failed (info " + std::to_string(info) + ")");
  return w;
}

}  // namespace basin::spectra_detail
