// The ONNX importer: the file's nodes in topological order, each mapped onto primitive graph
// nodes (GraphBuilder for the composite layers). See include/basin/onnx_import.hpp for what is
// accepted, how parameters are chosen and what the errors are.
//
// Every ONNX value is, during the walk, either a graph value (the input, a parameter, a node's
// output, a materialised constant) or a host constant (an initialiser that is not a parameter, a
// Constant node, the result of shape arithmetic folded here). Host constants become graph
// constants only when a graph node reads them. The batch size is unknown while importing: in
// folded shape arithmetic it is a symbol n·c (batch_dim(c): Shape of a batched tensor, times the
// heads when exports merge them), which Reshape and Expand accept where the batch goes. A batched
// value's ONNX axes need not start with the batch: its BatchLayout (batch_layout.hpp) says where
// the batch sits and what it is merged with, and every op maps its ONNX axes through it.
#include "basin/onnx_import.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <onnx/onnx_pb.h>

#include "activation_patterns.hpp"
#include "batch_layout.hpp"
#include "basin/activation.hpp"
#include "basin/error.hpp"
#include "basin/model.hpp"
#include "src/graph/graph_builder.hpp"
#include "chain_model.hpp"
#include "onnx_tensor.hpp"

namespace basin {
namespace {

using onnx_import_detail::BatchLayout;
using onnx_import_detail::ConstTensor;
using onnx_import_detail::decode_tensor;
using onnx_import_detail::Expr;
using onnx_import_detail::match_activation;

constexpr int64_t kMinOpset = 11;
constexpr int64_t kMaxOpset = 20;
constexpr size_t kMaxBlockNodes = 16;  // the GELU pattern has 5 nodes (+ Constants)
// The batch size n times a known factor c ≥ 1 in folded shape arithmetic: -(2^55 + 8c), far from
// any real dimension and exact in a double; as an integer (host_ints) INT64_MIN + c.
constexpr double kSymBase = 36028797018963968.0;  // 2^55
constexpr int64_t kMaxSymCoef = int64_t{1} << 40;
constexpr int64_t kSymInt = std::numeric_limits<int64_t>::min();
double batch_dim(int64_t c) { return -(kSymBase + 8.0 * static_cast<double>(c)); }
int64_t batch_coef(double v) {  // c when v is batch_dim(c), else 0
  if (!(v <= -(kSymBase + 8.0) && v >= -(kSymBase + 8.0 * static_cast<double>(kMaxSymCoef)))) return 0;
  const double c = (-v - kSymBase) / 8.0;
  return c == std::floor(c) ? static_cast<int64_t>(c) : 0;
}
int64_t sym_coef(int64_t d) { return d > kSymInt && d <= kSymInt + kMaxSymCoef ? d - kSymInt : 0; }
const double kBatchSym = batch_dim(1);
constexpr int64_t kMaxFoldElements = 1 << 20;       // host-folded tensors (shape arithmetic)

const char* const kSupportedOps[] = {
    "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
    "Div", "Dropout", "Elu", "Erf", "Exp", "Expand", "Flatten", "Gather", "Gelu", "Gemm", "GlobalAveragePool",
    "GroupNormalization", "HardSigmoid", "HardSwish", "Identity", "InstanceNormalization", "LayerNormalization",
    "LeakyRelu", "Log", "LogSoftmax", "MatMul", "MaxPool", "Mul", "Neg", "Pad", "Pow", "Reciprocal", "ReduceMean",
    "ReduceSum", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Softmax", "Softplus", "Sqrt", "Squeeze", "Sub",
    "Tanh", "Transpose", "Unsqueeze",
    // transformers (transformer_ops): token embeddings, constant masks, split heads
    "Equal", "Not", "Split", "Where", "Tile"};

[[noreturn]] void unimplemented(const std::string& message) { throw Error(ErrorCode::kUnimplemented, message); }

// Names come from the file: keep messages printable and short whatever the file holds.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 96; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (s.size() > 96) out += "...";
  return out;
}
std::string quoted(const std::string& s) { return "'" + printable(s) + "'"; }

// Float attributes are stored as float32: 0.2 arrives as 0.20000000298. The source model meant
// the shortest decimal that rounds to that float, so read it back as that decimal.
double float_attribute_value(float f) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), f);
  if (r.ec != std::errc()) return static_cast<double>(f);
  double d = static_cast<double>(f);
  std::from_chars(buf, r.ptr, d);
  return d;
}

std::string dims_string(const std::vector<int64_t>& dims) { return shape_string(dims); }

bool is_default_domain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

bool is_int_type(int32_t t) {
  return t == onnx::TensorProto_DataType_INT64 || t == onnx::TensorProto_DataType_INT32 ||
         t == onnx::TensorProto_DataType_INT16 || t == onnx::TensorProto_DataType_INT8 ||
         t == onnx::TensorProto_DataType_UINT8 || t == onnx::TensorProto_DataType_UINT16 ||
         t == onnx::TensorProto_DataType_UINT32 || t == onnx::TensorProto_DataType_UINT64 ||
         t == onnx::TensorProto_DataType_BOOL;
}
bool is_float_type(int32_t t) {
  return t == onnx::TensorProto_DataType_FLOAT || t == onnx::TensorProto_DataType_DOUBLE;
}

// Ops of the element-wise blocks that spell GELU and SiLU.
bool is_block_op(const std::string& op) {
  return op == "Mul" || op == "Div" || op == "Add" || op == "Sub" || op == "Erf" || op == "Sigmoid";
}

// Whether input `slot` of an `op` node is differentiable (a float initialiser there is a
// parameter when the caller names none).
bool differentiable_slot(const std::string& op, int slot) {
  static const std::unordered_set<std::string> kAll = {"Add", "Sub", "Mul", "Div", "Concat", "Sum", "Max", "Min"};
  static const std::unordered_set<std::string> kFirstThree = {"Gemm", "Conv", "BatchNormalization",
                                                              "LayerNormalization", "GroupNormalization",
                                                              "InstanceNormalization"};
  if (kAll.count(op)) return true;
  if (kFirstThree.count(op)) return slot <= 2;
  if (op == "MatMul") return slot <= 1;
  if (op == "Where") return slot == 1 || slot == 2;
  return slot == 0;
}

