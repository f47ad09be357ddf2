// Block Lanczos with full reorthogonalisation, thick restarts, locking and a deflated check for
// missed copies (spectra.hpp).
//
// The basis Q (rows, orthonormal) holds at most `basis` vectors. Each iteration applies A to the
// newest block Q_c, projects W = A Q_c against every basis vector twice (the coefficients are
// column c of T = QᵀAQ, so T needs no three-term recurrence and stays exact across restarts)
// and orthonormalises the rest into the next block, W = Rᵀ Q_next. Ritz pairs (θ, y = Qᵀs) of T
// then have A y − θ y = Q_nextᵀ R s_c, so ‖R s_c‖ is each residual without another product. When
// the basis is full it restarts thickly: the wanted Ritz vectors (plus a block of spares) become
// the new basis with T = diag(θ), followed by Q_next, still a Krylov-like space with A·Q inside
// span(Q, Q_next).
//
// Locking: at a restart, each wanted Ritz pair whose residual meets the tolerance leaves the basis
// for the locked set L, and every later vector is kept orthogonal to L: the iteration goes on with
// the deflated operator (I − LLᵀ) A (I − LLᵀ) on L⊥, so what is left of the basis serves the pairs
// still wanted (their couplings to L are residuals below the tolerance, dropped).
//
// Missed copies: a block Krylov space holds at most `block` vectors of any eigenspace (in exact
// arithmetic), so an eigenvalue repeated more often than the block size (a GGN's null space, of
// dimension N − rank ≥ N − n·k) can be under-counted, with every reported pair converged. Once all
// K pairs are locked a check therefore runs from a fresh random block orthogonal to L, on the
// deflated operator, for one more pair at each end asked for: its extreme Ritz value bounds the
// deflated spectrum from inside (Courant–Fischer), so a value beyond the locked ones' inner
// boundary (by more than tol·max|λ|) is a missed eigenvalue. It is then converged and locked, the
// locked pair it displaces leaves the answer (and the locked set), and the check repeats.
// A check ends when its extreme pair converges inside the boundary, or after one basis fill
// without crossing it. At the end one more product per vector gives the residuals reported.
// docs/ARCHITECTURE.md ("Matrix-free spectra").
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
  // The basis, the locked pairs (at most K, plus the few a check adds) and one block. The
  // restart rotates the basis in place.
  return basis + wanted + block + 2;
}

namespace {

int64_t block_of(const LanczosOptions& o) { return o.block > 0 ? o.block : lanczos_default_block(o.top + o.bottom); }
int64_t basis_of(const LanczosOptions& o, int64_t dim) {
  return o.basis > 0 ? o.basis : lanczos_default_basis(o.top + o.bottom, block_of(o), dim);
}

constexpr int64_t kChunk = 2048;  // columns per step of the in-place basis rotation

// Rows 0..kk of q become Sᵀ Q (S [nq × kk] row-major), in place, chunk by chunk of columns
// (each output column depends on the same column of Q only).
void rotate_basis(double* q, int64_t nq, int64_t n, const double* s, int64_t kk) {
  if (kk == 0) return;
  std::vector<double> tmp(static_cast<size_t>(kk * std::min(kChunk, n)));
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t w = std::min(kChunk, n - c0);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, w, nq, 1.0, s, kk, q + c0, n, 0.0, tmp.data(), w);
    for (int64_t j = 0; j < kk; ++j) std::copy_n(tmp.data() + j * w, w, q + j * n + c0);
  }
}

class BlockLanczos {
 public:
  BlockLanczos(const SymmetricOperator& a, const LanczosOptions& o, const IterationHook& hook)
      : a_(a), o_(o), hook_(hook), n_(a.dim),
        p_(std::min(block_of(o), a.max_block > 0 ? a.max_block : block_of(o))), cap_(basis_of(o, a.dim)),
        spare_(std::min<int64_t>(p_, cap_ - 2 * p_ - (o.top + o.bottom))), lcap_(o.top + o.bottom + 2),
        rng_(o.seed) {
    total_ = (o.max_restarts + 3) * std::max<int64_t>(1, (cap_ - o.top - o.bottom) / p_) + 1;
  }

