// Curvature products of the executor (executor.hpp, "Curvature products"): H·V, Jᵀ M J V, J V,
// Jᵀ U for a block of directions, from the graph's jvp, vjp and rvjp passes, over blocks of
// examples. docs/ARCHITECTURE.md ("The executor") describes the passes; residual_hessian is the
// same forward-over-reverse with unit directions and ġ_out = 0.
#include <algorithm>

#include "basin/error.hpp"
#include "executor.hpp"

namespace basin {

template <class T>
int64_t GraphNetwork<T>::product_examples(int64_t b, uint64_t pass_bytes) const {
  const Graph& g = *graph_;
  const auto& nodes = g.nodes();
  // A differentiable node whose output is not batched (computed from parameters and constants
  // alone, e.g. a transposed weight) has ḡ summed over all the data: its rvjp's second-order
  // term is not a sum over example blocks, so such graphs take every example in one pass.
  for (size_t i = 0; i < nodes.size(); ++i)
    if (live_[i] && ops_[i]->differentiable() && !g.value(nodes[i].output).batched) return n_;
  int64_t per_example = 0;
  for (const GraphValue& v : g.values())
    if (v.batched) per_example += 2 * shape_numel(v.shape);
  per_example *= b * static_cast<int64_t>(sizeof(T));
  return std::clamp<int64_t>(static_cast<int64_t>(pass_bytes) / std::max<int64_t>(per_example, 1), 1, n_);
}

template <class T>
void GraphNetwork<T>::parameter_tangents(const T* V, int64_t b, std::vector<Buffer<T>>& tan) {
  const Graph& g = *graph_;
  const auto& values = g.values();
  const int64_t N = num_params();
  tan.clear();
  tan.resize(values.size());
  for (int pv : g.parameters()) {
    const GraphValue& p = values[pv];
    const int64_t c = shape_numel(p.shape);
    tan[pv] = Buffer<T>(be_, static_cast<size_t>(b * c));
    be_.strided_axpby(1, b, c, T(1), V + p.param_offset, N, 0, T(0), tan[pv].get(), c, 0);
  }
}

template <class T>
void GraphNetwork<T>::tangent_pass(int64_t b, int64_t i0, int64_t count, std::vector<Buffer<T>>& tan) {
  const Graph& g = *graph_;
  const auto& values = g.values();
  const auto& nodes = g.nodes();
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!live_[i] || !ops_[i]->differentiable()) continue;
    const GraphNode& nd = nodes[i];
    std::vector<Tensor<T>> tin(nd.inputs.size());
    bool any = false;
    for (size_t j = 0; j < nd.inputs.size(); ++j) {
      const int v = nd.inputs[j];
      if (tan[v].get() == nullptr) continue;
      tin[j] = Tensor<T>{tan[v].get(), values[v].batched ? count : 1, b, values[v].shape};
      any = true;
    }
    if (!any) continue;
    check_cancel();
    const GraphValue& o = values[nd.output];
    const int64_t E = o.batched ? count : 1;
    if (tan[nd.output].get() == nullptr) tan[nd.output] = Buffer<T>(be_, static_cast<size_t>(E * b * shape_numel(o.shape)));
    OpCall<T> c = call(i, i0, count);
    ops_[i]->jvp(c, tin, Tensor<T>{tan[nd.output].get(), E, b, o.shape});
  }
}

