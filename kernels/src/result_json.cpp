// The CLI's JSON contract (also what `basin analyze --server` prints, so both must match).
#include <cmath>
#include <nlohmann/json.hpp>

#include "basin/analysis.hpp"

namespace basin {
namespace {

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}
nlohmann::json bound_json(const RankBound& b) {
  return {{"rank_at_most", b.rank_at_most}, {"why", b.why}, {"exact", b.exact}};
}
nlohmann::json gap_json(const std::optional<double>& gap) {
  return gap ? number_or_null(*gap) : nlohmann::json(nullptr);
}
nlohmann::json numbers(const std::vector<double>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (double x : v) a.push_back(number_or_null(x));
  return a;
}

nlohmann::json optional_number(const std::optional<double>& v) {
  return v ? number_or_null(*v) : nlohmann::json(nullptr);
}

nlohmann::json provenance_json(const AnalysisResult& r) {
  using nlohmann::json;
  const Provenance& p = r.provenance;
  json tolerance = {{"rule", p.tolerance_rule}, {"rtol", optional_number(p.rtol)}, {"atol", optional_number(p.atol)}};
  if (r.jacobian) tolerance["jacobian"] = number_or_null(r.jacobian->tolerance);
  if (r.ggn) tolerance["ggn"] = number_or_null(r.ggn->tolerance);
  if (r.hessian) tolerance["hessian"] = number_or_null(r.hessian->tolerance);
  json methods = json::object(), seeds = json::object();
  for (const auto& [k, v] : p.methods) methods[k] = v;
  for (const auto& [k, v] : p.seeds) seeds[k] = v;
  json doc = {{"basin_version", p.basin_version},
              {"commit", p.commit},
              {"source_modified", p.source_modified},
              {"model_sha256", p.model_sha256},
              {"params_sha256", p.params_sha256},
              {"inputs_sha256", p.inputs_sha256},
              {"targets_sha256", p.targets_sha256.empty() ? json(nullptr) : json(p.targets_sha256)},
              {"dtype", r.dtype},
              {"backend", r.backend},
              {"device", r.device},
              {"host", p.host},
              {"started_at", p.started_at},
              {"duration_ms", p.duration_ms},
              {"tolerance", tolerance},
              {"methods", methods},
              {"seeds", seeds}};
  if (p.queue_ms) doc["queue_ms"] = *p.queue_ms;
  if (p.total_ms) doc["total_ms"] = *p.total_ms;
  return doc;
}

nlohmann::json jacobian_json(const JacobianSpectrum& j) {
  nlohmann::json d = {{"singular_values", numbers(j.singular_values)},
                      {"rank", j.rank},
                      {"tolerance", number_or_null(j.tolerance)},
                      {"gap", j.gap ? number_or_null(*j.gap) : nlohmann::json(nullptr)},
                      {"level_set_dim", j.level_set_dim},
                      {"method", j.method}};
  if (!j.refined_from.empty()) d["refined_from"] = j.refined_from;
  return d;
}

nlohmann::json per_parameter_json(const std::vector<ParameterSpectrum>& tensors) {
  nlohmann::json a = nlohmann::json::array();
  for (const ParameterSpectrum& p : tensors) {
    nlohmann::json t = {{"name", p.name},
                        {"shape", p.shape},
                        {"offset", p.offset},
                        {"count", p.count},
                        {"jacobian", jacobian_json(p.jacobian)},
                        {"gram_trace_fraction", number_or_null(p.gram_trace_fraction)}};
    if (p.hessian_block)
      t["hessian_block"] = {{"eigenvalues", numbers(p.hessian_block->eigenvalues)},
                            {"rank", p.hessian_block->rank},
                            {"tolerance", number_or_null(p.hessian_block->tolerance)}};
    a.push_back(std::move(t));
  }
  return a;
}

}  // namespace