// Attributes each op may carry (anything else is refused: it could change the meaning).
const std::unordered_map<std::string, std::vector<std::string>>& known_attributes() {
  static const std::unordered_map<std::string, std::vector<std::string>> k = {
      {"Gemm", {"alpha", "beta", "transA", "transB"}},
      {"Conv", {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}},
      {"MaxPool", {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"}},
      {"AveragePool", {"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"}},
      {"BatchNormalization", {"epsilon", "momentum", "training_mode"}},
      {"LayerNormalization", {"axis", "epsilon", "stash_type"}},
      {"GroupNormalization", {"epsilon", "num_groups", "stash_type"}},
      {"InstanceNormalization", {"epsilon"}},
      {"Concat", {"axis"}}, {"Flatten", {"axis"}}, {"Reshape", {"allowzero"}}, {"Transpose", {"perm"}},
      {"Squeeze", {"axes"}}, {"Unsqueeze", {"axes"}}, {"Dropout", {"ratio", "seed"}},
      {"LeakyRelu", {"alpha"}}, {"Elu", {"alpha"}}, {"HardSigmoid", {"alpha", "beta"}}, {"Gelu", {"approximate"}},
      {"Softmax", {"axis"}}, {"LogSoftmax", {"axis"}}, {"Clip", {"min", "max"}},
      {"ReduceMean", {"axes", "keepdims", "noop_with_empty_axes"}},
      {"ReduceSum", {"axes", "keepdims", "noop_with_empty_axes"}},
      {"Pad", {"mode"}}, {"Shape", {"start", "end"}}, {"Gather", {"axis"}}, {"Cast", {"to", "saturate"}},
      {"Constant", {"value", "value_float", "value_floats", "value_int", "value_ints"}},
      {"ConstantOfShape", {"value"}}, {"Softplus", {}}, {"Relu", {}}, {"Tanh", {}}, {"Sigmoid", {}},
      {"HardSwish", {}}, {"Erf", {}}, {"Exp", {}}, {"Log", {}}, {"Sqrt", {}}, {"Reciprocal", {}}, {"Neg", {}},
      {"Identity", {}}, {"Add", {}}, {"Sub", {}}, {"Mul", {}}, {"Div", {}}, {"Pow", {}}, {"MatMul", {}},
      {"GlobalAveragePool", {}}, {"Slice", {}}, {"Expand", {}}, {"Equal", {}}, {"Where", {}}, {"Floor", {}}, {"Not", {}},
      {"Split", {"axis", "split", "num_outputs"}}, {"Tile", {}},
      {"Ceil", {}}};
  return k;
}

// A constant on the host: values widened to double, dims as in the file.
struct Host {
  Shape dims;
  std::vector<double> values;
  bool integer = false;
};
using HostPtr = std::shared_ptr<const Host>;

// An ONNX value during the walk.
struct Val {
  int id = -1;      // graph value (or the materialised host constant)
  HostPtr host;     // a host constant
  BatchLayout lay;  // a batched graph value: where the batch sits in the ONNX shape
  // An unbatched graph value standing for the same tensor in every example (a parameter
  // expanded to the batch: a ViT's class token): its ONNX axis of size n, held as 1.
  int64_t bcast_axis = -1;
};

class Importer {
 public:
  Importer(const onnx::ModelProto& model, std::string what, const ImportBounds& bounds)
      : model_(model), g_(model.graph()), what_(std::move(what)), bounds_(bounds), b_(result_.graph) {}

  ImportedModel run() {
    read_opset();
    if (!model_.has_graph()) invalid_argument(what_ + ": the file holds no graph (truncated, or not an ONNX model)");
    if (bounds_.max_nodes > 0 && g_.node_size() > bounds_.max_nodes) {
      resource_exhausted(what_ + ": the graph has " + std::to_string(g_.node_size()) + " nodes, over the limit of " +
                         std::to_string(bounds_.max_nodes) + " nodes (4 x max_layers; raise it with --max-layers)");
    }
    index_values();
    topological_order();
    find_input_and_output();
    find_live_nodes();
    find_activation_blocks();
    choose_parameters();
    build();
    result_.model = onnx_import_detail::chain_model_of(result_.graph);
    return std::move(result_);
  }

 private:
  // ---- file-level facts ----

  void read_opset() {
    bool found = false;
    for (const auto& op : model_.opset_import()) {
      if (!is_default_domain(op.domain())) continue;
      result_.opset = op.version();
      found = true;
    }
    if (!found) invalid_argument(what_ + ": no opset_import for the default ONNX domain (malformed model)");
    if (result_.opset < kMinOpset || result_.opset > kMaxOpset) {
      unimplemented(what_ + ": opset " + std::to_string(result_.opset) + " is not supported (opsets " +
                    std::to_string(kMinOpset) + "–" + std::to_string(kMaxOpset) +
                    "); re-export with e.g. opset_version=17");
    }
  }

  void index_values() {
    if (g_.sparse_initializer_size() > 0) {
      unimplemented(what_ + ": sparse initialiser " + quoted(g_.sparse_initializer(0).values().name()) +
                    " is not supported");
    }
    for (const auto& t : g_.initializer()) {
      if (t.name().empty()) invalid_argument(what_ + ": an initialiser has no name (malformed model)");
      if (!inits_.emplace(t.name(), &t).second) {
        invalid_argument(what_ + ": initialiser " + quoted(t.name()) + " is defined twice (malformed model)");
      }
    }
    const int N = g_.node_size();
    for (int i = 0; i < N; ++i) {
      poll_stop(i);
      const onnx::NodeProto& n = g_.node(i);
      if (n.op_type().empty()) node_error(ErrorCode::kInvalidArgument, i, "node has no op type (malformed model)");
      for (const std::string& o : n.output()) {
        if (o.empty()) continue;
        if (inits_.count(o) || !producer_.emplace(o, i).second) {
          node_error(ErrorCode::kInvalidArgument, i, "value " + quoted(o) + " is produced twice (malformed model)");
        }
      }
      for (const std::string& in : n.input()) {
        if (in.empty()) continue;
        auto& c = consumers_[in];
        if (c.empty() || c.back() != i) c.push_back(i);
      }
    }
  }

  // Kahn's algorithm over the producer relation (files are usually sorted, but need not be). A
  // node left over lies on a cycle or after one; following unsorted inputs from it backwards
  // reaches a node on the cycle, which is named.
  void topological_order() {
    const int N = g_.node_size();
    std::vector<int> pending(static_cast<size_t>(N), 0);
    for (int i = 0; i < N; ++i) {
      std::unordered_set<int> preds;
      for (const std::string& in : g_.node(i).input()) {
        auto p = producer_.find(in);
        if (p != producer_.end()) preds.insert(p->second);
      }
      if (preds.count(i)) node_error(ErrorCode::kInvalidArgument, i, "it reads its own output (the graph has a cycle)");
      pending[static_cast<size_t>(i)] = static_cast<int>(preds.size());
    }
    order_.reserve(static_cast<size_t>(N));
    for (int i = 0; i < N; ++i)
      if (pending[static_cast<size_t>(i)] == 0) order_.push_back(i);
    for (size_t k = 0; k < order_.size(); ++k) {
      poll_stop(static_cast<int>(k));
      const onnx::NodeProto& n = g_.node(order_[k]);
      std::unordered_set<int> seen;
      for (const std::string& o : n.output()) {
        if (o.empty()) continue;
        for (int c : consumers(o))
          if (seen.insert(c).second && --pending[static_cast<size_t>(c)] == 0) order_.push_back(c);
      }
    }
    if (static_cast<int>(order_.size()) == N) return;
    int at = -1;
    for (int i = 0; i < N && at < 0; ++i)
      if (pending[static_cast<size_t>(i)] > 0) at = i;
    std::vector<int> visited(static_cast<size_t>(N), 0);
    while (!visited[static_cast<size_t>(at)]) {
      visited[static_cast<size_t>(at)] = 1;
      for (const std::string& in : g_.node(at).input()) {
        auto p = producer_.find(in);
        if (p != producer_.end() && pending[static_cast<size_t>(p->second)] > 0) {
          at = p->second;
          break;
        }
      }
    }
    node_error(ErrorCode::kInvalidArgument, at, "the graph has a cycle through this node");
  }

  void find_input_and_output() {
    std::vector<const onnx::ValueInfoProto*> inputs;
    for (const auto& v : g_.input()) {
      if (!inits_.count(v.name())) inputs.push_back(&v);  // IR < 4 lists initialisers as inputs
    }
    if (inputs.size() != 1) {
      std::string names;
      for (size_t i = 0; i < inputs.size() && i < 4; ++i) names += (i ? ", " : "") + quoted(inputs[i]->name());
      invalid_argument(what_ + ": the graph has " + std::to_string(inputs.size()) + " inputs" +
                       (names.empty() ? "" : " (" + names + ")") + "; Basin imports graphs of exactly one data input");
    }
    if (g_.output_size() != 1) {
      invalid_argument(what_ + ": the graph has " + std::to_string(g_.output_size()) +
                       " outputs; Basin imports graphs of exactly one output");
    }
    const onnx::ValueInfoProto& in = *inputs[0];
    input_ = in.name();
    output_ = g_.output(0).name();
    if (input_.empty() || output_.empty()) invalid_argument(what_ + ": graph input or output has no name");
    if (producer_.count(input_)) {
      node_error(ErrorCode::kInvalidArgument, producer_[input_], "it overwrites the graph input " + quoted(input_));
    }
    if (inits_.count(output_)) invalid_argument(what_ + ": the graph output " + quoted(output_) + " is an initialiser");
    if (output_ == input_) invalid_argument(what_ + ": the graph output is its input (no computation)");
    if (!producer_.count(output_))
      invalid_argument(what_ + ": the graph output " + quoted(output_) + " is not produced by any node");

    // Input: [batch, d1, ...]; the batch dimension may be symbolic or fixed, the others come from
    // the file or, when symbolic, from the data (ImportBounds::input_shape).
    const Shape& data = bounds_.input_shape;
    const bool has_shape = in.has_type() && in.type().has_tensor_type() && in.type().tensor_type().has_shape();
    if (in.has_type() && in.type().has_tensor_type()) {
      const int32_t et = in.type().tensor_type().elem_type();
      input_integer_ = et == onnx::TensorProto_DataType_INT64 || et == onnx::TensorProto_DataType_INT32;
      if (et != onnx::TensorProto_DataType_UNDEFINED && !is_float_type(et) && !input_integer_) {
        unimplemented(what_ + ": graph input " + quoted(input_) + " has element type " +
                      onnx_import_detail::data_type_name(et) + "; only FLOAT and DOUBLE inputs (or INT32/INT64 token ids) are supported");
      }
    }
    if (!has_shape) {
      if (data.empty())
        invalid_argument(what_ + ": graph input " + quoted(input_) +
                         " has no shape in the file; give the data's per-example shape (the inputs)");
      input_shape_ = data;
      return;
    }
    const auto& shape = in.type().tensor_type().shape();
    const int rank = shape.dim_size();
    if (rank < 2) {
      unimplemented(what_ + ": graph input " + quoted(input_) + " has rank " + std::to_string(rank) +
                    "; Basin expects [batch, ...] with at least one axis per example");
    }
    for (int64_t v : data)
      if (v <= 0)
        invalid_argument(what_ + ": the data's examples have shape " + shape_string(data) +
                         "; every axis must be at least 1");
    bool all_static = true;
    Shape static_dims;
    for (int d = 1; d < rank; ++d) {
      all_static = all_static && shape.dim(d).has_dim_value();
      static_dims.push_back(shape.dim(d).has_dim_value() ? shape.dim(d).dim_value() : 1);
    }
    const int64_t static_numel = shape_numel(static_dims);  // saturating
    // Data given flattened ([n, d1·d2·...]) for a fully static input: the file's shape holds.
    const bool flattened = !data.empty() && static_cast<int>(data.size()) != rank - 1 && all_static &&
                           shape_numel(data) == static_numel;
    const Shape no_data;
    const Shape& data_used = flattened ? no_data : data;
    if (!data_used.empty() && static_cast<int>(data_used.size()) != rank - 1)
      invalid_argument(what_ + ": graph input " + quoted(input_) + " has rank " + std::to_string(rank) +
                       " (batch + " + std::to_string(rank - 1) + " axes) but the data's examples have shape " +
                       shape_string(data));
    if (shape.dim(0).has_dim_value()) static_batch_ = shape.dim(0).dim_value();
    for (int d = 1; d < rank; ++d) {
      const auto& dim = shape.dim(d);
      if (dim.has_dim_value()) {
        if (dim.dim_value() <= 0 || dim.dim_value() > (int64_t{1} << 31))
          invalid_argument(what_ + ": graph input " + quoted(input_) + " has dimension " + std::to_string(d) + " = " +
                           std::to_string(dim.dim_value()));
        if (!data_used.empty() && data_used[static_cast<size_t>(d - 1)] != dim.dim_value())
          invalid_argument(what_ + ": graph input " + quoted(input_) + " has dimension " + std::to_string(d) + " = " +
                           std::to_string(dim.dim_value()) + " but the data's examples have shape " +
                           shape_string(data_used));
        input_shape_.push_back(dim.dim_value());
      } else if (!data_used.empty()) {
        input_shape_.push_back(data_used[static_cast<size_t>(d - 1)]);
      } else {
        const std::string sym = dim.has_dim_param() ? " ('" + printable(dim.dim_param()) + "')" : "";
        invalid_argument(what_ + ": graph input " + quoted(input_) + " has a dynamic dimension " + std::to_string(d) +
                         sym + "; only the batch dimension (0) may be dynamic: export with a fixed shape, or give the "
                         "data's per-example shape");
      }
    }
  }

  // Nodes whose outputs reach the graph output. Others (but Constants) are a disconnected part.
  void find_live_nodes() {
    const int N = g_.node_size();
    live_.assign(static_cast<size_t>(N), 0);
    std::vector<int> stack = {producer_.at(output_)};
    live_[static_cast<size_t>(stack[0])] = 1;
    while (!stack.empty()) {
      const int i = stack.back();
      stack.pop_back();
      for (const std::string& in : g_.node(i).input()) {
        auto p = producer_.find(in);
        if (p != producer_.end() && !live_[static_cast<size_t>(p->second)]) {
          live_[static_cast<size_t>(p->second)] = 1;
          stack.push_back(p->second);
        }
      }
    }
    for (int i : order_) {
      const onnx::NodeProto& n = g_.node(i);
      if (live_[static_cast<size_t>(i)] || (is_default_domain(n.domain()) && n.op_type() == "Constant")) continue;
      node_error(ErrorCode::kInvalidArgument, i,
                 "its outputs do not reach the graph output " + quoted(output_) + " (a disconnected part of the graph)");
    }
  }

  // ---- messages ----

  std::string node_ref(int i) const {
    const onnx::NodeProto& n = g_.node(i);
    std::string op = n.op_type();
    if (!is_default_domain(n.domain())) op = n.domain() + "::" + op;
    return "node " + (n.name().empty() ? "#" + std::to_string(i) : quoted(n.name())) + " (" + printable(op) + ")";
  }
  [[noreturn]] void node_error(ErrorCode code, int i, const std::string& reason) const {
    throw Error(code, what_ + ": " + node_ref(i) + ": " + reason);
  }
  [[noreturn]] void mixing(int i, const std::string& how) const {
    node_error(ErrorCode::kInvalidArgument, i,
               how + "; examples cannot be mixed (the batch axis, axis 0 of the input, may move or merge with "
                     "other axes but every op must keep each example's entries apart)");
  }
  void poll_stop(int step) const {
    if (bounds_.check_stop && step % 4096 == 0) bounds_.check_stop();
  }

  // ---- attributes ----

  const onnx::AttributeProto* attr(int i, const char* name) const {
    for (const auto& a : g_.node(i).attribute())
      if (a.name() == name) return &a;
    return nullptr;
  }
  int64_t attr_int(int i, const char* name, int64_t dflt) const {
    const onnx::AttributeProto* a = attr(i, name);
    if (!a) return dflt;
    if (a->type() != onnx::AttributeProto_AttributeType_INT && !(a->type() == 0 && a->has_i()))
      node_error(ErrorCode::kInvalidArgument, i, std::string("attribute ") + name + " must be an int");
    return a->i();
  }
  double attr_float(int i, const char* name, double dflt) const {
    const onnx::AttributeProto* a = attr(i, name);
    if (!a) return dflt;
    if (a->type() != onnx::AttributeProto_AttributeType_FLOAT && !(a->type() == 0 && a->has_f()))
      node_error(ErrorCode::kInvalidArgument, i, std::string("attribute ") + name + " must be a float");
    if (!std::isfinite(a->f())) node_error(ErrorCode::kInvalidArgument, i, std::string("attribute ") + name + " is not finite");
    return float_attribute_value(a->f());
  }
  std::string attr_string(int i, const char* name, const std::string& dflt) const {
    const onnx::AttributeProto* a = attr(i, name);
    if (!a) return dflt;
    if (a->type() != onnx::AttributeProto_AttributeType_STRING && !(a->type() == 0 && a->has_s()))
      node_error(ErrorCode::kInvalidArgument, i, std::string("attribute ") + name + " must be a string");
    return a->s();
  }
  std::vector<int64_t> attr_ints(int i, const char* name, std::vector<int64_t> dflt) const {
    const onnx::AttributeProto* a = attr(i, name);
    if (!a) return dflt;
    if (a->type() != onnx::AttributeProto_AttributeType_INTS && a->type() != 0)
      node_error(ErrorCode::kInvalidArgument, i, std::string("attribute ") + name + " must be a list of ints");
    return std::vector<int64_t>(a->ints().begin(), a->ints().end());
  }
  void check_attributes(int i) const {
    const onnx::NodeProto& n = g_.node(i);
    auto it = known_attributes().find(n.op_type());
    if (it == known_attributes().end()) return;
    for (const auto& a : n.attribute()) {
      if (std::find(it->second.begin(), it->second.end(), a.name()) != it->second.end()) continue;
      std::string known;
      for (const std::string& k : it->second) known += (known.empty() ? "" : ", ") + k;
      node_error(ErrorCode::kInvalidArgument, i,
                 "unknown attribute " + quoted(a.name()) + " (known: " + (known.empty() ? "none" : known) + ")");
    }
  }

  // ---- activation blocks (GELU via Erf, SiLU via x·Sigmoid(x)) ----

  bool constant_known(const std::string& v) const {
    if (inits_.count(v)) return true;
    auto p = producer_.find(v);
    return p != producer_.end() && g_.node(p->second).op_type() == "Constant";
  }
  std::optional<double> scalar_of(const std::string& v) {
    if (!constant_known(v)) return std::nullopt;
    try {
      const HostPtr h = raw_constant(v);
      if (h->values.size() != 1) return std::nullopt;
      return h->values[0];
    } catch (const Error&) {
      return std::nullopt;
    }
  }

  // Expression of `v` over `x` through block ops; nullptr when it leaves the block.
  const Expr* build_expr(const std::string& v, const std::string& x, std::vector<std::unique_ptr<Expr>>* pool,
                         std::unordered_map<std::string, const Expr*>* memo, std::unordered_set<int>* nodes) {
    if (auto m = memo->find(v); m != memo->end()) return m->second;
    auto e = std::make_unique<Expr>();
    if (v == x) {
      e->kind = Expr::Kind::kInput;
    } else if (constant_known(v)) {
      const std::optional<double> s = scalar_of(v);
      if (!s) return nullptr;
      e->kind = Expr::Kind::kConst;
      e->value = *s;
    } else {
      auto p = producer_.find(v);
      if (p == producer_.end() || nodes->size() >= kMaxBlockNodes) return nullptr;
      const onnx::NodeProto& n = g_.node(p->second);
      if (!is_default_domain(n.domain()) || !is_block_op(n.op_type()) || n.output_size() != 1) return nullptr;
      nodes->insert(p->second);
      e->kind = Expr::Kind::kOp;
      e->op = n.op_type();
      for (const std::string& in : n.input()) {
        if (in.empty()) return nullptr;
        const Expr* arg = build_expr(in, x, pool, memo, nodes);
        if (!arg) return nullptr;
        e->args.push_back(arg);
      }
    }
    const Expr* raw = e.get();
    pool->push_back(std::move(e));
    memo->emplace(v, raw);
    return raw;
  }

  // The value an Erf / Sigmoid is applied to, through Mul/Div by constants (x/√2 → x).
  std::string block_root(const std::string& v) const {
    std::string cur = v;
    for (int step = 0; step < 4; ++step) {
      auto p = producer_.find(cur);
      if (p == producer_.end()) return cur;
      const onnx::NodeProto& n = g_.node(p->second);
      if ((n.op_type() != "Mul" && n.op_type() != "Div") || n.input_size() != 2) return cur;
      if (constant_known(n.input(1))) cur = n.input(0);
      else if (n.op_type() == "Mul" && constant_known(n.input(0))) cur = n.input(1);
      else return cur;
    }
    return cur;
  }

  // Marks the nodes of every recognised block: the last one becomes one unary node of x.
  void find_activation_blocks() {
    absorbed_.assign(static_cast<size_t>(g_.node_size()), 0);
    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
      const int last = *it;
      const onnx::NodeProto& n = g_.node(last);
      if (absorbed_[static_cast<size_t>(last)] || !is_default_domain(n.domain()) || n.op_type() != "Mul" ||
          n.output_size() != 1 || n.input_size() != 2)
        continue;
      // Candidate x: the root of an Erf's / Sigmoid's argument within a few nodes of `last`.
      std::vector<std::string> candidates;
      std::vector<std::string> frontier = {n.input(0), n.input(1)};
      for (int depth = 0; depth < 5 && !frontier.empty(); ++depth) {
        std::vector<std::string> next;
        for (const std::string& v : frontier) {
          auto p = producer_.find(v);
          if (p == producer_.end()) continue;
          const onnx::NodeProto& m = g_.node(p->second);
          if (!is_block_op(m.op_type())) continue;
          if ((m.op_type() == "Erf" || m.op_type() == "Sigmoid") && m.input_size() == 1)
            candidates.push_back(block_root(m.input(0)));
          for (const std::string& in : m.input()) next.push_back(in);
        }
        frontier = std::move(next);
      }
      for (const std::string& x : candidates) {
        std::vector<std::unique_ptr<Expr>> pool;
        std::unordered_map<std::string, const Expr*> memo;
        std::unordered_set<int> nodes;
        const Expr* e = build_expr(n.output(0), x, &pool, &memo, &nodes);
        Activation a;
        if (!e || !match_activation(*e, &a) || !closed(nodes, last)) continue;
        for (int k : nodes) absorbed_[static_cast<size_t>(k)] = 1;
        absorbed_[static_cast<size_t>(last)] = 0;
        blocks_[last] = {a, x};
        break;
      }
    }
  }

  // Every inner value of the block is used inside it only.
  bool closed(const std::unordered_set<int>& nodes, int last) const {
    for (int k : nodes) {
      if (k == last) continue;
      const std::string& o = g_.node(k).output(0);
      if (o == output_) return false;
      for (int c : consumers(o))
        if (!nodes.count(c)) return false;
    }
    return true;
  }

  // ---- parameters ----

  std::string initialiser_list() const {
    std::string list;
    int count = 0;
    for (const auto& t : g_.initializer()) {
      if (count++ == 24) {
        list += ", ... (" + std::to_string(g_.initializer_size()) + " in all)";
        break;
      }
      list += (list.empty() ? "" : ", ") + quoted(t.name());
    }
    return list.empty() ? "none" : list;
  }

  // θ holds a MatMul weight B [in, out] transposed, as [out, in] — how torch stores the Linear
  // weight that torch.onnx.export writes as Wᵀ for bias-free layers — when B is rank 2 and every
  // use of it is a MatMul's B. Then parameters_to_vector order holds for those exports too.
  void find_transposed_weights() {
    for (const std::string& p : theta_) {
      auto it = inits_.find(p);
      if (it == inits_.end() || it->second->dims_size() != 2) continue;
      bool only_matmul_b = true;
      for (int c : consumers(p)) {
        const onnx::NodeProto& n = g_.node(c);
        if (!live_[static_cast<size_t>(c)]) continue;
        bool ok = n.op_type() == "MatMul" && n.input_size() == 2 && n.input(1) == p && n.input(0) != p;
        only_matmul_b = only_matmul_b && ok;
      }
      if (only_matmul_b && !consumers(p).empty() && p != output_) transposed_.insert(p);
    }
  }

  void choose_parameters() {
    choose_parameter_names();
    find_transposed_weights();
  }

  void choose_parameter_names() {
    std::unordered_set<std::string> constants;
    for (const std::string& c : bounds_.constant_names) {
      if (!inits_.count(c))
        invalid_argument(what_ + ": constant " + quoted(c) + " is not an initialiser of the file (initialisers: " +
                         initialiser_list() + ")");
      constants.insert(c);
    }
    if (!bounds_.parameter_names.empty()) {
      std::unordered_set<std::string> seen;
      for (const std::string& p : bounds_.parameter_names) {
        auto it = inits_.find(identity_source(p));
        if (it == inits_.end())
          invalid_argument(what_ + ": parameter " + quoted(p) + " is not an initialiser of the file (initialisers: " +
                           initialiser_list() + ")");
        if (!seen.insert(p).second) invalid_argument(what_ + ": parameter " + quoted(p) + " is named twice");
        if (constants.count(p)) invalid_argument(what_ + ": " + quoted(p) + " is named both a parameter and a constant");
        if (!is_float_type(it->second->data_type()))
          unimplemented(what_ + ": parameter " + quoted(p) + " has element type " +
                        onnx_import_detail::data_type_name(it->second->data_type()) +
                        "; parameters must be FLOAT or DOUBLE");
        theta_.push_back(p);
      }
      return;
    }
    std::unordered_set<std::string> in_slot;
    for (int i : order_) {
      const onnx::NodeProto& n = g_.node(i);
      if (!live_[static_cast<size_t>(i)] || absorbed_[static_cast<size_t>(i)] || blocks_.count(i)) continue;
      for (int s = 0; s < n.input_size(); ++s)
        if (inits_.count(n.input(s)) && differentiable_slot(n.op_type(), s)) in_slot.insert(n.input(s));
    }
    for (const auto& t : g_.initializer())
      if (in_slot.count(t.name()) && is_float_type(t.data_type()) && !constants.count(t.name()))
        theta_.push_back(t.name());
  }

  // torch.onnx.export writes parameters whose values equal an earlier one's (two fresh LayerNorms)
  // as Identity nodes of that initialiser, named after the parameter: the name's initialiser.
  std::string identity_source(const std::string& name) const {
    std::string cur = name;
    for (int step = 0; step < 8 && !inits_.count(cur); ++step) {
      auto p = producer_.find(cur);
      if (p == producer_.end() || g_.node(p->second).op_type() != "Identity" || g_.node(p->second).input_size() != 1)
        break;
      cur = g_.node(p->second).input(0);
    }
    return cur;
  }

  // ---- values ----

  // An initialiser or Constant node output decoded (cached), whatever its role.
  HostPtr raw_constant(const std::string& name) {
    if (auto c = raw_.find(name); c != raw_.end()) return c->second;
    auto h = std::make_shared<Host>();
    if (auto p = inits_.find(name); p != inits_.end()) {
      ConstTensor t = decode_tensor(*p->second, what_ + ": initialiser " + quoted(name));
      h->dims = t.dims;
      h->values = std::move(t.values);
      h->integer = is_int_type(p->second->data_type());
    } else {
      const int i = producer_.at(name);
      *h = constant_node(i);
    }
    raw_[name] = h;
    return h;
  }

  Host constant_node(int i) {
    const onnx::NodeProto& n = g_.node(i);
    if (n.input_size() != 0 || n.output_size() != 1 || n.attribute_size() != 1)
      node_error(ErrorCode::kInvalidArgument, i, "a Constant needs no inputs, one output and one value attribute");
    const onnx::AttributeProto& a = n.attribute(0);
    Host h;
    if (a.name() == "value" && a.has_t()) {
      ConstTensor t = decode_tensor(a.t(), what_ + ": Constant " + quoted(n.output(0)));
      h.dims = t.dims;
      h.values = std::move(t.values);
      h.integer = is_int_type(a.t().data_type());
    } else if (a.name() == "value_float") {
      h.values = {static_cast<double>(a.f())};
    } else if (a.name() == "value_int") {
      h.values = {static_cast<double>(a.i())};
      h.integer = true;
    } else if (a.name() == "value_floats") {
      for (float f : a.floats()) h.values.push_back(f);
      h.dims = {static_cast<int64_t>(h.values.size())};
    } else if (a.name() == "value_ints") {
      for (int64_t v : a.ints()) h.values.push_back(static_cast<double>(v));
      h.dims = {static_cast<int64_t>(h.values.size())};
      h.integer = true;
    } else {
      node_error(ErrorCode::kUnimplemented, i, "Constant attribute " + quoted(a.name()) + " is not supported");
    }
    return h;
  }

  bool has_input(int i, int k) const { return k < g_.node(i).input_size() && !g_.node(i).input(k).empty(); }

  Val& val(int i, int k) {
    const onnx::NodeProto& n = g_.node(i);
    if (!has_input(i, k)) node_error(ErrorCode::kInvalidArgument, i, "input " + std::to_string(k) + " is missing");
    const std::string& name = n.input(k);
    auto it = vals_.find(name);
    if (it != vals_.end()) return it->second;
    if (inits_.count(name)) {
      Val v;
      v.host = raw_constant(name);
      return vals_[name] = v;
    }
    if (producer_.count(name))  // produced by a node not yet mapped: cannot happen in order
      node_error(ErrorCode::kInternal, i, "input " + quoted(name) + " read before it is computed");
    node_error(ErrorCode::kInvalidArgument, i,
               "input " + quoted(name) + " is not the graph input, an initialiser or a node output (missing initialiser)");
  }
  bool is_host(int i, int k) { return has_input(i, k) && val(i, k).id < 0; }
  bool batched(const Val& v) const { return v.id >= 0 && result_.graph.value(v.id).batched; }
  bool batched_in(int i, int k) { return batched(val(i, k)); }

  // Input k as a graph value (host constants are materialised once).
  int gid(int i, int k) {
    Val& v = val(i, k);
    if (v.id < 0) {
      // An additive attention mask (torch's float attn_mask, generate_square_subsequent_mask)
      // holds −inf: allowed in an Add, where it only ever meets finite values.
      const bool additive = g_.node(i).op_type() == "Add";
      for (double x : v.host->values)
        if (std::isnan(x) || (!std::isfinite(x) && !additive))
          node_error(ErrorCode::kInvalidArgument, i, "constant " + quoted(g_.node(i).input(k)) + " contains NaN or Inf");
      v.id = b_.constant(g_.node(i).input(k), v.host->dims, v.host->values);
    }
    return v.id;
  }
  // Input k as a host constant (shape arithmetic, exponents, pads, ...).
  const Host& host(int i, int k, const std::string& role) {
    Val& v = val(i, k);
    if (!v.host || (v.id >= 0 && result_.graph.value(v.id).kind != ValueKind::kConstant)) {
      node_error(ErrorCode::kUnimplemented, i,
                 role + " " + quoted(g_.node(i).input(k)) + " must be a constant (an initialiser that is not a "
                 "parameter, a Constant, or shape arithmetic on them)");
    }
    return *v.host;
  }
  std::vector<int64_t> host_ints(int i, int k, const std::string& role) {
    const Host& h = host(i, k, role);
    std::vector<int64_t> out;
    for (double v : h.values) {
      if (const int64_t c = batch_coef(v); c > 0) out.push_back(kSymInt + c);
      else if (std::isnan(v)) out.push_back(kSymInt + 1);
      else if (!std::isfinite(v)) node_error(ErrorCode::kInvalidArgument, i, role + " has a value out of range");
      // INT64_MAX / INT64_MIN ("to the end", as torch writes x[:, 1:]) arrive widened to double.
      else if (v >= 4.6e18) out.push_back(int64_t{1} << 62);
      else if (v <= -4.6e18) out.push_back(-(int64_t{1} << 62));
      else out.push_back(static_cast<int64_t>(v));
    }
    return out;
  }

  // The full ONNX shape of a value: batched ones with the batch axis (batch_dim(c) in folding).
  Shape full_shape(const Val& v) const {
    if (v.id < 0) return v.host->dims;
    const GraphValue& g = result_.graph.value(v.id);
    if (!g.batched) return g.shape;
    Shape s;
    for (const auto& a : onnx_import_detail::onnx_axes(g.shape, v.lay))
      s.push_back(a.batch ? static_cast<int64_t>(batch_dim(onnx_import_detail::batch_factor(g.shape, v.lay)))
                          : g.shape[static_cast<size_t>(a.first)]);
    return s;
  }
  int64_t full_rank(const Val& v) const { return static_cast<int64_t>(full_shape(v).size()); }
  const Shape& gshape(int id) const { return result_.graph.value(id).shape; }
  // The ONNX axis holding the batch of a batched value.
  int64_t batch_axis(const Val& v) const { return v.lay.batch_axis(); }
  std::string onnx_shape_string(const Val& v) const {
    if (!batched(v)) return shape_string(full_shape(v));
    return onnx_import_detail::layout_string(gshape(v.id), v.lay);
  }

  // ONNX axis (negative from the end) of a rank-`rank` tensor, range-checked.
  int64_t norm_axis(int i, int64_t axis, int64_t rank) const {
    if (axis < -rank || axis >= rank)
      node_error(ErrorCode::kInvalidArgument, i,
                 "axis " + std::to_string(axis) + " is outside the " + std::to_string(rank) + " axes of its input");
    return axis < 0 ? axis + rank : axis;
  }
  // The graph's axis for ONNX axis `axis` of value v (per-example axes through its layout; the
  // batch's own axis is refused).
  int64_t graph_axis(int i, const Val& v, int64_t axis) const {
    const int64_t a = norm_axis(i, axis, full_rank(v));
    if (!batched(v)) return a;
    const auto axes = onnx_import_detail::onnx_axes(gshape(v.id), v.lay);
    if (axes[static_cast<size_t>(a)].batch)
      mixing(i, "it acts along axis " + std::to_string(a) + " of " + onnx_shape_string(v) + ", which holds the batch");
    return axes[static_cast<size_t>(a)].first;
  }
  // Ops that read their input as [batch, C, spatial...] (Conv, pooling, BatchNorm, ...).
  void require_standard(int i, const Val& v) const {
    if (batched(v) && !v.lay.standard())
      mixing(i, "its input " + onnx_shape_string(v) + " does not have the batch as axis 0, which this op needs");
  }

  void set_out(int i, int k, Val v) {
    const onnx::NodeProto& n = g_.node(i);
    if (v.id >= 0 && result_.graph.value(v.id).batched) {
      const GraphValue& g = result_.graph.value(v.id);
      const int64_t r = static_cast<int64_t>(g.shape.size());
      if (v.lay.pos - v.lay.outer < 0 || v.lay.pos + v.lay.inner > r || v.lay.outer < 0 || v.lay.inner < 0)
        node_error(ErrorCode::kInternal, i, "batch layout out of the value's axes");
    } else {
      v.lay = BatchLayout{};
    }
    if (k < n.output_size() && !n.output(k).empty()) vals_[n.output(k)] = std::move(v);
  }
  // The layout of node i's first batched input (element-wise ops and those that keep their
  // input's axes keep its layout).
  BatchLayout inherited_layout(int i) {
    const onnx::NodeProto& n = g_.node(i);
    for (int k = 0; k < n.input_size(); ++k)
      if (has_input(i, k) && vals_.count(n.input(k)) && batched(vals_.at(n.input(k)))) return vals_.at(n.input(k)).lay;
    return BatchLayout{};
  }
  void set_out(int i, int id) { set_out(i, id, inherited_layout(i)); }
  void set_out(int i, int id, BatchLayout lay) {
    Val v;
    v.id = id;
    v.lay = lay;
    set_out(i, 0, v);
  }
  void set_host(int i, Host h) {
    if (static_cast<int64_t>(h.values.size()) > kMaxFoldElements)
      node_error(ErrorCode::kUnimplemented, i, "folding this constant computation would make over 2^20 values");
    Val v;
    v.host = std::make_shared<Host>(std::move(h));
    set_out(i, 0, v);
  }
  // Outputs after the first must be unused.
  void only_first_output(int i, ErrorCode code, const std::string& why) const {
    const onnx::NodeProto& n = g_.node(i);
    for (int o = 1; o < n.output_size(); ++o)
      if (!n.output(o).empty() && (!consumers(n.output(o)).empty() || n.output(o) == output_))
        node_error(code, i, "its output " + quoted(n.output(o)) + " is used; " + why);
  }

  const std::vector<int>& consumers(const std::string& v) const {
    static const std::vector<int> kNone;
    auto it = consumers_.find(v);
    return it == consumers_.end() ? kNone : it->second;
  }

  std::string gname(int i) const {
    const onnx::NodeProto& n = g_.node(i);
    if (!n.name().empty()) return printable(n.name());
    return n.output_size() > 0 && !n.output(0).empty() ? printable(n.output(0)) : "#" + std::to_string(i);
  }

  // ---- the walk ----

  void build() {
    Graph& graph = result_.graph;
    vals_[input_].id = graph.add_input(input_, input_shape_, input_integer_);
    for (const std::string& p : theta_) {
      const HostPtr h = raw_constant(identity_source(p));
      for (double v : h->values)
        if (!std::isfinite(v)) invalid_argument(what_ + ": parameter " + quoted(p) + " contains NaN or Inf");
      if (transposed_.count(p)) {
        const int64_t rows = h->dims[0], cols = h->dims[1];
        vals_[p].id = graph.add_parameter(p, {cols, rows});
        for (int64_t c = 0; c < cols; ++c)
          for (int64_t r = 0; r < rows; ++r) result_.params.push_back(h->values[static_cast<size_t>(r * cols + c)]);
        continue;
      }
      vals_[p].id = graph.add_parameter(p, h->dims);
      result_.params.insert(result_.params.end(), h->values.begin(), h->values.end());
    }
    for (size_t k = 0; k < order_.size(); ++k) {
      poll_stop(static_cast<int>(k));
      const int i = order_[k];
      if (absorbed_[static_cast<size_t>(i)] || !live_[static_cast<size_t>(i)]) continue;
      if (g_.node(i).op_type() == "Identity" && g_.node(i).output_size() == 1 && vals_.count(g_.node(i).output(0)))
        continue;  // a parameter of its own (identity_source)
      try {
        map_node(i);
      } catch (const Error& e) {
        const std::string m = e.what();
        if (m.rfind(what_ + ":", 0) == 0) throw;
        throw Error(e.code(), what_ + ": " + node_ref(i) + ": " + m);
      }
    }
    const Val& out = vals_.at(output_);
    if (out.id < 0 || !result_.graph.value(out.id).batched)
      invalid_argument(what_ + ": the graph output " + quoted(output_) + " does not depend on the input " +
                       quoted(input_));
    if (!out.lay.standard())
      mixing(producer_.at(output_), "its output, the graph output " + quoted(output_) + ", is " + onnx_shape_string(out) +
                                        ": Basin's outputs have the batch as axis 0 (transpose it back, e.g. "
                                        "batch_first=True or y.transpose(0, 1))");
    graph.set_output(out.id);
    check_declared_output();
    try {
      graph.validate(std::numeric_limits<int64_t>::max(), bounds_.check_stop);
    } catch (const Error& e) {
      throw Error(e.code(), what_ + ": " + e.what());
    }
  }

  void check_declared_output() {
    const onnx::ValueInfoProto& out = g_.output(0);
    if (!out.has_type() || !out.type().has_tensor_type() || !out.type().tensor_type().has_shape()) return;
    const auto& shape = out.type().tensor_type().shape();
    const Shape& got = gshape(vals_.at(output_).id);
    if (shape.dim_size() != static_cast<int>(got.size()) + 1) {
      invalid_argument(what_ + ": graph output " + quoted(output_) + " declares rank " + std::to_string(shape.dim_size()) +
                       " but the nodes produce [batch] + " + shape_string(got));
    }
    for (int d = 1; d < shape.dim_size(); ++d)
      if (shape.dim(d).has_dim_value() && shape.dim(d).dim_value() != got[static_cast<size_t>(d - 1)])
        invalid_argument(what_ + ": graph output " + quoted(output_) + " declares dimension " + std::to_string(d) +
                         " = " + std::to_string(shape.dim(d).dim_value()) + " but the nodes produce [batch] + " +
                         shape_string(got));
  }

  void map_node(int i) {
    const onnx::NodeProto& n = g_.node(i);
    const std::string& op = n.op_type();
    if (!is_default_domain(n.domain()))
      node_error(ErrorCode::kUnimplemented, i, "op is not supported (domain " + quoted(n.domain()) + "); supported: " +
                                                   onnx_supported_ops());
    if (n.output_size() < 1 || n.output(0).empty()) node_error(ErrorCode::kInvalidArgument, i, "it has no output");
    check_attributes(i);
    if (auto bl = blocks_.find(i); bl != blocks_.end()) {
      auto it = vals_.find(bl->second.second);
      if (it == vals_.end() || it->second.id < 0) node_error(ErrorCode::kInternal, i, "block input not mapped");
      const char* fn = bl->second.first == Activation::kGelu ? "gelu" : "silu";
      return set_out(i, b_.unary(it->second.id, fn, gname(i)), it->second.lay);
    }
    if (op == "Constant") return set_host(i, constant_node(i));
    if (op == "Shape") return shape_op(i);
    if (fold(i)) return;
    if (op == "Gemm") return gemm(i);
    if (op == "MatMul") return matmul(i);
    if (op == "Conv") return conv(i);
    if (op == "MaxPool" || op == "AveragePool") return pool(i);
    if (op == "GlobalAveragePool") return require_standard(i, val(i, 0)), set_out(i, b_.global_avg_pool(data(i), gname(i)));
    if (op == "BatchNormalization") return batch_norm(i);
    if (op == "LayerNormalization") return layer_norm(i);
    if (op == "GroupNormalization" || op == "InstanceNormalization") return group_norm(i);
    if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") return binary(i);
    if (op == "Pow") return pow(i);
    if (op == "Concat") return concat(i);
    if (op == "Flatten") return flatten(i);
    if (op == "Reshape") return reshape(i);
    if (op == "Transpose") return transpose(i);
    if (op == "Squeeze" || op == "Unsqueeze") return squeeze(i);
    if (op == "Identity") { Val v = val(i, 0); return set_out(i, 0, v); }
    if (op == "Dropout") return dropout(i);
    if (op == "Slice") return slice(i);
    if (op == "Gather" && !is_host(i, 1)) return embedding(i);
    if (op == "Gather") return gather(i);
    if (op == "Where") return where(i);
    if (op == "Equal" || op == "Not")  // not folded: computed from the input or a parameter
      node_error(ErrorCode::kUnimplemented, i,
                 "a mask computed from the input or a parameter (e.g. key_padding_mask=(tokens == pad)) is not "
                 "supported: Basin differentiates masks that are constants (buffers, or shape arithmetic on them)");
    if (op == "Split") return split(i);
    if (op == "Expand") return expand(i);
    if (op == "Tile") return tile(i);
    if (op == "Pad") return pad(i);
    if (op == "ReduceMean" || op == "ReduceSum") return reduce(i);
    if (op == "Softmax" || op == "LogSoftmax") return softmax(i);
    if (op == "Clip") return clip(i);
    if (op == "Neg") return set_out(i, b_.scale(data(i), -1.0, gname(i)));
    if (unary_op(i)) return;
    node_error(ErrorCode::kUnimplemented, i, "op is not supported; supported: " + onnx_supported_ops());
  }

  // Input 0 as a graph value (the data operand of most ops).
  int data(int i) { return gid(i, 0); }

  bool unary_op(int i) {
    const std::string& op = g_.node(i).op_type();
    const std::string name = gname(i);
    static const std::unordered_map<std::string, const char*> kPlain = {
        {"Relu", "relu"}, {"Tanh", "tanh"}, {"Sigmoid", "sigmoid"}, {"Softplus", "softplus"}, {"Erf", unary_fn::kErf},
        {"Exp", unary_fn::kExp}, {"Log", unary_fn::kLog}, {"Sqrt", unary_fn::kSqrt},
        {"Reciprocal", unary_fn::kReciprocal}, {"HardSwish", "hardswish"}};
    if (auto it = kPlain.find(op); it != kPlain.end()) {
      set_out(i, b_.unary(data(i), it->second, name));
      return true;
    }
    if (op == "LeakyRelu") {
      set_out(i, b_.unary(data(i), "leaky_relu", name, attr_float(i, "alpha", 0.01), 0, true));
      return true;
    }
    if (op == "Elu") {
      set_out(i, b_.unary(data(i), "elu", name, attr_float(i, "alpha", 1.0), 0, true));
      return true;
    }
    if (op == "HardSigmoid") {
      set_out(i, b_.unary(data(i), "hardsigmoid", name, attr_float(i, "alpha", 0.2), attr_float(i, "beta", 0.5), true, true));
      return true;
    }
    if (op == "Gelu") {
      const std::string approx = attr_string(i, "approximate", "none");
      if (approx != "none" && approx != "tanh")
        node_error(ErrorCode::kInvalidArgument, i, "unknown approximate=" + quoted(approx) + " (expected none or tanh)");
      set_out(i, b_.unary(data(i), approx == "tanh" ? "gelu_tanh" : "gelu", name));
      return true;
    }
    return false;
  }

  // ---- shape arithmetic on the host ----

  void shape_op(int i) {
    Shape s = full_shape(val(i, 0));
    if (const int64_t b = val(i, 0).bcast_axis; b >= 0 && b < static_cast<int64_t>(s.size()))
      s[static_cast<size_t>(b)] = static_cast<int64_t>(kBatchSym);
    const int64_t r = static_cast<int64_t>(s.size());
    int64_t start = attr_int(i, "start", 0), end = attr_int(i, "end", r);
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = std::clamp<int64_t>(start, 0, r);
    end = std::clamp<int64_t>(end, start, r);
    Host h;
    h.integer = true;
    for (int64_t d = start; d < end; ++d) h.values.push_back(static_cast<double>(s[static_cast<size_t>(d)]));
    h.dims = {static_cast<int64_t>(h.values.size())};
    set_host(i, std::move(h));
  }

  static std::vector<int64_t> strides_of(const Shape& s) {
    std::vector<int64_t> st(s.size(), 1);
    for (int64_t d = static_cast<int64_t>(s.size()) - 2; d >= 0; --d) st[d] = st[d + 1] * s[d + 1];
    return st;
  }

  // NumPy broadcast of two shapes; false when they do not fit.
  static bool broadcast_shape(const Shape& a, const Shape& b, Shape* out) {
    const size_t r = std::max(a.size(), b.size());
    out->assign(r, 1);
    for (size_t k = 0; k < r; ++k) {
      const int64_t da = k < r - a.size() ? 1 : a[k - (r - a.size())];
      const int64_t db = k < r - b.size() ? 1 : b[k - (r - b.size())];
      if (da != db && da != 1 && db != 1) return false;
      (*out)[k] = da == 1 ? db : da;
    }
    return true;
  }
  // Index into `s` (right-aligned in `out`) of the element at multi-index of flat `f` of `out`.
  static int64_t source_index(int64_t f, const Shape& out, const Shape& s) {
    int64_t idx = 0, mult = 1;
    for (int64_t d = static_cast<int64_t>(out.size()) - 1, e = static_cast<int64_t>(s.size()) - 1; d >= 0; --d, --e) {
      const int64_t coord = f % out[d];
      f /= out[d];
      if (e >= 0) {
        if (s[e] != 1) idx += coord * mult;
        mult *= s[e];
      }
    }
    return idx;
  }

  // Folds an all-constant node of shape arithmetic; false when it is not one.
  bool fold(int i) {
    static const std::unordered_set<std::string> kFoldable = {
        "Identity", "Cast", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Reshape", "Add", "Sub", "Mul", "Div",
        "Neg", "Sqrt", "ConstantOfShape", "Equal", "Where", "Floor", "Ceil", "Flatten", "Expand", "Transpose", "Not", "Pad"};
    const onnx::NodeProto& n = g_.node(i);
    const std::string& op = n.op_type();
    if (!kFoldable.count(op)) return false;
    for (int k = 0; k < n.input_size(); ++k)
      if (has_input(i, k) && !is_host(i, k)) return false;
    if (n.input_size() == 0 || !has_input(i, 0)) return false;
    const Host& x = *val(i, 0).host;
    int64_t total = 1;
    for (int64_t d : x.dims) {
      if (d < 0) node_error(ErrorCode::kInvalidArgument, i, "a constant has a negative dimension");
      total *= d;
    }
    Host h;
    h.integer = x.integer;
    if (op == "Identity") {
      h = x;
    } else if (op == "Cast") {
      const int64_t to = attr_int(i, "to", 0);
      h = x;
      h.integer = is_int_type(static_cast<int32_t>(to));
      if (h.integer)
        for (double& v : h.values)
          if (!batch_coef(v) && std::isfinite(v)) v = to == onnx::TensorProto_DataType_BOOL ? (v != 0) : std::trunc(v);
    } else if (op == "Not") {
      h = x;
      h.integer = true;
      for (double& v : h.values) v = v == 0 ? 1 : 0;
    } else if (op == "Neg" || op == "Sqrt" || op == "Floor" || op == "Ceil") {
      h = x;
      for (double& v : h.values) {
        if (batch_coef(v)) node_error(ErrorCode::kUnimplemented, i, "arithmetic on the batch size is not supported");
        v = op == "Neg" ? -v : op == "Sqrt" ? std::sqrt(v) : op == "Floor" ? std::floor(v) : std::ceil(v);
      }
    } else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Equal") {
      const Host& y = host(i, 1, "operand");
      if (!broadcast_shape(x.dims, y.dims, &h.dims))
        node_error(ErrorCode::kInvalidArgument, i, "shapes " + dims_string(x.dims) + " and " + dims_string(y.dims) +
                                                       " do not broadcast");
      h.integer = op == "Equal" || (x.integer && y.integer);
      const int64_t m = shape_numel(h.dims);
      if (m > kMaxFoldElements) node_error(ErrorCode::kUnimplemented, i, "constant folding over 2^20 values");
      h.values.resize(static_cast<size_t>(m));
      for (int64_t f = 0; f < m; ++f) {
        const double a = x.values[source_index(f, h.dims, x.dims)], b = y.values[source_index(f, h.dims, y.dims)];
        const int64_t ca = batch_coef(a), cb = batch_coef(b);
        if (op == "Equal" && (ca || cb)) {
          h.values[f] = ca == cb ? 1 : 0;  // n·c ≥ 1 equals no constant torch compares it with
          continue;
        }
        if (ca || cb) {
          // n·c times or over a positive integer (heads merged into or split from the batch),
          // plus 0; anything else computed from the batch size mixes examples.
          const double other = ca ? b : a;
          const bool whole = other >= 1 && other == std::floor(other) && other < static_cast<double>(kMaxSymCoef);
          const int64_t k = whole ? static_cast<int64_t>(other) : 0;
          if (op == "Mul" && whole && !(ca && cb) && k <= kMaxSymCoef / (ca ? ca : cb)) {
            h.values[f] = batch_dim((ca ? ca : cb) * k);
            continue;
          }
          if (op == "Div" && ca && !cb && whole && ca % k == 0) {
            h.values[f] = batch_dim(ca / k);
            continue;
          }
          if ((op == "Add" || op == "Sub") && ca && !cb && b == 0) {
            h.values[f] = a;
            continue;
          }
          node_error(ErrorCode::kUnimplemented, i, "arithmetic on the batch size is not supported (" + op +
                                                       " of n·c by anything but a positive integer factor)");
        }
        double r = op == "Add" ? a + b : op == "Sub" ? a - b : op == "Mul" ? a * b : op == "Equal" ? (a == b) : 0;
        if (op == "Div") {
          if (h.integer) {
            if (b == 0) node_error(ErrorCode::kInvalidArgument, i, "integer division by zero");
            r = std::trunc(a / b);
          } else {
            r = a / b;
          }
        }
        h.values[f] = r;
      }
    } else if (op == "Where") {
      const Host& a = host(i, 1, "X");
      const Host& b = host(i, 2, "Y");
      Shape ab;
      if (!broadcast_shape(a.dims, b.dims, &ab) || !broadcast_shape(x.dims, ab, &h.dims))
        node_error(ErrorCode::kInvalidArgument, i, "shapes do not broadcast");
      h.integer = a.integer && b.integer;
      const int64_t m = shape_numel(h.dims);
      if (m > kMaxFoldElements) node_error(ErrorCode::kUnimplemented, i, "constant folding over 2^20 values");
      for (int64_t f = 0; f < m; ++f)
        h.values.push_back(x.values[source_index(f, h.dims, x.dims)] != 0 ? a.values[source_index(f, h.dims, a.dims)]
                                                                          : b.values[source_index(f, h.dims, b.dims)]);
    } else if (op == "ConstantOfShape") {
      h.dims.clear();
      for (double v : x.values) {
        if (batch_coef(v)) {  // a constant with the batch axis: per-example data
          node_error(ErrorCode::kUnimplemented, i,
                     "it makes a constant whose shape holds the batch size (torch's zeros(x.shape[0], ...), "
                     "MultiheadAttention(add_zero_attn=True), a mask built from the batch); Basin's constants are "
                     "shared by all examples (a parameter or buffer expanded to the batch is supported)");
        }
        if (!(v >= 0 && v <= static_cast<double>(kMaxFoldElements)))
          node_error(ErrorCode::kInvalidArgument, i, "dimension " + std::to_string(v) + " out of range");
        h.dims.push_back(static_cast<int64_t>(v));
      }
      double fill = 0;
      h.integer = false;
      if (const onnx::AttributeProto* a = attr(i, "value"); a && a->has_t()) {
        ConstTensor t = decode_tensor(a->t(), what_ + ": " + node_ref(i) + ": value");
        if (t.values.size() != 1) node_error(ErrorCode::kInvalidArgument, i, "value must hold one element");
        fill = t.values[0];
        h.integer = is_int_type(a->t().data_type());
      }
      const int64_t m = shape_numel(h.dims);
      if (m > kMaxFoldElements) node_error(ErrorCode::kUnimplemented, i, "constant folding over 2^20 values");
      h.values.assign(static_cast<size_t>(m), fill);
    } else if (op == "Gather") {
      const Host& idx = host(i, 1, "indices");
      const int64_t r = static_cast<int64_t>(x.dims.size());
      if (r == 0) node_error(ErrorCode::kInvalidArgument, i, "Gather of a scalar");
      const int64_t axis = norm_axis(i, attr_int(i, "axis", 0), r);
      const int64_t D = x.dims[axis];
      const std::vector<int64_t> st = strides_of(x.dims);
      const int64_t outer = total / (D * st[axis] == 0 ? 1 : D * st[axis]), inner = st[axis];
      h.dims.assign(x.dims.begin(), x.dims.begin() + axis);
      h.dims.insert(h.dims.end(), idx.dims.begin(), idx.dims.end());
      h.dims.insert(h.dims.end(), x.dims.begin() + axis + 1, x.dims.end());
      for (int64_t o = 0; o < outer; ++o)
        for (double jd : idx.values) {
          if (!(std::fabs(jd) < 4.6e18)) node_error(ErrorCode::kInvalidArgument, i, "an index is out of range");
          int64_t j = static_cast<int64_t>(jd);
          if (j < 0) j += D;
          if (j < 0 || j >= D) node_error(ErrorCode::kInvalidArgument, i, "index " + std::to_string(j) + " out of range");
          for (int64_t in = 0; in < inner; ++in) h.values.push_back(x.values[(o * D + j) * inner + in]);
        }
    } else if (op == "Unsqueeze" || op == "Squeeze") {
      h = x;
      h.dims = squeezed_dims(i, x.dims, op == "Unsqueeze");
    } else if (op == "Concat") {
      const int64_t r = static_cast<int64_t>(x.dims.size());
      const int64_t axis = norm_axis(i, attr_int(i, "axis", 0), r);
      h.dims = x.dims;
      h.dims[axis] = 0;
      std::vector<const Host*> parts;
      for (int k = 0; k < n.input_size(); ++k) {
        if (!has_input(i, k)) continue;
        const Host* p = val(i, k).host.get();
        if (static_cast<int64_t>(p->dims.size()) != r) node_error(ErrorCode::kInvalidArgument, i, "Concat of different ranks");
        for (int64_t d = 0; d < r; ++d)
          if (d != axis && p->dims[d] != x.dims[d]) node_error(ErrorCode::kInvalidArgument, i, "Concat shapes do not fit");
        h.dims[axis] += p->dims[axis];
        h.integer = h.integer && p->integer;
        parts.push_back(p);
      }
      int64_t outer = 1;
      for (int64_t d = 0; d < axis; ++d) outer *= x.dims[d];
      for (int64_t o = 0; o < outer; ++o)
        for (const Host* p : parts) {
          const int64_t chunk = outer == 0 ? 0 : shape_numel(p->dims) / outer;
          h.values.insert(h.values.end(), p->values.begin() + o * chunk, p->values.begin() + (o + 1) * chunk);
        }
    } else if (op == "Slice") {
      std::vector<int64_t> start(x.dims.size(), 0), step(x.dims.size(), 1);
      const Shape out = slice_shape(i, x.dims, &start, &step);
      h.dims = out;
      const std::vector<int64_t> st = strides_of(x.dims), ost = strides_of(out);
      const int64_t m = shape_numel(out);
      for (int64_t f = 0; f < m; ++f) {
        int64_t src = 0, rem = f;
        for (size_t d = 0; d < out.size(); ++d) {
          const int64_t c = rem / ost[d];
          rem %= ost[d];
          src += (start[d] + c * step[d]) * st[d];
        }
        h.values.push_back(x.values[src]);
      }
    } else if (op == "Reshape" || op == "Flatten") {
      h = x;
      if (op == "Flatten") {
        const int64_t r = static_cast<int64_t>(x.dims.size());
        int64_t a = attr_int(i, "axis", 1);
        if (a < 0) a += r;
        if (a < 0 || a > r) node_error(ErrorCode::kInvalidArgument, i, "axis out of range");
        int64_t p = 1;
        for (int64_t d = 0; d < a; ++d) p *= x.dims[d];
        h.dims = {p, p == 0 ? 0 : total / p};
      } else {
        h.dims = resolve_reshape(i, x.dims, host_ints(i, 1, "shape"));
      }
    } else if (op == "Transpose") {
      // torch reverses and regroups Pad's amounts this way (F.pad's (begin, end) pairs per axis).
      const int64_t r = static_cast<int64_t>(x.dims.size());
      std::vector<int64_t> perm = attr_ints(i, "perm", {});
      if (perm.empty())
        for (int64_t d = r - 1; d >= 0; --d) perm.push_back(d);
      std::vector<char> seen(static_cast<size_t>(r), 0);
      if (static_cast<int64_t>(perm.size()) != r)
        node_error(ErrorCode::kInvalidArgument, i, "perm has " + std::to_string(perm.size()) + " entries for " +
                                                       std::to_string(r) + " axes");
      for (int64_t& a : perm) {
        if (a < 0) a += r;
        if (a < 0 || a >= r || seen[static_cast<size_t>(a)])
          node_error(ErrorCode::kInvalidArgument, i, "perm is not a permutation of the axes");
        seen[static_cast<size_t>(a)] = 1;
      }
      h.dims.assign(static_cast<size_t>(r), 0);
      for (int64_t d = 0; d < r; ++d) h.dims[d] = x.dims[perm[d]];
      std::vector<int64_t> in_strides(static_cast<size_t>(r), 1);
      for (int64_t d = r - 2; d >= 0; --d) in_strides[d] = in_strides[d + 1] * x.dims[d + 1];
      h.values.assign(static_cast<size_t>(total), 0.0);
      for (int64_t f = 0; f < total; ++f) {
        int64_t rest = f, src = 0;
        for (int64_t d = r - 1; d >= 0; --d) {
          const int64_t idx = rest % h.dims[d];
          rest /= h.dims[d];
          src += idx * in_strides[perm[d]];
        }
        h.values[f] = x.values[src];
      }
    } else if (op == "Pad") {
      // A constant mask padded (MultiheadAttention(add_bias_kv=True) pads attn_mask by a column).
      if (attr_string(i, "mode", "constant") != "constant") return false;
      const int64_t r = static_cast<int64_t>(x.dims.size());
      std::vector<int64_t> begin, end;
      pad_amounts(i, r, &begin, &end);
      h.dims = x.dims;
      for (int64_t d = 0; d < r; ++d) h.dims[d] += begin[d] + end[d];
      double fill = 0;
      if (has_input(i, 2)) {
        const Host& c = host(i, 2, "constant_value");
        if (c.values.size() != 1) node_error(ErrorCode::kInvalidArgument, i, "constant_value must hold one element");
        fill = c.values[0];
      }
      const int64_t m = shape_numel(h.dims);
      if (m > kMaxFoldElements) node_error(ErrorCode::kUnimplemented, i, "constant folding over 2^20 values");
      h.values.assign(static_cast<size_t>(m), fill);
      const std::vector<int64_t> ost = strides_of(h.dims);
      for (int64_t f = 0; f < total; ++f) {
        int64_t rest = f, dst = 0;
        for (int64_t d = r - 1; d >= 0; --d) {
          dst += (rest % x.dims[d] + begin[d]) * ost[d];
          rest /= x.dims[d];
        }
        h.values[dst] = x.values[f];
      }
    } else if (op == "Expand") {
      std::vector<int64_t> to = host_ints(i, 1, "shape");
      for (int64_t d : to) {
        if (sym_coef(d)) return false;  // to the batch: expand() keeps it unbatched
        if (d < 1 || d > kMaxFoldElements)
          node_error(ErrorCode::kInvalidArgument, i, "shape has a dimension " + std::to_string(d));
      }
      if (!broadcast_shape(x.dims, to, &h.dims)) node_error(ErrorCode::kInvalidArgument, i, "shape does not broadcast");
      const int64_t m = shape_numel(h.dims);
      if (m > kMaxFoldElements) node_error(ErrorCode::kUnimplemented, i, "constant folding over 2^20 values");
      for (int64_t f = 0; f < m; ++f) h.values.push_back(x.values[source_index(f, h.dims, x.dims)]);
    }
    set_host(i, std::move(h));
    return true;
  }

  // Squeeze / Unsqueeze axes: the attribute before opset 13, the second input from 13.
  std::vector<int64_t> squeeze_axes(int i) {
    if (result_.opset >= 13 && has_input(i, 1)) return host_ints(i, 1, "axes");
    return attr_ints(i, "axes", {});
  }
  Shape squeezed_dims(int i, const Shape& dims, bool unsqueeze) {
    std::vector<int64_t> axes = squeeze_axes(i);
    const int64_t r = static_cast<int64_t>(dims.size());
    if (unsqueeze) {
      const int64_t out_r = r + static_cast<int64_t>(axes.size());
      std::vector<char> inserted(static_cast<size_t>(out_r), 0);
      for (int64_t a : axes) {
        a = norm_axis(i, a, out_r);
        if (inserted[a]) node_error(ErrorCode::kInvalidArgument, i, "axis repeated");
        inserted[a] = 1;
      }
      Shape out;
      size_t k = 0;
      for (int64_t d = 0; d < out_r; ++d) out.push_back(inserted[d] ? 1 : dims[k++]);
      return out;
    }
    std::vector<char> drop(static_cast<size_t>(r), 0);
    if (axes.empty()) {
      for (int64_t d = 0; d < r; ++d) drop[d] = dims[d] == 1;
    }
    for (int64_t a : axes) {
      a = norm_axis(i, a, r);
      if (dims[a] != 1) node_error(ErrorCode::kInvalidArgument, i, "cannot squeeze axis " + std::to_string(a) +
                                                                       " of size " + std::to_string(dims[a]));
      drop[a] = 1;
    }
    Shape out;
    for (int64_t d = 0; d < r; ++d)
      if (!drop[d]) out.push_back(dims[d]);
    return out;
  }

  // Reshape's target for the full shape `in` of a value without the batch: 0 copies (unless
  // allowzero), -1 is inferred. (Batched values: reshape_batched.)
  Shape resolve_reshape(int i, const Shape& in, std::vector<int64_t> to, bool allowzero_attr = true) {
    const bool allowzero = allowzero_attr && attr_int(i, "allowzero", 0) != 0;
    int64_t known = 1, infer = -1;
    const int64_t total = shape_numel(in);
    for (size_t d = 0; d < to.size(); ++d) {
      if (to[d] == 0 && !allowzero) {
        if (d >= in.size()) node_error(ErrorCode::kInvalidArgument, i, "shape has a 0 beyond the input's rank");
        to[d] = in[d];
      }
      if (sym_coef(to[d]) || batch_coef(static_cast<double>(to[d])))
        node_error(ErrorCode::kUnimplemented, i,
                   "it reshapes a tensor that does not depend on the input to the batch size (a per-example "
                   "constant, e.g. a key_padding_mask); Basin's data is the one graph input");
      if (to[d] == -1) {
        if (infer >= 0) node_error(ErrorCode::kInvalidArgument, i, "shape has two -1 entries");
        infer = static_cast<int64_t>(d);
      } else if (to[d] <= 0) {
        node_error(ErrorCode::kInvalidArgument, i, "shape has a dimension " + std::to_string(to[d]));
      } else {
        if (static_cast<double>(known) * static_cast<double>(to[d]) > static_cast<double>(total))
          node_error(ErrorCode::kInvalidArgument, i, "cannot reshape " + dims_string(in) + " to " + dims_string(to));
        known *= to[d];
      }
    }
    if (infer >= 0) {
      if (known == 0 || total % known != 0)
        node_error(ErrorCode::kInvalidArgument, i, "cannot reshape " + dims_string(in) + " to " + dims_string(to));
      to[infer] = total / known;
    }
    if (shape_numel(to) != total)
      node_error(ErrorCode::kInvalidArgument, i, "cannot reshape " + dims_string(in) + " to " + dims_string(to));
    return to;
  }

  // Slice's output shape of `dims` (and, when asked, each axis's start and step).
  Shape slice_shape(int i, const Shape& dims, std::vector<int64_t>* start_out, std::vector<int64_t>* step_out = nullptr,
                    int64_t batch_q = -1) {
    const bool is_batched = batch_q >= 0;
    const std::vector<int64_t> starts = host_ints(i, 1, "starts"), ends = host_ints(i, 2, "ends");
    if (starts.size() != ends.size()) node_error(ErrorCode::kInvalidArgument, i, "starts and ends differ in length");
    std::vector<int64_t> axes, steps;
    if (has_input(i, 3)) axes = host_ints(i, 3, "axes");
    else for (size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<int64_t>(k));
    if (has_input(i, 4)) steps = host_ints(i, 4, "steps");
    else steps.assign(starts.size(), 1);
    if (axes.size() != starts.size() || steps.size() != starts.size())
      node_error(ErrorCode::kInvalidArgument, i, "starts, ends, axes and steps differ in length");
    const int64_t r = static_cast<int64_t>(dims.size());
    Shape out = dims;
    for (size_t k = 0; k < axes.size(); ++k) {
      const int64_t a = norm_axis(i, axes[k], r);
      if (steps[k] == 0) node_error(ErrorCode::kInvalidArgument, i, "a step of 0");
      if (steps[k] < 0) {
        // Negative steps: only in folded shape arithmetic (torch reverses pads that way).
        if (start_out == nullptr || step_out == nullptr || is_batched)
          node_error(ErrorCode::kUnimplemented, i, "only positive steps are supported on tensors");
        const int64_t D = dims[a];
        int64_t st = starts[k] < 0 ? starts[k] + D : starts[k];
        int64_t en = ends[k] < 0 ? ends[k] + D : ends[k];
        st = std::clamp<int64_t>(st, 0, D - 1);
        en = std::clamp<int64_t>(en, -1, D - 1);
        out[a] = st > en ? (st - en + (-steps[k]) - 1) / (-steps[k]) : 0;
        if (out[a] == 0) node_error(ErrorCode::kInvalidArgument, i, "the slice along axis " + std::to_string(a) + " is empty");
        (*start_out)[a] = st;
        (*step_out)[a] = steps[k];
        continue;
      }
      if (is_batched && a == batch_q) {
        if (starts[k] != 0 || ends[k] < (int64_t{1} << 31))
          mixing(i, "it slices along axis " + std::to_string(a) + ", which holds the batch");
        continue;
      }
      const int64_t D = dims[a];
      int64_t s = starts[k] < 0 ? starts[k] + D : starts[k];
      int64_t e = ends[k] < 0 ? ends[k] + D : ends[k];
      s = std::clamp<int64_t>(s, 0, D);
      e = std::clamp<int64_t>(e, 0, D);
      out[a] = e > s ? (e - s + steps[k] - 1) / steps[k] : 0;
      if (out[a] == 0) node_error(ErrorCode::kInvalidArgument, i, "the slice along axis " + std::to_string(a) + " is empty");
      if (start_out) (*start_out)[a] = s;
      if (step_out) (*step_out)[a] = steps[k];
    }
    return out;
  }

  // ---- layers ----

  void gemm(int i) {
    if (!has_input(i, 1)) node_error(ErrorCode::kInvalidArgument, i, "Gemm needs inputs A and B");
    const int64_t trans_a = attr_int(i, "transA", 0), trans_b = attr_int(i, "transB", 0);
    if ((trans_a != 0 && trans_a != 1) || (trans_b != 0 && trans_b != 1))
      node_error(ErrorCode::kInvalidArgument, i, "transA and transB must be 0 or 1");
    const double alpha = attr_float(i, "alpha", 1.0), beta = attr_float(i, "beta", 1.0);
    const Val av = val(i, 0);
    const int a = data(i);
    const bool a_batched = result_.graph.value(a).batched;
    // A [rows, features] whose rows hold the batch (also merged with other axes: [T·n, D]).
    if (a_batched && (full_rank(av) != 2 || batch_axis(av) != 0))
      node_error(ErrorCode::kInvalidArgument, i, "input A is " + onnx_shape_string(av) +
                                                     "; Gemm takes a matrix [batch, features] (flatten it first)");
    if (a_batched && trans_a) mixing(i, "transA=1 transposes the batch axis");
    if (batched_in(i, 1)) node_error(ErrorCode::kUnimplemented, i, "input B depends on the input; only A may");
    const Val& bv = val(i, 1);
    const Shape bs = full_shape(bv);
    if (bs.size() != 2) node_error(ErrorCode::kInvalidArgument, i, "B has shape " + dims_string(bs) + ", expected rank 2");
    const int64_t N = trans_b ? bs[0] : bs[1];
    int w;
    bool alpha_pending = false;
    if (bv.id < 0 && alpha != 1) {
      std::vector<double> s = bv.host->values;
      for (double& v : s) v *= alpha;
      w = b_.constant(g_.node(i).input(1) + ":alpha", bs, std::move(s));
    } else {
      w = gid(i, 1);
      alpha_pending = alpha != 1;
    }
    const bool has_c = has_input(i, 2) && beta != 0;
    int bias = -1;
    if (has_c && !alpha_pending) {
      const Val& cv = val(i, 2);
      const Shape cs = full_shape(cv);
      const bool per_output = shape_numel(cs) == N && (cs == Shape{N} || cs == Shape{1, N});
      if (cv.id < 0 && per_output) {
        std::vector<double> s = cv.host->values;
        for (double& v : s) v *= beta;
        bias = b_.constant(g_.node(i).input(2) + (beta != 1 ? ":beta" : ""), {N}, std::move(s));
      } else if (cv.id >= 0 && beta == 1 && cs == Shape{N} && !batched(cv)) {
        bias = cv.id;
      }
    }
    const bool add_c = has_c && bias < 0;
    const std::string name = gname(i);
    Attributes at;
    at["trans_a"] = attr_of(trans_a);
    at["trans_b"] = attr_of(trans_b);
    std::vector<int> in = {a, w};
    if (bias >= 0) in.push_back(bias);
    int y = b_.node("matmul", in, at, alpha_pending || add_c ? name + ":matmul" : name);
    if (alpha_pending) y = b_.mul(y, b_.scalar(name + ":alpha", alpha), add_c ? name + ":alpha" : name);
    if (add_c) {
      int c;
      const Val& cv = val(i, 2);
      if (cv.id < 0) {
        std::vector<double> s = cv.host->values;
        for (double& v : s) v *= beta;
        c = b_.constant(g_.node(i).input(2) + ":beta", cv.host->dims, std::move(s));
      } else {
        c = gid(i, 2);
        if (beta != 1) c = b_.mul(c, b_.scalar(name + ":beta", beta), name + ":beta");
      }
      y = add_checked(i, y, c, name, av.lay);
    }
    set_out(i, y);
  }

  // a + b under the broadcast rules (refusing what would mix examples); a batched operand's
  // ONNX layout is `lay`.
  int add_checked(int i, int a, int b, const std::string& name, const BatchLayout& lay = {}) {
    Val va, vb;
    va.id = a, vb.id = b;
    va.lay = vb.lay = lay;
    const auto [x, y] = aligned(i, va, vb, name);
    return b_.add(x, y, name);
  }

  // Two operands of an element-wise op as graph values that broadcast per example: both batched
  // hold the batch the same way (equal ranks, the batch at the same ONNX axis with the same
  // merged axes); an operand without the batch is reshaped to the graph axes it faces, and may
  // not reach past, or be non-1 at, the batch's axis.
  std::pair<int, int> aligned(int i, const Val& va, const Val& vb, const std::string& name) {
    const int a = va.id, b = vb.id;
    const GraphValue& ga = result_.graph.value(a);
    const GraphValue& gb = result_.graph.value(b);
    if (ga.batched && gb.batched) {
      const bool same = va.lay.standard() && vb.lay.standard()
                            ? ga.shape.size() == gb.shape.size()
                            : va.lay == vb.lay && ga.shape.size() == gb.shape.size() &&
                                  onnx_import_detail::batch_factor(ga.shape, va.lay) ==
                                      onnx_import_detail::batch_factor(gb.shape, vb.lay) &&
                                  std::equal(ga.shape.begin() + (va.lay.pos - va.lay.outer),
                                             ga.shape.begin() + (va.lay.pos + va.lay.inner),
                                             gb.shape.begin() + (va.lay.pos - va.lay.outer));
      if (!same)
        mixing(i, "its operands " + onnx_shape_string(va) + " and " + onnx_shape_string(vb) +
                      " hold the batch differently, so broadcasting would align the batch axis with another");
      return {a, b};
    }
    if (!ga.batched && !gb.batched) return {a, b};
    const Val& sv = ga.batched ? va : vb;
    const int u = ga.batched ? b : a;
    const GraphValue& s = result_.graph.value(sv.id);
    const Shape& us = gshape(u);
    int uu = u;
    if (sv.lay.standard()) {
      const size_t full = s.shape.size() + 1;
      if (us.size() > full)
        mixing(i, "operand " + shape_string(us) + " has more axes than [batch] + " + shape_string(s.shape));
      if (us.size() == full && us[0] != 1)
        mixing(i, "operand " + shape_string(us) + " has " + std::to_string(us[0]) + " entries along the batch axis");
    } else {
      const int64_t after = full_rank(sv) - 1 - batch_axis(sv);  // ONNX axes after the batch's
      if (static_cast<int64_t>(us.size()) > after) {
        std::string why;
        const auto sh = onnx_import_detail::broadcast_operand(us, s.shape, sv.lay, &why);
        if (!sh) mixing(i, "operand " + shape_string(us) + ": " + why);
        uu = b_.reshaped(u, *sh, name + ":operand");
      }
    }
    return ga.batched ? std::make_pair(a, uu) : std::make_pair(uu, b);
  }

  // A constant without the leading axis that faces the batch axis (dropped when it is 1).
  int drop_batch_facing(int i, int v, size_t batched_full_rank, const std::string& name) {
    const Shape& s = gshape(v);
    if (result_.graph.value(v).batched || s.size() != batched_full_rank) return v;
    if (s[0] != 1) mixing(i, "operand " + shape_string(s) + " has " + std::to_string(s[0]) + " entries along the batch axis");
    return b_.reshaped(v, Shape(s.begin() + 1, s.end()), name);
  }

  // MatMul when an operand holds the batch elsewhere than axis 0 (attention as torch's
  // MultiheadAttention exports it): A·W with the batch in A's rows or broadcast axes ([T, n, D]·W,
  // [T·n, D]·W), or two activations holding the batch the same way among their broadcast axes
  // ([n·h, T, d]·[n·h, d, T]). The per-example graph matmul broadcasts the same way.
  void matmul_moved_batch(int i, const Val& av, const Val& bv) {
    const int a = av.id, b = bv.id;
    const bool ab = batched(av), bb = batched(bv);
    const int64_t ra = full_rank(av), rb = full_rank(bv);
    const std::string name = gname(i);
    if (ab && bb) {
      if (ra != rb || batch_axis(av) != batch_axis(bv) || batch_axis(av) > ra - 3)
        mixing(i, "both operands carry the batch but " + onnx_shape_string(av) + " · " + onnx_shape_string(bv) +
                      " would contract or broadcast over it (it must be the same broadcast axis of both)");
      aligned(i, av, bv, name);  // the same merged axes
      return set_out(i, b_.node("matmul", {a, b}, {}, name), av.lay);
    }
    if (!ab)
      mixing(i, "B " + onnx_shape_string(bv) + " holds the batch elsewhere than axis 0; only A·B with the batch in A "
                "or in both is supported");
    if (batch_axis(av) == ra - 1) mixing(i, "the product contracts over A's axis holding the batch " + onnx_shape_string(av));
    if (rb > 2) mixing(i, "B " + shape_string(full_shape(bv)) + " has batch axes beside A " + onnx_shape_string(av));
    const bool b_transposed = transposed_.count(g_.node(i).input(1)) > 0;
    Attributes at;
    if (b_transposed) at["trans_b"] = attr_of(int64_t{1});
    set_out(i, b_.node("matmul", {a, b}, at, name), av.lay);
  }

  void matmul(int i) {
    int a = data(i), b = gid(i, 1);
    const GraphValue& va = result_.graph.value(a);
    const GraphValue& vb = result_.graph.value(b);
    const std::string name = gname(i);
    if ((va.batched && !val(i, 0).lay.standard()) || (vb.batched && !val(i, 1).lay.standard()))
      return matmul_moved_batch(i, val(i, 0), val(i, 1));
    const size_t ra = va.shape.size() + (va.batched ? 1 : 0), rb = vb.shape.size() + (vb.batched ? 1 : 0);
    if (va.batched && vb.batched) {
      if (ra < 3 || rb < 3 || ra != rb)
        mixing(i, "both operands carry the batch axis but [batch] + " + shape_string(va.shape) + " · [batch] + " +
                      shape_string(vb.shape) + " would contract or broadcast over it");
    } else if (va.batched) {
      if (ra == 2 && rb != 2 && rb != 1) mixing(i, "B " + shape_string(vb.shape) + " has batch axes that would move the batch axis");
      if (ra >= 3 && rb > ra) mixing(i, "B " + shape_string(vb.shape) + " has more axes than A");
      if (ra >= 3 && rb == ra) b = drop_batch_facing(i, b, ra, name + ":b");
    } else if (vb.batched) {
      if (rb <= 2) mixing(i, "the product contracts over the batch axis of B");
      if (ra > rb) mixing(i, "A " + shape_string(va.shape) + " has more axes than B");
      if (ra == rb) a = drop_batch_facing(i, a, rb, name + ":a");
    }
    // A weight stored transposed in θ (transposed_): the product reads it with trans_b = 1.
    const bool b_transposed = transposed_.count(g_.node(i).input(1)) > 0;
    // MatMul followed by the Add of a per-output bias: one matmul node with the bias input.
    int bias = -1;
    const std::string& out = g_.node(i).output(0);
    const std::vector<int>& next = consumers(out);
    if (out != output_ && next.size() == 1 && g_.node(next[0]).op_type() == "Add" && g_.node(next[0]).input_size() == 2 &&
        va.batched && !vb.batched && vb.shape.size() == 2 && va.shape.size() == 1 && live_[next[0]]) {
      const int add = next[0];
      const onnx::NodeProto& an = g_.node(add);
      const int other = an.input(0) == out ? 1 : 0;
      if (an.input(1 - other) == out && an.input(other) != out) {
        auto it = vals_.find(an.input(other));
        const bool known = it != vals_.end() || inits_.count(an.input(other));
        if (known) {
          Val& cv = val(add, other);
          if (!batched(cv) && full_shape(cv) == Shape{vb.shape[b_transposed ? 0 : 1]}) {
            bias = gid(add, other);
            absorbed_[static_cast<size_t>(add)] = 1;
            fused_[out] = an.output(0);
          }
        }
      }
    }
    std::vector<int> in = {a, b};
    if (bias >= 0) in.push_back(bias);
    Attributes at;
    if (b_transposed) at["trans_b"] = attr_of(int64_t{1});
    const int y = b_.node("matmul", in, at, name);
    set_out(i, y);
    if (auto f = fused_.find(out); f != fused_.end()) vals_[f->second].id = y;
  }

  // Conv / pool spatial attributes: pads from auto_pad.
  std::vector<int64_t> spatial_pads(int i, const Shape& x, const std::vector<int64_t>& kernel,
                                    const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations) {
    const size_t sr = kernel.size();
    const std::string auto_pad = attr_string(i, "auto_pad", "NOTSET");
    if (auto_pad == "NOTSET") {
      std::vector<int64_t> pads = attr_ints(i, "pads", std::vector<int64_t>(2 * sr, 0));
      if (pads.size() != 2 * sr)
        node_error(ErrorCode::kInvalidArgument, i, "pads has " + std::to_string(pads.size()) + " entries, expected " +
                                                       std::to_string(2 * sr));
      return pads;
    }
    if (auto_pad == "VALID") return std::vector<int64_t>(2 * sr, 0);
    if (auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER")
      node_error(ErrorCode::kInvalidArgument, i, "unknown auto_pad=" + quoted(auto_pad) +
                                                     " (expected NOTSET, VALID, SAME_UPPER or SAME_LOWER)");
    std::vector<int64_t> pads(2 * sr, 0);
    for (size_t d = 0; d < sr; ++d) {
      const int64_t in = x[x.size() - sr + d];
      const int64_t out = (in + strides[d] - 1) / strides[d];
      const int64_t total = std::max<int64_t>(0, (out - 1) * strides[d] + (kernel[d] - 1) * dilations[d] + 1 - in);
      const int64_t small = total / 2, big = total - small;
      pads[d] = auto_pad == "SAME_UPPER" ? small : big;
      pads[d + sr] = auto_pad == "SAME_UPPER" ? big : small;
    }
    return pads;
  }

  void conv(int i) {
    require_standard(i, val(i, 0));
    const int x = data(i);
    if (!has_input(i, 1)) node_error(ErrorCode::kInvalidArgument, i, "Conv needs inputs X and W");
    if (batched_in(i, 1)) node_error(ErrorCode::kUnimplemented, i, "the weight depends on the input; only X may");
    const int w = gid(i, 1);
    const Shape& ws = gshape(w);
    if (ws.size() < 3) node_error(ErrorCode::kInvalidArgument, i, "W has shape " + shape_string(ws) + ", expected [M, C/group, k...]");
    const size_t sr = ws.size() - 2;
    const std::vector<int64_t> kernel(ws.begin() + 2, ws.end());
    const std::vector<int64_t> ks = attr_ints(i, "kernel_shape", kernel);
    if (ks != kernel)
      node_error(ErrorCode::kInvalidArgument, i, "kernel_shape " + dims_string(ks) + " does not match W " + shape_string(ws));
    const std::vector<int64_t> strides = attr_ints(i, "strides", std::vector<int64_t>(sr, 1));
    const std::vector<int64_t> dilations = attr_ints(i, "dilations", std::vector<int64_t>(sr, 1));
    if (strides.size() != sr || dilations.size() != sr)
      node_error(ErrorCode::kInvalidArgument, i, "strides and dilations need " + std::to_string(sr) + " entries");
    const std::vector<int64_t> pads = spatial_pads(i, gshape(x), kernel, strides, dilations);
    const int b = has_input(i, 2) ? gid(i, 2) : -1;
    set_out(i, b_.conv(x, w, b, strides, pads, dilations, attr_int(i, "group", 1), gname(i)));
  }

  void pool(int i) {
    const onnx::NodeProto& n = g_.node(i);
    const bool is_max = n.op_type() == "MaxPool";
    require_standard(i, val(i, 0));
    only_first_output(i, ErrorCode::kUnimplemented, "MaxPool's Indices output is not supported");
    const int x = data(i);
    const std::vector<int64_t> kernel = attr_ints(i, "kernel_shape", {});
    if (kernel.empty()) node_error(ErrorCode::kInvalidArgument, i, "kernel_shape is required");
    const size_t sr = kernel.size();
    const std::vector<int64_t> strides = attr_ints(i, "strides", std::vector<int64_t>(sr, 1));
    const std::vector<int64_t> dilations = attr_ints(i, "dilations", std::vector<int64_t>(sr, 1));
    if (strides.size() != sr || dilations.size() != sr)
      node_error(ErrorCode::kInvalidArgument, i, "strides and dilations need " + std::to_string(sr) + " entries");
    if (gshape(x).size() < sr + 1)
      node_error(ErrorCode::kInvalidArgument, i, "input [batch] + " + shape_string(gshape(x)) + " has fewer than " +
                                                     std::to_string(sr) + " spatial axes");
    Attributes a;
    a["kernel_shape"] = attr_of(kernel);
    a["strides"] = attr_of(strides);
    a["pads"] = attr_of(spatial_pads(i, gshape(x), kernel, strides, dilations));
    const int64_t ceil_mode = attr_int(i, "ceil_mode", 0);
    if (ceil_mode != 0 && ceil_mode != 1) node_error(ErrorCode::kInvalidArgument, i, "ceil_mode must be 0 or 1");
    a["ceil_mode"] = attr_of(ceil_mode);
    if (is_max) {
      if (attr_int(i, "storage_order", 0) != 0) node_error(ErrorCode::kUnimplemented, i, "storage_order=1 is not supported");
      a["dilations"] = attr_of(dilations);
      return set_out(i, b_.node("max_pool", {x}, a, gname(i)));
    }
    for (int64_t d : dilations)
      if (d != 1) node_error(ErrorCode::kUnimplemented, i, "AveragePool with dilations is not supported");
    const int64_t cip = attr_int(i, "count_include_pad", 0);
    if (cip != 0 && cip != 1) node_error(ErrorCode::kInvalidArgument, i, "count_include_pad must be 0 or 1");
    a["count_include_pad"] = attr_of(cip);
    set_out(i, b_.node("avg_pool", {x}, a, gname(i)));
  }

  // BatchNormalization's running statistics: constants, whatever the file makes of them (an
  // exporter may write them as an Identity of an identical parameter initialiser).
  int statistic(int i, int k, const char* role) {
    std::string name = g_.node(i).input(k);
    for (int step = 0; step < 8 && !inits_.count(name); ++step) {
      auto p = producer_.find(name);
      if (p == producer_.end() || g_.node(p->second).op_type() != "Identity") break;
      name = g_.node(p->second).input(0);
    }
    if (inits_.count(name) || (producer_.count(name) && g_.node(producer_[name]).op_type() == "Constant")) {
      const HostPtr h = raw_constant(name);
      for (double v : h->values)
        if (!std::isfinite(v)) node_error(ErrorCode::kInvalidArgument, i, std::string(role) + " contains NaN or Inf");
      return b_.constant(g_.node(i).input(k), h->dims, h->values);
    }
    return gid(i, k);
  }

  void batch_norm(int i) {
    const int64_t training = attr_int(i, "training_mode", 0);
    if (training != 0)
      node_error(ErrorCode::kInvalidArgument, i,
                 "training_mode=" + std::to_string(training) +
                     ": only inference-mode BatchNormalization (running statistics) is supported; export the model "
                     "in eval mode");
    only_first_output(i, ErrorCode::kInvalidArgument,
                      "the running-statistics outputs exist only in training mode (export in eval mode)");
    for (int k = 1; k <= 4; ++k)
      if (!has_input(i, k)) node_error(ErrorCode::kInvalidArgument, i, "BatchNormalization needs 5 inputs");
    require_standard(i, val(i, 0));
    const int x = data(i);
    if (!result_.graph.value(x).batched) node_error(ErrorCode::kUnimplemented, i, "its input does not depend on the data");
    const int mean = statistic(i, 3, "mean"), var = statistic(i, 4, "var");
    set_out(i, b_.batch_norm_inference(x, gid(i, 1), gid(i, 2), mean, var, attr_float(i, "epsilon", 1e-5), gname(i)));
  }

  // γ / β inputs: -1 when absent, or a constant equal to 1 (γ) / 0 (β) everywhere.
  int affine(int i, int k, double neutral) {
    if (!has_input(i, k)) return -1;
    const Val& v = val(i, k);
    if (v.id < 0 && std::all_of(v.host->values.begin(), v.host->values.end(), [&](double x) { return x == neutral; }))
      return -1;
    return gid(i, k);
  }

  void layer_norm(int i) {
    only_first_output(i, ErrorCode::kUnimplemented, "LayerNormalization's Mean and InvStdDev outputs are not supported");
    const Val& xv = val(i, 0);
    const int64_t axis = graph_axis(i, xv, attr_int(i, "axis", -1));
    if (batched(xv) && batch_axis(xv) > norm_axis(i, attr_int(i, "axis", -1), full_rank(xv)))
      mixing(i, "it normalises over the axes from " + std::to_string(attr_int(i, "axis", -1)) + " of " +
                    onnx_shape_string(xv) + ", the batch's among them");
    const int x = data(i);
    set_out(i, b_.layer_norm(x, axis, attr_float(i, "epsilon", 1e-5), affine(i, 1, 1.0), affine(i, 2, 0.0), gname(i)));
  }

  void group_norm(int i) {
    require_standard(i, val(i, 0));
    const int x = data(i);
    if (!result_.graph.value(x).batched) node_error(ErrorCode::kUnimplemented, i, "its input does not depend on the data");
    const double eps = attr_float(i, "epsilon", 1e-5);
    if (g_.node(i).op_type() == "InstanceNormalization")
      return set_out(i, b_.instance_norm(x, eps, affine(i, 1, 1.0), affine(i, 2, 0.0), gname(i)));
    const int64_t groups = attr_int(i, "num_groups", 0);
    if (groups <= 0) node_error(ErrorCode::kInvalidArgument, i, "num_groups must be a positive int");
    set_out(i, b_.group_norm(x, groups, eps, affine(i, 1, 1.0), affine(i, 2, 0.0), gname(i)));
  }

  void binary(int i) {
    const std::string& op = g_.node(i).op_type();
    if (!has_input(i, 1) || g_.node(i).input_size() != 2) node_error(ErrorCode::kInvalidArgument, i, op + " takes 2 inputs");
    gid(i, 0);
    const bool b_host = is_host(i, 1);
    gid(i, 1);
    const std::string name = gname(i);
    const auto [a, b] = aligned(i, val(i, 0), val(i, 1), name);
    if (op == "Add") return set_out(i, b_.add(a, b, name));
    if (op == "Sub") return set_out(i, b_.sub(a, b, name));
    if (op == "Mul") return set_out(i, b_.mul(a, b, name));
    (void)b_host;
    set_out(i, b_.div(a, b, name));
  }

  void pow(int i) {
    const Host& e = host(i, 1, "exponent");
    if (e.values.size() != 1) node_error(ErrorCode::kUnimplemented, i, "only a scalar constant exponent is supported");
    set_out(i, b_.pow_constant(data(i), e.values[0], gname(i)));
  }

  void concat(int i) {
    const onnx::NodeProto& n = g_.node(i);
    std::vector<int> ins;
    int first_batched = -1;
    for (int k = 0; k < n.input_size(); ++k)
      if (has_input(i, k) && batched_in(i, k) && first_batched < 0) first_batched = k;
    const std::string name = gname(i);
    for (int k = 0; k < n.input_size(); ++k) {
      if (!has_input(i, k)) continue;
      int v = gid(i, k);
      if (first_batched >= 0 && k != first_batched) {
        const Val& bv = val(i, first_batched);
        if (bv.lay.standard() && !batched_in(i, k)) {
          v = drop_batch_facing(i, v, gshape(bv.id).size() + 1, name + ":" + std::to_string(k));
        } else {
          v = aligned(i, bv, val(i, k), name + ":" + std::to_string(k)).second;
        }
      }
      ins.push_back(v);
    }
    if (ins.empty()) node_error(ErrorCode::kInvalidArgument, i, "Concat has no inputs");
    int64_t axis = 0;
    for (int k = 0; k < n.input_size(); ++k)
      if (has_input(i, k)) {
        axis = graph_axis(i, first_batched >= 0 ? val(i, first_batched) : val(i, k), attr_int(i, "axis", 0));
        break;
      }
    if (ins.size() == 1) return set_out(i, ins[0]);
    Attributes a;
    a["axis"] = attr_of(axis);
    set_out(i, b_.node("concat", ins, a, name));
  }

  void flatten(int i) {
    const Val& xv = val(i, 0);
    const int64_t r = full_rank(xv);
    int64_t axis = attr_int(i, "axis", 1);
    if (axis < -r || axis > r) node_error(ErrorCode::kInvalidArgument, i, "axis " + std::to_string(axis) + " is out of range");
    if (axis < 0) axis += r;
    const int x = data(i);
    if (!batched(xv)) {
      const Shape& s = gshape(x);
      int64_t p = 1;
      for (int64_t d = 0; d < axis; ++d) p *= s[d];
      return set_out(i, b_.reshape(x, {p, shape_numel(s) / p}, gname(i)));
    }
    if (axis == 0) mixing(i, "Flatten(axis=0) merges the batch axis into the features");
    if (xv.lay.standard() && axis == 1) return set_out(i, b_.flatten(x, gname(i)), BatchLayout{});
    // [d0·…·d(axis−1), d(axis)·…]: the batch merges with the axes on its side (torch's flatten(0, -2)).
    const Shape full = full_shape(xv);
    int64_t parts[2] = {1, 1}, coef[2] = {0, 0};
    for (int64_t d = 0; d < r; ++d) {
      const int side = d < axis ? 0 : 1;
      if (const int64_t c = batch_coef(static_cast<double>(full[d])); c > 0) coef[side] = c;
      else parts[side] *= full[d];
    }
    std::vector<int64_t> to;
    for (int side = 0; side < 2; ++side) to.push_back(coef[side] ? kSymInt + coef[side] * parts[side] : parts[side]);
    reshape_batched(i, xv, to, true);
  }

  void reshape(int i) {
    const Val& xv = val(i, 0);
    if (batched(xv)) return reshape_batched(i, xv, host_ints(i, 1, "shape"), attr_int(i, "allowzero", 0) != 0);
    const Shape out = resolve_reshape(i, full_shape(xv), host_ints(i, 1, "shape"));
    set_out(i, b_.reshape(data(i), out, gname(i)));
  }

  static std::string target_string(const std::vector<int64_t>& to) {
    std::string s = "[";
    for (size_t d = 0; d < to.size(); ++d) {
      if (d) s += ", ";
      const int64_t c = sym_coef(to[d]);
      s += c == 0 ? std::to_string(to[d]) : c == 1 ? std::string("n") : "n·" + std::to_string(c);
    }
    return s + "]";
  }

  // A batched value reshaped to the ONNX target `to` (0 copies unless allowzero, one -1 is
  // inferred, n·c entries from folded shape arithmetic): the per-example reshape and the layout
  // after it (batch_layout.hpp), refused when the target would put entries of different examples
  // together. A file exported with a fixed batch size writes it as a number: the axis it names is
  // found as the only one that fits (preferring the input's batch axis).
  void reshape_batched(int i, const Val& xv, const std::vector<int64_t>& to_in, bool allowzero) {
    using onnx_import_detail::TargetDim;
    const Shape in = full_shape(xv);
    const Shape& g = gshape(xv.id);
    const int64_t per = shape_numel(g);
    std::vector<int64_t> to = to_in;
    std::vector<TargetDim> t;
    int64_t infer = -1, known = 1, nsym = 0;
    // The known product, never past the input's entries (a fixed batch included): no overflow.
    const double most = static_cast<double>(per) * static_cast<double>(std::max<int64_t>(static_batch_, 1));
    auto times = [&](int64_t v) {
      if (static_cast<double>(known) * static_cast<double>(v) > most)
        node_error(ErrorCode::kInvalidArgument, i, "cannot reshape " + onnx_shape_string(xv) + " to " +
                                                       target_string(to_in) + ": more entries than the input");
      known *= v;
    };
    for (size_t d = 0; d < to.size(); ++d) {
      if (to[d] == 0 && !allowzero) {
        if (d >= in.size()) node_error(ErrorCode::kInvalidArgument, i, "shape has a 0 beyond the input's rank");
        const int64_t c = batch_coef(static_cast<double>(in[d]));
        to[d] = c > 0 ? kSymInt + c : in[d];
      }
      if (const int64_t c = sym_coef(to[d]); c > 0) {
        t.push_back({1, c});
        times(c);
        ++nsym;
      } else if (to[d] == -1) {
        if (infer >= 0) node_error(ErrorCode::kInvalidArgument, i, "shape has two -1 entries");
        infer = static_cast<int64_t>(d);
        t.push_back({1, 0});
      } else if (to[d] <= 0) {
        node_error(ErrorCode::kInvalidArgument, i, "shape has a dimension " + std::to_string(to[d]));
      } else {
        t.push_back({to[d], 0});
        times(to[d]);
      }
    }
    const std::string what = "cannot reshape " + onnx_shape_string(xv) + " to " + target_string(to_in);
    if (nsym > 1) mixing(i, what + ": two of its axes hold the batch");
    std::optional<std::pair<Shape, BatchLayout>> out;
    std::string why;
    if (nsym == 1) {
      if (infer >= 0) {
        if (known <= 0 || per % known != 0)
          mixing(i, what + ": the inferred axis is not a whole number of each example's entries");
        t[static_cast<size_t>(infer)].size = per / known;
      } else if (known != per) {
        node_error(ErrorCode::kInvalidArgument, i, what + ": the sizes differ");
      }
      out = onnx_import_detail::reshape_layout(g, xv.lay, t, &why);
      if (!out) mixing(i, what + ": " + why);
      return set_out(i, b_.reshape(data(i), out->first, gname(i)), out->second);
    }
    // No symbol: the -1 holds the batch, or (a file exported with a fixed batch size) a number
    // does. Candidates in order of preference: the input's own batch axis, the -1, the others.
    std::vector<std::vector<TargetDim>> cands;
    auto with_batch_at = [&](size_t d) {
      std::vector<TargetDim> c = t;
      if (static_cast<int64_t>(d) == infer) {
        if (per % known != 0) return;
        c[d] = {1, per / known};
      } else {
        if (static_batch_ <= 0 || c[d].size % static_batch_ != 0) return;
        c[d] = {1, c[d].size / static_batch_};
        const int64_t rest = known / static_batch_;  // the known entries per example
        if (infer >= 0) {
          if (per % rest != 0) return;
          c[static_cast<size_t>(infer)].size = per / rest;
        } else if (rest != per) {
          return;
        }
      }
      cands.push_back(std::move(c));
    };
    const size_t q = static_cast<size_t>(batch_axis(xv));
    if (q < t.size()) with_batch_at(q);
    if (infer >= 0 && static_cast<size_t>(infer) != q) with_batch_at(static_cast<size_t>(infer));
    for (size_t d = 0; d < t.size(); ++d)
      if (d != q && static_cast<int64_t>(d) != infer) with_batch_at(d);
    int found = 0;
    for (const auto& c : cands) {
      auto r = onnx_import_detail::reshape_layout(g, xv.lay, c, &why);
      if (r && found++ == 0) out = r;
    }
    if (found == 0)
      mixing(i, what + (static_batch_ > 0 ? ": no axis of it can hold the batch of " + std::to_string(static_batch_) +
                                                " examples"
                                          : ": its size is not the batch size times an example's " +
                                                std::to_string(per) + " entries"));
    // A fixed batch of 1 says nothing about where the batch goes once it has moved.
    if (found > 1 && static_batch_ == 1 && !xv.lay.standard())
      mixing(i, what + ": the file was exported with a fixed batch of 1, so its shapes do not say which axis holds "
                       "the batch; export with a symbolic batch axis (dynamic_axes={input: {0: 'n'}})");
    set_out(i, b_.reshape(data(i), out->first, gname(i)), out->second);
  }

  void transpose(int i) {
    const Val& xv = val(i, 0);
    const int64_t r = full_rank(xv);
    std::vector<int64_t> perm = attr_ints(i, "perm", {});
    if (perm.empty())
      for (int64_t d = r - 1; d >= 0; --d) perm.push_back(d);
    if (static_cast<int64_t>(perm.size()) != r)
      node_error(ErrorCode::kInvalidArgument, i, "perm has " + std::to_string(perm.size()) + " entries for rank " + std::to_string(r));
    std::vector<char> seen(static_cast<size_t>(r), 0);
    for (int64_t& p : perm) {
      p = norm_axis(i, p, r);
      if (seen[p]++) node_error(ErrorCode::kInvalidArgument, i, "perm repeats axis " + std::to_string(p));
    }
    if (batched(xv)) {
      // The batch axis may move (torch's MultiheadAttention: [n, T, D] → [T, n, D]); the graph
      // permutes the per-example axes and the layout records where the batch went.
      const auto p = onnx_import_detail::permute_layout(gshape(xv.id), xv.lay, perm);
      return set_out(i, b_.transpose(data(i), p.graph_perm, gname(i)), p.layout);
    }
    set_out(i, b_.transpose(data(i), perm, gname(i)));
  }

  void squeeze(int i) {
    const Val& xv = val(i, 0);
    const bool unsq = g_.node(i).op_type() == "Unsqueeze";
    Shape s = full_shape(xv);
    if (batched(xv)) {
      // The batch's own axis is never removed; axes are inserted or removed around it.
      const std::vector<int64_t> axes = squeeze_axes(i);
      const int64_t q = batch_axis(xv);
      if (!unsq)
        for (int64_t a : axes)
          if (norm_axis(i, a, static_cast<int64_t>(s.size())) == q) mixing(i, "it removes the batch axis");
      const int64_t coef = batch_coef(static_cast<double>(s[static_cast<size_t>(q)]));
      constexpr int64_t kMark = -7;  // the batch's axis, never 1 (never squeezed implicitly)
      s[static_cast<size_t>(q)] = kMark;
      Shape out = squeezed_dims(i, s, unsq);
      std::vector<int64_t> to;
      for (int64_t d : out) to.push_back(d == kMark ? kSymInt + coef : d);
      return reshape_batched(i, xv, to, true);
    }
    set_out(i, b_.reshape(data(i), squeezed_dims(i, s, unsq), gname(i)));
  }

  void dropout(int i) {
    if (has_input(i, 2)) {
      const Host& t = host(i, 2, "training_mode");
      if (t.values.size() != 1 || t.values[0] != 0)
        node_error(ErrorCode::kUnimplemented, i, "only inference-mode Dropout (training_mode false) is supported");
    }
    only_first_output(i, ErrorCode::kUnimplemented, "Dropout's mask output is not supported (inference only)");
    Val v = val(i, 0);
    set_out(i, 0, v);
  }

  void slice(int i) {
    const Val& xv = val(i, 0);
    const bool bt = batched(xv);
    const Shape dims = full_shape(xv);
    std::vector<int64_t> start(dims.size(), 0), step(dims.size(), 1);
    Shape out = slice_shape(i, dims, &start, &step, bt ? batch_axis(xv) : -1);
    std::vector<int64_t> starts, ends, axes, steps;
    for (size_t d = 0; d < dims.size(); ++d) {
      if (bt && static_cast<int64_t>(d) == batch_axis(xv)) continue;
      if (out[d] == dims[d] && step[d] == 1) continue;
      starts.push_back(start[d]);
      ends.push_back(start[d] + (out[d] - 1) * step[d] + 1);
      axes.push_back(bt ? graph_axis(i, xv, static_cast<int64_t>(d)) : static_cast<int64_t>(d));
      steps.push_back(step[d]);
    }
    const int x = data(i);
    if (axes.empty()) return set_out(i, x);
    Attributes a;
    a["starts"] = attr_of(starts);
    a["ends"] = attr_of(ends);
    a["axes"] = attr_of(axes);
    a["steps"] = attr_of(steps);
    set_out(i, b_.node("slice", {x}, a, gname(i)));
  }

  // Gather of the data with a constant scalar index along an axis ≥ 1: a slice without that axis.
  // ---- transformers ----

  // Gather(table, tokens): an embedding lookup of the integer graph input (the gather op).
  void embedding(int i) {
    const Val& iv = val(i, 1);
    const GraphValue& idx = result_.graph.value(iv.id);
    if (idx.kind != ValueKind::kInput || !idx.integer)
      node_error(ErrorCode::kUnimplemented, i,
                 "indices computed from the input are not supported; Gather with non-constant indices is an "
                 "embedding lookup of the integer token input itself");
    if (batched_in(i, 0))
      node_error(ErrorCode::kUnimplemented, i, "the table depends on the input; only an embedding table is supported");
    if (attr_int(i, "axis", 0) != 0)
      node_error(ErrorCode::kUnimplemented, i, "an embedding lookup along axis " + std::to_string(attr_int(i, "axis", 0)) +
                                                   " is not supported (axis 0: rows of the table)");
    set_out(i, b_.node("gather", {gid(i, 0), iv.id}, {}, gname(i)));
  }

  // A graph constant of a host tensor that may hold ±inf (mask fill values).
  int mask_constant(int i, const std::string& suffix, const Shape& dims, std::vector<double> values) {
    for (double v : values)
      if (std::isnan(v)) node_error(ErrorCode::kInvalidArgument, i, "a mask value is NaN");
    return b_.constant(gname(i) + suffix, dims, std::move(values));
  }

  // Where(cond, x, y) with a constant condition: x·c + y·(1 − c), a constant branch folded into
  // one added constant (c ? x : 0 or c ? 0 : y, so a −inf fill never meets a 0).
  void where(int i) {
    if (g_.node(i).input_size() != 3) node_error(ErrorCode::kInvalidArgument, i, "Where takes 3 inputs");
    if (!is_host(i, 0))
      node_error(ErrorCode::kUnimplemented, i,
                 "the condition depends on the input or a parameter (a non-constant mask); Basin differentiates "
                 "Where only with a constant condition (causal and padding masks as buffers or constants; a mask buffer "
                 "taken for a parameter: name it with --constants)");
    const Host& c = host(i, 0, "condition");
    const bool xh = is_host(i, 1), yh = is_host(i, 2);
    Shape out;
    const Shape cx = full_shape(val(i, 1)), cy = full_shape(val(i, 2));
    Shape xy;
    if (!broadcast_shape(cx, cy, &xy) || !broadcast_shape(c.dims, xy, &out))
      node_error(ErrorCode::kInvalidArgument, i, "the shapes of condition, X and Y do not broadcast");
    std::vector<double> keep(c.values.size()), drop(c.values.size());
    for (size_t f = 0; f < c.values.size(); ++f) keep[f] = c.values[f] != 0 ? 1 : 0, drop[f] = 1 - keep[f];
    const std::string name = gname(i);
    // Adds `branch`·mask to acc (a batched branch), or the masked constant when it is a host tensor.
    // A graph operand with the layout of the batched branch.
    auto as_val = [&](int id) {
      Val v;
      v.id = id;
      for (int k = 1; k <= 2; ++k)
        if (!is_host(i, k) && batched_in(i, k)) v.lay = val(i, k).lay;
      return v;
    };
    auto term = [&](int k, const std::vector<double>& mask, const std::string& tag) -> int {
      if (!is_host(i, k)) {
        gid(i, k);
        const auto [x, m] = aligned(i, val(i, k), as_val(mask_constant(i, ":" + tag, c.dims, mask)), name + ":" + tag);
        return b_.mul(x, m, name + ":" + tag + "_mul");
      }
      const Host& h = *val(i, k).host;
      Shape dims;
      broadcast_shape(c.dims, h.dims, &dims);
      const int64_t m = shape_numel(dims);
      if (m > kMaxFoldElements) node_error(ErrorCode::kUnimplemented, i, "a mask of over 2^20 values");
      std::vector<double> v(static_cast<size_t>(m));
      for (int64_t f = 0; f < m; ++f)
        v[f] = mask[source_index(f, dims, c.dims)] != 0 ? h.values[source_index(f, dims, h.dims)] : 0.0;
      return mask_constant(i, ":" + tag, dims, std::move(v));
    };
    if (xh && yh) node_error(ErrorCode::kInternal, i, "an all-constant Where was not folded");
    const int a0 = term(1, keep, "x"), b0 = term(2, drop, "y");
    const auto [a, b] = aligned(i, as_val(a0), as_val(b0), name);
    set_out(i, b_.add(a, b, name));
  }

  // Split of an activation into slices along one axis (query/key/value of a packed projection).
  void split(int i) {
    const onnx::NodeProto& n = g_.node(i);
    const Val& xv = val(i, 0);
    const int x = data(i);
    const Shape full = full_shape(xv);
    const int64_t onnx_axis = norm_axis(i, attr_int(i, "axis", 0), static_cast<int64_t>(full.size()));
    const int64_t axis = graph_axis(i, xv, onnx_axis);
    const int64_t dim = gshape(x)[static_cast<size_t>(axis)];
    std::vector<int64_t> sizes;
    if (has_input(i, 1)) {
      sizes = host_ints(i, 1, "split");
    } else if (attr(i, "split")) {
      sizes = attr_ints(i, "split", {});
    } else {
      const int64_t parts = attr_int(i, "num_outputs", n.output_size());
      if (parts <= 0) node_error(ErrorCode::kInvalidArgument, i, "num_outputs must be positive");
      const int64_t each = (dim + parts - 1) / parts;
      for (int64_t p = 0, left = dim; p < parts; ++p, left -= each) sizes.push_back(std::min(each, left));
    }
    if (static_cast<int>(sizes.size()) != n.output_size())
      node_error(ErrorCode::kInvalidArgument, i, "split has " + std::to_string(sizes.size()) + " sizes for " +
                                                     std::to_string(n.output_size()) + " outputs");
    int64_t start = 0;
    for (size_t k = 0; k < sizes.size(); ++k) {
      if (sizes[k] < 0) node_error(ErrorCode::kInvalidArgument, i, "a split size is negative");
      Attributes a;
      a["starts"] = attr_of(std::vector<int64_t>{start});
      a["ends"] = attr_of(std::vector<int64_t>{start + sizes[k]});
      a["axes"] = attr_of(std::vector<int64_t>{axis});
      a["steps"] = attr_of(std::vector<int64_t>{1});
      Val v;
      v.id = b_.node("slice", {x}, a, gname(i) + ":" + std::to_string(k));
      v.lay = xv.lay;
      set_out(i, static_cast<int>(k), v);
      start += sizes[k];
    }
    if (start != dim)
      node_error(ErrorCode::kInvalidArgument, i, "split sizes sum to " + std::to_string(start) + ", not the axis' " +
                                                     std::to_string(dim));
  }

  void gather(int i) {
    const Val& xv = val(i, 0);
    if (!is_host(i, 1)) node_error(ErrorCode::kUnimplemented, i, "only constant indices are supported (no embeddings yet)");
    const Host& idx = host(i, 1, "indices");
    if (!idx.dims.empty() || idx.values.size() != 1)
      node_error(ErrorCode::kUnimplemented, i, "only a scalar constant index is supported");
    const int64_t axis = graph_axis(i, xv, attr_int(i, "axis", 0));
    const int x = data(i);
    const Shape s = gshape(x);
    if (!(std::fabs(idx.values[0]) < 4.6e18)) node_error(ErrorCode::kInvalidArgument, i, "index out of range");
    int64_t j = static_cast<int64_t>(idx.values[0]);
    if (j < 0) j += s[axis];
    if (j < 0 || j >= s[axis]) node_error(ErrorCode::kInvalidArgument, i, "index out of range");
    Attributes a;
    a["starts"] = attr_of(std::vector<int64_t>{j});
    a["ends"] = attr_of(std::vector<int64_t>{j + 1});
    a["axes"] = attr_of(std::vector<int64_t>{axis});
    a["steps"] = attr_of(std::vector<int64_t>{1});
    const int sl = b_.node("slice", {x}, a, gname(i) + ":slice");
    Shape out = s;
    out.erase(out.begin() + axis);
    BatchLayout lay = xv.lay;
    if (batched(xv) && axis < lay.pos - lay.outer) --lay.pos;
    set_out(i, b_.reshape(sl, out, gname(i)), lay);
  }

  void expand(int i) {
    const Val& xv = val(i, 0);
    std::vector<int64_t> to = host_ints(i, 1, "shape");
    for (int64_t d : to)
      if (!sym_coef(d) && (d < 1 || d > (int64_t{1} << 40)))
        node_error(ErrorCode::kInvalidArgument, i, "shape has a dimension " + std::to_string(d));
    const int x = data(i);
    if (!batched(xv)) {
      // Expanded to the batch size (torch's cls_token.expand(n, -1, -1)): the same tensor for every
      // example, so it stays without the batch, 1 along that axis; the ops that meet it with the
      // batch broadcast it.
      int64_t bcast = -1;
      // A file exported with a fixed batch writes n as a number: the leading axis of that size
      // that the tensor broadcasts along (size 1 or absent there) is the batch.
      const Shape& xs = gshape(x);
      const bool lead_is_one = xs.size() < to.size() || (!xs.empty() && xs[0] == 1);
      if (static_batch_ > 1 && !to.empty() && to[0] == static_batch_ && lead_is_one) to[0] = kSymInt + 1;
      for (size_t d = 0; d < to.size(); ++d) {
        const int64_t c = sym_coef(to[d]);
        if (c == 0) continue;
        if (c != 1 || bcast >= 0)
          node_error(ErrorCode::kUnimplemented, i, "expanding a constant to a multiple of the batch size is not supported");
        bcast = static_cast<int64_t>(d);
        to[d] = 1;
      }
      Shape out;
      if (!broadcast_shape(gshape(x), to, &out)) node_error(ErrorCode::kInvalidArgument, i, "shape does not broadcast");
      Attributes a;
      a["shape"] = attr_of(out);
      Val v;
      v.id = out == gshape(x) ? x : b_.node("expand", {x}, a, gname(i));
      if (bcast >= 0) v.bcast_axis = bcast + static_cast<int64_t>(out.size() - to.size());
      return set_out(i, 0, v);
    }
    const Shape full = full_shape(xv);
    if (to.size() > full.size()) mixing(i, "the target shape has more axes than the input");
    const size_t off = full.size() - to.size();
    const auto axes = onnx_import_detail::onnx_axes(gshape(x), xv.lay);
    const int64_t factor = onnx_import_detail::batch_factor(gshape(x), xv.lay);
    Shape per = gshape(x);
    for (size_t k = 0; k < to.size(); ++k) {
      const auto& ax = axes[off + k];
      const int64_t c = sym_coef(to[k]);
      if (ax.batch) {
        if (!(c == factor || to[k] == 1 || to[k] == -1 || (static_batch_ > 0 && to[k] == static_batch_ * factor)))
          mixing(i, "it expands the batch axis");
        continue;
      }
      if (c) mixing(i, "it moves the batch size to another axis");
      int64_t& d = per[static_cast<size_t>(ax.first)];
      if (to[k] != 1 && to[k] != d) {
        if (d != 1) node_error(ErrorCode::kInvalidArgument, i, "shape does not broadcast");
        d = to[k];
      }
    }
    Attributes a;
    a["shape"] = attr_of(per);
    set_out(i, per == gshape(x) ? x : b_.node("expand", {x}, a, gname(i)), xv.lay);
  }

  // Tile of a tensor without the batch, repeated only along size-1 axes: an Expand (torch's
  // bias_k.repeat(1, n, 1) of MultiheadAttention(add_bias_kv=True) repeats a parameter to the batch).
  void tile(int i) {
    if (!has_input(i, 1)) node_error(ErrorCode::kInvalidArgument, i, "Tile needs inputs input and repeats");
    const std::vector<int64_t> reps = host_ints(i, 1, "repeats");
    const Val& xv = val(i, 0);
    const Shape full = full_shape(xv);
    if (reps.size() != full.size())
      node_error(ErrorCode::kInvalidArgument, i, "repeats has " + std::to_string(reps.size()) + " entries for " +
                                                     std::to_string(full.size()) + " axes");
    for (size_t d = 0; d < reps.size(); ++d)
      if (reps[d] != 1 && (batched(xv) || full[d] != 1))
        node_error(ErrorCode::kUnimplemented, i,
                   "Tile is supported only to repeat a tensor without the batch along its size-1 axes (as an "
                   "Expand: a parameter repeated to the batch); axis " + std::to_string(d) + " of " +
                       onnx_shape_string(xv) + " is repeated " +
                       (sym_coef(reps[d]) ? std::string("to the batch") : std::to_string(reps[d]) + " times"));
    const int x = data(i);
    int64_t bcast = -1;
    Shape to = full;
    for (size_t d = 0; d < reps.size(); ++d) {
      if (const int64_t c = sym_coef(reps[d]); c > 0) {
        if (c != 1 || bcast >= 0)
          node_error(ErrorCode::kUnimplemented, i, "repeating a constant to a multiple of the batch size is not supported");
        bcast = static_cast<int64_t>(d);
      } else {
        to[d] = reps[d] * full[d];
      }
    }
    Attributes a;
    a["shape"] = attr_of(to);
    Val v;
    v.id = to == full ? x : b_.node("expand", {x}, a, gname(i));
    v.bcast_axis = bcast;
    set_out(i, 0, v);
  }

  // Pad's amounts per axis of a rank-`r` input (pads, optional axes), non-negative.
  void pad_amounts(int i, int64_t r, std::vector<int64_t>* begins, std::vector<int64_t>* ends) {
    const std::vector<int64_t> pads = host_ints(i, 1, "pads");
    std::vector<int64_t> axes;
    if (has_input(i, 3)) {
      for (int64_t a : host_ints(i, 3, "axes")) axes.push_back(norm_axis(i, a, r));
    } else {
      for (int64_t d = 0; d < r; ++d) axes.push_back(d);
    }
    if (pads.size() != 2 * axes.size())
      node_error(ErrorCode::kInvalidArgument, i, "pads has " + std::to_string(pads.size()) + " entries, expected " +
                                                     std::to_string(2 * axes.size()));
    begins->assign(static_cast<size_t>(r), 0);
    ends->assign(static_cast<size_t>(r), 0);
    for (size_t k = 0; k < axes.size(); ++k) {
      const int64_t b = pads[k], e = pads[k + axes.size()];
      if (b < 0 || e < 0) node_error(ErrorCode::kUnimplemented, i, "negative pads are not supported");
      if (b > kMaxFoldElements || e > kMaxFoldElements)
        node_error(ErrorCode::kInvalidArgument, i, "a pad of over 2^20 entries");
      (*begins)[axes[k]] = b;
      (*ends)[axes[k]] = e;
    }
  }

  void pad(int i) {
    const std::string mode = attr_string(i, "mode", "constant");
    if (mode != "constant") node_error(ErrorCode::kUnimplemented, i, "mode=" + quoted(mode) + " is not supported (constant only)");
    if (has_input(i, 2)) {
      const Host& c = host(i, 2, "constant_value");
      if (c.values.size() != 1 || c.values[0] != 0)
        node_error(ErrorCode::kUnimplemented, i, "only padding with 0 is supported");
    }
    const Val& xv = val(i, 0);
    const int64_t r = full_rank(xv);
    std::vector<int64_t> begins, ends;
    pad_amounts(i, r, &begins, &ends);
    const bool bt = batched(xv);
    std::vector<int64_t> p = begins;
    p.insert(p.end(), ends.begin(), ends.end());
    if (bt) {
      const int64_t q = batch_axis(xv);
      if (begins[q] != 0 || ends[q] != 0) mixing(i, "it pads the batch axis");
      const size_t gr = gshape(xv.id).size();
      p.assign(2 * gr, 0);
      for (int64_t d = 0; d < r; ++d) {
        if (d == q) continue;
        const size_t ga = static_cast<size_t>(graph_axis(i, xv, d));
        p[ga] = begins[d];
        p[ga + gr] = ends[d];
      }
    }
    const int x = data(i);
    if (std::all_of(p.begin(), p.end(), [](int64_t v) { return v == 0; })) return set_out(i, x);
    Attributes a;
    a["pads"] = attr_of(p);
    set_out(i, b_.node("pad", {x}, a, gname(i)));
  }

  void reduce(int i) {
    const std::string& op = g_.node(i).op_type();
    const bool axes_input = (op == "ReduceSum" && result_.opset >= 13) || (op == "ReduceMean" && result_.opset >= 18);
    std::vector<int64_t> axes = axes_input ? (has_input(i, 1) ? host_ints(i, 1, "axes") : std::vector<int64_t>{})
                                           : attr_ints(i, "axes", {});
    const bool keepdims = attr_int(i, "keepdims", 1) != 0;
    const Val& xv = val(i, 0);
    const int x = data(i);
    if (axes.empty()) {
      if (attr_int(i, "noop_with_empty_axes", 0) != 0) return set_out(i, x);
      if (batched(xv)) mixing(i, "it reduces over every axis, the batch axis included");
      for (int64_t d = 0; d < full_rank(xv); ++d) axes.push_back(d);
    }
    std::vector<int64_t> g;
    for (int64_t a : axes) g.push_back(graph_axis(i, xv, a));
    std::sort(g.begin(), g.end());
    if (std::adjacent_find(g.begin(), g.end()) != g.end()) node_error(ErrorCode::kInvalidArgument, i, "axes repeat");
    BatchLayout lay = xv.lay;
    if (!keepdims)
      for (int64_t a : g) lay.pos -= a < lay.pos - lay.outer ? 1 : 0;
    set_out(i, b_.reduce(op == "ReduceSum" ? "reduce_sum" : "reduce_mean", x, g, keepdims, gname(i)), lay);
  }

  void softmax(int i) {
    const Val& xv = val(i, 0);
    const int64_t r = full_rank(xv);
    const int64_t dflt = result_.opset >= 13 ? -1 : 1;
    const int64_t axis = norm_axis(i, attr_int(i, "axis", dflt), r);
    std::vector<int64_t> axes;
    // Before opset 13 Softmax normalises over all axes from `axis` on (the input coerced to 2-D).
    for (int64_t a = axis; a < (result_.opset >= 13 ? axis + 1 : r); ++a) axes.push_back(graph_axis(i, xv, a));
    const int x = data(i);
    if (g_.node(i).op_type() == "Softmax") return set_out(i, b_.softmax(x, axes, gname(i)));
    set_out(i, b_.log_softmax(x, axes, gname(i)));
  }

  void clip(int i) {
    std::optional<double> lo, hi;
    if (has_input(i, 1)) {
      const Host& h = host(i, 1, "min");
      if (h.values.size() != 1) node_error(ErrorCode::kInvalidArgument, i, "min must be a scalar");
      lo = h.values[0];
    }
    if (has_input(i, 2)) {
      const Host& h = host(i, 2, "max");
      if (h.values.size() != 1) node_error(ErrorCode::kInvalidArgument, i, "max must be a scalar");
      hi = h.values[0];
    }
    const int x = data(i);
    if (!lo && !hi) return set_out(i, x);
    if (lo && *lo == 0 && !hi) return set_out(i, b_.unary(x, "relu", gname(i)));
    if (lo && hi && *lo > *hi) node_error(ErrorCode::kInvalidArgument, i, "min is greater than max");
    const double inf = std::numeric_limits<double>::infinity();
    set_out(i, b_.unary(x, "hardtanh", gname(i), lo.value_or(-inf), hi.value_or(inf), true, true));
  }

  const onnx::ModelProto& model_;
  const onnx::GraphProto& g_;
  std::string what_;
  const ImportBounds& bounds_;
  ImportedModel result_;
  GraphBuilder b_;
  std::unordered_map<std::string, const onnx::TensorProto*> inits_;
  std::unordered_map<std::string, int> producer_;
  std::unordered_map<std::string, std::vector<int>> consumers_;  // distinct nodes, in file order
  std::unordered_map<std::string, HostPtr> raw_;                 // decoded initialisers / Constants
  std::unordered_map<std::string, Val> vals_;
  std::unordered_map<int, std::pair<Activation, std::string>> blocks_;  // last node → (fn, x)
  std::unordered_map<std::string, std::string> fused_;                  // MatMul output → its Add's
  std::vector<int> order_;
  std::vector<char> live_, absorbed_;
  std::vector<std::string> theta_;
  std::unordered_set<std::string> transposed_;  // MatMul weights held as Bᵀ in θ
  std::string input_, output_;
  Shape input_shape_;
  bool input_integer_ = false;  // INT32/INT64 token ids
  int64_t static_batch_ = -1;
};

}  // namespace

