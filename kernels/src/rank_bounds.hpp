// Rank bounds implied by the architecture and the data, computed before anything is solved
// (internal). Each is a theorem about the matrices Basin measures, so measured rank ≤ bound;
// the reasons and their proofs are in rank_bounds.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "basin/analysis.hpp"

namespace basin {

struct RankBounds {
  RankBound jacobian;  // rank(G)
  RankBound ggn;       // rank(Gᵀ M G) (only meaningful with a loss)
  RankBound hessian;   // rank(H)
};

struct RankBoundInputs {
  const Model* model = nullptr;
  int64_t num_examples = 0;
  Loss loss = Loss::kNone;
  DType dtype = DType::kFloat64;  // the precision the engine evaluated φ' in
  // act[i] on the host, i = 0..L, as the engine computed it (act[0] = X).
  std::function<std::vector<double>(int64_t i)> activation;
  // rank(M_i) per example (LossTerms::factor_ranks); empty without a loss.
  std::vector<int64_t> factor_ranks;
};

RankBounds rank_bounds(const RankBoundInputs& in);
// For a general graph: the bounds the sizes imply (see rank_bounds.cpp).
RankBounds graph_rank_bounds(int64_t n, int64_t k, int64_t N, Loss loss, const std::vector<int64_t>& factor_ranks);

// NumPy's matrix_rank of a row-major rows × cols matrix (SVD, σ_max·max(rows, cols)·ε);
// -1 when the SVD would cost more than ~2·10⁹ flops (the caller falls back to min(rows, cols)).
int64_t host_matrix_rank(const std::vector<double>& a, int64_t rows, int64_t cols);

}  // namespace basin
