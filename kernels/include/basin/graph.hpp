// The model as an operation graph: a DAG of nodes {op, inputs, attributes} over tensors.
//
// docs/ARCHITECTURE.md ("The operation graph") is the design; in short:
//   * one input (the data, per-example shape [..], the example axis n implicit), one output
//     (per-example shape, flattened to k outputs in row-major order), parameters (slices of θ in
//     the order they were added = parameters_to_vector order) and constants (buffers, running
//     statistics, masks: never differentiated);
//   * a value is `batched` when it depends on the input (it then has the leading example axis,
//     and its `shape` is the per-example shape), `differentiable` when it depends on a parameter;
//   * ops are primitive (kernels/src/ops/: linear, unary element-wise, bilinear, ...); composite
//     layers (BatchNorm, LayerNorm, GroupNorm, Softmax, ...) are written as several primitive nodes
//     by GraphBuilder (graph_builder.hpp), so their first and second derivatives are exact by
//     composition;
//   * axes in attributes are the axes of the shape the op sees: per-example axes for batched
//     values (axis 0 = the first axis after the example axis), full axes for unbatched values.
// Nodes are added in topological order (an input must exist before a node uses it), so a Graph
// is acyclic by construction; validate() checks the rest (reachability, limits).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace basin {

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& shape);    // product of the dims (1 for a scalar [])
std::string shape_string(const Shape& shape);  // "[3, 32, 32]"

// One attribute: an integer list, a float list or a string (ONNX's INT/INTS, FLOAT/FLOATS, STRING).
struct AttrValue {
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::string str;
};
using Attributes = std::map<std::string, AttrValue>;
int64_t attr_int(const Attributes& a, const std::string& name, int64_t fallback);
double attr_float(const Attributes& a, const std::string& name, double fallback);
std::vector<int64_t> attr_ints(const Attributes& a, const std::string& name, std::vector<int64_t> fallback = {});
std::vector<double> attr_floats(const Attributes& a, const std::string& name, std::vector<double> fallback = {});
std::string attr_string(const Attributes& a, const std::string& name, const std::string& fallback = "");
AttrValue attr_of(int64_t v);
AttrValue attr_of(double v);
AttrValue attr_of(std::vector<int64_t> v);
AttrValue attr_of(std::vector<double> v);
AttrValue attr_of(const std::string& v);

enum class ValueKind { kInput, kParameter, kConstant, kNode };

struct GraphValue {
  std::string name;
  ValueKind kind = ValueKind::kNode;
  Shape shape;                 // batched: per-example shape; otherwise the full shape
  bool batched = false;        // carries the example axis (depends on the input)
  bool differentiable = false; // depends on a parameter (has tangents and cotangents)
  int64_t param_offset = -1;   // kParameter: its first entry in θ
  int producer = -1;           // kNode: index of the node computing it
  std::vector<double> data;    // kConstant: the values, row-major
  bool integer = false;        // kInput: integer data (token ids); never differentiated
};

struct GraphNode {
  std::string name;          // the name users know it by (ONNX node name, "3" for layer 3, ...)
  std::string op;            // a registered primitive op ("matmul", "conv", "unary", "add", ...)
  std::vector<int> inputs;   // value ids
  int output = -1;           // value id
  Attributes attrs;
};

class Graph {
 public:
  // The data input (exactly one), per-example shape.
  int add_input(const std::string& name, Shape per_example, bool integer = false);
  // A parameter tensor: θ[offset, offset + numel(shape)), offset = the parameters added before.
  int add_parameter(const std::string& name, Shape shape);
  int add_constant(const std::string& name, Shape shape, std::vector<double> data);
  // Appends a node; the op's rule checks the inputs and infers the output shape (throws
  // basin::Error naming `name` and the op when they do not fit, or kUnimplemented for an
  // unknown op). Returns the output value's id.
  int add_node(const std::string& op, const std::vector<int>& inputs, Attributes attrs, const std::string& name);
  void set_output(int value);

  const std::vector<GraphValue>& values() const { return values_; }
  const std::vector<GraphNode>& nodes() const { return nodes_; }
  const GraphValue& value(int id) const { return values_.at(static_cast<size_t>(id)); }
  int input() const { return input_; }
  int output() const { return output_; }
  const std::vector<int>& parameters() const { return params_; }  // value ids in θ order

  int64_t num_params() const { return num_params_; }
  const Shape& input_shape() const;
  int64_t input_size() const;   // numel of the per-example input
  int64_t output_dim() const;   // k = numel of the per-example output
  std::vector<std::string> parameter_names() const;
  // Checks what add_node cannot: an input and an output exist, the output is batched (depends
  // on the input) and differentiable (depends on a parameter), every parameter reaches the
  // output, the node count is within `max_nodes`. `check_stop` is
  // called every few thousand nodes (deadline / cancellation while importing).
  void validate(int64_t max_nodes, const std::function<void()>& check_stop = {}) const;
  // "[3, 32, 32] → conv → ..." one-line summary for messages (elided when long).
  std::string describe() const;
  // A canonical text of the whole graph (ops, attributes, shapes, names, constants' values):
  // equal graphs give equal text; provenance hashes it.
  std::string fingerprint() const;

 private:
  int add_value(GraphValue v);
  std::vector<GraphValue> values_;
  std::vector<GraphNode> nodes_;
  std::vector<int> params_;
  std::map<std::string, int> names_;
  int input_ = -1;
  int output_ = -1;
  int64_t num_params_ = 0;
};

// The registered primitive ops, by name (kernels/src/ops/registry.cpp; GetServerInfo lists them).
std::vector<std::string> op_names();

struct Model;
// The chain shorthand (JSON layer list, basin.Sequential) as a graph: dense → matmul (+ add
// bias), activations → unary. Parameter order and names are the chain's.
Graph graph_from_model(const Model& model);

}  // namespace basin
