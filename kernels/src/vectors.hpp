// --vectors (internal): G's singular bases and the GGN's / Hessian's eigenvectors, built from the
// orthogonal factorisations of the backend (SVD of the materialised G or G̃, dense eigen-solve of
// H), so orthonormality holds to round-off (‖VᵀV − I‖ ~ ε·√N) even for tiny σ -- unlike
// V = GᵀUΣ⁻¹ from the Gram, which loses it for σ near the tolerance.
#pragma once

#include <cstdint>
#include <vector>

#include "basin/analysis.hpp"
#include "basin/backend.hpp"

namespace basin {

// Checks the vector requests against `want` and the limits before any work (kInvalidArgument,
// kResourceExhausted naming what fits). `checkpoints` = how many parameter vectors are analysed.
void validate_vectors(const AnalysisRequest& request, size_t checkpoints);

// From G [m×N] (backend memory, destroyed) and the reported rank: jacobian_row_basis
// [rank × N] (rows v_1..v_rank), jacobian_null_basis [N × (N − rank)] (columns v_rank+1..v_N),
// jacobian_left_basis [m × rank] (columns u_1..u_rank), as requested (K truncates row/left).
template <class T>
std::vector<VectorArray> jacobian_bases(Backend<T>& be, T* g, int64_t m, int64_t N, int64_t rank,
                                        const VectorsWant& want);

// GGN = G̃ᵀG̃: its eigenvector of eigenvalue σ_j² is G̃'s right singular vector v_j. G̃ [m×N]
// (destroyed); `count` = the length of the GGN eigenvalue list (columns beyond min(m, N) come from
// the full V: eigenvalue 0). ggn_eigenvectors [N × c], c = count, or K.
template <class T>
VectorArray ggn_eigenvectors(Backend<T>& be, T* g_tilde, int64_t m, int64_t N, int64_t count, int64_t k);

// From the eigenvectors as rows (symmetric_eigensystem's output, downloaded, N×N):
// hessian_eigenvectors [N × c], columns in the order of the eigenvalue list (all, or the first K
// and the last K).
VectorArray hessian_eigenvectors(const std::vector<double>& rows, int64_t N, int64_t k);

}  // namespace basin
