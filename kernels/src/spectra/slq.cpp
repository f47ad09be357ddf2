// Stochastic Lanczos quadrature (spectra.hpp): Ubaru, Chen, Saad, "Fast Estimation of tr(f(A))
// via Stochastic Lanczos Quadrature" (SIMAX 2017); Ghorbani, Krishnan, Xiao (2019) for Hessians.
// The probes of a group run side by side, one vector each per product of the group's block.
#include <algorithm>
#include <cmath>

#include "host_linalg.hpp"
#include "spectra.hpp"

namespace basin {

using namespace spectra_detail;

DensityResult slq(const SymmetricOperator& a, int64_t probes, int64_t steps, uint64_t seed, const IterationHook& hook) {
  const int64_t n = a.dim;
  if (probes < 1) invalid_argument("probes = " + std::to_string(probes) + ": the density needs at least 1");
  if (steps < 1) invalid_argument("lanczos_steps = " + std::to_string(steps) + ": the density needs at least 1");
  if (steps > n) invalid_argument("lanczos_steps = " + std::to_string(steps) + " exceeds N = " + std::to_string(n));
  const int64_t p = std::max<int64_t>(1, std::min(a.max_block, probes));
  std::mt19937_64 rng(seed);
  DensityResult out;
  out.probes = probes;
  out.steps = steps;
  const int64_t total = (probes + p - 1) / p * steps;
  int64_t it = 0;
  for (int64_t g0 = 0; g0 < probes; g0 += p) {
    const int64_t b = std::min(p, probes - g0);
    // Each probe's Lanczos basis [steps × n], α and β.
    std::vector<std::vector<double>> basis(static_cast<size_t>(b), std::vector<double>(static_cast<size_t>(steps * n)));
    std::vector<std::vector<double>> alpha(static_cast<size_t>(b)), beta(static_cast<size_t>(b));
    std::vector<char> done(static_cast<size_t>(b), 0);
    std::vector<double> x(static_cast<size_t>(b * n)), y(static_cast<size_t>(b * n));
    for (int64_t j = 0; j < b; ++j) {
      double* v = basis[j].data();
      random_block(rng, v, n, true);
      cblas_dscal(n, 1.0 / norm(v, n), v, 1);
    }
    for (int64_t step = 0; step < steps; ++step) {
      if (hook)
        hook(++it, total,
             "slq probe" + (b > 1 ? "s " + std::to_string(g0 + 1) + "-" + std::to_string(g0 + b) : " " + std::to_string(g0 + 1)) +
                 "/" + std::to_string(probes) + " step " + std::to_string(step + 1) + "/" + std::to_string(steps));
      for (int64_t j = 0; j < b; ++j) std::copy_n(basis[j].data() + step * n, n, x.data() + j * n);
      a.apply(x.data(), b, y.data());
      out.matvecs += b;
      for (int64_t j = 0; j < b; ++j) {
        if (done[j]) continue;
        double* w = y.data() + j * n;
        const double* v = basis[j].data();
        const double al = dot(v + step * n, w, n);
        alpha[j].push_back(al);
        if (step + 1 == steps) continue;
        project_out(v, step + 1, w, 1, n, nullptr);  // full reorthogonalisation (twice)
        const double be = norm(w, n);
        const double scale = std::fabs(al) + (beta[j].empty() ? 0.0 : beta[j].back());
        if (!(be > 1e-12 * std::max(scale, 1e-300))) {  // an invariant subspace: the quadrature is exact
          done[j] = 1;
          continue;
        }
        beta[j].push_back(be);
        for (int64_t i = 0; i < n; ++i) basis[j][(step + 1) * n + i] = w[i] / be;
      }
    }
    for (int64_t j = 0; j < b; ++j) {
      const int64_t m = static_cast<int64_t>(alpha[j].size());
      std::vector<double> d = alpha[j], e(beta[j].begin(), beta[j].begin() + (m - 1)), z(static_cast<size_t>(m * m));
      const lapack_int info = LAPACKE_dstev(LAPACK_ROW_MAJOR, 'V', m, d.data(), e.data(), z.data(), m);
      if (info != 0) throw Error(ErrorCode::kInternal, "slq: dstev failed (info " + std::to_string(info) + ")");
      std::vector<double> wts(static_cast<size_t>(m));
      for (int64_t i = 0; i < m; ++i) wts[i] = z[i] * z[i];  // first row of Z
      out.nodes.push_back(std::move(d));
      out.weights.push_back(std::move(wts));
    }
  }
  return out;
}

SmoothedDensity smooth_density(const std::vector<std::vector<double>>& nodes,
                               const std::vector<std::vector<double>>& weights, int64_t points) {
  SmoothedDensity out;
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& v : nodes)
    for (double x : v) lo = std::min(lo, x), hi = std::max(hi, x);
  if (nodes.empty() || !std::isfinite(lo) || !std::isfinite(hi) || points < 2) return out;
  const double span = std::max(hi - lo, 1e-12);
  const double sigma = 0.01 * span, a = lo - 5 * sigma, b = hi + 5 * sigma;
  out.bandwidth = sigma;
  out.grid.resize(static_cast<size_t>(points));
  out.density.assign(static_cast<size_t>(points), 0.0);
  for (int64_t g = 0; g < points; ++g) out.grid[g] = a + (b - a) * double(g) / double(points - 1);
  const double norm = 1.0 / (double(nodes.size()) * sigma * std::sqrt(2 * M_PI));
  for (size_t p = 0; p < nodes.size(); ++p)
    for (size_t j = 0; j < nodes[p].size() && j < weights[p].size(); ++j) {
      // Only the grid points within 9σ of the node (the rest add < 1e-17 of its weight).
      const double th = nodes[p][j], w = weights[p][j] * norm;
      const int64_t g0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor((th - 9 * sigma - a) / (b - a) * (points - 1))));
      const int64_t g1 = std::min<int64_t>(points - 1, static_cast<int64_t>(std::ceil((th + 9 * sigma - a) / (b - a) * (points - 1))));
      for (int64_t g = g0; g <= g1; ++g) {
        const double z = (out.grid[g] - th) / sigma;
        out.density[g] += w * std::exp(-0.5 * z * z);
      }
    }
  return out;
}

}  // namespace basin
