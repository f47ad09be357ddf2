#include "executor.hpp"

#include <algorithm>

#include "basin/error.hpp"

namespace basin {

namespace {
// Primals above this (all examples) are checkpointed by default (executor.hpp).
constexpr int64_t kCheckpointBytes = int64_t(64) << 20;
}  // namespace

template <class T>
GraphNetwork<T>::GraphNetwork(Backend<T>& backend, std::shared_ptr<const Graph> graph, const std::vector<double>& params,
                              const std::vector<double>& inputs, int64_t n, const std::atomic<bool>* cancel)
    : be_(backend), graph_(std::move(graph)), n_(n), cancel_(cancel) {
  const Graph& g = *graph_;
  const auto& values = g.values();
  const auto& nodes = g.nodes();
  // Live nodes: those whose output reaches the graph's output.
  std::vector<char> needed(values.size(), 0);
  needed[g.output()] = 1;
  live_.assign(nodes.size(), 0);
  for (int64_t i = static_cast<int64_t>(nodes.size()) - 1; i >= 0; --i) {
    if (!needed[nodes[i].output]) continue;
    live_[i] = 1;
    for (int v : nodes[i].inputs) needed[v] = 1;
  }
  param_index_.assign(values.size(), -1);
  for (size_t t = 0; t < g.parameters().size(); ++t) param_index_[g.parameters()[t]] = static_cast<int>(t);
  uses_.assign(values.size(), 0);
  ops_.resize(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    check_cancel();
    if (!live_[i]) continue;
    std::vector<const GraphValue*> in;
    for (int v : nodes[i].inputs) {
      in.push_back(&values[v]);
      ++uses_[v];
    }
    const OpDef* def = find_op(nodes[i].op);
    if (def == nullptr) op_error(nodes[i], "op is not supported", true);
    ops_[i] = make_op<T>(*def, nodes[i], in);
  }
  // Primals no pass after the forward reads (docs/ARCHITECTURE.md "The executor"): a node's
  // output that only linear maps (add, reshape, the shift of a norm, …) consume is freed once its
  // last consumer has run forward.
  keep_primal_.assign(values.size(), 0);
  last_use_.assign(values.size(), -1);
  for (size_t v = 0; v < values.size(); ++v) keep_primal_[v] = values[v].kind != ValueKind::kNode;
  keep_primal_[g.output()] = 1;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!live_[i]) continue;
    for (size_t j = 0; j < nodes[i].inputs.size(); ++j) {
      const int v = nodes[i].inputs[j];
      last_use_[v] = static_cast<int64_t>(i);
      if (ops_[i]->differentiable() && ops_[i]->reads_primal(static_cast<int>(j))) keep_primal_[v] = 1;
    }
  }
  primal_.resize(values.size());
  for (size_t v = 0; v < values.size(); ++v) {
    if (values[v].kind != ValueKind::kConstant) continue;
    const std::vector<T> c(values[v].data.begin(), values[v].data.end());
    primal_[v] = Buffer<T>(be_, c.size());
    be_.upload(primal_[v].get(), c.data(), c.size());
  }
  const int64_t in_size = g.input_size();
  if (static_cast<int64_t>(inputs.size()) != n_ * in_size)
    invalid_argument("inputs: " + std::to_string(inputs.size()) + " values for " + std::to_string(n_) +
                     " examples of shape " + shape_string(g.input_shape()));
  const std::vector<T> x(inputs.begin(), inputs.end());
  primal_[g.input()] = Buffer<T>(be_, x.size());
  be_.upload(primal_[g.input()].get(), x.data(), x.size());
  for (int p : g.parameters()) primal_[p] = Buffer<T>(be_, static_cast<size_t>(shape_numel(values[p].shape)));
  upload_params(params);
  find_segments();
  checkpoint_ = seg_begin_.size() > 1 && primal_bytes() > kCheckpointBytes;
}

template <class T>
void GraphNetwork<T>::upload_params(const std::vector<double>& params) {
  const Graph& g = *graph_;
  if (static_cast<int64_t>(params.size()) != g.num_params())
    invalid_argument("params: " + std::to_string(params.size()) + " values, the model has " +
                     std::to_string(g.num_params()) + " parameters");
  for (int p : g.parameters()) {
    const GraphValue& v = g.value(p);
    const int64_t c = shape_numel(v.shape);
    const std::vector<T> w(params.begin() + v.param_offset, params.begin() + v.param_offset + c);
    be_.upload(primal_[p].get(), w.data(), w.size());
  }
}

