// Loss value, ∂L/∂f and the factor S_i of the per-example loss Hessian M_i = S_i S_iᵀ (internal).
#pragma once

#include <cstdint>
#include <vector>

#include "basin/analysis.hpp"

namespace basin {

struct LossTerms {
  double value = 0;
  std::vector<double> dloss_df;  // [n × k]: ∂L/∂f_ic, including the reduction's 1/n or 1/(n·k)
  // Seed rows for the GGN: row (i, r) = column r of S_i, [(n·k) × k]. Back-propagating these
  // gives G̃ = Sᵀ G with G̃ᵀ G̃ = Gᵀ M G.
  std::vector<double> factor_seeds;
  bool scaled_identity = false;  // M_i = scale · I for every i (MSE)
  double scale = 0;
};

// MSE (PyTorch MSELoss): L = Σ (f − y)² / (n·k) for mean, M_i = 2/(n·k)·I.
// Cross-entropy (PyTorch CrossEntropyLoss on logits): ℓ_i = logsumexp(f_i) − f_i,y_i,
// M_i = (diag p_i − p_i p_iᵀ)/n, S_i = (diag √p_i − p_i √p_iᵀ)/√n  (S_i S_iᵀ = M_i since Σ p = 1).
LossTerms loss_terms(Loss loss, Reduction reduction, const std::vector<double>& outputs, int64_t n,
                     int64_t k, const std::vector<double>& targets, const std::vector<int64_t>& labels);

}  // namespace basin