std::string result_to_json(const AnalysisResult& r, int indent) {
  using nlohmann::json;
  json doc;
  doc["num_params"] = r.num_params;
  doc["num_examples"] = r.num_examples;
  doc["num_outputs"] = r.num_outputs;
  doc["backend"] = r.backend;
  doc["device"] = r.device;
  doc["dtype"] = r.dtype;
  doc["loss_function"] = r.loss;
  doc["reduction"] = r.reduction;
  doc["loss"] = r.loss_value ? number_or_null(*r.loss_value) : json(nullptr);
  doc["grad_norm"] = r.grad_norm ? number_or_null(*r.grad_norm) : json(nullptr);
  if (r.jacobian) doc["jacobian"] = jacobian_json(*r.jacobian);
  if (!r.per_parameter.empty()) doc["per_parameter"] = per_parameter_json(r.per_parameter);
  if (r.jacobian) doc["jacobian"]["bound"] = bound_json(r.jacobian->bound);
  if (r.ggn) {
    const GgnSpectrum& g = *r.ggn;
    doc["ggn"] = {{"eigenvalues", numbers(g.eigenvalues)},
                  {"rank", g.rank},
                  {"tolerance", number_or_null(g.tolerance)},
                  {"gap", gap_json(g.gap)},
                  {"method", g.method},
                  {"bound", bound_json(g.bound)}};
    if (!g.refined_from.empty()) doc["ggn"]["refined_from"] = g.refined_from;
  }
  if (r.hessian) {
    const HessianSpectrum& h = *r.hessian;
    doc["hessian"] = {{"eigenvalues", numbers(h.eigenvalues)},
                      {"rank", h.rank},
                      {"tolerance", number_or_null(h.tolerance)},
                      {"residual_rel", number_or_null(h.residual_rel)},
                      {"residual_eigenvalues", numbers(h.residual_eigenvalues)},
                      {"gap", gap_json(h.gap)},
                      {"method", h.method},
                      {"bound", bound_json(h.bound)}};
    if (!h.refined_from.empty()) doc["hessian"]["refined_from"] = h.refined_from;
  }
  // Matrix-free spectra (issue 12).
  for (const auto& [name, e] : {std::pair{"hessian_top", &r.hessian_top}, {"hessian_bottom", &r.hessian_bottom},
                                {"ggn_top", &r.ggn_top}, {"ggn_bottom", &r.ggn_bottom}})
    if (*e)
      doc[name] = {{"eigenvalues", numbers((*e)->eigenvalues)},
                   {"residual_norms", numbers((*e)->residual_norms)},
                   {"converged", (*e)->converged},
                   {"matvecs", (*e)->matvecs},
                   {"method", (*e)->method}};
  for (const auto& [name, t] : {std::pair{"hessian_trace", &r.hessian_trace}, {"ggn_trace", &r.ggn_trace}})
    if (*t)
      doc[name] = {{"estimate", number_or_null((*t)->estimate)},
                   {"std_error", number_or_null((*t)->std_error)},
                   {"probes", (*t)->probes},
                   {"matvecs", (*t)->matvecs},
                   {"method", (*t)->method}};
  for (const auto& [name, d] : {std::pair{"hessian_density", &r.hessian_density}, {"ggn_density", &r.ggn_density}})
    if (*d) {
      json nodes = json::array(), weights = json::array();
      for (const auto& v : (*d)->nodes) nodes.push_back(numbers(v));
      for (const auto& v : (*d)->weights) weights.push_back(numbers(v));
      doc[name] = {{"nodes", nodes}, {"weights", weights}, {"probes", (*d)->probes}, {"steps", (*d)->steps},
                   {"matvecs", (*d)->matvecs}, {"method", (*d)->method}, {"grid", numbers((*d)->grid)},
                   {"density", numbers((*d)->density)}, {"bandwidth", number_or_null((*d)->bandwidth)}};
    }
  if (!r.outputs.empty()) {
    json rows = json::array();
    const int64_t k = r.num_outputs;
    for (int64_t i = 0; i < r.num_examples && k > 0; ++i)
      rows.push_back(numbers(std::vector<double>(r.outputs.begin() + i * k, r.outputs.begin() + (i + 1) * k)));
    doc["outputs"] = rows;
  }
  if (!r.vectors.empty()) {
    // --vectors: the .npy files beside result.json (--save-dir), by relative name.
    json files = json::object();
    for (const VectorArray& v : r.vectors)
      files[v.name] = {{"file", v.name + ".npy"}, {"shape", v.shape}, {"dtype", "float64"}, {"indices", v.indices}};
    doc["files"] = files;
  }
  doc["timings_ms"] = {{"forward", r.timings.forward_ms},
                       {"jacobian", r.timings.jacobian_ms},
                       {"solve", r.timings.solve_ms},
                       {"hessian", r.timings.hessian_ms}};
  doc["provenance"] = provenance_json(r);
  return doc.dump(indent);
}

}  // namespace basin