template <class T>
void GraphNetwork<T>::set_params(const std::vector<double>& params) {
  upload_params(params);
  kept_.clear();
}

template <class T>
void GraphNetwork<T>::check_cancel() const {
  if (cancel_ != nullptr && cancel_->load(std::memory_order_relaxed))
    throw Error(ErrorCode::kCancelled, "analysis cancelled");
}

template <class T>
Tensor<T> GraphNetwork<T>::primal(int v, int64_t i0, int64_t count) const {
  const GraphValue& val = graph_->value(v);
  T* base = primal_[v].get();
  if (!val.batched || base == nullptr) return Tensor<T>{base, val.batched ? count : 1, 1, val.shape};
  return Tensor<T>{base + (i0 - primal_first_[static_cast<size_t>(v)]) * shape_numel(val.shape), count, 1, val.shape};
}

template <class T>
OpCall<T> GraphNetwork<T>::call(size_t node, int64_t i0, int64_t count) const {
  const GraphNode& nd = graph_->nodes()[node];
  std::vector<Tensor<T>> in;
  for (int v : nd.inputs) in.push_back(primal(v, i0, count));
  return OpCall<T>{be_, be_.op_kernels(), nd, std::move(in), primal(nd.output, i0, count)};
}

template <class T>
void GraphNetwork<T>::forward() {
  const Graph& g = *graph_;
  const auto& nodes = g.nodes();
  kept_.clear();
  for (size_t i = 0; i < nodes.size(); ++i) {
    check_cancel();  // per node: a deep model stops within one node's work
    if (!live_[i]) continue;
    const GraphValue& out = g.value(nodes[i].output);
    primal_[nodes[i].output] = Buffer<T>(be_, static_cast<size_t>((out.batched ? n_ : 1) * shape_numel(out.shape)));
    primal_first_[nodes[i].output] = 0;
    OpCall<T> c = call(i, 0, n_);
    ops_[i]->forward(c, c.out);
    for (int v : nodes[i].inputs)
      if (!keep_primal_[v] && last_use_[v] == static_cast<int64_t>(i)) primal_[v].reset();
    const int s = segment_[i];
    if (s >= 0 && static_cast<int64_t>(i) + 1 == seg_end_[s]) {
      seg_first_[s] = 0;
      seg_count_[s] = n_;
      if (checkpoint_) drop_segment(s);  // only its cut value (and the unbatched values) stay
    }
  }
}

template <class T>
std::vector<double> GraphNetwork<T>::outputs() const {
  const int64_t k = num_outputs();
  std::vector<T> host(static_cast<size_t>(n_ * k));
  be_.download(host.data(), primal_[graph_->output()].get(), host.size());
  return std::vector<double>(host.begin(), host.end());
}

template <class T>
std::vector<double> GraphNetwork<T>::value_on_host(int v) {
  const GraphValue& val = graph_->value(v);
  const int64_t producer = producer_[static_cast<size_t>(v)];
  if (producer >= 0 && cut_value(segment_[producer]) == v && released(v)) restore_cuts();
  if (producer >= 0 && recomputable_[static_cast<size_t>(v)]) ensure_segment(segment_[producer], 0, n_);
  if (primal_.at(static_cast<size_t>(v)).get() == nullptr)
    throw Error(ErrorCode::kInternal, "value '" + val.name + "': its primal was freed after the forward pass");
  std::vector<T> host(static_cast<size_t>((val.batched ? n_ : 1) * shape_numel(val.shape)));
  be_.download(host.data(), primal_.at(static_cast<size_t>(v)).get(), host.size());
  return std::vector<double>(host.begin(), host.end());
}

