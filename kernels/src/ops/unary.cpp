// "unary": y = φ(x) element-wise; attribute fn names φ (activation.hpp: relu, tanh, gelu, ...),
// alpha and beta its parameters where it has them (leaky_relu's slope, hardtanh's min and max, pow's
// exponent, ...; defaults: activation.hpp).
#include <cmath>

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

// φ with its parameters: alpha and beta from the attributes, else the function's defaults
// (activation.hpp: default_alpha / default_beta).
template <class T>
ActivationFn<T> function_of(const GraphNode& node) {
  const Activation a = activation_of(node);
  if (a == Activation::kPow && node.attrs.count("alpha") == 0) op_error(node, "pow needs attribute alpha (the exponent)");
  const double alpha = attr_float(node.attrs, "alpha", default_alpha(a));
  const double beta = attr_float(node.attrs, "beta", default_beta(a));
  if (!std::isfinite(alpha) || !std::isfinite(beta))
    op_error(node, "alpha and beta must be finite, got " + std::to_string(alpha) + " and " + std::to_string(beta));
  if (a == Activation::kHardtanh && !(alpha <= beta))
    op_error(node, "hardtanh needs alpha (min) <= beta (max), got " + std::to_string(alpha) + " and " +
                       std::to_string(beta));
  ActivationFn<T> fn;
  fn.kind = a;
  fn.alpha = T(alpha);
  fn.beta = T(beta);
  return fn;
}

Shape infer(const GraphNode& node, const std::vector<const GraphValue*>& in) {
  if (in.size() != 1) op_error(node, "expects 1 input, got " + std::to_string(in.size()));
  function_of<double>(node);
  return in[0]->shape;
}

template <class T>
class Unary final : public UnaryOp<T> {
 public:
  using value_type = T;
  Unary(const GraphNode& node, const std::vector<const GraphValue*>&)
      : UnaryOp<T>(function_of<T>(node)) {}
};

const OpDef kUnary{"unary", &infer, &make_op_as<Unary<double>>, &make_op_as<Unary<float>>};

}  // namespace

void register_unary_ops(std::vector<const OpDef*>& table) { table.push_back(&kUnary); }

}  // namespace basin
