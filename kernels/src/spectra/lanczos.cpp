// Block Lanczos with full reorthogonalisation and thick restarts (spectra.hpp).
//
// The basis Q (rows, orthonormal) holds at most `basis` vectors. Each iteration applies A to the
// newest block Q_c, projects W = A Q_c against every basis vector twice (the coefficients are
// column c of T = QᵀAQ, so T needs no three-term recurrence and stays exact across restarts)
// and orthonormalises the rest into the next block, W = Rᵀ Q_next. Ritz pairs (θ, y = Qᵀs) of T
// then have A y − θ y = Q_nextᵀ R s_c, so ‖R s_c‖ is each residual without another product. When
// the basis is full it restarts thickly: the wanted Ritz vectors (plus a block of spares) become
// the new basis with T = diag(θ), followed by Q_next, still a Krylov-like space with A·Q inside
// span(Q, Q_next). At the end one more product per vector gives the residuals ‖Av − λv‖ reported.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "host_linalg.hpp"
#include "spectra.hpp"

namespace basin {

using namespace spectra_detail;

int64_t lanczos_default_block(int64_t wanted) { return std::clamp<int64_t>(wanted, 1, 8); }

int64_t lanczos_default_basis(int64_t wanted, int64_t block, int64_t dim) {
  return std::min(dim - block, std::max<int64_t>(2 * wanted + 4 * block, 40));
}

int64_t lanczos_vectors_held(int64_t wanted, int64_t block, int64_t basis) {
  return basis + std::min(basis, wanted + block) + block;
}

namespace {
int64_t block_of(const LanczosOptions& o) { return o.block > 0 ? o.block : lanczos_default_block(o.top + o.bottom); }
int64_t basis_of(const LanczosOptions& o, int64_t dim) {
  return o.basis > 0 ? o.basis : lanczos_default_basis(o.top + o.bottom, block_of(o), dim);
}
}  // namespace

void check_lanczos_options(const LanczosOptions& o, int64_t dim) {
  const int64_t K = o.top + o.bottom;
  if (o.top < 0 || o.bottom < 0) invalid_argument("top_k/bottom_k: must be >= 0");
  if (K == 0) invalid_argument("top_k/bottom_k: both are 0; ask for at least one eigenvalue");
  if (K >= dim)
    invalid_argument("top_k + bottom_k = " + std::to_string(K) + " must be less than N = " + std::to_string(dim) +
                     " (for all eigenvalues use the exact dense path)");
  const int64_t p = block_of(o), m = basis_of(o, dim);
  if (o.block < 0) invalid_argument("lanczos block: must be >= 1");
  if (m + p > dim)
    invalid_argument("lanczos_steps = " + std::to_string(m) + " plus a block of " + std::to_string(p) +
                     " exceeds N = " + std::to_string(dim) + " (use the exact dense path for so small a model)");
  if (m < K + 2 * p)
    invalid_argument("lanczos_steps = " + std::to_string(m) + " is too short for top_k + bottom_k = " +
                     std::to_string(K) + " with blocks of " + std::to_string(p) + ": it must be at least K + 2·block = " +
                     std::to_string(K + 2 * p) + (K + 2 * p > dim ? " (more than N: use the exact dense path)" : ""));
  if (!(o.tol > 0) || !std::isfinite(o.tol)) invalid_argument("tol: must be a positive number");
}

LanczosResult block_lanczos(const SymmetricOperator& a, const LanczosOptions& o, const IterationHook& hook) {
  check_lanczos_options(o, a.dim);
  const int64_t n = a.dim, p = std::min(block_of(o), a.max_block > 0 ? a.max_block : block_of(o));
  const int64_t cap = basis_of(o, n), K = o.top + o.bottom;
  const int64_t spare = std::min<int64_t>(p, cap - 2 * p - K);  // extra Ritz vectors kept on restart
  std::mt19937_64 rng(o.seed);
  LanczosResult res;

  std::vector<double> q(static_cast<size_t>(cap * n));      // basis rows
  std::vector<double> t(static_cast<size_t>(cap * cap), 0);  // T = QᵀAQ (first nq rows/cols)
  std::vector<double> rblk(static_cast<size_t>(p * p));      // R of the newest residual
  // Start: a random block.
  random_block(rng, q.data(), p * n, false);
  orthonormalise_block(nullptr, 0, q.data(), p, n, nullptr, nullptr, rng);
  int64_t nq = p;  // basis vectors (the last block, at c, is not yet multiplied)
  int64_t c = 0;   // first row of the newest block
  const int64_t total = o.max_restarts * std::max<int64_t>(1, (cap - K) / p) + 1;
  int64_t iteration = 0;

  std::vector<double> theta, s;     // Ritz values (ascending) and vectors of T[0:m]
  int64_t m = 0;                    // size of the T whose Ritz pairs theta/s are
  auto ritz = [&](int64_t size) {
    std::vector<double> tt(static_cast<size_t>(size * size));
    for (int64_t i = 0; i < size; ++i)
      for (int64_t j = 0; j < size; ++j) tt[i * size + j] = t[i * cap + j];
    theta = symmetric_eig(size, tt);
    s = std::move(tt);
    m = size;
  };
  // Indices (into theta) of the wanted Ritz values and how many extra to keep on restart.
  auto wanted = [&](int64_t extra) {
    std::vector<int64_t> idx;
    const int64_t top = o.top + (o.top > 0 ? (o.bottom > 0 ? extra / 2 : extra) : 0);
    const int64_t bottom = o.bottom + (o.bottom > 0 ? extra - (top - o.top) : 0);
    for (int64_t j = 0; j < std::min(bottom, m); ++j) idx.push_back(j);
    for (int64_t j = 0; j < std::min(top, m); ++j)
      if (std::find(idx.begin(), idx.end(), m - 1 - j) == idx.end()) idx.push_back(m - 1 - j);
    return idx;
  };
  // Residual estimate of Ritz pair j: ‖R s_c‖ (the newest block's rows of s_j).
  auto residual_estimate = [&](int64_t j) {
    double sq = 0;
    for (int64_t l = 0; l < p; ++l) {
      double v = 0;
      for (int64_t i = l; i < p; ++i) v += rblk[l * p + i] * s[(c + i) * m + j];
      sq += v * v;
    }
    return std::sqrt(sq);
  };

  bool converged = false;
  std::vector<double> w(static_cast<size_t>(p * n));
  for (;;) {
    if (hook) hook(++iteration, total);
    // W = A Q_c, its coefficients against the whole basis (column block c of T).
    a.apply(q.data() + c * n, p, w.data());
    res.matvecs += p;
    std::vector<double> coef(static_cast<size_t>(nq * p), 0.0);
    const bool room = nq + p <= cap;
    orthonormalise_block(q.data(), nq, w.data(), p, n, coef.data(), rblk.data(), rng);
    for (int64_t i = 0; i < nq; ++i)
      for (int64_t j = 0; j < p; ++j) {
        t[i * cap + c + j] = coef[i * p + j];
        t[(c + j) * cap + i] = coef[i * p + j];
      }
    for (int64_t i = 0; i < p; ++i)  // the diagonal block symmetrised
      for (int64_t j = 0; j < i; ++j) {
        const double v = 0.5 * (t[(c + i) * cap + c + j] + t[(c + j) * cap + c + i]);
        t[(c + i) * cap + c + j] = t[(c + j) * cap + c + i] = v;
      }
    ritz(nq);
    double scale = 0;
    for (double v : theta) scale = std::max(scale, std::fabs(v));
    converged = true;
    for (int64_t j : wanted(0)) converged = converged && residual_estimate(j) <= o.tol * scale;
    if (converged || (!room && res.restarts >= o.max_restarts)) break;
    if (room) {
      std::copy(w.begin(), w.end(), q.begin() + nq * n);
      c = nq;
      nq += p;
      continue;
    }
    // Thick restart: Y = the wanted Ritz vectors (and spares), T = diag(θ), then Q_next.
    ++res.restarts;
    const std::vector<int64_t> keep = wanted(spare);
    const int64_t kk = static_cast<int64_t>(keep.size());
    std::vector<double> sk(static_cast<size_t>(nq * kk));
    for (int64_t i = 0; i < nq; ++i)
      for (int64_t j = 0; j < kk; ++j) sk[i * kk + j] = s[i * m + keep[j]];
    std::vector<double> y(static_cast<size_t>(kk * n));
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, n, nq, 1.0, sk.data(), kk, q.data(), n, 0.0, y.data(), n);
    // R s_c of the kept vectors couples them to Q_next: T[Y, next] = (R S_c)ᵀ.
    std::vector<double> couple(static_cast<size_t>(kk * p), 0.0);
    for (int64_t j = 0; j < kk; ++j)
      for (int64_t l = 0; l < p; ++l) {
        double v = 0;
        for (int64_t i = l; i < p; ++i) v += rblk[l * p + i] * s[(c + i) * m + keep[j]];
        couple[j * p + l] = v;
      }
    std::copy(y.begin(), y.end(), q.begin());
    std::copy(w.begin(), w.end(), q.begin() + kk * n);
    std::fill(t.begin(), t.end(), 0.0);
    for (int64_t j = 0; j < kk; ++j) t[j * cap + j] = theta[keep[j]];
    // The coupling is recomputed exactly by the next projection (column block kk); it is kept
    // here only so that T is complete at every point.
    for (int64_t j = 0; j < kk; ++j)
      for (int64_t l = 0; l < p; ++l) t[j * cap + kk + l] = t[(kk + l) * cap + j] = couple[j * p + l];
    nq = kk + p;
    c = kk;
  }

