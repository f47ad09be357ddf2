// Per-parameter-tensor spectra (internal): for every dense layer's weight and bias, the
// singular values and rank of its column block G_l of the per-example Jacobian, its share of
// ‖G‖²_F, and the eigenvalues of the Hessian's diagonal block H_ll.
//
// Column blocks of a dense layer (rows (i, c) of G, δ = ∂f_c(x_i)/∂z the layer's output
// sensitivity, a_i its input):  weight row = δ ⊗ a_i,  bias row = δ.  Hence
//   weight Gram  G_W G_Wᵀ = (Δ Δᵀ) ⊙ (A Aᵀ ⊗ 1 1ᵀ),   bias Gram  G_b G_bᵀ = Δ Δᵀ,
// both (n·k)² without materialising G_l. The Gram resolves σ only to √ε·σ_max, so when the
// method is auto and the Gram shows values below that resolution (an apparent deficiency) the
// block is materialised and its SVD taken (ε·σ_max, NumPy's matrix_rank rule), exactly as for
// the whole G. A tall block (n·k > count) goes to the SVD directly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "basin/analysis.hpp"
#include "basin/backend.hpp"
#include "network.hpp"

namespace basin {

struct ParameterTensor {
  std::string name;            // "<module index>.weight" | "<module index>.bias"
  std::vector<int64_t> shape;  // [out, in] | [out]
  int64_t offset = 0, count = 0;
  int64_t layer = 0;           // index in model.layers
  bool is_bias = false;
};
// The tensors in θ order, named as PyTorch's named_parameters() names the equivalent
// nn.Sequential (activation modules take an index too).
std::vector<ParameterTensor> parameter_tensors(const Model& model);

// Throws kResourceExhausted, naming the tensor and the limit, when some tensor's block can be
// neither Gram-solved nor SVD-ed within `budget` bytes (and the dense-solver limit).
void validate_per_parameter(const AnalysisRequest& r, double budget);

// The Jacobian part of every tensor's entry (hessian_block left unset). The network holds the
// checkpoint's forward pass; identity seeds [(n·k) × k].
template <class T>
std::vector<ParameterSpectrum> per_parameter_jacobian(Backend<T>& be, Network<T>& net, const std::vector<T>& seeds,
                                                      const AnalysisRequest& r, double budget, Timings& timings);

// Eigenvalues (descending) of the diagonal blocks H_ll of the lower triangle h [N × N], one
// list per tensor in θ order. h is read, not modified.
template <class T>
std::vector<std::vector<double>> hessian_block_eigenvalues(Backend<T>& be, const Model& model, const T* h);

}  // namespace basin
