// The operation graph's bookkeeping (basin/graph.hpp).
#include "basin/graph.hpp"

#include <limits>
#include <sstream>

#include "basin/error.hpp"
#include "basin/model.hpp"
#include "../ops/op.hpp"

namespace basin {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    // Saturates instead of overflowing: Graph::add_value refuses such shapes by their size (a
    // negative axis, never valid, counts as too large too).
    if (d < 0 || (d > 0 && n > std::numeric_limits<int64_t>::max() / d)) return std::numeric_limits<int64_t>::max();
    n *= d;
  }
  return n;
}

std::string shape_string(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

int64_t attr_int(const Attributes& a, const std::string& name, int64_t fallback) {
  const auto it = a.find(name);
  return it == a.end() || it->second.ints.empty() ? fallback : it->second.ints[0];
}
double attr_float(const Attributes& a, const std::string& name, double fallback) {
  const auto it = a.find(name);
  return it == a.end() || it->second.floats.empty() ? fallback : it->second.floats[0];
}
std::vector<int64_t> attr_ints(const Attributes& a, const std::string& name, std::vector<int64_t> fallback) {
  const auto it = a.find(name);
  return it == a.end() ? fallback : it->second.ints;
}
std::vector<double> attr_floats(const Attributes& a, const std::string& name, std::vector<double> fallback) {
  const auto it = a.find(name);
  return it == a.end() ? fallback : it->second.floats;
}
std::string attr_string(const Attributes& a, const std::string& name, const std::string& fallback) {
  const auto it = a.find(name);
  return it == a.end() ? fallback : it->second.str;
}
AttrValue attr_of(int64_t v) { AttrValue a; a.ints = {v}; return a; }
AttrValue attr_of(double v) { AttrValue a; a.floats = {v}; return a; }
AttrValue attr_of(std::vector<int64_t> v) { AttrValue a; a.ints = std::move(v); return a; }
AttrValue attr_of(std::vector<double> v) { AttrValue a; a.floats = std::move(v); return a; }
AttrValue attr_of(const std::string& v) { AttrValue a; a.str = v; return a; }

int Graph::add_value(GraphValue v) {
  for (int64_t d : v.shape)
    if (d <= 0) invalid_argument("value '" + v.name + "': shape " + shape_string(v.shape) + " has a dimension <= 0");
  // Far beyond any memory, and keeps every size product in the passes within int64.
  constexpr int64_t kMaxElements = int64_t{1} << 40;
  if (shape_numel(v.shape) > kMaxElements)
    resource_exhausted("value '" + v.name + "': shape " + shape_string(v.shape) + " has more than 2^40 elements" +
                       (v.kind == ValueKind::kInput || v.batched ? " per example" : ""));
  values_.push_back(std::move(v));
  return static_cast<int>(values_.size()) - 1;
}

int Graph::add_input(const std::string& name, Shape per_example, bool integer) {
  if (input_ >= 0) invalid_argument("graph: a second input '" + name + "'; Basin takes one data input");
  GraphValue v;
  v.name = name;
  v.kind = ValueKind::kInput;
  v.shape = std::move(per_example);
  v.batched = true;
  v.differentiable = false;  // nothing is differentiated with respect to the data
  v.integer = integer;
  input_ = add_value(std::move(v));
  return input_;
}

int Graph::add_parameter(const std::string& name, Shape shape) {
  GraphValue v;
  v.name = name;
  v.kind = ValueKind::kParameter;
  v.shape = std::move(shape);
  v.differentiable = true;
  v.param_offset = num_params_;
  const int id = add_value(std::move(v));
  num_params_ += shape_numel(values_[id].shape);
  params_.push_back(id);
  return id;
}

int Graph::add_constant(const std::string& name, Shape shape, std::vector<double> data) {
  if (static_cast<int64_t>(data.size()) != shape_numel(shape))
    invalid_argument("constant '" + name + "': " + std::to_string(data.size()) + " values for shape " +
                     shape_string(shape));
  GraphValue v;
  v.name = name;
  v.kind = ValueKind::kConstant;
  v.shape = std::move(shape);
  v.data = std::move(data);
  return add_value(std::move(v));
}

int Graph::add_node(const std::string& op, const std::vector<int>& inputs, Attributes attrs, const std::string& name) {
  GraphNode node;
  node.name = name;
  node.op = op;
  node.inputs = inputs;
  node.attrs = std::move(attrs);
  const OpDef* def = find_op(op);
  if (def == nullptr) {
    std::string list;
    for (const std::string& n : op_names()) list += (list.empty() ? "" : ", ") + n;
    op_error(node, "op is not supported; supported primitive ops: " + list, true);
  }
  std::vector<const GraphValue*> in;
  bool batched = false, differentiable = false;
  for (int id : inputs) {
    if (id < 0 || id >= static_cast<int>(values_.size()))
      op_error(node, "input value " + std::to_string(id) + " does not exist");
    in.push_back(&values_[id]);
    batched = batched || values_[id].batched;
    differentiable = differentiable || values_[id].differentiable;
  }
  GraphValue out;
  out.name = name;
  out.kind = ValueKind::kNode;
  out.shape = def->infer(node, in);
  out.batched = batched;
  out.differentiable = differentiable && def->differentiable;
  out.producer = static_cast<int>(nodes_.size());
  node.output = add_value(std::move(out));
  nodes_.push_back(std::move(node));
  return nodes_.back().output;
}

void Graph::set_output(int value) {
  if (value < 0 || value >= static_cast<int>(values_.size())) invalid_argument("graph: output value does not exist");
  output_ = value;
}

const Shape& Graph::input_shape() const {
  if (input_ < 0) invalid_argument("graph: no input");
  return values_[input_].shape;
}
int64_t Graph::input_size() const { return shape_numel(input_shape()); }
int64_t Graph::output_dim() const {
  if (output_ < 0) invalid_argument("graph: no output");
  return shape_numel(values_[output_].shape);
}

std::vector<std::string> Graph::parameter_names() const {
  std::vector<std::string> names;
  for (int id : params_) names.push_back(values_[id].name);
  return names;
}

void Graph::validate(int64_t max_nodes, const std::function<void()>& check_stop) const {
  if (static_cast<int64_t>(nodes_.size()) > max_nodes)
    resource_exhausted("model: " + std::to_string(nodes_.size()) + " nodes, over the limit of " +
                       std::to_string(max_nodes));
  if (input_ < 0) invalid_argument("model: the graph has no input");
  if (output_ < 0) invalid_argument("model: the graph has no output");
  const GraphValue& out = values_[output_];
  if (!out.batched)
    invalid_argument("model: the output '" + out.name + "' does not depend on the input '" + values_[input_].name +
                     "'");
  if (!out.differentiable)
    invalid_argument("model: the output '" + out.name + "' does not depend on any parameter");
  // Every parameter must reach the output (an unused parameter is a zero column of G; allowed
  // but usually a mistake of the exporter, so it is named).
  std::vector<char> live(values_.size(), 0);
  live[output_] = 1;
  for (int64_t i = static_cast<int64_t>(nodes_.size()) - 1; i >= 0; --i) {
    if (check_stop && i % 4096 == 0) check_stop();
    const GraphNode& n = nodes_[i];
    if (!live[n.output]) continue;
    for (int id : n.inputs) live[id] = 1;
  }
  if (!live[input_]) invalid_argument("model: the output does not depend on the input");
  for (int id : params_)
    if (!live[id])
      invalid_argument("model: parameter '" + values_[id].name + "' does not reach the output '" + out.name +
                       "' (a disconnected part of the graph)");
}

std::string Graph::describe() const {
  std::ostringstream os;
  os << shape_string(input_shape());
  const size_t n = nodes_.size();
  for (size_t i = 0; i < n; ++i) {
    if (n > 12 && i == 6) {
      os << " → … (" << n - 12 << " more nodes) …";
      i = n - 6;
    }
    os << " → " << nodes_[i].op;
  }
  return os.str();
}

std::string Graph::fingerprint() const {
  std::ostringstream os;
  os.precision(17);
  for (const GraphValue& v : values_) {
    os << "value " << v.name << " kind " << static_cast<int>(v.kind) << " shape " << shape_string(v.shape)
       << " batched " << v.batched << " integer " << v.integer << " offset " << v.param_offset;
    if (!v.data.empty()) {
      os << " data";
      for (double d : v.data) os << ' ' << d;
    }
    os << '\n';
  }
  for (const GraphNode& n : nodes_) {
    os << "node " << n.name << " op " << n.op << " out " << n.output << " in";
    for (int i : n.inputs) os << ' ' << i;
    for (const auto& [key, a] : n.attrs) {
      os << " " << key << "=";
      for (int64_t i : a.ints) os << i << ',';
      for (double f : a.floats) os << f << ',';
      os << a.str;
    }
    os << '\n';
  }
  os << "input " << input_ << " output " << output_ << '\n';
  return os.str();
}

Graph graph_from_model(const Model& model) {
  Graph g;
  int x = g.add_input("input", {model.input_dim});
  const std::vector<std::string> names = model.tensor_names();
  const std::vector<int64_t> widths = model.widths();
  size_t t = 0;
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const Layer& l = model.layers[i];
    const std::string name = std::to_string(i);
    if (l.kind == Layer::Kind::kDense) {
      const int w = g.add_parameter(names.at(t++), {l.out, widths[i]});
      std::vector<int> in = {x, w};
      if (l.bias) in.push_back(g.add_parameter(names.at(t++), {l.out}));
      Attributes a;
      a["trans_b"] = attr_of(int64_t{1});
      x = g.add_node("matmul", in, a, name);
    } else {
      Attributes a;
      a["fn"] = attr_of(std::string(activation_name(l.activation)));
      a["alpha"] = attr_of(l.alpha);
      x = g.add_node("unary", {x}, a, name);
    }
  }
  g.set_output(x);
  return g;
}

}  // namespace basin