  // The wanted Ritz vectors, their residuals by one more product each.
  const std::vector<int64_t> idx = wanted(0);
  const int64_t nv = static_cast<int64_t>(idx.size());
  std::vector<double> sk(static_cast<size_t>(m * nv));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < nv; ++j) sk[i * nv + j] = s[i * m + idx[j]];
  std::vector<double> y(static_cast<size_t>(nv * n));
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nv, n, m, 1.0, sk.data(), nv, q.data(), n, 0.0, y.data(), n);
  q.clear();
  q.shrink_to_fit();
  std::vector<double> resid(static_cast<size_t>(nv));
  double scale = 0;
  for (double v : theta) scale = std::max(scale, std::fabs(v));
  for (int64_t j0 = 0; j0 < nv; j0 += p) {
    const int64_t b = std::min(p, nv - j0);
    if (hook) hook(iteration, total);
    a.apply(y.data() + j0 * n, b, w.data());
    res.matvecs += b;
    for (int64_t j = 0; j < b; ++j) {
      cblas_daxpy(n, -theta[idx[j0 + j]], y.data() + (j0 + j) * n, 1, w.data() + j * n, 1);
      resid[j0 + j] = norm(w.data() + j * n, n);
    }
  }
  auto fill = [&](EigenEnd& end, int64_t first, int64_t count) {
    end.converged = true;
    for (int64_t j = first; j < first + count; ++j) {
      end.eigenvalues.push_back(theta[idx[j]]);
      end.residual_norms.push_back(resid[j]);
      end.converged = end.converged && resid[j] <= o.tol * scale;
      if (o.vectors) end.vectors.insert(end.vectors.end(), y.begin() + j * n, y.begin() + (j + 1) * n);
    }
  };
  // idx: the bottom ones ascending first, then the top ones descending.
  const int64_t nb = std::min(o.bottom, m);
  fill(res.bottom, 0, nb);
  fill(res.top, nb, nv - nb);
  return res;
}

}  // namespace basin
