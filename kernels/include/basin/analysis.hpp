// The analysis engine: one request in, every spectral quantity out.
//
// This is the API the CLI (--local), the gRPC server and the tests call. It validates the
// request, plans the method and the memory, runs the algorithms on a backend and returns host
// values. See ../shared/DESIGN.md for the mathematics; the short version:
//   G  [(n·k)×N]  per-example Jacobian, row (i, c) = ∇θ f_c(x_i; θ), example-major.
//   GGN = Gᵀ M G, M = blockdiag_i ∇²_f ℓ_i = blockdiag_i S_i S_iᵀ.
//   H   = GGN + Σ_{i,c} r_ic ∇²θ f_c(x_i),  r = ∂L/∂f   (the second term is the "residual").
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "basin/graph.hpp"
#include "basin/model.hpp"

namespace basin {

enum class Loss { kNone, kMse, kCrossEntropy };
enum class Reduction { kMean, kSum };
enum class Method { kAuto, kGram, kNormal, kSvd };
enum class DType { kFloat64, kFloat32 };
enum class Device { kAuto, kCpu, kCuda };

const char* loss_name(Loss l);
const char* reduction_name(Reduction r);
const char* method_name(Method m);
const char* dtype_name(DType d);
const char* device_name(Device d);
bool loss_from_name(const std::string& s, Loss* out);
bool reduction_from_name(const std::string& s, Reduction* out);
bool method_from_name(const std::string& s, Method* out);
bool dtype_from_name(const std::string& s, DType* out);
bool device_from_name(const std::string& s, Device* out);

struct Want {
  bool jacobian = true;  // singular values and rank of G
  bool ggn = false;      // eigenvalues of Gᵀ M G
  bool hessian = false;  // exact full Hessian (small N)
  // Per parameter tensor: σ and rank of G's column block, Gram-trace share, and the spectrum
  // of the Hessian's diagonal block when hessian is also wanted (see ParameterSpectrum).
  bool per_parameter = false;
  // Matrix-free spectra (issue 12; SpectraOptions below): the K largest (and --bottom-k smallest)
  // eigenvalues with residuals, the trace (Hutch++) and the density (stochastic Lanczos
  // quadrature) of the Hessian H and of the GGN, from H·V / GGN·V products alone.
  bool hessian_top = false, ggn_top = false;
  bool hessian_trace = false, ggn_trace = false;
  bool hessian_density = false, ggn_density = false;
  bool any_hessian_spectra() const { return hessian_top || hessian_trace || hessian_density; }
  bool any_ggn_spectra() const { return ggn_top || ggn_trace || ggn_density; }
};
// Parses "jacobian,ggn,hessian,per_parameter,hessian_top,…"; throws kInvalidArgument naming the unknown word.
Want parse_want(const std::string& list);

// --vectors: which bases and eigenvectors to return besides the values (README "Vectors").
struct VectorsWant {
  bool jacobian_row = false;   // rank × N: rows = G's right singular vectors with σ > tolerance
  bool jacobian_null = false;  // N × (N − rank): columns = an orthonormal basis of G's null space
  bool jacobian_left = false;  // (n·k) × rank: columns = G's left singular vectors
  bool ggn = false;            // N × c: GGN eigenvectors, one column per listed eigenvalue
  bool hessian = false;        // N × c: Hessian eigenvectors, one column per listed eigenvalue
  // 0: all. K > 0: jacobian_row/left and ggn keep the K largest; hessian keeps the K largest
  // and the K smallest (most negative) eigenvalues' vectors; jacobian_null is always whole.
  int64_t k = 0;
  bool jacobian() const { return jacobian_row || jacobian_null || jacobian_left; }
  bool any() const { return jacobian() || ggn || hessian; }
};
// Parses "jacobian_row,jacobian_null,jacobian_left,ggn,hessian"; throws kInvalidArgument
// naming the unknown word.
VectorsWant parse_vectors(const std::string& list);

// Sizes Basin refuses before doing any work (kResourceExhausted, naming the limit).
struct Limits {
  int64_t max_hessian_params = 4096;        // exact Hessian is N×N dense
  int64_t max_dense_dim = 30000;            // largest Gram / GᵀG / Hessian handed to a dense solver
  uint64_t max_memory_bytes = 8ull << 30;   // estimated working memory of one analysis
  uint64_t max_jacobian_bytes = 1ull << 30; // returning G itself
  // Layers of a model (ONNX: graph nodes). Every step is linear in it, but each layer is
  // a backend call per pass (forward, every back-propagation, every R-op block), so depth is
  // what makes a small request slow. Real sequential networks have at most hundreds of layers
  // (ResNet-152 exports to ~500 ONNX nodes); 10,000 leaves 20x headroom and keeps validating
  // a model at the limit to about a millisecond.
  int64_t max_layers = 10000;
};

// Refuses a model of more than limits.max_layers layers (kResourceExhausted naming the limit),
// given only its count: call it before anything proportional to the model. `what` names the
// field ("model.layers", "onnx_blob_id (...) nodes").
void check_layer_count(int64_t count, const Limits& limits, const std::string& what);

// Options of the matrix-free spectra (Want::hessian_top … ggn_density).
struct SpectraOptions {
  int64_t top_k = 20;         // K largest eigenvalues
  int64_t bottom_k = 0;       // K smallest ("hessian_bottom"/"ggn_bottom" when > 0)
  int64_t lanczos_steps = 0;  // eigenpairs: the restart length (basis vectors held); density: the
                              // Lanczos steps per probe. 0: defaults (spectra.hpp; density 80)
  int64_t lanczos_block = 0;  // vectors per product (0: min(K, 8))
  int64_t probes = 0;         // trace (Hutch++ products, ≥ 4; 0: 30) and density (0: 4)
  uint64_t seed = 0;
  double tol = 1e-8;          // converged: ‖Hv − λv‖ ≤ tol · max|λ|
  int64_t max_restarts = 60;
  bool eigenvectors = false;  // return the eigenvectors (CLI --save-eigenvectors)
  // "auto": the exact dense eigen-solve / trace / spectrum where N ≤ limits.max_hessian_params,
  // matrix-free beyond; "dense" or "matrix_free" force one path.
  std::string method = "auto";
};

struct AnalysisRequest {
  // The network: an operation graph (basin/graph.hpp: ONNX files, torch modules, any DAG of
  // primitive ops), or, when graph is null, the chain shorthand `model` (the JSON layer list),
  // which the engine turns into a graph itself (graph_from_model).
  std::shared_ptr<const Graph> graph;
  Model model;
  std::vector<double> params;   // N values (float32 inputs are widened exactly)
  int64_t num_examples = 0;     // n
  std::vector<double> inputs;   // n × input_dim (graph: n × numel(per-example input shape)), row-major
  std::vector<double> targets;  // n × k, for mse
  std::vector<int64_t> labels;  // n, for cross_entropy (0 <= label < k)
  Loss loss = Loss::kNone;
  Reduction reduction = Reduction::kMean;
  Want want;
  Method method = Method::kAuto;
  DType dtype = DType::kFloat64;
  Device device = Device::kCpu;
  std::optional<double> rtol;  // rank tolerance = max(atol, rtol·σ_max)
  std::optional<double> atol;
  bool return_jacobian = false;  // fill AnalysisResult::jacobian_matrix
  bool return_outputs = true;
  VectorsWant vectors;
  Limits limits;
  SpectraOptions spectra;