template <class T>
void GraphNetwork<T>::backward(const T* seeds, int64_t i0, int64_t count, int64_t r, Mode mode,
                               const ParamVisitor& visit, const DenseVisitor* dense, std::vector<Buffer<T>>* keep,
                               const ParamVisitor* chunks, const NodeRange& range) {
  const Graph& g = *graph_;
  const auto& values = g.values();
  const auto& nodes = g.nodes();
  std::vector<Buffer<T>> cot(values.size());
  std::vector<int> uses_left = uses_;
  std::vector<char> structured(values.size(), 0);  // parameters the dense visitor took
  auto cot_tensor = [&](int v) {
    const GraphValue& val = values[v];
    const int64_t E = val.batched || mode == Mode::kPerExample ? count : 1;
    if (cot[v].get() == nullptr) cot[v] = Buffer<T>(be_, static_cast<size_t>(E * r * shape_numel(val.shape)));
    return Tensor<T>{cot[v].get(), E, r, val.shape};
  };
  {
    const int out = range.seed_value >= 0 ? range.seed_value : g.output();
    const Tensor<T> t = cot_tensor(out);
    be_.copy(t.data, seeds, static_cast<size_t>(t.count()));
  }
  auto finish_param = [&](int v) {
    if (--uses_left[v] != 0 || param_index_[v] < 0 || structured[v]) return;
    if (cot[v].get() != nullptr) visit(static_cast<size_t>(param_index_[v]), cot_tensor(v));
    if (keep == nullptr) cot[v].reset();
  };
  const int64_t hi = range.hi < 0 ? static_cast<int64_t>(nodes.size()) : range.hi;
  for (int64_t i = hi - 1; i >= range.lo; --i) {
    if (!live_[i]) continue;
    check_cancel();
    const GraphNode& nd = nodes[i];
    const int out = nd.output;
    const int seg = segment_[i];
    if (cot[out].get() != nullptr && ops_[i]->differentiable()) {
      if (checkpoint_) ensure_segment(seg, i0, count);
      OpCall<T> c = call(static_cast<size_t>(i), i0, count);
      const Tensor<T> gout = cot_tensor(out);
      std::vector<Tensor<T>> gin(nd.inputs.size());
      // The structured Gram of a dense layer: hand Δ and A to the visitor instead of
      // materialising the weight's (and bias's) per-example block.
      int skip_w = -1, skip_b = -1;
      if (dense != nullptr) {
        for (int slot = 0; slot < static_cast<int>(nd.inputs.size()) && skip_w < 0; ++slot) {
          const int a = ops_[i]->dense_factor_input(slot);
          const int v = nd.inputs[slot];
          if (a < 0 || param_index_[v] < 0 || uses_[v] != 1) continue;
          skip_w = slot;
          const int b = ops_[i]->dense_bias_input();
          const bool bias = b >= 0 && param_index_[nd.inputs[b]] >= 0 && uses_[nd.inputs[b]] == 1;
          if (bias) skip_b = b;
          structured[v] = 1;
          if (bias) structured[nd.inputs[b]] = 1;
          (*dense)(gout, c.in[a], static_cast<size_t>(param_index_[v]), bias ? param_index_[nd.inputs[b]] : -1);
        }
      }
      // A large parameter block completed here goes to `chunks` in column ranges (rows of its
      // leading axis) when the op can produce them (Op::vjp_param_rows), never whole.
      std::vector<char> chunked(nd.inputs.size(), 0);
      if (chunks != nullptr && mode == Mode::kPerExample) {
        for (size_t j = 0; j < nd.inputs.size(); ++j) {
          const int v = nd.inputs[j];
          const Shape& ps = values[v].shape;
          if (param_index_[v] < 0 || uses_[v] != 1 || structured[v] || static_cast<int>(j) == skip_w ||
              static_cast<int>(j) == skip_b || ps.empty() || !ops_[i]->has_param_rows(c, static_cast<int>(j)))
            continue;
          const int64_t rest = shape_numel(ps) / ps[0], row_bytes = count * r * rest * int64_t(sizeof(T));
          if (row_bytes * ps[0] <= param_chunk_bytes_) continue;
          const int64_t per = std::clamp<int64_t>(param_chunk_bytes_ / row_bytes, 1, ps[0]);
          Buffer<T> part(be_, static_cast<size_t>(count * r * per * rest));
          for (int64_t b0 = 0; b0 < ps[0]; b0 += per) {
            Shape sub = ps;
            sub[0] = std::min(per, ps[0] - b0);
            const Tensor<T> piece{part.get(), count, r, sub};
            be_.fill(piece.data, static_cast<size_t>(piece.count()), T(0));
            ops_[i]->vjp_param_rows(c, gout, static_cast<int>(j), b0, b0 + sub[0], piece);
            chunked[j] = 1;
            (*chunks)(static_cast<size_t>(param_index_[v]), piece);
          }
          if (chunked[j]) structured[v] = 1;
        }
      }
      for (size_t j = 0; j < nd.inputs.size(); ++j) {
        const int v = nd.inputs[j];
        if (!values[v].differentiable || static_cast<int>(j) == skip_w || static_cast<int>(j) == skip_b || chunked[j])
          continue;
        gin[j] = cot_tensor(v);
      }
      ops_[i]->vjp(c, gout, gin);
    }
    if (keep != nullptr) (*keep)[out] = std::move(cot[out]);
    cot[out].reset();
    for (int v : nd.inputs) finish_param(v);
    if (checkpoint_ && seg >= 0 && i == seg_begin_[seg]) {  // the pass has left it
      drop_segment(seg);
      const int cut = cut_value(seg);
      if (release_cuts_ && cut >= 0) primal_[cut].reset();
    }
  }
  if (range.stop_cot != nullptr && range.stop_value >= 0) *range.stop_cot = std::move(cot[range.stop_value]);
  if (keep != nullptr)
    for (size_t v = 0; v < values.size(); ++v)
      if (cot[v].get() != nullptr) (*keep)[v] = std::move(cot[v]);
}

