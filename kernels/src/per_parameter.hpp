// Spectra per parameter tensor (internal): σ of G's column blocks and H's diagonal blocks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "basin/analysis.hpp"
#include "basin/backend.hpp"
#include "graph/executor.hpp"

namespace basin {

// A parameter tensor's place in θ and in the network (θ order: per dense layer, weight then bias).
struct TensorSlot {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, count = 0;
  size_t dense = 0;     // index among the dense layers
  bool bias = false;
};
// The request's parameter tensors in θ order (graph: its parameters; chain: per dense layer).
std::vector<TensorSlot> tensor_slots(const AnalysisRequest& req);

// σ(G_t), rank, tolerance, method and Gram-trace share for every tensor t, with G seeded by
// `identity_seeds` (k rows per example) on the network's current forward pass. `svd_budget_bytes`
// bounds the materialised G_t of auto's SVD refinement.
template <class T>
std::vector<ParameterSpectrum> per_parameter_spectra(Backend<T>& be, GraphNetwork<T>& net, const AnalysisRequest& req,
                                                     const std::vector<T>& identity_seeds, double svd_budget_bytes);

// Eigenvalues of every tensor's diagonal block H_tt, sliced from the lower triangle of H [N×N]
// (left intact), in the order of tensor_slots.
template <class T>
std::vector<BlockSpectrum> hessian_blocks(Backend<T>& be, const AnalysisRequest& req, const T* h);

}  // namespace basin
