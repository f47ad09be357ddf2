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
  if (r.jacobian) {
    const JacobianSpectrum& j = *r.jacobian;
    doc["jacobian"] = {{"singular_values", numbers(j.singular_values)},
                       {"rank", j.rank},
                       {"tolerance", number_or_null(j.tolerance)},
                       {"gap", gap_json(j.gap)},
                       {"level_set_dim", j.level_set_dim},
                       {"method", j.method},
                       {"bound", bound_json(j.bound)}};
    if (!j.refined_from.empty()) doc["jacobian"]["refined_from"] = j.refined_from;
  }
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
  if (!r.outputs.empty()) {
    json rows = json::array();
    const int64_t k = r.num_outputs;
    for (int64_t i = 0; i < r.num_examples && k > 0; ++i)
      rows.push_back(numbers(std::vector<double>(r.outputs.begin() + i * k, r.outputs.begin() + (i + 1) * k)));
    doc["outputs"] = rows;
  }
  doc["timings_ms"] = {{"forward", r.timings.forward_ms},
                       {"jacobian", r.timings.jacobian_ms},
                       {"solve", r.timings.solve_ms},
                       {"hessian", r.timings.hessian_ms}};
  return doc.dump(indent);
}

}  // namespace basin