template <class T>
std::vector<double> GraphNetwork<T>::gradient(const std::vector<T>& dloss_df, bool keep) {
  const int64_t N = num_params();
  Buffer<T> seeds(be_, dloss_df.size());
  be_.upload(seeds.get(), dloss_df.data(), dloss_df.size());
  std::vector<T> grad(static_cast<size_t>(N), T(0));
  std::vector<Buffer<T>> kept;
  if (keep) kept.resize(graph_->values().size());
  backward(
      seeds.get(), 0, n_, 1, Mode::kSummed,
      [&](size_t t, const Tensor<T>& cot) {
        const GraphValue& p = graph_->value(graph_->parameters()[t]);
        be_.download(grad.data() + p.param_offset, cot.data, static_cast<size_t>(cot.count()));
      },
      nullptr, keep ? &kept : nullptr);
  if (keep) kept_ = std::move(kept);
  return std::vector<double>(grad.begin(), grad.end());
}

template <class T>
Buffer<T> GraphNetwork<T>::gram(const std::vector<T>& seeds, int64_t r, int64_t tile_rows) {
  const int64_t m = n_ * r;
  const int64_t tile = tile_rows <= 0 || tile_rows >= m ? m : tile_rows;
  Buffer<T> seeds_dev(be_, seeds.size());
  be_.upload(seeds_dev.get(), seeds.data(), seeds.size());
  Buffer<T> gram(be_, static_cast<size_t>(m * m));
  Buffer<T> delta_gram, act_gram;
  const DenseVisitor dense = [&](const Tensor<T>& delta, const Tensor<T>& a, size_t, int bias_index) {
    const bool bias = bias_index >= 0;
    // Block of G for W at row (i, c) is δ_(i,c) ⊗ a_i: the layer's share of G Gᵀ is
    // (ΔΔᵀ) ⊙ (AAᵀ + 1[bias]).
    const int64_t d_out = delta.size(), d_in = a.size();
    if (act_gram.get() == nullptr) act_gram = Buffer<T>(be_, static_cast<size_t>(n_ * n_));
    if (delta_gram.get() == nullptr) delta_gram = Buffer<T>(be_, static_cast<size_t>(tile * m));
    be_.syrk_lower(false, n_, d_in, T(1), a.data, d_in, T(0), act_gram.get(), n_);
    if (tile == m) {
      be_.syrk_lower(false, m, d_out, T(1), delta.data, d_out, T(0), delta_gram.get(), m);
      be_.hadamard_expand_accumulate(n_, r, act_gram.get(), bias ? T(1) : T(0), 0, m, delta_gram.get(), m,
                                     gram.get());
      return;
    }
    for (int64_t row0 = 0; row0 < m; row0 += tile) {
      const int64_t rows = std::min(tile, m - row0), w = row0 + rows;
      be_.gemm(false, true, rows, w, d_out, T(1), delta.data + row0 * d_out, d_out, delta.data, d_out, T(0),
               delta_gram.get(), w);
      be_.hadamard_expand_accumulate(n_, r, act_gram.get(), bias ? T(1) : T(0), row0, rows, delta_gram.get(), w,
                                     gram.get());
    }
  };
  // Σ_t B_t B_tᵀ, B_t [m × c] (rows example-major, like G's); a large B_t comes in column
  // ranges, whose products sum to the same.
  const ParamVisitor block_gram = [&](size_t, const Tensor<T>& block) {
    const int64_t c = block.size();
    if (tile == m) {
      be_.syrk_lower(false, m, c, T(1), block.data, c, T(1), gram.get(), m);
      return;
    }
    for (int64_t row0 = 0; row0 < m; row0 += tile) {
      const int64_t rows = std::min(tile, m - row0), w = row0 + rows;
      be_.gemm(false, true, rows, w, c, T(1), block.data + row0 * c, c, block.data, c, T(1), gram.get() + row0 * m, m);
    }
  };
  int64_t low_params = 0;
  const int64_t split = checkpoint_ ? split_node(r, &low_params) : -1;
  if (split < 0) {
    backward(seeds_dev.get(), 0, n_, r, Mode::kPerExample, block_gram, &dense, nullptr, &block_gram);
    return gram;
  }
  // Every row above the split; below it, blocks of examples (checkpoints.cpp).
  Buffer<T> cut_cot;
  NodeRange upper;
  upper.lo = split + 1;
  upper.stop_value = graph_->nodes()[static_cast<size_t>(split)].output;
  upper.stop_cot = &cut_cot;
  release_below_split(split);
  release_cuts_ = true;  // each cut value above, once the pass is past it (restore_cuts())
  try {
    backward(seeds_dev.get(), 0, n_, r, Mode::kPerExample, block_gram, &dense, nullptr, &block_gram, upper);
  } catch (...) {
    release_cuts_ = false;
    throw;
  }
  release_cuts_ = false;
  seeds_dev.reset();
  gram_below_split(cut_cot.get(), r, split, low_params, [&](const Tensor<T>& b) { block_gram(0, b); });
  return gram;
}