template <class T>
void GraphNetwork<T>::reverse_tangent_pass(int64_t b, int64_t i0, int64_t count, std::vector<Buffer<T>>& tan,
                                           std::vector<Buffer<T>>& dg) {
  const Graph& g = *graph_;
  const auto& values = g.values();
  const auto& nodes = g.nodes();
  auto tensor_of = [&](std::vector<Buffer<T>>& store, int v) {
    const GraphValue& val = values[v];
    return Tensor<T>{store[v].get(), val.batched ? count : 1, b, val.shape};
  };
  auto ensure = [&](std::vector<Buffer<T>>& store, int v) {
    const GraphValue& val = values[v];
    if (store[v].get() == nullptr)
      store[v] = Buffer<T>(be_, static_cast<size_t>((val.batched ? count : 1) * b * shape_numel(val.shape)));
    return tensor_of(store, v);
  };
  for (int64_t i = static_cast<int64_t>(nodes.size()) - 1; i >= 0; --i) {
    if (!live_[i] || !ops_[i]->differentiable()) continue;
    const GraphNode& nd = nodes[i];
    const int out = nd.output;
    bool any_tangent = false;
    std::vector<Tensor<T>> tin(nd.inputs.size());
    for (size_t j = 0; j < nd.inputs.size(); ++j)
      if (tan[nd.inputs[j]].get() != nullptr) {
        tin[j] = tensor_of(tan, nd.inputs[j]);
        any_tangent = true;
      }
    if (dg[out].get() == nullptr && !any_tangent) continue;
    check_cancel();
    OpCall<T> c = call(static_cast<size_t>(i), i0, count);
    const GraphValue& oval = values[out];
    Tensor<T> gbar;
    if (kept_[out].get() != nullptr)
      gbar = oval.batched ? Tensor<T>{kept_[out].get() + i0 * shape_numel(oval.shape), count, 1, oval.shape}
                          : Tensor<T>{kept_[out].get(), 1, 1, oval.shape};
    const Tensor<T> dgout = dg[out].get() != nullptr ? tensor_of(dg, out) : Tensor<T>{};
    std::vector<Tensor<T>> gin(nd.inputs.size());
    for (size_t j = 0; j < nd.inputs.size(); ++j)
      if (values[nd.inputs[j]].differentiable) gin[j] = ensure(dg, nd.inputs[j]);
    ops_[i]->rvjp(c, tin, gbar, dgout, gin);
    dg[out].reset();
    if (param_index_[out] < 0) tan[out].reset();
  }
}

template <class T>
std::vector<T> GraphNetwork<T>::jacobian_product(const T* V, int64_t b, int64_t i0, int64_t count) {
  keep_all_primals();  // the tangent pass reads primals in forward order: no recomputation
  std::vector<Buffer<T>> tan;
  parameter_tangents(V, b, tan);
  tangent_pass(b, i0, count, tan);
  const int64_t k = num_outputs();
  std::vector<T> u(static_cast<size_t>(count * b * k), T(0));
  const int out = graph_->output();
  if (tan[out].get() != nullptr) {
    if (!graph_->value(out).batched)
      throw Error(ErrorCode::kInternal, "jacobian_product: the graph's output does not depend on the examples");
    be_.download(u.data(), tan[out].get(), u.size());
  }
  return u;
}

template <class T>
void GraphNetwork<T>::jacobian_transpose_product(const std::vector<T>& U, int64_t b, int64_t i0, int64_t count,
                                                 T* out) {
  const int64_t N = num_params();
  Buffer<T> seeds(be_, U.size());
  be_.upload(seeds.get(), U.data(), U.size());
  backward(
      seeds.get(), i0, count, b, Mode::kSummed,
      [&](size_t t, const Tensor<T>& cot) {
        const GraphValue& p = graph_->value(graph_->parameters()[t]);
        const int64_t c = cot.size();
        be_.strided_axpby(1, b, c, T(1), cot.data, c, 0, T(1), out + p.param_offset, N, 0);
      },
      nullptr, nullptr);
}

template <class T>
void GraphNetwork<T>::gauss_newton_product(const T* V, int64_t b, const OutputMap& apply_m, T* out,
                                           uint64_t pass_bytes) {
  const int64_t N = num_params(), block = product_examples(b, pass_bytes);
  be_.fill(out, static_cast<size_t>(b * N), T(0));
  for (int64_t i0 = 0; i0 < n_; i0 += block) {
    const int64_t count = std::min(block, n_ - i0);
    std::vector<T> u = jacobian_product(V, b, i0, count);
    apply_m(u, i0, count);
    jacobian_transpose_product(u, b, i0, count, out);
  }
}

