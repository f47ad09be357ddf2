// Loss value, ∂L/∂f and the factor S_i of the per-example loss Hessian M_i = S_i S_iᵀ (internal).
#pragma once

#include <cstdint>
#include <vector>

#include "basin/analysis.hpp"

namespace basin {

struct LossTerms {
  double value = 0;
  std::vector<double> dloss_df;  // [n × k]: ∂L/∂f_ic, including the reduction's 1/n or 1/(n·k)
  // Seed rows for the GGN: row (i, j) = column j of S_i, [(n·factor_cols) × k]. Back-propagating
  // these gives G̃ = Sᵀ G with G̃ᵀ G̃ = Gᵀ M G.
  std::vector<double> factor_seeds;
  // Columns of each S_i: k for MSE, k − 1 for cross-entropy (0 when k = 1: M = 0).
  int64_t factor_cols = 0;
  // rank(S_i) = rank(M_i) per example: k for MSE; for cross-entropy the number of classes with
  // p_ic > 0, minus one (a probability that underflowed to exactly 0 removes a direction).
  std::vector<int64_t> factor_ranks;
  bool scaled_identity = false;  // M_i = scale · I for every i (MSE)
  double scale = 0;
};

// MSE (PyTorch MSELoss): L = Σ (f − y)² / (n·k) for mean, M_i = 2/(n·k)·I.
// Cross-entropy (PyTorch CrossEntropyLoss on logits): ℓ_i = logsumexp(f_i) − f_i,y_i,
// M_i = (diag p_i − p_i p_iᵀ)/n = D (I − √p √pᵀ) D / n with D = diag √p_i. The reduced factor
// S_i = D U_i / √n, U_i the k × (k−1) orthonormal basis of √p_i⊥ given by the Householder
// reflection that maps √p_i to −e_k, satisfies S_i S_iᵀ = D U Uᵀ D / n = M_i exactly, with k − 1
// columns instead of k: the softmax's null direction √p_i never enters a Gram or an SVD.
//
// Sequence outputs: with `classes` = C < k, each example's k outputs are P = k / C positions of
// C logits (a per-example output [.., C], row-major), labels are [n × P] and cross-entropy
// averages over all n·P positions exactly as F.cross_entropy(logits.reshape(-1, C),
// labels.reshape(-1)): M_i is block-diagonal over positions, S_i has P·(C − 1) columns (the
// reduced factor of each position's block). classes = 0 means C = k (one position).
LossTerms loss_terms(Loss loss, Reduction reduction, const std::vector<double>& outputs, int64_t n,
                     int64_t k, const std::vector<double>& targets, const std::vector<int64_t>& labels,
                     int64_t classes = 0);

// C, the classes of cross-entropy: the last axis of a graph's per-example output, else k.
int64_t loss_classes(const AnalysisRequest& r);
// Columns of S_i: k for MSE, P·(C − 1) for cross-entropy.
int64_t loss_factor_cols(const AnalysisRequest& r);

}  // namespace basin
