// "unary": y = φ(x) element-wise; attribute fn names φ (activation.hpp: relu, tanh, gelu, ...),
// alpha its parameter where it has one (leaky_relu's slope, ...).
#include "basin/model.hpp"
#include "op.hpp"

namespace basin {
namespace {

Activation activation_of(const GraphNode& node) {
  const std::string fn = attr_string(node.attrs, "fn", "");
  Activation a;
  if (!activation_from_name(fn, &a)) op_error(node, "unknown element-wise function '" + fn + "'", true);
  return a;
}

Shape infer(const GraphNode& node, const std::vector<const GraphValue*>& in) {
  if (in.size() != 1) op_error(node, "expects 1 input, got " + std::to_string(in.size()));
  activation_of(node);
  return in[0]->shape;
}

template <class T>
class Unary final : public UnaryOp<T> {
 public:
  using value_type = T;
  Unary(const GraphNode& node, const std::vector<const GraphValue*>&)
      : UnaryOp<T>(ActivationFn<T>{activation_of(node), T(attr_float(node.attrs, "alpha", 0.01))}) {}
};

const OpDef kUnary{"unary", &infer, &make_op_as<Unary<double>>, &make_op_as<Unary<float>>};

}  // namespace

void register_unary_ops(std::vector<const OpDef*>& table) { table.push_back(&kUnary); }

}  // namespace basin
