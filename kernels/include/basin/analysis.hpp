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
#include <optional>
#include <string>
#include <vector>

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
};
// Parses "jacobian,ggn,hessian"; throws kInvalidArgument naming the unknown word.
Want parse_want(const std::string& list);

// Sizes Basin refuses before doing any work (kResourceExhausted, naming the limit).
struct Limits {
  int64_t max_hessian_params = 4096;        // exact Hessian is N×N dense
  int64_t max_dense_dim = 30000;            // largest Gram / GᵀG / Hessian handed to a dense solver
  uint64_t max_memory_bytes = 8ull << 30;   // estimated working memory of one analysis
  uint64_t max_jacobian_bytes = 1ull << 30; // returning G itself
};

struct AnalysisRequest {
  Model model;
  std::vector<double> params;   // N values (float32 inputs are widened exactly)
  int64_t num_examples = 0;     // n
  std::vector<double> inputs;   // n × input_dim, row-major
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
  Limits limits;
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
};

struct GgnSpectrum {
  std::vector<double> eigenvalues;  // min(n·k, N) values, descending (the rest are zero)
  int64_t rank = 0;
  double tolerance = 0;
};

struct HessianSpectrum {
  std::vector<double> eigenvalues;  // N values, descending
  int64_t rank = 0;
  double tolerance = 0;
  double residual_rel = 0;                    // ‖H − GGN‖_F / ‖H‖_F (NaN → null when H = 0)
  std::vector<double> residual_eigenvalues;   // eig(H − GGN), descending
};

struct Timings {
  double forward_ms = 0;
  double jacobian_ms = 0;  // back-propagation + Gram / GᵀG / G assembly
  double solve_ms = 0;     // eigen / singular value solves
  double hessian_ms = 0;   // full-Hessian assembly (R-op passes)
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
  Timings timings;
};

enum class Stage { kValidate, kForward, kJacobian, kGram, kSolve, kHessian, kDone };
const char* stage_name(Stage s);

// Progress is reported between steps; `cancel`, when set to true by another thread, makes
// analyze() throw Error(kCancelled) at the next step boundary.
struct RunControl {
  std::function<void(Stage stage, double fraction)> on_progress;
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
// errors name params[b]) and the rest of `request` (whose `params` is not used).
void validate_checkpoints(const AnalysisRequest& request,
                          const std::vector<std::vector<double>>& checkpoints);

// The single JSON object of the CLI contract (see README). `indent` < 0: one line.
std::string result_to_json(const AnalysisResult& result, int indent = -1);

}  // namespace basin