template <class T>
int64_t GraphNetwork<T>::examples_per_block(int64_t r, uint64_t block_bytes) const {
  const int64_t per_example = r * num_params() * static_cast<int64_t>(sizeof(T));
  return std::clamp<int64_t>(static_cast<int64_t>(block_bytes) / std::max<int64_t>(per_example, 1), 1, n_);
}

template <class T>
void GraphNetwork<T>::parameter_blocks(const std::vector<T>& seeds, int64_t r, int64_t block,
                                       const BlockVisitor& visit, const DenseFactorVisitor* dense) {
  const int64_t k = num_outputs();
  Buffer<T> seeds_dev(be_, seeds.size());
  be_.upload(seeds_dev.get(), seeds.data(), seeds.size());
  for (int64_t i0 = 0; i0 < n_; i0 += block) {
    const int64_t count = std::min(block, n_ - i0);
    const DenseVisitor factors = [&](const Tensor<T>& delta, const Tensor<T>& a, size_t weight, int bias) {
      (*dense)(DenseFactors{weight, bias, i0, count * r, delta.data, delta.size(), a.data, a.size()});
    };
    backward(
        seeds_dev.get() + i0 * r * k, i0, count, r, Mode::kPerExample,
        [&](size_t t, const Tensor<T>& cot) { visit(t, i0, count * r, cot.data); }, dense ? &factors : nullptr,
        nullptr);
  }
}

template <class T>
void GraphNetwork<T>::jacobian_blocks(const std::vector<T>& seeds, int64_t r, int64_t block, T* out,
                                      const std::function<void(int64_t rows)>& consume) {
  const int64_t N = num_params(), k = num_outputs();
  Buffer<T> seeds_dev(be_, seeds.size());
  be_.upload(seeds_dev.get(), seeds.data(), seeds.size());
  for (int64_t i0 = 0; i0 < n_; i0 += block) {
    const int64_t count = std::min(block, n_ - i0), rows = count * r;
    // Parameters no cotangent reaches keep zero columns.
    be_.fill(out, static_cast<size_t>(rows * N), T(0));
    backward(
        seeds_dev.get() + i0 * r * k, i0, count, r, Mode::kPerExample,
        [&](size_t t, const Tensor<T>& cot) {
          const GraphValue& p = graph_->value(graph_->parameters()[t]);
          const int64_t c = cot.size();
          be_.strided_axpby(1, rows, c, T(1), cot.data, c, 0, T(0), out + p.param_offset, N, 0);
        },
        nullptr, nullptr);
    consume(rows);
  }
}

template <class T>
Buffer<T> GraphNetwork<T>::jacobian(const std::vector<T>& seeds, int64_t r) {
  Buffer<T> g(be_, static_cast<size_t>(n_ * r * num_params()));
  jacobian_blocks(seeds, r, n_, g.get(), [](int64_t) {});
  return g;
}

