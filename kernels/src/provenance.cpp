#include "provenance.hpp"

#include <unistd.h>

#include <ctime>
#include <limits>
#include <sstream>

#include "basin/sha256.hpp"

namespace basin {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "digests hash the values' bytes as little-endian");

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string iso8601_utc(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

std::string tolerance_rule(const AnalysisRequest& r) {
  if (r.rtol || r.atol) return "max(atol, rtol·σ_max), atol and rtol from the request (0 when not given)";
  const char* eps = r.dtype == DType::kFloat32 ? "ε = 2^-23 (float32)" : "ε = 2^-52 (float64)";
  return std::string("numpy matrix_rank on the matrix decomposed: σ_max·max(n·k, N)·ε for an SVD of G (or of "
                     "TSQR's R); σ_max·√(max(n·k, N)·ε) for a Gram (G Gᵀ or GᵀG); the GGN's on its factor "
                     "G̃ = SᵀG, in eigenvalue units; the Hessian's |λ|_max·N·ε; ") + eps;
}

}  // namespace

std::string array_sha256(const std::string& dtype, const std::vector<int64_t>& shape, const void* data,
                         size_t bytes) {
  std::ostringstream header;
  header << dtype << "[";
  for (size_t i = 0; i < shape.size(); ++i) header << (i ? "," : "") << shape[i];
  header << "]\n";
  Sha256 h;
  const std::string head = header.str();
  h.update(head.data(), head.size());
  if (bytes > 0) h.update(data, bytes);
  return h.hex_digest();
}

void fill_provenance(const AnalysisRequest& r, const std::vector<std::vector<double>>& checkpoints,
                     std::chrono::system_clock::time_point started, double duration_ms,
                     std::vector<AnalysisResult>& results) {
  Provenance common;
  common.basin_version = build_version();
  common.commit = build_commit();
  common.source_modified = build_source_modified();
  common.model_sha256 = sha256_hex(r.graph ? r.graph->fingerprint() : model_to_json(r.model));
  const int64_t n = r.num_examples;
  std::vector<int64_t> x_shape = {n, r.input_size()};
  if (r.graph) {
    x_shape = {n};
    for (int64_t d : r.graph->input_shape()) x_shape.push_back(d);
  }
  common.inputs_sha256 = array_sha256("float64", x_shape, r.inputs.data(), r.inputs.size() * sizeof(double));
  if (r.loss == Loss::kMse)
    common.targets_sha256 = array_sha256("float64", {n, r.output_dim()}, r.targets.data(),
                                         r.targets.size() * sizeof(double));
  else if (r.loss == Loss::kCrossEntropy)
    common.targets_sha256 = array_sha256("int64", {n}, r.labels.data(), r.labels.size() * sizeof(int64_t));
  common.host = host_name();
  common.started_at = iso8601_utc(started);
  common.duration_ms = duration_ms;
  common.tolerance_rule = tolerance_rule(r);
  common.rtol = r.rtol;
  common.atol = r.atol;
  for (size_t b = 0; b < results.size() && b < checkpoints.size(); ++b) {
    AnalysisResult& res = results[b];
    Provenance p = common;
    const std::vector<double>& theta = checkpoints[b];
    p.params_sha256 = array_sha256("float64", {static_cast<int64_t>(theta.size())}, theta.data(),
                                   theta.size() * sizeof(double));
    if (res.jacobian) {
      p.methods.emplace_back("jacobian", res.jacobian->method);
      if (!res.jacobian->refined_from.empty()) p.methods.emplace_back("jacobian_refined_from", res.jacobian->refined_from);
    }
    if (res.ggn) {
      p.methods.emplace_back("ggn", res.ggn->method);
      if (!res.ggn->refined_from.empty()) p.methods.emplace_back("ggn_refined_from", res.ggn->refined_from);
    }
    if (res.hessian) p.methods.emplace_back("hessian", res.hessian->method);
    // Matrix-free spectra (issue 12): their methods, and the seed of the stochastic ones.
    bool stochastic = false;
    for (const auto& [name, ends] : {std::pair{"hessian_top", &res.hessian_top}, {"ggn_top", &res.ggn_top}})
      if (*ends) p.methods.emplace_back(name, (*ends)->method), stochastic = true;
    for (const auto& [name, t] : {std::pair{"hessian_trace", &res.hessian_trace}, {"ggn_trace", &res.ggn_trace}})
      if (*t) p.methods.emplace_back(name, (*t)->method), stochastic = stochastic || (*t)->method != "dense";
    for (const auto& [name, d] : {std::pair{"hessian_density", &res.hessian_density}, {"ggn_density", &res.ggn_density}})
      if (*d) p.methods.emplace_back(name, (*d)->method), stochastic = stochastic || (*d)->method != "dense";
    if (stochastic) p.seeds.emplace_back("spectra", static_cast<int64_t>(r.spectra.seed));
    res.provenance = std::move(p);
  }
}

}  // namespace basin