  LanczosResult solve() {
    q_.assign(static_cast<size_t>((lcap_ + cap_) * n_), 0.0);
    t_.assign(static_cast<size_t>(cap_ * cap_), 0.0);
    rblk_.assign(static_cast<size_t>(p_ * p_), 0.0);
    w_.assign(static_cast<size_t>(p_ * n_), 0.0);
    bool ok = run(o_.top, o_.bottom, false);
    // Checks for missed copies, while every pair is converged: one more pair at each end.
    for (int round = 0; ok && round < 2 * (o_.top + o_.bottom) + 2; ++round) {
      const int64_t before = locked();
      const double top_edge = edge(+1), bottom_edge = edge(-1);
      run(o_.top > 0 ? 1 : 0, o_.bottom > 0 ? 1 : 0, true);
      bool missed = false;
      for (int64_t j = before; j < locked(); ++j) {
        const double margin = o_.tol * scale_;
        const bool beyond = end_[j] > 0 ? value_[j] > top_edge + margin : value_[j] < bottom_edge - margin;
        if (beyond) {  // a missed eigenvalue: it displaces the innermost locked one of its end
          missed = true;
          ok = ok && converged_[j];  // else it is reported as it is, and the checks stop
          drop_innermost(end_[j], j);
        } else {
          end_[j] = 0;  // inside the boundary: not reported (nor deflated any more)
        }
      }
      compact();
      if (!missed) break;
    }
    return finish();
  }

 private:
  int64_t locked() const { return static_cast<int64_t>(value_.size()); }
  // The innermost reported locked value of an end (top: the smallest; bottom: the largest).
  double edge(int end) const {
    double e = end > 0 ? INFINITY : -INFINITY;
    for (int64_t j = 0; j < locked(); ++j)
      if (end_[j] == end) e = end > 0 ? std::min(e, value_[j]) : std::max(e, value_[j]);
    return e;
  }
  void drop_innermost(int end, int64_t except) {
    int64_t worst = -1;
    for (int64_t j = 0; j < locked(); ++j)
      if (j != except && end_[j] == end &&
          (worst < 0 || (end > 0 ? value_[j] < value_[worst] : value_[j] > value_[worst])))
        worst = j;
    if (worst >= 0) end_[worst] = 0;
  }
  // Keeps the reported locked pairs only, their rows moved up against the basis (rows taken in
  // descending order never land on a row not yet moved).
  void compact() {
    std::vector<int64_t> keep;
    for (int64_t j = 0; j < locked(); ++j)
      if (end_[j] == 1 || end_[j] == -1) keep.push_back(j);
    std::sort(keep.begin(), keep.end(), [&](int64_t x, int64_t y) { return row_[x] > row_[y]; });
    std::vector<double> value;
    std::vector<int> end;
    std::vector<char> conv;
    std::vector<int64_t> row;
    for (size_t k = 0; k < keep.size(); ++k) {
      const int64_t j = keep[k], to = lcap_ - 1 - static_cast<int64_t>(k);
      if (row_[j] != to) std::copy_n(q_.data() + row_[j] * n_, n_, q_.data() + to * n_);
      value.push_back(value_[j]);
      end.push_back(end_[j]);
      conv.push_back(converged_[j]);
      row.push_back(to);
    }
    value_ = std::move(value);
    end_ = std::move(end);
    converged_ = std::move(conv);
    row_ = std::move(row);
  }
  // The locked rows [lcap − nl, lcap) and the basis [lcap, lcap + cap) are contiguous.
  double* locked_rows() { return q_.data() + (lcap_ - locked()) * n_; }
  double* basis() { return q_.data() + lcap_ * n_; }

  void report(const std::string& what) {
    ++iteration_;
    total_ = std::max(total_, iteration_);
    if (hook_) hook_(iteration_, total_, "lanczos " + std::to_string(iteration_) + "/" + std::to_string(total_) + what);
  }

