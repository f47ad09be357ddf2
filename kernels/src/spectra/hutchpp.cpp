// Hutch++ trace estimation (spectra.hpp): Meyer, Musco, Musco, Woodruff, "Hutch++: Optimal
// Stochastic Trace Estimation" (SOSA 2021), Algorithm 1, with the standard error of its
// Hutchinson part.
#include <algorithm>
#include <cmath>
#include <limits>

#include "host_linalg.hpp"
#include "spectra.hpp"

namespace basin {

using namespace spectra_detail;

TraceResult hutch_plus_plus(const SymmetricOperator& a, int64_t probes, uint64_t seed, const IterationHook& hook) {
  const int64_t n = a.dim;
  if (probes < 4)
    invalid_argument("probes = " + std::to_string(probes) +
                     ": Hutch++ needs at least 4 (a sketch of ⌊P/3⌋ and at least 2 Hutchinson probes for an error)");
  const int64_t s = std::min(probes / 3, n), h = probes - 2 * s;
  const int64_t p = std::max<int64_t>(1, a.max_block);
  std::mt19937_64 rng(seed);
  TraceResult out;
  out.probes = probes;
  int64_t it = 0;
  const int64_t total = (s + p - 1) / p * 2 + (h + p - 1) / p;
  auto apply = [&](const double* x, int64_t b, double* y) {
    for (int64_t j0 = 0; j0 < b; j0 += p) {
      const int64_t bb = std::min(p, b - j0);
      if (hook)  // products so far of at most `probes` (2s + h; the sketch's range may have fewer than s)
        hook(++it, total, "hutch++ " + std::to_string(out.matvecs + j0 + bb) + "/" + std::to_string(probes));
      a.apply(x + j0 * n, bb, y + j0 * n);
    }
    out.matvecs += b;
  };
  // Q = orth(A S): the sketch's range, whose part of the trace is taken exactly.
  std::vector<double> sk(static_cast<size_t>(s * n)), q(static_cast<size_t>(s * n));
  random_block(rng, sk.data(), s * n, true);
  apply(sk.data(), s, q.data());
  // Orthonormal rows; dependent ones (A's rank < s) dropped.
  int64_t r = 0;
  for (int64_t i = 0; i < s; ++i) {
    double* v = q.data() + i * n;
    const double before = norm(v, n);
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t l = 0; l < r; ++l) cblas_daxpy(n, -dot(q.data() + l * n, v, n), q.data() + l * n, 1, v, 1);
    const double nrm = norm(v, n);
    if (!(nrm > 1e-12 * before) || nrm == 0) continue;
    cblas_dscal(n, 1.0 / nrm, v, 1);
    if (i != r) std::copy(v, v + n, q.data() + r * n);
    ++r;
  }
  double exact = 0;
  if (r > 0) {
    apply(q.data(), r, sk.data());
    for (int64_t i = 0; i < r; ++i) exact += dot(q.data() + i * n, sk.data() + i * n, n);
  }
  // Hutchinson on (I − QQᵀ) A (I − QQᵀ), probes in blocks.
  std::vector<double> g(static_cast<size_t>(p * n)), ag(static_cast<size_t>(p * n)), samples;
  for (int64_t j0 = 0; j0 < h; j0 += p) {
    const int64_t b = std::min(p, h - j0);
    random_block(rng, g.data(), b * n, true);
    project_out(q.data(), r, g.data(), b, n, nullptr);
    apply(g.data(), b, ag.data());
    for (int64_t j = 0; j < b; ++j) samples.push_back(dot(g.data() + j * n, ag.data() + j * n, n));
  }
  double mean = 0;
  for (double x : samples) mean += x;
  mean /= static_cast<double>(samples.size());
  double var = 0;
  for (double x : samples) var += (x - mean) * (x - mean);
  var /= static_cast<double>(samples.size() - 1);
  out.estimate = exact + mean;
  out.std_error = std::sqrt(var / static_cast<double>(samples.size()));
  return out;
}

}  // namespace basin
