// The ONNX importer: walks the graph from its single input to its single output and maps every
// step onto a Basin layer. See include/basin/onnx_import.hpp for what is accepted and why the
// parameter order is what it is.
//
// The walk keeps one "chain value" (the activations so far). At each step the chain value must
// feed exactly one node that is a layer (Gemm, MatMul [+ Add], an activation, a no-op), or feed a
// small element-wise block (Mul/Div/Add/Sub/Erf/Sigmoid over the chain value and scalar constants)
// that closes again into one value and computes exact GELU or SiLU. Anything else is a branch
// (kInvalidArgument) or an op Basin does not support (kUnimplemented).
#include "basin/onnx_import.hpp"

#include <charconv>
#include <cmath>
#include <deque>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <onnx/onnx_pb.h>

#include "activation_patterns.hpp"
#include "basin/error.hpp"
#include "onnx_tensor.hpp"

namespace basin {
namespace {

using onnx_import_detail::ConstTensor;
using onnx_import_detail::decode_tensor;
using onnx_import_detail::Expr;
using onnx_import_detail::match_activation;

constexpr int64_t kMinOpset = 11;
constexpr int64_t kMaxOpset = 20;
constexpr size_t kMaxBlockNodes = 16;  // the GELU pattern has 5 nodes (+ Constants)
constexpr int64_t kMaxWidth = int64_t{1} << 31;

const char* const kSupportedOps =
    "Gemm, MatMul (+ Add bias), Relu, LeakyRelu, Tanh, Sigmoid, Softplus, Gelu, the Erf pattern of exact "
    "GELU, x*Sigmoid(x), Identity, Flatten, Dropout";

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

// Float attributes (LeakyRelu's alpha, Gemm's alpha/beta) are stored as float32: 0.2 arrives as
// 0.20000000298. The source model meant the shortest decimal that rounds to that float, so read
// it back as that decimal (0.2), which is what the JSON spec and PyTorch (in float64) use.
double float_attribute_value(float f) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), f);
  if (r.ec != std::errc()) return static_cast<double>(f);
  double d = static_cast<double>(f);
  std::from_chars(buf, r.ptr, d);  // locale-independent, unlike strtod
  return d;
}