std::string onnx_supported_ops() {
  std::string s;
  for (const char* op : kSupportedOps) s += (s.empty() ? "" : ", ") + std::string(op);
  return s + " (and the Erf pattern of exact GELU, x*Sigmoid(x))";
}

ImportedModel import_onnx(const std::string& file_bytes, const std::string& what, const ImportBounds& bounds) {
  if (file_bytes.empty()) invalid_argument(what + ": the file is empty");
  onnx::ModelProto model;
  // ParsePartial: ONNX's proto2 schema has no required fields, and this avoids protobuf logging.
  if (!model.ParsePartialFromString(file_bytes)) {
    invalid_argument(what + ": not a valid ONNX model (protobuf parsing failed: truncated or not an .onnx file)");
  }
  if (bounds.check_stop) bounds.check_stop();  // parsing was linear; the walk below is too
  return Importer(model, what, bounds).run();
}

ImportedModel import_onnx_file(const std::string& path, const ImportBounds& bounds) {
  std::ifstream f(path, std::ios::binary);
  if (!f) invalid_argument("cannot open ONNX model file '" + path + "'");
  std::ostringstream buf;
  buf << f.rdbuf();
  if (!f.good() && !f.eof()) invalid_argument("cannot read ONNX model file '" + path + "'");
  const std::string bytes = buf.str();
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    invalid_argument("ONNX model file '" + path + "' is larger than protobuf's 2 GiB limit");
  }
  return import_onnx(bytes, path, bounds);
}

}  // namespace basin
