#include "basin/model.hpp"

#include <nlohmann/json.hpp>
#include <algorithm>
#include <cmath>
#include <sstream>

#include "basin/echo.hpp"
#include "basin/error.hpp"

namespace basin {

namespace {
const std::pair<const char*, Activation> kActivations[] = {
    {"identity", Activation::kIdentity}, {"relu", Activation::kRelu},
    {"leaky_relu", Activation::kLeakyRelu}, {"tanh", Activation::kTanh},
    {"sigmoid", Activation::kSigmoid}, {"gelu", Activation::kGelu},
    {"softplus", Activation::kSoftplus}, {"silu", Activation::kSilu},
    // Element-wise functions of the graph path ("unary" op), not layer types of the chain:
    {"elu", Activation::kElu}, {"hardtanh", Activation::kHardtanh},
    {"hardswish", Activation::kHardswish}, {"hardsigmoid", Activation::kHardsigmoid},
    {"exp", Activation::kExp}, {"log", Activation::kLog}, {"sqrt", Activation::kSqrt},
    {"rsqrt", Activation::kRsqrt}, {"reciprocal", Activation::kReciprocal},
    {"square", Activation::kSquare}, {"pow", Activation::kPow}, {"erf", Activation::kErf},
    {"gelu_tanh", Activation::kGeluTanh}, {"scale", Activation::kScale}};
// The chain shorthand's activation layers (the JSON/proto layer list): the functions up to silu,
// which take no parameter but leaky_relu's alpha.
bool is_layer_activation(Activation a) { return static_cast<int>(a) <= static_cast<int>(Activation::kSilu); }
constexpr const char* kLayerTypes =
    "dense, identity, relu, leaky_relu, tanh, sigmoid, gelu, softplus, silu";
}  // namespace

const char* activation_name(Activation a) {
  for (const auto& [name, value] : kActivations)
    if (value == a) return name;
  return "?";
}

bool activation_from_name(const std::string& name, Activation* out) {
  for (const auto& [n, value] : kActivations) {
    if (name == n) {
      *out = value;
      return true;
    }
  }
  return false;
}

Layer Layer::dense(int64_t out, bool bias) {
  Layer l;
  l.kind = Kind::kDense;
  l.out = out;
  l.bias = bias;
  return l;
}

Layer Layer::act(Activation a, double alpha) {
  Layer l;
  l.kind = Kind::kActivation;
  l.activation = a;
  l.alpha = alpha;
  return l;
}

namespace {
thread_local int64_t t_layer_visits = 0;
}  // namespace

int64_t layer_visits() { return t_layer_visits; }

int64_t Model::width_after(int64_t l) const {
  // Backwards to the nearest dense layer: O(1) for the usual "... dense, activation" tail.
  for (int64_t i = std::min<int64_t>(l, static_cast<int64_t>(layers.size()) - 1); i >= 0; --i) {
    ++t_layer_visits;
    if (layers[i].kind == Layer::Kind::kDense) return layers[i].out;
  }
  return input_dim;
}

std::vector<int64_t> Model::widths() const {
  t_layer_visits += static_cast<int64_t>(layers.size());
  std::vector<int64_t> w;
  w.reserve(layers.size() + 1);
  w.push_back(input_dim);
  for (const Layer& l : layers) w.push_back(l.kind == Layer::Kind::kDense ? l.out : w.back());
  return w;
}

int64_t Model::num_params() const {
  int64_t width = input_dim, total = 0;
  for (const Layer& l : layers) {
    if (l.kind != Layer::Kind::kDense) continue;
    total += l.out * width + (l.bias ? l.out : 0);
    width = l.out;
  }
  return total;
}

namespace {
// nn.Sequential's named_parameters(): "<index>.weight", "<index>.bias", activations counted.
std::vector<std::string> tensor_names_default(const Model& m) {
  std::vector<std::string> names;
  for (size_t i = 0; i < m.layers.size(); ++i) {
    if (m.layers[i].kind != Layer::Kind::kDense) continue;
    names.push_back(std::to_string(i) + ".weight");
    if (m.layers[i].bias) names.push_back(std::to_string(i) + ".bias");
  }
  return names;
}
}  // namespace

int64_t Model::num_dense() const {
  int64_t count = 0;
  for (const Layer& l : layers) count += l.kind == Layer::Kind::kDense;
  return count;
}

void Model::validate() const {
  constexpr int64_t kMaxWidth = int64_t(1) << 24;
  if (input_dim <= 0 || input_dim > kMaxWidth)
    invalid_argument("model.input_dim: got " + std::to_string(input_dim) +
                     ", expected a positive integer <= " + std::to_string(kMaxWidth));
  if (layers.empty()) invalid_argument("model.layers: empty; expected at least one dense layer");
  if (num_dense() == 0)
    invalid_argument("model.layers: no dense layer; the model has no parameters to analyse");
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    auto where = [i] { return "model.layers[" + std::to_string(i) + "]"; };  // only on failure
    if (l.kind == Layer::Kind::kDense) {
      if (l.out <= 0 || l.out > kMaxWidth)
        invalid_argument(where() + ".out: got " + std::to_string(l.out) +
                         ", expected a positive integer <= " + std::to_string(kMaxWidth));
    } else if (!is_layer_activation(l.activation)) {
      invalid_argument(where() + ".type: '" + activation_name(l.activation) +
                       "' is an element-wise function of the operation graph, not a layer type; expected one of " +
                       kLayerTypes);
    } else if (l.activation == Activation::kLeakyRelu && !std::isfinite(l.alpha)) {
      invalid_argument(where() + ".alpha: expected a finite number");
    }
  }
  if (param_names.empty()) return;
  const size_t tensors = static_cast<size_t>(tensor_names_default(*this).size());
  if (param_names.size() != tensors)
    invalid_argument("param_names: got " + std::to_string(param_names.size()) + " names, expected " +
                     std::to_string(tensors) + " (one per parameter tensor: each dense layer's weight, then its bias)");
  // Not required unique: an ONNX initialiser used by two nodes names two tensors.
  for (size_t t = 0; t < param_names.size(); ++t)
    if (param_names[t].empty()) invalid_argument("param_names[" + std::to_string(t) + "]: empty; expected a name");
}

