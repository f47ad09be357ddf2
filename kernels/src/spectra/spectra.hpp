// Matrix-free spectra of a symmetric operator A [N × N] known only through products A·X for
// blocks of vectors (issue 12): block Lanczos eigenpairs at both ends, Hutch++ trace, stochastic
// Lanczos quadrature. Host float64 vectors; the operator (the engine's H·V or GGN·V, run on the
// backend) is the only place the model enters. docs/ARCHITECTURE.md ("Matrix-free spectra").
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace basin {

struct SymmetricOperator {
  int64_t dim = 0;
  // Y = A X for X, Y [b × dim] row-major (b ≤ max_block).
  std::function<void(const double* x, int64_t b, double* y)> apply;
  int64_t max_block = 8;
};

// Called once per iteration (an A·block product) with (iteration, the most iterations there
// can be, a line for the job's stage: "lanczos 37/1201 (12/20 converged)", "hutch++ 8/30",
// "slq probes 1-4/8 step 37/80"); it throws to stop (cancellation).
using IterationHook = std::function<void(int64_t iteration, int64_t total, const std::string& detail)>;

struct LanczosOptions {
  int64_t top = 20;      // the K largest eigenvalues
  int64_t bottom = 0;    // the K smallest
  int64_t basis = 0;     // restart length: vectors held before a restart (0: lanczos_default_basis)
  int64_t block = 0;     // vectors per product (0: min(top + bottom, 8))
  double tol = 1e-8;     // converged: ‖Av − λv‖ ≤ tol · max|λ| over the Ritz values
  int64_t max_restarts = 60;
  uint64_t seed = 0;
  bool vectors = false;  // return the eigenvectors
};

struct EigenEnd {
  std::vector<double> eigenvalues;     // top: descending; bottom: ascending
  std::vector<double> residual_norms;  // ‖Av − λv‖ of each, computed by one more product
  bool converged = false;              // every residual ≤ tol · max|λ|
  std::vector<double> vectors;         // [K × N] row-major (one eigenvector per row), on request
};

struct LanczosResult {
  EigenEnd top, bottom;
  int64_t matvecs = 0;  // A·v products (a block of b counts b)
  int64_t restarts = 0;
};

int64_t lanczos_default_block(int64_t wanted);
int64_t lanczos_default_basis(int64_t wanted, int64_t block, int64_t dim);
// Vectors of N float64 the eigensolver holds at once: the basis, the restart's Ritz vectors
// and one block (bytes = this · N · 8).
int64_t lanczos_vectors_held(int64_t wanted, int64_t block, int64_t basis);
// Throws kInvalidArgument for K ≥ N, a basis too short for K, a block < 1 (names the flags).
void check_lanczos_options(const LanczosOptions& o, int64_t dim);
LanczosResult block_lanczos(const SymmetricOperator& a, const LanczosOptions& o, const IterationHook& hook);

struct TraceResult {
  double estimate = 0;
  double std_error = 0;  // of the Hutchinson part (zero when the sketch captured all of A)
  int64_t probes = 0, matvecs = 0;
};
// Hutch++ (Meyer, Musco, Musco, Woodruff 2021) with P ≥ 4 products: a sketch of s = ⌊P/3⌋
// Rademacher vectors, Q = orth(A S) taken exactly (tr QᵀAQ), Hutchinson on (I − QQᵀ)A(I − QQᵀ)
// with the remaining P − 2s probes.
TraceResult hutch_plus_plus(const SymmetricOperator& a, int64_t probes, uint64_t seed, const IterationHook& hook);

struct DensityResult {
  std::vector<std::vector<double>> nodes, weights;  // per probe, M each (fewer on breakdown)
  int64_t probes = 0, steps = 0, matvecs = 0;
};
// Stochastic Lanczos quadrature: per Rademacher probe v/‖v‖, M Lanczos steps with full
// reorthogonalisation, nodes = eig(T), weights = squared first components (Σ w = 1), so that
// Σ_j w_j θ_jᵖ = vᵀAᵖv/vᵀv exactly for p < 2M, an unbiased estimate of tr(Aᵖ)/N.
DensityResult slq(const SymmetricOperator& a, int64_t probes, int64_t steps, uint64_t seed, const IterationHook& hook);

struct SmoothedDensity {
  std::vector<double> grid, density;
  double bandwidth = 0;
};
// φ(t) = (1/P) Σ_p Σ_j w_pj N(t; θ_pj, σ²) on `points` equally spaced t from lo − 5σ to hi + 5σ
// ([lo, hi]: the nodes' range), σ = (hi − lo)/100 (1e-12 when every node is the same): a
// resolution finer than the M ≤ ~100 nodes of a probe can place, coarse enough that the grid's
// step (≈ 0.28σ) integrates it to round-off.
SmoothedDensity smooth_density(const std::vector<std::vector<double>>& nodes,
                               const std::vector<std::vector<double>>& weights, int64_t points = 400);

}  // namespace basin