template <class T>
void GraphNetwork<T>::hessian_product(const T* V, int64_t b, const OutputMap& apply_m, T* out,
                                      uint64_t pass_bytes) {
  // H = Jᵀ M J + Σ r_ic ∇²f_c: forward-over-reverse on the loss's gradient. Tangents ṫ of every
  // value (jvp); at the output ġ_out = M·ṫ_out (the loss's second derivative); backwards, rvjp
  // with the gradient's cotangents ḡ (kept by gradient(…, true)) adds the residual's term.
  if (kept_.empty()) throw Error(ErrorCode::kInternal, "hessian_product needs gradient(keep=true)");
  keep_all_primals();
  const Graph& g = *graph_;
  const auto& values = g.values();
  const int64_t N = num_params(), k = num_outputs(), block = product_examples(b, pass_bytes);
  const int outv = g.output();
  // ġ of the parameters (E = 1) accumulates over the example blocks.
  std::vector<Buffer<T>> dg_param(values.size());
  for (int64_t i0 = 0; i0 < n_; i0 += block) {
    const int64_t count = std::min(block, n_ - i0);
    std::vector<Buffer<T>> tan;
    parameter_tangents(V, b, tan);
    tangent_pass(b, i0, count, tan);
    std::vector<Buffer<T>> dg(values.size());
    for (int pv : g.parameters()) dg[pv] = std::move(dg_param[pv]);
    if (tan[outv].get() != nullptr) {
      std::vector<T> u(static_cast<size_t>(count * b * k));
      be_.download(u.data(), tan[outv].get(), u.size());
      apply_m(u, i0, count);
      dg[outv] = Buffer<T>(be_, u.size());
      be_.upload(dg[outv].get(), u.data(), u.size());
    }
    reverse_tangent_pass(b, i0, count, tan, dg);
    for (int pv : g.parameters()) dg_param[pv] = std::move(dg[pv]);
  }
  be_.fill(out, static_cast<size_t>(b * N), T(0));
  for (int pv : g.parameters()) {
    if (dg_param[pv].get() == nullptr) continue;
    const GraphValue& p = values[pv];
    const int64_t c = shape_numel(p.shape);
    be_.strided_axpby(1, b, c, T(1), dg_param[pv].get(), c, 0, T(0), out + p.param_offset, N, 0);
  }
}

// The members defined here, for both precisions (the rest are instantiated in executor.cpp).
#define BASIN_PRODUCTS(T)                                                                                  \
  template int64_t GraphNetwork<T>::product_examples(int64_t, uint64_t) const;                          \
  template void GraphNetwork<T>::parameter_tangents(const T*, int64_t, std::vector<Buffer<T>>&);       \
  template void GraphNetwork<T>::tangent_pass(int64_t, int64_t, int64_t, std::vector<Buffer<T>>&);      \
  template void GraphNetwork<T>::reverse_tangent_pass(int64_t, int64_t, int64_t, std::vector<Buffer<T>>&, \
                                                      std::vector<Buffer<T>>&);                          \
  template std::vector<T> GraphNetwork<T>::jacobian_product(const T*, int64_t, int64_t, int64_t);        \
  template void GraphNetwork<T>::jacobian_transpose_product(const std::vector<T>&, int64_t, int64_t, int64_t, T*); \
  template void GraphNetwork<T>::gauss_newton_product(const T*, int64_t, const OutputMap&, T*, uint64_t); \
  template void GraphNetwork<T>::hessian_product(const T*, int64_t, const OutputMap&, T*, uint64_t);
BASIN_PRODUCTS(double)
BASIN_PRODUCTS(float)
#undef BASIN_PRODUCTS

}  // namespace basin