template <class T>
Buffer<T> GraphNetwork<T>::normal(const std::vector<T>& seeds, int64_t r, uint64_t block_bytes) {
  const int64_t N = num_params(), block = examples_per_block(r, block_bytes);
  Buffer<T> normal(be_, static_cast<size_t>(N * N));
  Buffer<T> g_block(be_, static_cast<size_t>(block * r * N));
  jacobian_blocks(seeds, r, block, g_block.get(),
                  [&](int64_t rows) { be_.syrk_lower(true, N, rows, T(1), g_block.get(), N, T(1), normal.get(), N); });
  return normal;
}

template <class T>
Buffer<T> GraphNetwork<T>::tsqr_r(const std::vector<T>& seeds, int64_t r, uint64_t block_bytes) {
  // As Network::tsqr_r: [R; G_block] QR-factorised block after block, σ(R) = σ(G̃).
  const int64_t N = num_params(), block = examples_per_block(r, block_bytes);
  Buffer<T> stack(be_, static_cast<size_t>((N + block * r) * N));
  jacobian_blocks(seeds, r, block, stack.get() + N * N, [&](int64_t rows) { be_.qr_r(N + rows, N, stack.get()); });
  return stack;
}

template <class T>
Buffer<T> GraphNetwork<T>::residual_hessian(uint64_t block_bytes) {
  // Forward-over-reverse on the gradient of φ(θ) = Σ_i r_iᵀ f(x_i; θ) with r = ∂L/∂f fixed: for a
  // block of unit directions V in one parameter tensor, tangents ṫ of every value downstream
  // (jvp), then ġ backwards from ġ_out = 0 (rvjp, with the kept first-order cotangents ḡ); the
  // parameters' ġ, summed over examples, are the rows V of the residual term.
  if (kept_.empty()) throw Error(ErrorCode::kInternal, "residual_hessian needs gradient(keep=true)");
  keep_all_primals();
  const Graph& g = *graph_;
  const auto& values = g.values();
  const int64_t N = num_params();
  Buffer<T> res(be_, static_cast<size_t>(N * N));
  // Memory per direction: a tangent and a ġ for every value (per example when batched).
  int64_t per_dir = 0;
  for (const GraphValue& v : values) per_dir += 2 * (v.batched ? n_ : 1) * shape_numel(v.shape);
  per_dir *= static_cast<int64_t>(sizeof(T));
  for (size_t t = 0; t < g.parameters().size(); ++t) {
    const int pv = g.parameters()[t];
    const GraphValue& pval = values[pv];
    const int64_t count = shape_numel(pval.shape);
    const int64_t B = std::clamp<int64_t>(static_cast<int64_t>(block_bytes) / std::max<int64_t>(per_dir, 1), 1, count);
    for (int64_t p0 = 0; p0 < count; p0 += B) {
      check_cancel();
      const int64_t nb = std::min(B, count - p0);
      std::vector<Buffer<T>> tan(values.size()), dg(values.size());
      {
        std::vector<T> unit(static_cast<size_t>(nb * count), T(0));
        for (int64_t v = 0; v < nb; ++v) unit[v * count + p0 + v] = T(1);
        tan[pv] = Buffer<T>(be_, unit.size());
        be_.upload(tan[pv].get(), unit.data(), unit.size());
      }
      // Tangents of everything downstream of this parameter, then ġ backwards from ġ_out = 0
      // (the residual term holds r fixed).
      tangent_pass(nb, 0, n_, tan);
      reverse_tangent_pass(nb, 0, n_, tan, dg);
      for (size_t q = 0; q < g.parameters().size(); ++q) {
        const int qv = g.parameters()[q];
        if (dg[qv].get() == nullptr) continue;
        const int64_t cq = shape_numel(values[qv].shape);
        be_.strided_axpby(1, nb, cq, T(1), dg[qv].get(), cq, 0, T(0),
                          res.get() + (pval.param_offset + p0) * N + values[qv].param_offset, N, 0);
      }
    }
  }
  return res;
}

template <class T>
bool GraphNetwork<T>::has_structured_gram() const {
  const auto& nodes = graph_->nodes();
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!live_[i] || !ops_[i]->differentiable()) continue;
    for (size_t slot = 0; slot < nodes[i].inputs.size(); ++slot) {
      const int v = nodes[i].inputs[slot];
      if (ops_[i]->dense_factor_input(static_cast<int>(slot)) >= 0 && param_index_[v] >= 0 && uses_[v] == 1)
        return true;
    }
  }
  return false;
}

template class GraphNetwork<double>;
template class GraphNetwork<float>;

}  // namespace basin
