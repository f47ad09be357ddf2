// Composite layers as primitive nodes (graph_builder.hpp).
#include "graph_builder.hpp"

#include <cmath>

#include "basin/error.hpp"

namespace basin {

int GraphBuilder::constant(const std::string& name, Shape shape, std::vector<double> data) {
  return g_.add_constant(name, std::move(shape), std::move(data));
}

int GraphBuilder::scalar(const std::string& name, double v) { return g_.add_constant(name, {}, {v}); }

int GraphBuilder::node(const std::string& op, const std::vector<int>& inputs, Attributes attrs,
                       const std::string& name) {
  return g_.add_node(op, inputs, std::move(attrs), name);
}

int GraphBuilder::unary(int x, const std::string& fn, const std::string& name, double alpha, double beta,
                        bool has_alpha, bool has_beta) {
  Attributes a;
  a["fn"] = attr_of(fn);
  if (has_alpha) a["alpha"] = attr_of(alpha);
  if (has_beta) a["beta"] = attr_of(beta);
  return node("unary", {x}, std::move(a), name);
}

int GraphBuilder::reshape(int x, const Shape& to, const std::string& name) {
  if (shape(x) == to) return x;
  Attributes a;
  a["shape"] = attr_of(std::vector<int64_t>(to));
  return node("reshape", {x}, std::move(a), name);
}

int GraphBuilder::reshaped(int v, const Shape& to, const std::string& name) {
  if (shape(v) == to) return v;
  if (is_constant(v)) {
    if (shape_numel(shape(v)) != shape_numel(to))
      invalid_argument("node '" + name + "': constant '" + value(v).name + "' of shape " + shape_string(shape(v)) +
                       " cannot be viewed as " + shape_string(to));
    return constant(value(v).name, to, value(v).data);
  }
  return reshape(v, to, name);
}

int GraphBuilder::transpose(int x, const std::vector<int64_t>& perm, const std::string& name) {
  bool identity = true;
  for (size_t i = 0; i < perm.size(); ++i) identity = identity && perm[i] == static_cast<int64_t>(i);
  if (identity && perm.size() == shape(x).size()) return x;
  Attributes a;
  a["perm"] = attr_of(std::vector<int64_t>(perm));
  return node("transpose", {x}, std::move(a), name);
}

int GraphBuilder::reduce(const std::string& op, int x, const std::vector<int64_t>& axes, bool keepdims,
                         const std::string& name) {
  Attributes a;
  a["axes"] = attr_of(std::vector<int64_t>(axes));
  a["keepdims"] = attr_of(int64_t{keepdims ? 1 : 0});
  return node(op, {x}, std::move(a), name);
}

int GraphBuilder::dense(int x, int w, int b, const std::string& name) {
  Attributes a;
  a["trans_b"] = attr_of(int64_t{1});
  std::vector<int> in = {x, w};
  if (b >= 0) in.push_back(b);
  return node("matmul", in, std::move(a), name);
}

int GraphBuilder::conv(int x, int w, int b, const std::vector<int64_t>& strides, const std::vector<int64_t>& pads,
                       const std::vector<int64_t>& dilations, int64_t group, const std::string& name) {
  Attributes a;
  a["strides"] = attr_of(std::vector<int64_t>(strides));
  a["pads"] = attr_of(std::vector<int64_t>(pads));
  a["dilations"] = attr_of(std::vector<int64_t>(dilations));
  a["group"] = attr_of(group);
  std::vector<int> in = {x, w};
  if (b >= 0) in.push_back(b);
  return node("conv", in, std::move(a), name);
}

int GraphBuilder::div(int a, int b, const std::string& name) {
  if (is_constant(b)) {
    std::vector<double> r = value(b).data;
    for (double& v : r) {
      if (v == 0)
        invalid_argument("node '" + name + "' (Div): the divisor '" + value(b).name + "' has a zero entry");
      v = 1 / v;
    }
    return mul(a, constant(name + ":reciprocal", shape(b), std::move(r)), name);
  }
  return mul(a, unary(b, unary_fn::kReciprocal, name + ":reciprocal"), name);
}

int GraphBuilder::per_channel(int v, int64_t C, size_t rank, const std::string& name) {
  if (shape_numel(shape(v)) != C)
    invalid_argument("node '" + name + "': '" + value(v).name + "' has shape " + shape_string(shape(v)) + ", expected [" +
                     std::to_string(C) + "] (one value per channel)");
  Shape s(rank, 1);
  if (rank > 0) s[0] = C;
  return reshaped(v, s, name);
}

int GraphBuilder::inv_std(int var, double eps, const std::string& name) {
  if (is_constant(var)) {
    std::vector<double> r = value(var).data;
    for (double& v : r) {
      if (!(v + eps > 0))
        invalid_argument("node '" + name + "': the variance '" + value(var).name + "' plus epsilon is not positive");
      v = 1 / std::sqrt(v + eps);
    }
    return constant(name + ":inv_std", shape(var), std::move(r));
  }
  const int ve = add(var, scalar(name + ":eps", eps), name + ":add_eps");
  return unary(ve, unary_fn::kRsqrt, name + ":inv_std");
}

int GraphBuilder::batch_norm_inference(int x, int gamma, int beta, int mean, int var, double eps,
                                       const std::string& name) {
  const Shape& xs = shape(x);
  if (xs.empty()) invalid_argument("node '" + name + "' (BatchNormalization): the input has no channel axis");
  const int64_t C = xs[0];
  const size_t rank = xs.size();
  const int m = per_channel(mean, C, rank, name + ":mean");
  const int inv = per_channel(inv_std(per_channel(var, C, 1, name + ":var"), eps, name), C, rank, name + ":inv_std");
  const bool gamma_const = gamma < 0 || is_constant(gamma);
  const bool beta_const = beta < 0 || is_constant(beta);
  if (is_constant(m) && is_constant(inv) && gamma_const && beta_const) {
    // Everything but x is a constant: y = x·scale + shift with scale = γ/√(var+ε), shift = β − mean·scale.
    std::vector<double> sc(static_cast<size_t>(C)), sh(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      const double gm = gamma < 0 ? 1.0 : value(gamma).data[c];
      const double bt = beta < 0 ? 0.0 : value(beta).data[c];
      sc[c] = gm * value(inv).data[c];
      sh[c] = bt - value(m).data[c] * sc[c];
    }
    Shape s(rank, 1);
    s[0] = C;
    const int scaled = mul(x, constant(name + ":scale", s, std::move(sc)), name + ":scale");
    return add(scaled, constant(name + ":shift", s, std::move(sh)), name);
  }
  const bool has_gamma = gamma >= 0, has_beta = beta >= 0;
  const int d = sub(x, m, name + ":sub");
  int y = mul(d, inv, has_gamma || has_beta ? name + ":normalised" : name);
  if (has_gamma) y = mul(y, per_channel(gamma, C, rank, name + ":gamma"), has_beta ? name + ":gamma" : name);
  if (has_beta) y = add(y, per_channel(beta, C, rank, name + ":beta"), name);
  return y;
}

int GraphBuilder::normalise(int x, const std::vector<int64_t>& axes, double eps, const std::string& name) {
  const int mean = reduce("reduce_mean", x, axes, true, name + ":mean");
  const int d = sub(x, mean, name + ":sub");
  const int sq = mul(d, d, name + ":square");
  const int var = reduce("reduce_mean", sq, axes, true, name + ":var");
  return mul(d, inv_std(var, eps, name), name + ":normalised");
}

int GraphBuilder::layer_norm(int x, int64_t axis, double eps, int gamma, int beta, const std::string& name) {
  const size_t rank = shape(x).size();
  if (axis < 0 || axis >= static_cast<int64_t>(rank))
    invalid_argument("node '" + name + "' (LayerNormalization): axis " + std::to_string(axis) +
                     " is outside the input's axes " + shape_string(shape(x)));
  std::vector<int64_t> axes;
  for (size_t a = static_cast<size_t>(axis); a < rank; ++a) axes.push_back(static_cast<int64_t>(a));
  int y = normalise(x, axes, eps, name);
  if (gamma >= 0) y = mul(y, gamma, beta >= 0 ? name + ":gamma" : name);
  if (beta >= 0) y = add(y, beta, name);
  if (gamma < 0 && beta < 0) y = scale(y, 1.0, name);
  return y;
}

int GraphBuilder::group_norm(int x, int64_t groups, double eps, int gamma, int beta, const std::string& name) {
  const Shape xs = shape(x);
  if (xs.empty() || groups <= 0 || xs[0] % groups != 0)
    invalid_argument("node '" + name + "': " + std::to_string(groups) + " groups do not divide the channels of " +
                     shape_string(xs));
  const int64_t C = xs[0];
  const int grouped = reshape(x, {groups, shape_numel(xs) / groups}, name + ":grouped");
  int y = normalise(grouped, {1}, eps, name);
  const auto per_group = [&](int v) { return v >= 0 && shape_numel(shape(v)) == groups && groups != C; };
  // Per-group γ/β ([G], ONNX opset 18) apply in the grouped view; per-channel ones after it.
  if (per_group(gamma)) y = mul(y, reshaped(gamma, {groups, 1}, name + ":gamma_view"), name + ":gamma");
  if (per_group(beta)) y = add(y, reshaped(beta, {groups, 1}, name + ":beta_view"), name + ":beta");
  const bool channel_gamma = gamma >= 0 && !per_group(gamma), channel_beta = beta >= 0 && !per_group(beta);
  y = reshape(y, xs, channel_gamma || channel_beta ? name + ":ungrouped" : name);
  if (channel_gamma)
    y = mul(y, per_channel(gamma, C, xs.size(), name + ":gamma_view"), channel_beta ? name + ":gamma" : name);
  if (channel_beta) y = add(y, per_channel(beta, C, xs.size(), name + ":beta_view"), name);
  return y;
}

int GraphBuilder::instance_norm(int x, double eps, int gamma, int beta, const std::string& name) {
  if (shape(x).empty()) invalid_argument("node '" + name + "' (InstanceNormalization): the input has no channel axis");
  return group_norm(x, shape(x)[0], eps, gamma, beta, name);
}

int GraphBuilder::softmax(int x, const std::vector<int64_t>& axes, const std::string& name) {
  const int m = reduce("reduce_max", x, axes, true, name + ":max");
  const int d = sub(x, m, name + ":sub");
  const int e = unary(d, unary_fn::kExp, name + ":exp");
  const int s = reduce("reduce_sum", e, axes, true, name + ":sum");
  return mul(e, unary(s, unary_fn::kReciprocal, name + ":reciprocal"), name);
}

int GraphBuilder::log_softmax(int x, const std::vector<int64_t>& axes, const std::string& name) {
  const int m = reduce("reduce_max", x, axes, true, name + ":max");
  const int d = sub(x, m, name + ":sub");
  const int e = unary(d, unary_fn::kExp, name + ":exp");
  const int s = reduce("reduce_sum", e, axes, true, name + ":sum");
  return sub(d, unary(s, unary_fn::kLog, name + ":log"), name);
}

int GraphBuilder::global_avg_pool(int x, const std::string& name) {
  const size_t rank = shape(x).size();
  if (rank < 2)
    invalid_argument("node '" + name + "' (GlobalAveragePool): input " + shape_string(shape(x)) +
                     " has no spatial axes (expected [C, H, W] or [C, L] per example)");
  std::vector<int64_t> axes;
  for (size_t a = 1; a < rank; ++a) axes.push_back(static_cast<int64_t>(a));
  return reduce("reduce_mean", x, axes, true, name);
}

int GraphBuilder::flatten(int x, const std::string& name) { return reshape(x, {shape_numel(shape(x))}, name); }

int GraphBuilder::pow_constant(int x, double p, const std::string& name) {
  if (p == 1) return x;
  if (p == 2) return mul(x, x, name);
  if (p == 3) return mul(mul(x, x, name + ":square"), x, name);
  if (p == 0.5) return unary(x, unary_fn::kSqrt, name);
  if (p == -1) return unary(x, unary_fn::kReciprocal, name);
  if (p == -0.5) return unary(x, unary_fn::kRsqrt, name);
  return unary(x, unary_fn::kPow, name, p, 0.0, true);
}

int GraphBuilder::scale(int x, double s, const std::string& name) {
  if (s == 1) return x;
  return mul(x, scalar(name + ":scale", s), name);
}

}  // namespace basin