  // Ritz pairs of T[0:size].
  void ritz(int64_t size) {
    std::vector<double> tt(static_cast<size_t>(size * size));
    for (int64_t i = 0; i < size; ++i)
      for (int64_t j = 0; j < size; ++j) tt[i * size + j] = t_[i * cap_ + j];
    theta_ = symmetric_eig(size, tt);
    s_ = std::move(tt);
    m_ = size;
    for (double v : theta_) scale_ = std::max(scale_, std::fabs(v));
  }
  // Indices (into theta) of the wt largest and wb smallest Ritz values, with `extra` more
  // shared between the ends asked for (the spares kept on restart).
  std::vector<int64_t> wanted(int64_t wt, int64_t wb, int64_t extra) const {
    std::vector<int64_t> idx;
    const int64_t top = wt + (wt > 0 ? (wb > 0 ? extra / 2 : extra) : 0);
    const int64_t bottom = wb + (wb > 0 ? extra - (top - wt) : 0);
    for (int64_t j = 0; j < std::min(bottom, m_); ++j) idx.push_back(j);
    for (int64_t j = 0; j < std::min(top, m_); ++j)
      if (std::find(idx.begin(), idx.end(), m_ - 1 - j) == idx.end()) idx.push_back(m_ - 1 - j);
    return idx;
  }
  // Residual estimate of Ritz pair j: ‖R s_c‖ (the newest block's rows of s_j).
  double residual_estimate(int64_t j) const {
    double sq = 0;
    for (int64_t l = 0; l < p_; ++l) {
      double v = 0;
      for (int64_t i = l; i < p_; ++i) v += rblk_[l * p_ + i] * s_[(c_ + i) * m_ + j];
      sq += v * v;
    }
    return std::sqrt(sq);
  }
  // Appends the Ritz vectors `idx` of the current basis to the locked set.
  void lock(const std::vector<int64_t>& idx, const std::vector<int>& ends, const std::vector<char>& conv) {
    const int64_t nv = static_cast<int64_t>(idx.size());
    if (nv == 0) return;
    std::vector<double> sk(static_cast<size_t>(m_ * nv));
    for (int64_t i = 0; i < m_; ++i)
      for (int64_t j = 0; j < nv; ++j) sk[i * nv + j] = s_[i * m_ + idx[j]];
    const int64_t r0 = lcap_ - locked() - nv;
    if (r0 < 0) throw Error(ErrorCode::kInternal, "lanczos: more locked pairs than room for them");
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nv, n_, m_, 1.0, sk.data(), nv, basis(), n_, 0.0,
                q_.data() + r0 * n_, n_);
    for (int64_t j = 0; j < nv; ++j) {
      value_.push_back(theta_[idx[j]]);
      row_.push_back(r0 + j);
      end_.push_back(ends[j]);
      converged_.push_back(conv[j]);
    }
  }

  // Thick-restart block Lanczos on A deflated by the locked set, for the wt largest and wb
  // smallest eigenvalues left; converged wanted pairs are locked at restarts (check = false).
  // The wanted pairs at the end are appended to the locked set either way. check: stop as
  // described at the top of this file. Returns whether every pair appended converged.
  bool run(int64_t wt, int64_t wb, bool check) {
    const int64_t n = n_, p = p_;
    const double top_edge = edge(+1), bottom_edge = edge(-1);
    random_block(rng_, basis(), p * n, false);
    orthonormalise_block(locked_rows(), locked(), basis(), p, n, nullptr, nullptr, rng_);
    std::fill(t_.begin(), t_.end(), 0.0);
    int64_t nq = p, its = 0, done_count = 0;
    c_ = 0;
    const int64_t fill = std::max<int64_t>(1, (cap_ - p) / p);
    const int64_t K = o_.top + o_.bottom;
    bool converged = false;
    std::vector<double> coef;
    for (;;) {
      report(check ? " (check)"
                   : " (" + std::to_string(K - wt - wb + done_count) + "/" + std::to_string(K) + " converged)");
      a_.apply(basis() + c_ * n, p, w_.data());
      matvecs_ += p;
      // Against the locked rows and the basis as one set (twice); T keeps the basis' part.
      const int64_t nl = locked();
      coef.assign(static_cast<size_t>((nl + nq) * p), 0.0);
      const bool room = nq + p <= cap_;
      orthonormalise_block(locked_rows(), nl + nq, w_.data(), p, n, coef.data(), rblk_.data(), rng_);
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t j = 0; j < p; ++j) t_[i * cap_ + c_ + j] = t_[(c_ + j) * cap_ + i] = coef[(nl + i) * p + j];
      for (int64_t i = 0; i < p; ++i)  // the diagonal block symmetrised
        for (int64_t j = 0; j < i; ++j) {
          const double v = 0.5 * (t_[(c_ + i) * cap_ + c_ + j] + t_[(c_ + j) * cap_ + c_ + i]);
          t_[(c_ + i) * cap_ + c_ + j] = t_[(c_ + j) * cap_ + c_ + i] = v;
        }
      ritz(nq);
      ++its;
      const double limit = o_.tol * scale_;
      done_count = 0;
      for (int64_t j : wanted(wt, wb, 0)) done_count += residual_estimate(j) <= limit;
      converged = done_count == static_cast<int64_t>(wanted(wt, wb, 0).size());
      if (check && !converged) {  // each end: converged, or one fill without crossing the edge
        bool resolved = true;
        if (wt > 0) {
          const bool crossed = theta_[m_ - 1] > top_edge + limit;
          resolved = resolved && (residual_estimate(m_ - 1) <= limit || (!crossed && its >= fill));
        }
        if (wb > 0) {
          const bool crossed = theta_[0] < bottom_edge - limit;
          resolved = resolved && (residual_estimate(0) <= limit || (!crossed && its >= fill));
        }
        if (resolved) break;
      }
      if (converged || (!room && restarts_ >= o_.max_restarts)) break;
      if (room) {
        std::copy(w_.begin(), w_.end(), basis() + nq * n);
        c_ = nq;
        nq += p;
        continue;
      }
      // Thick restart: lock the converged wanted pairs, keep the others (and spares) with
      // T = diag(θ), then Q_next.
      ++restarts_;
      const std::vector<int64_t> want = wanted(wt, wb, 0);
      std::vector<int64_t> keep, to_lock;
      std::vector<int> ends;
      for (int64_t j : wanted(wt, wb, spare_)) {
        const bool is_wanted = std::find(want.begin(), want.end(), j) != want.end();
        if (!check && is_wanted && residual_estimate(j) <= limit) {
          to_lock.push_back(j);
          ends.push_back(j >= std::min(wb, m_) ? +1 : -1);
        } else {
          keep.push_back(j);
        }
      }
      lock(to_lock, ends, std::vector<char>(to_lock.size(), 1));
      for (int e : ends) (e > 0 ? wt : wb) -= 1;
      if (wt == 0 && wb == 0) return true;
      const std::vector<int64_t>& kept = keep;  // the wanted pairs not locked, and the spares
      const int64_t kk = static_cast<int64_t>(kept.size());
      std::vector<double> sk(static_cast<size_t>(nq * kk));
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t j = 0; j < kk; ++j) sk[i * kk + j] = s_[i * m_ + kept[j]];
      // R s_c of the kept vectors couples them to Q_next: T[Y, next] = (R S_c)ᵀ.
      std::vector<double> couple(static_cast<size_t>(kk * p), 0.0);
      for (int64_t j = 0; j < kk; ++j)
        for (int64_t l = 0; l < p; ++l) {
          double v = 0;
          for (int64_t i = l; i < p; ++i) v += rblk_[l * p + i] * s_[(c_ + i) * m_ + kept[j]];
          couple[j * p + l] = v;
        }
      rotate_basis(basis(), nq, n, sk.data(), kk);
      std::copy(w_.begin(), w_.end(), basis() + kk * n);
      std::fill(t_.begin(), t_.end(), 0.0);
      for (int64_t j = 0; j < kk; ++j) t_[j * cap_ + j] = theta_[kept[j]];
      // The coupling is recomputed exactly by the next projection (column block kk); it is kept
      // here only so that T is complete at every point.
      for (int64_t j = 0; j < kk; ++j)
        for (int64_t l = 0; l < p; ++l) t_[j * cap_ + kk + l] = t_[(kk + l) * cap_ + j] = couple[j * p + l];
      nq = kk + p;
      c_ = kk;
    }
    // The wanted pairs left, appended to the locked set (with whether their estimate converged).
    const std::vector<int64_t> idx = wanted(wt, wb, 0);
    std::vector<int> ends;
    std::vector<char> conv;
    bool all = true;
    for (int64_t j : idx) {
      ends.push_back(j >= std::min(wb, m_) ? +1 : -1);
      conv.push_back(residual_estimate(j) <= o_.tol * scale_);
      all = all && conv.back();
    }
    lock(idx, ends, conv);
    return all;
  }

  // The reported pairs (bottom ascending, top descending) with residuals by one product each.
  LanczosResult finish() {
    const int64_t n = n_;
    std::vector<int64_t> top, bottom;
    for (int64_t j = 0; j < locked(); ++j) {
      if (end_[j] > 0) top.push_back(j);
      if (end_[j] < 0) bottom.push_back(j);
    }
    std::sort(top.begin(), top.end(), [&](int64_t x, int64_t y) { return value_[x] > value_[y]; });
    std::sort(bottom.begin(), bottom.end(), [&](int64_t x, int64_t y) { return value_[x] < value_[y]; });
    LanczosResult res;
    res.matvecs = matvecs_;
    res.restarts = restarts_;
    std::vector<int64_t> all(bottom);
    all.insert(all.end(), top.begin(), top.end());
    std::vector<double> resid(all.size());
    double* x = basis();  // the basis is no longer needed: scratch for the products' inputs
    for (size_t j0 = 0; j0 < all.size(); j0 += static_cast<size_t>(p_)) {
      const int64_t b = std::min<int64_t>(p_, static_cast<int64_t>(all.size() - j0));
      for (int64_t j = 0; j < b; ++j) std::copy_n(q_.data() + row_[all[j0 + j]] * n, n, x + j * n);
      report(" (residuals)");
      a_.apply(x, b, w_.data());
      res.matvecs += b;
      for (int64_t j = 0; j < b; ++j) {
        cblas_daxpy(n, -value_[all[j0 + j]], x + j * n, 1, w_.data() + j * n, 1);
        resid[j0 + j] = norm(w_.data() + j * n, n);
      }
    }
    auto fill = [&](EigenEnd& end, size_t first, size_t count) {
      end.converged = true;
      for (size_t j = first; j < first + count; ++j) {
        end.eigenvalues.push_back(value_[all[j]]);
        end.residual_norms.push_back(resid[j]);
        end.converged = end.converged && resid[j] <= o_.tol * scale_;
        if (o_.vectors) {
          const double* v = q_.data() + row_[all[j]] * n;
          end.vectors.insert(end.vectors.end(), v, v + n);
        }
      }
    };
    fill(res.bottom, 0, bottom.size());
    fill(res.top, bottom.size(), top.size());
    return res;
  }

  const SymmetricOperator& a_;
  const LanczosOptions& o_;
  const IterationHook& hook_;
  const int64_t n_, p_, cap_, spare_, lcap_;
  std::mt19937_64 rng_;
  // Rows: lcap for the locked set (filled from the end), then the basis; T = QᵀAQ, R of the
  // newest block, A·Q_c.
  std::vector<double> q_, t_, rblk_, w_;
  std::vector<double> theta_, s_;         // Ritz values (ascending) and vectors of T[0:m]
  int64_t m_ = 0, c_ = 0;                 // size of that T; first row of the newest block
  // The locked set: their rows in q_, Ritz values, ends (+1 top, −1 bottom, 0 not reported) and
  // whether their residual estimate met the tolerance.
  std::vector<int64_t> row_;
  std::vector<double> value_;
  std::vector<int> end_;
  std::vector<char> converged_;
  double scale_ = 0;  // max |θ| seen
  int64_t iteration_ = 0, total_ = 0, matvecs_ = 0, restarts_ = 0;
};

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
  return BlockLanczos(a, o, hook).solve();
}

}  // namespace basin