std::vector<std::string> Model::tensor_names() const {
  return param_names.empty() ? tensor_names_default(*this) : param_names;
}

Model parse_model_json(const std::string& text) {
  using nlohmann::json;
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    invalid_argument(std::string("model spec: not valid JSON (") + e.what() + ")");
  }
  if (!doc.is_object()) invalid_argument("model spec: expected a JSON object {\"input_dim\": .., \"layers\": [..]}");
  auto get_int = [](const json& j, const char* key, const std::string& where) -> int64_t {
    if (!j.contains(key)) invalid_argument(where + "." + key + ": missing; expected a positive integer");
    const json& v = j.at(key);
    if (!v.is_number_integer())
      invalid_argument(where + "." + key + ": got " + v.dump() + ", expected a positive integer");
    return v.get<int64_t>();
  };
  Model model;
  model.input_dim = get_int(doc, "input_dim", "model");
  if (!doc.contains("layers") || !doc["layers"].is_array())
    invalid_argument("model.layers: missing or not a list; expected [{\"type\": \"dense\", \"out\": 16}, ...]");
  for (auto it = doc.begin(); it != doc.end(); ++it)
    if (it.key() != "input_dim" && it.key() != "layers")
      invalid_argument("model." + echo(it.key()) + ": unknown field; expected only input_dim and layers");
  const json& layers = doc["layers"];
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string where = "model.layers[" + std::to_string(i) + "]";
    const json& lj = layers[i];
    if (!lj.is_object() || !lj.contains("type") || !lj["type"].is_string())
      invalid_argument(where + ": expected an object with a string \"type\" (one of " + kLayerTypes + ")");
    const std::string type = lj["type"].get<std::string>();
    Layer layer;
    if (type == "dense" || type == "linear") {
      layer = Layer::dense(get_int(lj, "out", where), true);
      if (lj.contains("bias")) {
        if (!lj["bias"].is_boolean()) invalid_argument(where + ".bias: expected true or false");
        layer.bias = lj["bias"].get<bool>();
      }
      for (auto it = lj.begin(); it != lj.end(); ++it)
        if (it.key() != "type" && it.key() != "out" && it.key() != "bias")
          invalid_argument(where + "." + echo(it.key()) + ": unknown field for a dense layer; expected out, bias");
    } else {
      Activation a;
      if (!activation_from_name(type, &a))
        invalid_argument(where + ".type: unknown layer type '" + echo(type) + "'; expected one of " + kLayerTypes);
      layer = Layer::act(a);
      if (lj.contains("alpha")) {
        if (a != Activation::kLeakyRelu) invalid_argument(where + ".alpha: only leaky_relu takes alpha");
        if (!lj["alpha"].is_number()) invalid_argument(where + ".alpha: expected a number");
        layer.alpha = lj["alpha"].get<double>();
      }
      for (auto it = lj.begin(); it != lj.end(); ++it)
        if (it.key() != "type" && it.key() != "alpha")
          invalid_argument(where + "." + echo(it.key()) + ": unknown field for an activation layer");
    }
    model.layers.push_back(layer);
  }
  model.validate();
  return model;
}

std::string model_to_json(const Model& model) {
  nlohmann::json doc;
  doc["input_dim"] = model.input_dim;
  doc["layers"] = nlohmann::json::array();
  for (const Layer& l : model.layers) {
    nlohmann::json lj;
    if (l.kind == Layer::Kind::kDense) {
      lj["type"] = "dense";
      lj["out"] = l.out;
      lj["bias"] = l.bias;
    } else {
      lj["type"] = activation_name(l.activation);
      if (l.activation == Activation::kLeakyRelu) lj["alpha"] = l.alpha;
    }
    doc["layers"].push_back(lj);
  }
  return doc.dump();
}

std::string describe(const Model& model) {
  // First and last kDescribeEnds layers of a long model.
  constexpr size_t kDescribeEnds = 8;
  const size_t L = model.layers.size();
  std::ostringstream os;
  os << model.input_dim;
  for (size_t i = 0; i < L; ++i) {
    if (L > 2 * kDescribeEnds && i == kDescribeEnds) {
      os << " -> … (" << L - 2 * kDescribeEnds << " more layers) …";
      i = L - kDescribeEnds - 1;
      continue;
    }
    const Layer& l = model.layers[i];
    if (l.kind == Layer::Kind::kDense)
      os << " -> dense(" << l.out << (l.bias ? "" : ", no bias") << ")";
    else
      os << " -> " << activation_name(l.activation);
  }
  return os.str();
}

}  // namespace basin
