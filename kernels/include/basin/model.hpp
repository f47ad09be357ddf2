// A sequential network: dense layers and element-wise activations.
//
// Parameter layout = PyTorch's parameters_to_vector(nn.Sequential(...).parameters()):
// for every dense layer in order, its weight [out, in] row-major, then its bias [out].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "basin/activation.hpp"

namespace basin {

struct Layer {
  enum class Kind { kDense, kActivation };
  Kind kind = Kind::kDense;
  // Dense: output width and whether it has a bias.
  int64_t out = 0;
  bool bias = true;
  // Activation: which one (alpha only for leaky_relu).
  Activation activation = Activation::kIdentity;
  double alpha = 0.01;

  static Layer dense(int64_t out, bool bias = true);
  static Layer act(Activation a, double alpha = 0.01);
};

struct Model {
  int64_t input_dim = 0;
  std::vector<Layer> layers;
  // Names of the parameter tensors in θ order (per dense layer: weight, then bias when it has
  // one), as PyTorch's named_parameters() gives them. Empty: the names of the equivalent
  // nn.Sequential, "<layer index>.weight" / "<layer index>.bias" (activations count).
  std::vector<std::string> param_names;

  // Width of the vector after layer l (width_after(-1) = input_dim): the `out` of the last
  // dense layer at or before l. O(l) per call -- loops over layers use widths() instead, so
  // that every step of a request stays linear in the number of layers.
  int64_t width_after(int64_t l) const;
  // widths()[i] = width of act[i] (the input of layer i), i = 0..L; widths()[0] = input_dim.
  // One O(L) pass.
  std::vector<int64_t> widths() const;
  int64_t output_dim() const { return width_after(static_cast<int64_t>(layers.size()) - 1); }
  int64_t num_params() const;
  int64_t num_dense() const;
  // One per parameter tensor: param_names, or the nn.Sequential defaults.
  std::vector<std::string> tensor_names() const;
  // Throws basin::Error(kInvalidArgument) naming the offending layer (or parameter name).
  void validate() const;
};

// Layers visited by width_after() and widths() on this thread since it started: the tests
// assert that validating and running a request visits O(L) layers, not O(L²) (a quadratic
// loop over width_after made a 500k-layer request spin for minutes).
int64_t layer_visits();

// JSON model spec: {"input_dim": 4, "layers": [{"type": "dense", "out": 16, "bias": true},
// {"type": "tanh"}, {"type": "leaky_relu", "alpha": 0.1}, {"type": "dense", "out": 3}]}
Model parse_model_json(const std::string& text);
std::string model_to_json(const Model& model);

// Name <-> enum for activations ("relu", "leaky_relu", "gelu", ...).
const char* activation_name(Activation a);
bool activation_from_name(const std::string& name, Activation* out);
// Human-readable one-line architecture, e.g. "4 -> dense(16) -> tanh -> dense(3)". Long
// models are elided in the middle ("… (39,990 more layers) …"): the text goes into error
// messages, which must stay short.
std::string describe(const Model& model);

}  // namespace basin
