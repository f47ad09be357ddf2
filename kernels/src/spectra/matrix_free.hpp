// The engine's side of the matrix-free spectra (Want::hessian_top … ggn_density): the H·V and
// GGN·V operators of the graph executor, the exact dense path `auto` takes where it fits, the
// checks made before any work, and the results. docs/ARCHITECTURE.md ("Matrix-free spectra").
#pragma once

#include <functional>
#include <string>

#include "basin/analysis.hpp"
#include "basin/backend.hpp"
#include "graph/executor.hpp"
#include "loss.hpp"

namespace basin {

// Whether the request's spectra take the exact dense path (auto: N ≤ limits.max_hessian_params).
bool spectra_dense(const AnalysisRequest& r);
// Working memory (bytes) of the matrix-free spectra: the eigensolver's vectors
// (lanczos_vectors_held · N · 8), the density's Lanczos bases (probes at once · steps · N · 8),
// the trace's sketch, and the products' device blocks (4 · block · N · sizeof(T)).
double spectra_bytes(const AnalysisRequest& r);
// Refuses bad options (K ≥ N, steps too short, probes) and memory the restart length would
// exceed (saying what fits) before any work. No-op when no spectra are wanted.
void validate_spectra(const AnalysisRequest& r);

// progress(stage, fraction of this step, the stage's detail: "lanczos 37/1201 (12/20 converged)").
using SpectraProgress = std::function<void(Stage, double, const std::string&)>;

// Fills res.hessian_top … ggn_density for the network's current checkpoint (forward and
// gradient(…, keep = true) done). progress is called per iteration and throws to cancel.
template <class T>
void compute_spectra(Backend<T>& be, GraphNetwork<T>& net, const AnalysisRequest& r, const LossTerms& terms,
                     AnalysisResult& res, const SpectraProgress& progress);

}  // namespace basin
