#include "chain_model.hpp"

namespace basin::onnx_import_detail {

Model chain_model_of(const Graph& g) {
  Model m;
  Model none;
  if (g.input() < 0 || g.output() < 0) return none;
  m.input_dim = g.input_size();
  int cur = g.input();
  int64_t width = m.input_dim;
  size_t next_param = 0;
  const std::vector<int>& params = g.parameters();
  const auto take_param = [&](int id, const Shape& shape) {
    if (next_param >= params.size() || params[next_param] != id || g.value(id).shape != shape) return false;
    ++next_param;
    return true;
  };
  bool open_dense = false;  // the last layer is a dense layer without bias
  for (const GraphNode& n : g.nodes()) {
    if (n.inputs.empty() || n.inputs[0] != cur) return none;
    if (n.op == "reshape") {
      if (n.inputs.size() != 1 || g.value(n.output).shape != Shape{width}) return none;
    } else if (n.op == "matmul") {
      if (attr_int(n.attrs, "trans_b", 0) != 1 || attr_int(n.attrs, "trans_a", 0) != 0) return none;
      if (g.value(cur).shape != Shape{width} || n.inputs.size() < 2) return none;
      const Shape& ws = g.value(n.inputs[1]).shape;
      if (ws.size() != 2 || !take_param(n.inputs[1], {ws[0], width})) return none;
      const bool bias = n.inputs.size() == 3;
      if (bias && !take_param(n.inputs[2], {ws[0]})) return none;
      m.layers.push_back(Layer::dense(ws[0], bias));
      width = ws[0];
      open_dense = !bias;
    } else if (n.op == "add") {
      if (!open_dense || n.inputs.size() != 2 || !take_param(n.inputs[1], {width})) return none;
      m.layers.back().bias = true;
      open_dense = false;
    } else if (n.op == "unary") {
      Activation a;
      if (!activation_from_name(attr_string(n.attrs, "fn"), &a)) return none;
      if (a != Activation::kRelu && a != Activation::kLeakyRelu && a != Activation::kTanh &&
          a != Activation::kSigmoid && a != Activation::kGelu && a != Activation::kSoftplus && a != Activation::kSilu)
        return none;
      m.layers.push_back(Layer::act(a, attr_float(n.attrs, "alpha", 0.01)));
      open_dense = false;
    } else {
      return none;
    }
    cur = n.output;
  }
  if (cur != g.output() || next_param != params.size() || m.num_dense() == 0) return none;
  m.param_names = g.parameter_names();
  return m;
}

}  // namespace basin::onnx_import_detail