  // The network's sizes, whichever way it is given (graph, or the chain `model`).
  int64_t num_params() const { return graph ? graph->num_params() : model.num_params(); }
  int64_t output_dim() const { return graph ? graph->output_dim() : model.output_dim(); }
  int64_t input_size() const { return graph ? graph->input_size() : model.input_dim; }
};

// What the architecture and the data imply about a rank before anything is solved (see
// kernels/src/rank_bounds.hpp): measured rank ≤ rank_at_most, with the reason in words; exact
// when theory gives equality for generic parameters (deep linear networks).
struct RankBound {
  int64_t rank_at_most = 0;
  std::string why;
  bool exact = false;
};

struct JacobianSpectrum {
  std::vector<double> singular_values;  // all min(n·k, N), descending
  int64_t rank = 0;
  double tolerance = 0;        // singular values > tolerance count towards the rank
  std::optional<double> gap;   // σ_rank / σ_rank+1, when both exist and σ_rank+1 > 0
  int64_t level_set_dim = 0;   // N − rank
  // "gram" | "normal" | "svd" | "tsqr": the method the values come from. "tsqr" is never
  // requested: it is auto's refinement of a tall G (below) when G itself does not fit in memory.
  std::string method;
  // Set when --method auto first used this Gram method, found singular values below the
  // Gram's resolution (√ε·σ_max) and so recomputed them to ε·σ_max: with the SVD of G
  // (method "svd"), or, when G does not fit and n·k > N, with the SVD of the triangular factor
  // R of G = QR, built by TSQR over blocks of examples (method "tsqr", refined_from "normal").
  std::string refined_from;
  RankBound bound;
};

struct GgnSpectrum {
  // min(n·k, N) values, descending (the rest are zero). They are σ(G̃)² for G̃ = SᵀG with r
  // columns of S_i per example (k for MSE, k − 1 for cross-entropy), so min(n·r, N) of them are
  // computed and the remaining min(n·k, N) − min(n·r, N) are cross-entropy's structural zeros,
  // written as exact 0.
  std::vector<double> eigenvalues;
  int64_t rank = 0;
  double tolerance = 0;
  std::optional<double> gap;  // λ_rank / λ_rank+1
  // As JacobianSpectrum::method / refined_from, for the factor G̃ (for MSE: G's own); "zero"
  // when M = 0 (cross-entropy with k = 1) and nothing needed computing.
  std::string method;
  std::string refined_from;
  RankBound bound;
};

struct HessianSpectrum {
  std::vector<double> eigenvalues;  // N values, descending
  int64_t rank = 0;
  double tolerance = 0;
  std::optional<double> gap;  // |λ|_rank / |λ|_rank+1 (by magnitude)
  std::string method = "dense";  // eigen-solve of the assembled N × N matrix; never refined
  std::string refined_from;      // always empty (kept for symmetry with the other spectra)
  RankBound bound;
  double residual_rel = 0;                    // ‖H − GGN‖_F / ‖H‖_F (NaN → null when H = 0)
  std::vector<double> residual_eigenvalues;   // eig(H − GGN), descending
};

// One array of vectors (--vectors), written as <name>.npy (float64, C order).
struct VectorArray {
  // "jacobian_row_basis" | "jacobian_null_basis" | "jacobian_left_basis" | "ggn_eigenvectors" |
  // "hessian_eigenvectors"
  std::string name;
  std::vector<int64_t> shape;    // [rows, cols]
  std::vector<double> data;      // row-major; empty when only blob_id is known (over the wire)
  // Position in the spectrum's value list of each vector (the rows of jacobian_row_basis, the
  // columns otherwise); empty for jacobian_null_basis (a basis of a subspace, not a spectrum).
  std::vector<int64_t> indices;
  std::string blob_id;           // from a server: the blob holding the .npy file
};

// Eigenvalues of a symmetric block, descending, with the rank rule of the matrix it came from.
struct BlockSpectrum {
  std::vector<double> eigenvalues;
  int64_t rank = 0;
  double tolerance = 0;
};

// One parameter tensor θ_t = θ[offset, offset + count) (a dense layer's weight or bias) and its
// column block G_t of G [(n·k) × count]:
//   jacobian: σ(G_t) (min(n·k, count) values) and rank, from the smaller of G_t G_tᵀ ("gram")
//     and G_tᵀ G_t ("normal"), or the SVD of G_t ("svd"; auto refines an unresolved Gram as
//     for G); tolerance rule as for G with max(n·k, count) in place of max(n·k, N);
//   gram_trace_fraction = ‖G_t‖²_F / ‖G‖²_F = tr(G_t G_tᵀ) / tr(G Gᵀ) (NaN → null when G = 0);
//   hessian_block: eigenvalues of H's diagonal block H_tt [count × count], only when the full
//     Hessian is computed (want hessian): sliced from H, tolerance max|λ|·count·ε.
struct ParameterSpectrum {
  std::string name;            // PyTorch named_parameters() name, e.g. "0.weight"
  std::vector<int64_t> shape;  // [out, in] for a weight, [out] for a bias
  int64_t offset = 0;          // first entry in θ (parameters_to_vector order)
  int64_t count = 0;
  JacobianSpectrum jacobian;   // level_set_dim = count − rank
  double gram_trace_fraction = 0;
  std::optional<BlockSpectrum> hessian_block;
};

// Matrix-free results (Want::hessian_top …). "method": "lanczos" (or "dense" when auto took the
// exact path), "hutch++", "slq" ("dense" likewise).
struct EigenEnds {
  std::vector<double> eigenvalues;     // top: descending; bottom: ascending
  std::vector<double> residual_norms;  // ‖Av − λv‖ of each (one product per vector)
  bool converged = false;              // every residual ≤ tol · max|λ|
  int64_t matvecs = 0;                 // products of the run (top and bottom share one run)
  std::string method;
};
struct TraceEstimate {
  double estimate = 0, std_error = 0;
  int64_t probes = 0, matvecs = 0;
  std::string method;
};
struct SpectralDensity {
  std::vector<std::vector<double>> nodes, weights;  // [P][M]: quadrature per probe (Σ w = 1)
  int64_t probes = 0, steps = 0, matvecs = 0;
  std::string method;
  // The smoothed density on a grid: φ(t) = (1/P) Σ_p Σ_j w_pj N(t; θ_pj, σ²) at G = 400 points
  // spanning the nodes [lo, hi] and 5σ beyond each end, σ = bandwidth = (hi − lo)/100 (so that
  // ∫φ = 1 to ~1e-6 on the grid and ∫tφ = the SLQ estimate of tr(A)/N). See smooth_density.
  std::vector<double> grid, density;
  double bandwidth = 0;
};

struct Timings {
  double forward_ms = 0;
  double jacobian_ms = 0;  // back-propagation + Gram / GᵀG / G assembly
  double solve_ms = 0;     // eigen / singular value solves
  double hessian_ms = 0;   // full-Hessian assembly (R-op passes)
};

// What produced a result, so a number can be cited and reproduced (docs/results.md, "provenance").
// Digests are SHA-256, hex: model_sha256 over model_to_json(model) (the architecture in Basin's
// canonical JSON: compact, keys sorted); each array over the ASCII header "<dtype>[d0,d1,…]\n"
// followed by its little-endian values as the engine used them (float64; cross-entropy labels
// int64).
struct Provenance {
  std::string basin_version;
  std::string commit;            // git commit of the source tree Basin was built from, or "unknown"
  bool source_modified = false;  // that tree had uncommitted changes to tracked files
  std::string model_sha256;
  std::string params_sha256;     // of this result's own parameter vector (its checkpoint's)
  std::string inputs_sha256;
  std::string targets_sha256;    // empty when there are no targets (loss none)
  std::string host;              // where the engine ran (the server's host for --server)
  std::string started_at;        // UTC, ISO 8601 with milliseconds
  double duration_ms = 0;        // the engine's wall time for the request (all checkpoints)
  std::string tolerance_rule;    // how the rank cuts were chosen
  std::optional<double> rtol, atol;
  std::vector<std::pair<std::string, std::string>> methods;  // spectrum → method, e.g. jacobian → gram
  std::vector<std::pair<std::string, int64_t>> seeds;        // stochastic methods' seeds (none yet)
  // Set by clients of a server from its response: waiting for a worker, and the server's wall
  // time for the request, queue included.
  std::optional<double> queue_ms, total_ms;
};

struct AnalysisResult {
  int64_t num_params = 0;
  int64_t num_examples = 0;
  int64_t num_outputs = 0;
  std::string backend;  // "cpu" | "cuda"
  std::string device;   // device name
  std::string dtype;
  std::string loss;     // "mse" | "cross_entropy" | "none"
  std::string reduction;
  std::vector<double> outputs;      // n × k (when return_outputs)
  std::optional<double> loss_value;
  std::optional<double> grad_norm;
  std::optional<JacobianSpectrum> jacobian;
  std::optional<GgnSpectrum> ggn;
  std::optional<HessianSpectrum> hessian;
  std::vector<double> jacobian_matrix;  // (n·k) × N when return_jacobian
  std::vector<VectorArray> vectors;     // --vectors, in the order of VectorsWant's fields
  std::vector<ParameterSpectrum> per_parameter;  // when want.per_parameter, in θ order
  std::optional<EigenEnds> hessian_top, hessian_bottom, ggn_top, ggn_bottom;
  std::optional<TraceEstimate> hessian_trace, ggn_trace;
  std::optional<SpectralDensity> hessian_density, ggn_density;
  Timings timings;
  Provenance provenance;
};

enum class Stage { kValidate, kForward, kJacobian, kGram, kSolve, kHessian, kDone, kLanczos, kTrace, kDensity };
const char* stage_name(Stage s);

// Progress is reported between steps; `cancel`, when set to true by another thread, makes
// analyze() throw Error(kCancelled) at the next step boundary.
struct RunControl {
  std::function<void(Stage stage, double fraction)> on_progress;
  // Optional: the current step in words, called just before each on_progress: the matrix-free
  // spectra's iteration ("lanczos 37/1201 (12/20 converged)", "hutch++ 8/30",
  // "slq probes 1-4/8 step 37/80", "dense products 64/4096"), empty for the other stages.
  std::function<void(const std::string& detail)> on_detail;
  const std::atomic<bool>* cancel = nullptr;
};

// Throws basin::Error on any invalid input, limit, or library failure.
AnalysisResult analyze(const AnalysisRequest& request, const RunControl& control = {});

// Several parameter vectors of one architecture on the same data -- the checkpoints of a
// training run -- with one result each, in order. `request.params` is not used. One backend
// and one upload of the data serve them all, and their small eigen-problems are solved
// together (batched solvers on a GPU). Progress fractions run once from 0 to 1 over the batch;
// a checkpoint's bad values are reported as params[b].
std::vector<AnalysisResult> analyze_checkpoints(const AnalysisRequest& request,
                                                const std::vector<std::vector<double>>& checkpoints,
                                                const RunControl& control = {});

// Checks everything that can be checked without computing (shapes, values, labels, limits).
void validate_request(const AnalysisRequest& request);
// The same for analyze_checkpoints: every checkpoint's values (finite, in range for the dtype;
// errors name params[b]) and the rest of `request` (whose `params` is not used). `check_stop`,
// when set, is called between checkpoints (it throws to stop: a deadline, a cancel).
void validate_checkpoints(const AnalysisRequest& request,
                          const std::vector<std::vector<double>>& checkpoints,
                          const std::function<void()>& check_stop = {});

// The single JSON object of the CLI contract (see README). `indent` < 0: one line.
std::string result_to_json(const AnalysisResult& result, int indent = -1);

}  // namespace basin