std::string dims_string(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

bool is_default_domain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

// Ops of the element-wise blocks that spell GELU and SiLU.
bool is_block_op(const onnx::NodeProto& n) {
  const std::string& op = n.op_type();
  return is_default_domain(n.domain()) &&
         (op == "Mul" || op == "Div" || op == "Add" || op == "Sub" || op == "Erf" || op == "Sigmoid");
}

// Element-wise ops in general: a value feeding only these is an activation Basin may not know,
// rather than a branch of the network.
bool is_elementwise_op(const onnx::NodeProto& n) {
  static const std::unordered_set<std::string> kOps = {
      "Mul",  "Div", "Add", "Sub",  "Pow",  "Erf",  "Sigmoid", "Tanh",  "Relu", "LeakyRelu", "Softplus",
      "Exp",  "Log", "Neg", "Sqrt", "Abs",  "Clip", "Max",     "Min",   "Elu",  "Selu",      "HardSigmoid",
      "Gelu", "Sin", "Cos", "Sign", "Reciprocal", "Softsign", "Celu", "Mish", "HardSwish", "PRelu"};
  return is_default_domain(n.domain()) && kOps.count(n.op_type()) > 0;
}

// Ops that are one layer (or nothing) on their own.
bool is_layer_op(const onnx::NodeProto& n) {
  static const std::unordered_set<std::string> kOps = {"Gemm",    "MatMul",   "Relu", "LeakyRelu", "Tanh",
                                                       "Sigmoid", "Softplus", "Gelu", "Identity",  "Flatten",
                                                       "Dropout"};
  return is_default_domain(n.domain()) && kOps.count(n.op_type()) > 0;
}

// A weight/bias is [out] or [1, out] (or a scalar when out = 1): one value per output feature.
bool is_per_output(const ConstTensor& t, int64_t out) {
  if (static_cast<int64_t>(t.values.size()) != out) return false;
  if (t.dims.empty()) return out == 1;
  for (size_t i = 0; i + 1 < t.dims.size(); ++i) {
    if (t.dims[i] != 1) return false;
  }
  return t.dims.back() == out;
}

class Importer {
 public:
  Importer(const onnx::ModelProto& model, std::string what, const ImportBounds& bounds)
      : model_(model), g_(model.graph()), what_(std::move(what)), bounds_(bounds) {}

  ImportedModel run() {
    read_opset();
    if (!model_.has_graph()) invalid_argument(what_ + ": the file holds no graph (truncated, or not an ONNX model)");
    if (bounds_.max_nodes > 0 && g_.node_size() > bounds_.max_nodes) {
      resource_exhausted(what_ + ": the graph has " + std::to_string(g_.node_size()) + " nodes, over the limit of " +
                         std::to_string(bounds_.max_nodes) + " nodes (4 x max_layers; raise it with --max-layers)");
    }
    index_values();
    find_input_and_output();
    walk();
    check_everything_used();
    if (result_.model.input_dim <= 0) {
      invalid_argument(what_ + ": cannot tell the input width: graph input " + quoted(input_) +
                       " has no static feature dimension and no dense layer follows it");
    }
    check_output_shape();
    // The engine's own checks (widths, at least one dense layer), named after this file.
    try {
      result_.model.validate();
    } catch (const Error& e) {
      throw Error(e.code(), what_ + ": " + e.what());
    }
    if (static_cast<int64_t>(result_.params.size()) != result_.model.num_params()) {
      throw Error(ErrorCode::kInternal, what_ + ": imported parameter count does not match the model");
    }
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
      if (!const_protos_.emplace(t.name(), &t).second) {
        invalid_argument(what_ + ": initialiser " + quoted(t.name()) + " is defined twice (malformed model)");
      }
    }
    used_.assign(static_cast<size_t>(g_.node_size()), false);
    for (int i = 0; i < g_.node_size(); ++i) {
      poll_stop(i);
      const onnx::NodeProto& n = g_.node(i);
      if (n.op_type().empty()) node_error(ErrorCode::kInvalidArgument, i, "node has no op type (malformed model)");
      for (const std::string& o : n.output()) {
        if (o.empty()) continue;
        if (const_protos_.count(o) || !producer_.emplace(o, i).second) {
          node_error(ErrorCode::kInvalidArgument, i, "value " + quoted(o) + " is produced twice (malformed model)");
        }
      }
      for (const std::string& in : n.input()) {
        if (in.empty()) continue;
        auto& c = consumers_[in];
        if (c.empty() || c.back() != i) c.push_back(i);
      }
      if (is_default_domain(n.domain()) && n.op_type() == "Constant") index_constant(i);
    }
    // ONNX requires nodes in topological order; a later producer means a cycle or a broken file.
    for (int i = 0; i < g_.node_size(); ++i) {
      for (const std::string& in : g_.node(i).input()) {
        auto p = producer_.find(in);
        if (p != producer_.end() && p->second >= i) {
          node_error(ErrorCode::kInvalidArgument, i,
                     "it reads " + quoted(in) + " before " + node_ref(p->second) +
                         " produces it (nodes not topologically sorted, or a cycle)");
        }
      }
    }
  }

  // Constant nodes become constants like initialisers (value, value_float(s), value_int(s)).
  void index_constant(int i) {
    const onnx::NodeProto& n = g_.node(i);
    if (n.input_size() != 0 || n.output_size() != 1 || n.output(0).empty() || n.attribute_size() != 1) {
      node_error(ErrorCode::kInvalidArgument, i, "a Constant needs no inputs, one output and one value attribute");
    }
    const onnx::AttributeProto& a = n.attribute(0);
    const std::string& out = n.output(0);
    ConstTensor t;
    if (a.name() == "value" && a.has_t()) {
      constant_nodes_.emplace(out, &a.t());
      return;
    } else if (a.name() == "value_float") {
      t.values = {static_cast<double>(a.f())};
    } else if (a.name() == "value_int") {
      t.values = {static_cast<double>(a.i())};
    } else if (a.name() == "value_floats") {
      for (float f : a.floats()) t.values.push_back(f);
      t.dims = {static_cast<int64_t>(t.values.size())};
    } else if (a.name() == "value_ints") {
      for (int64_t v : a.ints()) t.values.push_back(static_cast<double>(v));
      t.dims = {static_cast<int64_t>(t.values.size())};
    } else {
      node_error(ErrorCode::kUnimplemented, i, "Constant attribute " + quoted(a.name()) + " is not supported");
    }
    consts_.emplace(out, std::move(t));
  }

  void find_input_and_output() {
    std::vector<const onnx::ValueInfoProto*> inputs;
    for (const auto& v : g_.input()) {
      if (!const_protos_.count(v.name())) inputs.push_back(&v);  // IR < 4 lists initialisers as inputs
    }
    if (inputs.size() != 1) {
      std::string names;
      for (size_t i = 0; i < inputs.size() && i < 4; ++i) names += (i ? ", " : "") + quoted(inputs[i]->name());
      invalid_argument(what_ + ": the graph has " + std::to_string(inputs.size()) + " inputs" +
                       (names.empty() ? "" : " (" + names + ")") +
                       "; Basin imports chains from exactly one input to one output");
    }
    if (g_.output_size() != 1) {
      invalid_argument(what_ + ": the graph has " + std::to_string(g_.output_size()) +
                       " outputs; Basin imports chains from exactly one input to one output");
    }
    const onnx::ValueInfoProto& in = *inputs[0];
    input_ = in.name();
    output_ = g_.output(0).name();
    if (input_.empty() || output_.empty()) invalid_argument(what_ + ": graph input or output has no name");
    if (producer_.count(input_)) {
      node_error(ErrorCode::kInvalidArgument, producer_[input_], "it overwrites the graph input " + quoted(input_));
    }
    if (constant_nodes_.count(output_) || consts_.count(output_) || const_protos_.count(output_)) {
      invalid_argument(what_ + ": the graph output " + quoted(output_) + " is a constant");
    }

    // Input: [batch, features] (or [batch, d1, d2, ...] followed by Flatten). The batch dimension
    // may be symbolic or fixed; the feature dimensions are inferred from the first dense layer when
    // the file does not state them.
    if (!in.has_type() || !in.type().has_tensor_type()) return;
    const auto& tt = in.type().tensor_type();
    const int32_t et = tt.elem_type();
    if (et != onnx::TensorProto_DataType_UNDEFINED && et != onnx::TensorProto_DataType_FLOAT &&
        et != onnx::TensorProto_DataType_DOUBLE) {
      unimplemented(what_ + ": graph input " + quoted(input_) + " has element type " +
                    onnx_import_detail::data_type_name(et) + "; only FLOAT and DOUBLE inputs are supported");
    }
    if (!tt.has_shape()) return;
    const auto& shape = tt.shape();
    rank_ = shape.dim_size();
    if (rank_ < 2) {
      unimplemented(what_ + ": graph input " + quoted(input_) + " has rank " + std::to_string(rank_) +
                    "; Basin expects [batch, features]");
    }
    int64_t width = 1;
    for (int d = 1; d < rank_; ++d) {
      const auto& dim = shape.dim(d);
      if (!dim.has_dim_value()) return;  // symbolic: infer from the first dense layer
      if (dim.dim_value() <= 0 || dim.dim_value() > kMaxWidth / width) {
        invalid_argument(what_ + ": graph input " + quoted(input_) + " has feature dimension " +
                         std::to_string(dim.dim_value()));
      }
      width *= dim.dim_value();
    }
    width_ = width;
    result_.model.input_dim = width;
  }

  void check_output_shape() {
    const onnx::ValueInfoProto& out = g_.output(0);
    if (!out.has_type() || !out.type().has_tensor_type() || !out.type().tensor_type().has_shape()) return;
    const auto& shape = out.type().tensor_type().shape();
    if (shape.dim_size() != 2 || !shape.dim(1).has_dim_value()) return;
    if (shape.dim(1).dim_value() != width_) {
      invalid_argument(what_ + ": graph output " + quoted(output_) + " declares " +
                       std::to_string(shape.dim(1).dim_value()) + " features but the layers produce " +
                       std::to_string(width_));
    }
  }

  void check_everything_used() {
    for (int i = 0; i < g_.node_size(); ++i) {
      const onnx::NodeProto& n = g_.node(i);
      if (used_[static_cast<size_t>(i)] || (is_default_domain(n.domain()) && n.op_type() == "Constant")) continue;
      node_error(ErrorCode::kInvalidArgument, i,
                 "node is not on the chain from input " + quoted(input_) + " to output " + quoted(output_) +
                     " (Basin imports single-chain graphs)");
    }
  }

  // The caller's stop test, every 4096 steps of a per-node loop.
  void poll_stop(int step) const {
    if (bounds_.check_stop && step % 4096 == 0) bounds_.check_stop();
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

  // ---- constants and attributes ----

  // nullptr when `name` is not an initialiser or Constant output.
  const ConstTensor* constant(const std::string& name) {
    auto it = consts_.find(name);
    if (it != consts_.end()) return &it->second;
    const onnx::TensorProto* proto = nullptr;
    std::string where;
    if (auto p = const_protos_.find(name); p != const_protos_.end()) {
      proto = p->second;
      where = what_ + ": initialiser " + quoted(name);
    } else if (auto c = constant_nodes_.find(name); c != constant_nodes_.end()) {
      proto = c->second;
      where = what_ + ": Constant " + quoted(name);
    } else {
      return nullptr;
    }
    ConstTensor t = decode_tensor(*proto, where);
    return &consts_.emplace(name, std::move(t)).first->second;
  }

  // Input `idx` of node `i` that must be a constant (a weight, a bias).
  const ConstTensor& require_constant(int i, int idx, const char* role) {
    const onnx::NodeProto& n = g_.node(i);
    if (idx >= n.input_size() || n.input(idx).empty()) node_error(ErrorCode::kInvalidArgument, i, std::string("missing ") + role);
    const std::string& name = n.input(idx);
    if (const ConstTensor* t = constant(name)) {
      for (double v : t->values) {
        if (!std::isfinite(v)) node_error(ErrorCode::kInvalidArgument, i, std::string(role) + " " + quoted(name) + " contains NaN or Inf");
      }
      return *t;
    }
    if (auto p = producer_.find(name); p != producer_.end()) {
      node_error(ErrorCode::kUnimplemented, i,
                 std::string(role) + " " + quoted(name) + " is computed by " + node_ref(p->second) +
                     "; only initialisers and Constants are supported as weights");
    }
    if (name == input_) node_error(ErrorCode::kInvalidArgument, i, std::string("the graph input is used as its ") + role);
    node_error(ErrorCode::kInvalidArgument, i,
               std::string(role) + " " + quoted(name) + " is not an initialiser, a Constant or a node output (missing initialiser)");
  }

  const onnx::AttributeProto* attr(int i, const char* name) const {
    for (const auto& a : g_.node(i).attribute()) {
      if (a.name() == name) return &a;
    }
    return nullptr;
  }
  int64_t attr_int(int i, const char* name, int64_t dflt) const {
    const onnx::AttributeProto* a = attr(i, name);
    if (!a) return dflt;
    if (a->type() != onnx::AttributeProto_AttributeType_INT && !(a->type() == 0 && a->has_i())) {
      node_error(ErrorCode::kInvalidArgument, i, std::string("attribute ") + name + " must be an int");
    }
    return a->i();
  }
  double attr_float(int i, const char* name, double dflt) const {
    const onnx::AttributeProto* a = attr(i, name);
    if (!a) return dflt;
    if (a->type() != onnx::AttributeProto_AttributeType_FLOAT && !(a->type() == 0 && a->has_f())) {
      node_error(ErrorCode::kInvalidArgument, i, std::string("attribute ") + name + " must be a float");
    }
    if (!std::isfinite(a->f())) node_error(ErrorCode::kInvalidArgument, i, std::string("attribute ") + name + " is not finite");
    return float_attribute_value(a->f());
  }
  std::string attr_string(int i, const char* name, const std::string& dflt) const {
    const onnx::AttributeProto* a = attr(i, name);
    if (!a) return dflt;
    if (a->type() != onnx::AttributeProto_AttributeType_STRING && !(a->type() == 0 && a->has_s())) {
      node_error(ErrorCode::kInvalidArgument, i, std::string("attribute ") + name + " must be a string");
    }
    return a->s();
  }

  // ---- the walk ----

  void walk() {
    cur_ = input_;
    // Every step consumes at least one node, so node_size() + 1 steps bound the walk (cycles stop
    // earlier: a used node is never taken again).
    for (int step = 0; step <= g_.node_size(); ++step) {
      poll_stop(step);
      const std::vector<int>& cons = consumers(cur_);
      if (cur_ == output_) {
        if (!cons.empty()) {
          node_error(ErrorCode::kInvalidArgument, cons[0],
                     "it reads the graph output " + quoted(output_) + " (branching graph)");
        }
        return;
      }
      if (cons.empty()) {
        const std::string from = producer_.count(cur_) ? " (output of " + node_ref(producer_[cur_]) + ")" : "";
        invalid_argument(what_ + ": value " + quoted(cur_) + from + " is not used by any node and is not the graph output " +
                         quoted(output_) + " (malformed or branching graph)");
      }
      if (cons.size() == 1 && used_[static_cast<size_t>(cons[0])]) {
        node_error(ErrorCode::kInvalidArgument, cons[0], "the graph has a cycle");
      }
      if (cons.size() == 1 && is_layer_op(g_.node(cons[0]))) {
        layer(cons[0]);
      } else if (cons.size() == 1 && !is_block_op(g_.node(cons[0]))) {
        node_error(ErrorCode::kUnimplemented, cons[0], "op is not supported (supported: " + std::string(kSupportedOps) + ")");
      } else {
        block();
      }
    }
    invalid_argument(what_ + ": the walk from input " + quoted(input_) + " never reaches output " + quoted(output_) +
                     " (the graph has a cycle)");
  }

  const std::vector<int>& consumers(const std::string& v) const {
    static const std::vector<int> kNone;
    auto it = consumers_.find(v);
    return it == consumers_.end() ? kNone : it->second;
  }

  // Marks node i used and moves the chain to its first output, after checking that the chain value
  // is its data input and that its other outputs are unused.
  void take(int i, int data_inputs_max) {
    const onnx::NodeProto& n = g_.node(i);
    if (n.input_size() < 1 || n.input(0) != cur_) {
      node_error(ErrorCode::kUnimplemented, i, "the chain value " + quoted(cur_) + " must be its first input");
    }
    if (n.input_size() > data_inputs_max) {
      node_error(ErrorCode::kInvalidArgument, i, "takes " + std::to_string(n.input_size()) + " inputs, expected at most " +
                                                     std::to_string(data_inputs_max));
    }
    if (n.output_size() < 1 || n.output(0).empty()) node_error(ErrorCode::kInvalidArgument, i, "it has no output");
    for (int o = 1; o < n.output_size(); ++o) {
      const std::string& extra = n.output(o);
      if (!extra.empty() && (!consumers(extra).empty() || extra == output_)) {
        node_error(ErrorCode::kUnimplemented, i, "its output " + quoted(extra) + " is used; only the first output may be");
      }
    }
    used_[static_cast<size_t>(i)] = true;
    cur_ = n.output(0);
  }

  void add_activation(Activation a, double alpha = 0.01) {
    Layer l;
    l.kind = Layer::Kind::kActivation;
    l.activation = a;
    l.alpha = alpha;
    result_.model.layers.push_back(l);
  }

  // Appends a dense layer with weight w [out, in] row-major and an optional bias [out].
  // The names are those of the initialisers (PyTorch's named_parameters() for an export).
  void add_dense(int i, int64_t in, int64_t out, std::vector<double> w, const std::vector<double>* bias,
                 const std::string& weight_name, const std::string& bias_name) {
    if (rank_ != 2) {
      node_error(ErrorCode::kUnimplemented, i,
                 "it is applied to a rank-" + std::to_string(rank_) + " tensor; Basin supports [batch, features] "
                 "(flatten the input first)");
    }
    if (in <= 0 || out <= 0) node_error(ErrorCode::kInvalidArgument, i, "weight has an empty dimension");
    if (width_ < 0) {
      width_ = in;
      result_.model.input_dim = in;
    } else if (in != width_) {
      node_error(ErrorCode::kInvalidArgument, i,
                 "weight expects " + std::to_string(in) + " input features but the incoming tensor has " +
                     std::to_string(width_) + " (wrong shapes)");
    }
    for (double v : w) {
      if (!std::isfinite(v)) node_error(ErrorCode::kInvalidArgument, i, "weight is not finite after scaling by alpha");
    }
    if (bias) {
      for (double v : *bias) {
        if (!std::isfinite(v)) node_error(ErrorCode::kInvalidArgument, i, "bias is not finite after scaling by beta");
      }
    }
    Layer l;
    l.kind = Layer::Kind::kDense;
    l.out = out;
    l.bias = bias != nullptr;
    result_.model.layers.push_back(l);
    result_.params.insert(result_.params.end(), w.begin(), w.end());
    if (bias) result_.params.insert(result_.params.end(), bias->begin(), bias->end());
    result_.model.param_names.push_back(weight_name);
    if (bias) result_.model.param_names.push_back(bias_name);
    width_ = out;
  }

  void layer(int i) {
    const onnx::NodeProto& n = g_.node(i);
    const std::string& op = n.op_type();
    if (op == "Gemm") return gemm(i);
    if (op == "MatMul") return matmul(i);
    if (op == "Relu") { take(i, 1); return add_activation(Activation::kRelu); }
    if (op == "Tanh") { take(i, 1); return add_activation(Activation::kTanh); }
    if (op == "Sigmoid") { take(i, 1); return add_activation(Activation::kSigmoid); }
    if (op == "Softplus") { take(i, 1); return add_activation(Activation::kSoftplus); }
    if (op == "Identity") { take(i, 1); return; }
    if (op == "LeakyRelu") {
      const double alpha = attr_float(i, "alpha", 0.01);
      take(i, 1);
      return add_activation(Activation::kLeakyRelu, alpha);
    }
    if (op == "Gelu") {
      const std::string approx = attr_string(i, "approximate", "none");
      if (approx == "tanh") {
        node_error(ErrorCode::kUnimplemented, i, "approximate=\"tanh\" GELU is not supported (Basin's gelu is the exact erf form)");
      }
      if (approx != "none") node_error(ErrorCode::kInvalidArgument, i, "unknown approximate=" + quoted(approx));
      take(i, 1);
      return add_activation(Activation::kGelu);
    }
    if (op == "Flatten") return flatten(i);
    if (op == "Dropout") return dropout(i);
    node_error(ErrorCode::kUnimplemented, i, "op is not supported");
  }

  // Y = alpha · A' · B' + beta · C with A' = A (transA = 0 only), B' = B or Bᵀ.
  void gemm(int i) {
    const onnx::NodeProto& n = g_.node(i);
    if (attr_int(i, "transA", 0) != 0) node_error(ErrorCode::kUnimplemented, i, "transA=1 is not supported");
    const int64_t trans_b = attr_int(i, "transB", 0);
    if (trans_b != 0 && trans_b != 1) node_error(ErrorCode::kInvalidArgument, i, "transB must be 0 or 1");
    const double alpha = attr_float(i, "alpha", 1.0);
    const double beta = attr_float(i, "beta", 1.0);
    if (n.input_size() < 2) node_error(ErrorCode::kInvalidArgument, i, "Gemm needs inputs A and B");
    const ConstTensor& b = require_constant(i, 1, "weight B");
    if (b.dims.size() != 2) {
      node_error(ErrorCode::kInvalidArgument, i, "weight B has shape " + dims_string(b.dims) + ", expected rank 2");
    }
    const int64_t out = trans_b ? b.dims[0] : b.dims[1];
    const int64_t in = trans_b ? b.dims[1] : b.dims[0];
    const std::vector<double>* bias = nullptr;
    std::vector<double> scaled_bias;
    std::string bias_name;
    if (n.input_size() >= 3 && !n.input(2).empty()) {
      bias_name = n.input(2);
      const ConstTensor& c = require_constant(i, 2, "bias C");
      if (!is_per_output(c, out)) {
        node_error(ErrorCode::kUnimplemented, i,
                   "bias C has shape " + dims_string(c.dims) + "; only a per-output bias [" + std::to_string(out) + "] or [1, " +
                       std::to_string(out) + "] is supported");
      }
      scaled_bias = c.values;
      for (double& v : scaled_bias) v *= beta;
      bias = &scaled_bias;
    }
    std::vector<double> w(static_cast<size_t>(in * out));
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t k = 0; k < in; ++k) {
        const double v = trans_b ? b.values[static_cast<size_t>(o * in + k)] : b.values[static_cast<size_t>(k * out + o)];
        w[static_cast<size_t>(o * in + k)] = alpha * v;
      }
    }
    const std::string weight_name = n.input(1);
    take(i, 3);
    if (!bias) bias = trailing_bias(out, &bias_name);  // Gemm without C, then Add (some converters)
    add_dense(i, in, out, std::move(w), bias, weight_name, bias_name);
  }

  // Y = A · B, B [in, out]; an Add of a per-output constant right after it is the bias.
  void matmul(int i) {
    const ConstTensor& b = require_constant(i, 1, "weight B");
    if (b.dims.size() != 2) {
      node_error(ErrorCode::kUnimplemented, i, "weight B has shape " + dims_string(b.dims) + "; only a matrix [in, out] is supported");
    }
    const int64_t in = b.dims[0];
    const int64_t out = b.dims[1];
    std::vector<double> w(static_cast<size_t>(in * out));
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t k = 0; k < in; ++k) w[static_cast<size_t>(o * in + k)] = b.values[static_cast<size_t>(k * out + o)];
    }
    const std::string weight_name = g_.node(i).input(1);
    take(i, 2);
    std::string bias_name;
    const std::vector<double>* bias = trailing_bias(out, &bias_name);
    add_dense(i, in, out, std::move(w), bias, weight_name, bias_name);
  }

  // An Add of a per-output constant right after a bias-free MatMul/Gemm is that layer's bias
  // (either operand order). Moves the chain past the Add; nullptr (chain unmoved) otherwise.
  const std::vector<double>* trailing_bias(int64_t out, std::string* name) {
    const std::vector<int>& next = consumers(cur_);
    if (cur_ == output_ || next.size() != 1 || used_[static_cast<size_t>(next[0])]) return nullptr;
    const int a = next[0];
    const onnx::NodeProto& add = g_.node(a);
    if (!is_default_domain(add.domain()) || add.op_type() != "Add" || add.input_size() != 2 ||
        add.input(0) == add.input(1)) {
      return nullptr;
    }
    const int other = add.input(0) == cur_ ? 1 : 0;
    const ConstTensor* c = constant(add.input(other));
    if (!c) return nullptr;
    if (!is_per_output(*c, out)) {
      node_error(ErrorCode::kUnimplemented, a,
                 "the bias added to the dense layer has shape " + dims_string(c->dims) + "; only [" + std::to_string(out) +
                     "] or [1, " + std::to_string(out) + "] is supported");
    }
    const std::vector<double>* bias = &require_constant(a, other, "bias").values;
    *name = add.input(other);
    if (add.output_size() != 1 || add.output(0).empty()) node_error(ErrorCode::kInvalidArgument, a, "it has no output");
    used_[static_cast<size_t>(a)] = true;
    cur_ = add.output(0);
    return bias;
  }

  // Flatten(axis) of [batch, d1, ...] is [batch, d1·d2·...] for axis 1 and a no-op on rank 2.
  void flatten(int i) {
    int64_t axis = attr_int(i, "axis", 1);
    if (axis < 0) axis += rank_;
    if (axis != 1) {
      node_error(ErrorCode::kUnimplemented, i, "only Flatten with axis=1 (keeping the batch dimension) is supported");
    }
    take(i, 1);
    rank_ = 2;
  }

  // Inference-mode Dropout is the identity.
  void dropout(int i) {
    const onnx::NodeProto& n = g_.node(i);
    if (n.input_size() >= 3 && !n.input(2).empty()) {
      const ConstTensor* training = constant(n.input(2));
      if (!training || training->values.size() != 1 || training->values[0] != 0) {
        node_error(ErrorCode::kUnimplemented, i, "only inference-mode Dropout (training_mode false) is supported");
      }
    }
    take(i, 3);
  }

  // ---- element-wise blocks (GELU via Erf, SiLU via x·Sigmoid(x)) ----

  void block() {
    const std::vector<int>& entry = consumers(cur_);
    // Candidate last nodes, nearest first: element-wise nodes reachable from the chain value.
    std::vector<int> order;
    std::unordered_set<int> seen;
    std::deque<int> queue;
    for (int c : entry) {
      if (is_block_op(g_.node(c)) && !used_[static_cast<size_t>(c)] && seen.insert(c).second) queue.push_back(c);
    }
    while (!queue.empty() && order.size() < kMaxBlockNodes) {
      const int n = queue.front();
      queue.pop_front();
      order.push_back(n);
      for (const std::string& o : g_.node(n).output()) {
        for (int c : consumers(o)) {
          if (is_block_op(g_.node(c)) && !used_[static_cast<size_t>(c)] && seen.insert(c).second) queue.push_back(c);
        }
      }
    }

    int first_closed = -1;
    for (int last : order) {
      std::unordered_set<int> nodes;
      if (!closed_block(last, &nodes)) continue;
      if (first_closed < 0) first_closed = last;
      Activation a;
      if (!match_block(last, &a)) continue;
      for (int n : nodes) used_[static_cast<size_t>(n)] = true;
      cur_ = g_.node(last).output(0);
      add_activation(a);
      return;
    }

    if (first_closed >= 0) {
      node_error(ErrorCode::kUnimplemented, first_closed,
                 "the element-wise subgraph from " + quoted(cur_) + " to this node is not a supported activation "
                 "(recognised: x*0.5*(1+erf(x/sqrt(2))) for exact GELU, x*Sigmoid(x) for SiLU)");
    }
    if (entry.size() == 1) {
      node_error(ErrorCode::kInvalidArgument, entry[0],
                 "it combines the chain value " + quoted(cur_) + " with a value that is neither constant nor derived from "
                 "it alone (branching graph)");
    }
    std::string list;
    for (size_t k = 0; k < entry.size() && k < 4; ++k) list += (k ? ", " : "") + node_ref(entry[k]);
    if (entry.size() > 4) list += ", ...";
    bool all_elementwise = true;
    for (int c : entry) all_elementwise = all_elementwise && is_elementwise_op(g_.node(c));
    if (all_elementwise) {
      // An activation spelled with ops outside the recognised patterns (e.g. tanh-approximate GELU
      // with Pow): a valid graph Basin does not support, not a branch.
      unimplemented(what_ + ": value " + quoted(cur_) + " feeds " + std::to_string(entry.size()) + " element-wise nodes (" +
                    list + ") that do not form a supported activation (recognised: x*0.5*(1+erf(x/sqrt(2))) for "
                    "exact GELU, x*Sigmoid(x) for SiLU)");
    }
    invalid_argument(what_ + ": value " + quoted(cur_) + " feeds " + std::to_string(entry.size()) + " nodes (" + list +
                     "); Basin imports single-chain graphs (branching graph)");
  }

  // Collects the nodes computing `v` from the chain value and constants through element-wise ops.
  bool collect(const std::string& v, std::unordered_set<int>* nodes) {
    if (v == cur_ || constant_known(v)) return true;
    auto p = producer_.find(v);
    if (p == producer_.end()) return false;
    const int n = p->second;
    if (nodes->count(n)) return true;
    const onnx::NodeProto& node = g_.node(n);
    if (!is_block_op(node) || used_[static_cast<size_t>(n)] || nodes->size() >= kMaxBlockNodes) return false;
    if (node.output_size() != 1) return false;
    nodes->insert(n);
    for (const std::string& in : node.input()) {
      if (in.empty() || !collect(in, nodes)) return false;
    }
    return true;
  }

  bool constant_known(const std::string& v) const {
    return consts_.count(v) || const_protos_.count(v) || constant_nodes_.count(v);
  }

  // True when the nodes computing `last`'s output form a block: every use of the chain value and of
  // every inner value lies inside it.
  bool closed_block(int last, std::unordered_set<int>* nodes) {
    if (g_.node(last).output_size() != 1 || g_.node(last).output(0).empty()) return false;
    if (!collect(g_.node(last).output(0), nodes)) return false;
    for (int c : consumers(cur_)) {
      if (!nodes->count(c)) return false;
    }
    for (int n : *nodes) {
      if (n == last) continue;
      const std::string& o = g_.node(n).output(0);
      if (o == output_) return false;
      for (int c : consumers(o)) {
        if (!nodes->count(c)) return false;
      }
    }
    return true;
  }

  bool match_block(int last, Activation* a) {
    std::vector<std::unique_ptr<Expr>> pool;
    std::unordered_map<std::string, const Expr*> memo;
    std::unordered_set<std::string> building;
    const Expr* e = build_expr(g_.node(last).output(0), &pool, &memo, &building);
    return e != nullptr && match_activation(*e, a);
  }

  // Expression of `v` over the chain value; nullptr for non-scalar constants or cycles.
  const Expr* build_expr(const std::string& v, std::vector<std::unique_ptr<Expr>>* pool,
                         std::unordered_map<std::string, const Expr*>* memo, std::unordered_set<std::string>* building) {
    if (auto m = memo->find(v); m != memo->end()) return m->second;
    auto e = std::make_unique<Expr>();
    if (v == cur_) {
      e->kind = Expr::Kind::kInput;
    } else if (constant_known(v)) {
      const ConstTensor* t = constant(v);
      if (t->values.size() != 1) return nullptr;  // per-feature scaling is not an activation
      e->kind = Expr::Kind::kConst;
      e->value = t->values[0];
    } else {
      if (!building->insert(v).second) return nullptr;  // cycle
      const onnx::NodeProto& n = g_.node(producer_.at(v));
      e->kind = Expr::Kind::kOp;
      e->op = n.op_type();
      for (const std::string& in : n.input()) {
        const Expr* arg = build_expr(in, pool, memo, building);
        if (!arg) return nullptr;
        e->args.push_back(arg);
      }
      building->erase(v);
    }
    const Expr* raw = e.get();
    pool->push_back(std::move(e));
    memo->emplace(v, raw);
    return raw;
  }

  const onnx::ModelProto& model_;
  const onnx::GraphProto& g_;
  std::string what_;
  const ImportBounds& bounds_;
  std::unordered_map<std::string, const onnx::TensorProto*> const_protos_;   // initialisers
  std::unordered_map<std::string, const onnx::TensorProto*> constant_nodes_;  // Constant(value=tensor)
  std::unordered_map<std::string, ConstTensor> consts_;                       // decoded, by value name
  std::unordered_map<std::string, int> producer_;
  std::unordered_map<std::string, std::vector<int>> consumers_;  // distinct nodes, in graph order
  std::vector<bool> used_;
  std::string input_, output_, cur_;
  int rank_ = 2;       // rank of the chain value
  int64_t width_ = -1;  // features of the chain value; -1 until known
  ImportedModel result_;
};

}  // namespace

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
