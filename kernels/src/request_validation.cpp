// Request validation: shapes, values, labels, tolerances and limits, before any work
// (request_validation.hpp).
#include "request_validation.hpp"

#include "spectra/matrix_free.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

#include "basin/error.hpp"
#include "loss.hpp"
#include "memory_plan.hpp"
#include "ops/gather.hpp"
#include "per_parameter.hpp"
#include "vectors.hpp"

namespace basin {

void check_finite(const std::vector<double>& v, const char* field, int64_t row_width) {
  for (size_t j = 0; j < v.size(); ++j) {
    if (std::isfinite(v[j])) continue;
    std::ostringstream os;
    os << field << ": value at ";
    if (row_width > 0) os << "[" << j / row_width << ", " << j % row_width << "]";
    else os << "[" << j << "]";
    os << " is " << (std::isnan(v[j]) ? "NaN" : "infinite") << "; expected finite numbers";
    invalid_argument(os.str());
  }
}

void check_float32_range(const std::vector<double>& v, const char* field, int64_t row_width) {
  for (size_t j = 0; j < v.size(); ++j) {
    if (std::fabs(v[j]) <= static_cast<double>(std::numeric_limits<float>::max())) continue;
    std::ostringstream os;
    os << field << ": value " << v[j] << " at ";
    if (row_width > 0) os << "[" << j / row_width << ", " << j % row_width << "]";
    else os << "[" << j << "]";
    os << " is outside the float32 range (|x| <= 3.4e38); use --dtype float64";
    invalid_argument(os.str());
  }
}

void validate_params(const std::vector<double>& params, const AnalysisRequest& r, const std::string& field) {
  const int64_t N = r.num_params();
  if (static_cast<int64_t>(params.size()) != N)
    invalid_argument(field + ": got " + std::to_string(params.size()) + " values, expected " + std::to_string(N) +
                     " (the parameter count of " + (r.graph ? r.graph->describe() : describe(r.model)) +
                     ", in PyTorch parameters_to_vector order)");
  check_finite(params, field.c_str(), 0);
  if (r.dtype == DType::kFloat32) check_float32_range(params, field.c_str(), 0);
}

void check_per_parameter_limits(const AnalysisRequest& r) {
  const int64_t m = r.num_examples * r.output_dim();
  const double sz = r.dtype == DType::kFloat64 ? 8 : 4;
  double widest = 0;
  for (const TensorSlot& s : tensor_slots(r)) {
    const int64_t dense = std::min(m, s.count);
    if (dense > r.limits.max_dense_dim)
      resource_exhausted("want per_parameter: tensor '" + s.name + "' (" + std::to_string(s.count) +
                         " parameters) gives a dense problem of " + std::to_string(dense) + " × " + std::to_string(dense) +
                         " (n·k = " + std::to_string(m) + "), over the dense-solver limit of " +
                         std::to_string(r.limits.max_dense_dim) + "; use fewer examples or drop per_parameter");
    // Gram side: Δ Δᵀ, the Hadamard sum and A Aᵀ; G_tᵀG_t side: the matrix and a block of G_t.
    widest = std::max(widest, m < s.count ? sz * (2.0 * double(m) * double(m) + double(r.num_examples) * double(r.num_examples))
                                          : sz * double(s.count) * double(s.count) + double(32ull << 20));
  }
  const double need = base_bytes(r) + widest;
  if (need > double(r.limits.max_memory_bytes))
    resource_exhausted("memory: want per_parameter needs about " + human_bytes(need) + ", over the limit of " +
                       human_bytes(double(r.limits.max_memory_bytes)) + "; use fewer examples or raise --max-memory");
}

void check_layer_count(int64_t count, const Limits& limits, const std::string& what) {
  if (count <= limits.max_layers) return;
  resource_exhausted(what + ": " + std::to_string(count) + " layers, over the limit of " +
                     std::to_string(limits.max_layers) +
                     " layers (max_layers; raise it with --max-layers)");
}

void check_model_size(const AnalysisRequest& r) {
  if (r.graph) check_layer_count(static_cast<int64_t>(r.graph->nodes().size()), r.limits, "model (graph nodes)");
  else check_layer_count(static_cast<int64_t>(r.model.layers.size()), r.limits, "model.layers");
}

void validate_model(const AnalysisRequest& r) {
  if (r.graph) r.graph->validate(r.limits.max_layers);
  else r.model.validate();
}

void validate_request_except_params(const AnalysisRequest& r) {
  check_model_size(r);
  validate_model(r);
  const int64_t N = r.num_params(), k = r.output_dim(), d = r.input_size();
  const std::string per_example = r.graph ? "numel" + shape_string(r.graph->input_shape()) : "input_dim";
  if (r.num_examples <= 0) invalid_argument("inputs: no examples; expected at least one row of " + std::to_string(d) + " features");
  if (static_cast<int64_t>(r.inputs.size()) != r.num_examples * d)
    invalid_argument("inputs: got " + std::to_string(r.inputs.size()) + " values, expected n × " + per_example + " = " +
                     std::to_string(r.num_examples) + " × " + std::to_string(d));
  check_finite(r.inputs, "inputs", d);
  if (r.graph) check_gather_indices(*r.graph, r.inputs, r.num_examples);  // token ids in range
  if (r.dtype == DType::kFloat32) {
    check_float32_range(r.inputs, "inputs", d);
    check_float32_range(r.targets, "targets", k);
  }
  if (!r.want.jacobian && !r.want.ggn && !r.want.hessian && !r.want.per_parameter && !r.want.any_hessian_spectra() &&
      !r.want.any_ggn_spectra())
    invalid_argument("want: nothing requested; expected one or more of jacobian, ggn, hessian, per_parameter, "
                     "hessian_top, ggn_top, hessian_trace, ggn_trace, hessian_density, ggn_density");
  switch (r.loss) {
    case Loss::kNone:
      if (r.want.ggn || r.want.hessian || r.want.any_hessian_spectra() || r.want.any_ggn_spectra())
        invalid_argument(std::string("loss: none, but want includes ") +
                         (r.want.ggn || r.want.any_ggn_spectra() ? "ggn" : "hessian") +
                         "; the GGN and the Hessian need a loss (mse or cross_entropy)");
      if (!r.targets.empty() || !r.labels.empty())
        invalid_argument("targets: given, but loss is none; pass a loss (mse or cross_entropy) or drop the targets");
      break;
    case Loss::kMse:
      if (!r.labels.empty())
        invalid_argument("targets: integer labels given for loss mse; expected float targets of shape (n, k) = (" +
                         std::to_string(r.num_examples) + ", " + std::to_string(k) + ")");
      if (static_cast<int64_t>(r.targets.size()) != r.num_examples * k)
        invalid_argument("targets: got " + std::to_string(r.targets.size()) + " values, expected n × k = " +
                         std::to_string(r.num_examples) + " × " + std::to_string(k) + " float targets for loss mse");
      check_finite(r.targets, "targets", k);
      break;
    case Loss::kCrossEntropy: {
      // Sequence outputs [n, .., C]: one label per position (loss.hpp), P = k / C positions.
      const int64_t C = loss_classes(r), P = k / C;
      std::string want = "(" + std::to_string(r.num_examples);
      if (P > 1) {
        const Shape& out = r.graph->value(r.graph->output()).shape;
        for (size_t d = 0; d + 1 < out.size(); ++d) want += ", " + std::to_string(out[d]);
      }
      want = P == 1 ? "(n,) = " + want + ",)" : want + ")";
      if (!r.targets.empty())
        invalid_argument("targets: float targets given for loss cross_entropy; expected integer class labels of shape " +
                         want);
      if (static_cast<int64_t>(r.labels.size()) != r.num_examples * P)
        invalid_argument("targets: got " + std::to_string(r.labels.size()) + " labels, expected " +
                         (P == 1 ? "one per example (n = " + std::to_string(r.num_examples) + ")"
                                 : "one per position: n × " + std::to_string(P) + " = " +
                                       std::to_string(r.num_examples * P) + ", labels of shape " + want) +
                         " for loss cross_entropy");
      for (size_t i = 0; i < r.labels.size(); ++i)
        if (r.labels[i] < 0 || r.labels[i] >= C)
          invalid_argument("targets: label[" + std::to_string(i) + "] = " + std::to_string(r.labels[i]) +
                           " is out of range; expected 0 <= label < " + std::to_string(C) +
                           (P == 1 ? " (the number of outputs)" : " (the classes: the output's last axis)"));
      break;
    }
  }
  for (const auto& [name, value] : {std::pair<const char*, std::optional<double>>{"rtol", r.rtol}, {"atol", r.atol}})
    if (value && (!std::isfinite(*value) || *value < 0))
      invalid_argument(std::string(name) + ": got " + std::to_string(*value) + ", expected a finite number >= 0");

  // Limits, before any work.
  const int64_t m = r.num_examples * k;
  if (r.want.hessian && N > r.limits.max_hessian_params)
    resource_exhausted("want hessian: the exact Hessian is N × N with N = " + std::to_string(N) +
                       " parameters, over the limit of " + std::to_string(r.limits.max_hessian_params) +
                       " (raise --hessian-limit, or drop hessian from --want)");
  const Method method = resolve_method(r);
  if (r.want.jacobian || r.want.ggn) {
    const int64_t dense = method == Method::kGram ? m : method == Method::kNormal ? N : std::min(m, N);
    if (dense > r.limits.max_dense_dim)
      resource_exhausted(std::string("method ") + method_name(method) + ": the dense problem is " + std::to_string(dense) +
                         " × " + std::to_string(dense) + " (n·k = " + std::to_string(m) + ", N = " + std::to_string(N) +
                         "), over the dense-solver limit of " + std::to_string(r.limits.max_dense_dim) +
                         "; use fewer examples or a smaller model");
  }
  if (r.want.per_parameter) check_per_parameter_limits(r);
  if (r.return_jacobian) {
    const double bytes = double(m) * double(N) * (r.dtype == DType::kFloat64 ? 8 : 4);
    if (bytes > double(r.limits.max_jacobian_bytes))
      resource_exhausted("save jacobian: G is " + std::to_string(m) + " × " + std::to_string(N) + " = " + human_bytes(bytes) +
                         ", over the limit of " + human_bytes(double(r.limits.max_jacobian_bytes)));
  }
  const double need = estimate_bytes(r, method);
  if (need > double(r.limits.max_memory_bytes))
    resource_exhausted(std::string("memory: method ") + method_name(method) + " needs about " + human_bytes(need) +
                       ", over the limit of " + human_bytes(double(r.limits.max_memory_bytes)) +
                       " (n·k = " + std::to_string(m) + ", N = " + std::to_string(N) +
                       "); use fewer examples, --dtype float32, or raise --max-memory");
  validate_vectors(r, 1);
  validate_spectra(r);
}

void validate_request(const AnalysisRequest& r) {
  // First: validate_params is O(L) too (num_params, describe).
  check_model_size(r);
  validate_params(r.params, r, "params");
  validate_request_except_params(r);
}

void validate_checkpoints(const AnalysisRequest& request, const std::vector<std::vector<double>>& checkpoints,
                          const std::function<void()>& check_stop) {
  check_model_size(request);
  if (checkpoints.empty())
    invalid_argument("params: no checkpoints; expected one or more parameter vectors of " +
                     std::to_string(request.num_params()) + " values");
  validate_model(request);
  for (size_t b = 0; b < checkpoints.size(); ++b) {
    if (check_stop) check_stop();
    validate_params(checkpoints[b], request, checkpoints.size() > 1 ? "params[" + std::to_string(b) + "]" : "params");
  }
  if (check_stop) check_stop();
  validate_request_except_params(request);
}

}  // namespace basin
