#include "chain_network.hpp"

#include <algorithm>
#include <cmath>

#include "basin/error.hpp"

namespace basin {

template <class T>
Network<T>::Network(Backend<T>& backend, const Model& model, const std::vector<double>& params,
                    const std::vector<double>& inputs, int64_t n, const std::atomic<bool>* cancel)
    : be_(backend), model_(model), widths_(model.widths()), n_(n), cancel_(cancel) {
  int64_t offset = 0;
  max_width_ = model_.input_dim;
  for (int64_t i = 0; i < static_cast<int64_t>(model_.layers.size()); ++i) {
    check_cancel();
    const Layer& l = model_.layers[i];
    max_width_ = std::max(max_width_, width_out(i));
    if (l.kind != Layer::Kind::kDense) continue;
    DenseInfo d{i, width_in(i), l.out, l.bias, offset, l.out * width_in(i) + (l.bias ? l.out : 0)};
    std::vector<T> w(params.begin() + offset, params.begin() + offset + d.d_out * d.d_in);
    weights_.emplace_back(be_, w.size());
    be_.upload(weights_.back().get(), w.data(), w.size());
    if (d.bias) {
      std::vector<T> b(params.begin() + offset + d.d_out * d.d_in, params.begin() + offset + d.count);
      biases_.emplace_back(be_, b.size());
      be_.upload(biases_.back().get(), b.data(), b.size());
    } else {
      biases_.emplace_back();
    }
    offset += d.count;
    dense_.push_back(d);
  }
  std::vector<T> x(inputs.begin(), inputs.end());
  act_.emplace_back(be_, x.size());
  be_.upload(act_[0].get(), x.data(), x.size());
}

template <class T>
void Network<T>::set_params(const std::vector<double>& params) {
  for (size_t j = 0; j < dense_.size(); ++j) {
    const DenseInfo& d = dense_[j];
    const std::vector<T> w(params.begin() + d.offset, params.begin() + d.offset + d.d_out * d.d_in);
    be_.upload(weights_[j].get(), w.data(), w.size());
    if (d.bias) {
      const std::vector<T> b(params.begin() + d.offset + d.d_out * d.d_in, params.begin() + d.offset + d.count);
      be_.upload(biases_[j].get(), b.data(), b.size());
    }
  }
  act_.resize(1);  // activations of the old parameters are stale
  grad_out_.clear();
}

template <class T>
void Network<T>::check_cancel() const {
  if (cancel_ != nullptr && cancel_->load(std::memory_order_relaxed))
    throw Error(ErrorCode::kCancelled, "analysis cancelled");
}

template <class T>
void Network<T>::forward() {
  act_.resize(1);
  size_t dense_index = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(model_.layers.size()); ++i) {
    check_cancel();  // per layer: a deep model must stop within one layer's work
    const Layer& l = model_.layers[i];
    const int64_t d_in = width_in(i), d_out = width_out(i);
    Buffer<T> out(be_, static_cast<size_t>(n_ * d_out));
    if (l.kind == Layer::Kind::kDense) {
      // act[i+1] = act[i] · Wᵀ + b
      be_.gemm(false, true, n_, d_out, d_in, T(1), act_[i].get(), d_in, weights_[dense_index].get(),
               d_in, T(0), out.get(), d_out);
      if (l.bias) be_.add_row_vector(n_, d_out, biases_[dense_index].get(), out.get(), d_out);
      ++dense_index;
    } else {
      be_.activation_forward(ActivationFn<T>{l.activation, T(l.alpha)}, static_cast<size_t>(n_ * d_out),
                             act_[i].get(), out.get());
    }
    act_.push_back(std::move(out));
  }
}

template <class T>
std::vector<double> Network<T>::outputs() const {
  const int64_t k = num_outputs();
  std::vector<T> host(static_cast<size_t>(n_ * k));
  be_.download(host.data(), act_.back().get(), host.size());
  return std::vector<double>(host.begin(), host.end());
}

template <class T>
std::vector<double> Network<T>::activation_on_host(int64_t i) const {
  std::vector<T> host(act_.at(static_cast<size_t>(i)).size());
  be_.download(host.data(), act_[i].get(), host.size());
  return std::vector<double>(host.begin(), host.end());
}

template <class T>
void Network<T>::backprop(const T* seeds, int64_t i0, int64_t count, int64_t r,
                          const DenseVisitor& visit, std::vector<Buffer<T>>* keep) {
  const int64_t rows = count * r;
  const int64_t first_dense_layer = dense_.front().layer;
  Buffer<T> cur(be_, static_cast<size_t>(rows * max_width_));
  Buffer<T> next(be_, static_cast<size_t>(rows * max_width_));
  be_.copy(cur.get(), seeds, static_cast<size_t>(rows * num_outputs()));
  int64_t dense_index = static_cast<int64_t>(dense_.size()) - 1;
  for (int64_t i = static_cast<int64_t>(model_.layers.size()) - 1; i >= first_dense_layer; --i) {
    check_cancel();
    const Layer& l = model_.layers[i];
    const int64_t d_out = width_out(i), d_in = width_in(i);
    if (keep != nullptr) {  // ∂/∂act[i+1]
      (*keep)[i + 1] = Buffer<T>(be_, static_cast<size_t>(rows * d_out));
      be_.copy((*keep)[i + 1].get(), cur.get(), static_cast<size_t>(rows * d_out));
    }
    if (l.kind == Layer::Kind::kActivation) {
      // Δ_in = Δ_out ⊙ φ'(z), z = act[i] of the same example, for all r seeded rows at once.
      be_.scale_by_activation_derivative(ActivationFn<T>{l.activation, T(l.alpha)}, count, r, d_out,
                                         act_[i].get() + i0 * d_in, cur.get());
      continue;
    }
    const DenseInfo& dense = dense_[dense_index];
    visit(dense, cur.get());
    if (i > first_dense_layer) {
      // Δ_in = Δ_out · W   ([rows × d_out] · [d_out × d_in])
      be_.gemm(false, false, rows, d_in, d_out, T(1), cur.get(), d_out, weights_[dense_index].get(),
               d_in, T(0), next.get(), d_in);
      std::swap(cur, next);
    }
    --dense_index;
  }
}

template <class T>
std::vector<double> Network<T>::gradient(const std::vector<T>& dloss_df, bool keep) {
  const int64_t N = num_params();
  Buffer<T> seeds(be_, dloss_df.size());
  be_.upload(seeds.get(), dloss_df.data(), dloss_df.size());
  Buffer<T> grad(be_, static_cast<size_t>(N));
  if (keep) {
    grad_out_.clear();
    grad_out_.resize(model_.layers.size() + 1);
  }
  backprop(
      seeds.get(), 0, n_, 1,
      [&](const DenseInfo& d, const T* delta) {
        // ∇W = Δᵀ · A_in  ([d_out × n] · [n × d_in]), ∇b = Σ_i Δ_i
        be_.gemm(true, false, d.d_out, d.d_in, n_, T(1), delta, d.d_out, act_[d.layer].get(), d.d_in,
                 T(0), grad.get() + d.offset, d.d_in);
        if (d.bias) be_.column_sums(n_, d.d_out, delta, d.d_out, grad.get() + d.offset + d.d_out * d.d_in);
      },
      keep ? &grad_out_ : nullptr);
  std::vector<T> host(static_cast<size_t>(N));
  be_.download(host.data(), grad.get(), host.size());
  return std::vector<double>(host.begin(), host.end());
}

template <class T>
Buffer<T> Network<T>::gram(const std::vector<T>& seeds, int64_t r, int64_t tile_rows) {
  const int64_t m = n_ * r;
  const int64_t tile = tile_rows <= 0 || tile_rows >= m ? m : tile_rows;
  Buffer<T> seeds_dev(be_, seeds.size());
  be_.upload(seeds_dev.get(), seeds.data(), seeds.size());
  Buffer<T> gram(be_, static_cast<size_t>(m * m));
  Buffer<T> delta_gram(be_, static_cast<size_t>(tile * m));
  Buffer<T> act_gram(be_, static_cast<size_t>(n_ * n_));
  backprop(
      seeds_dev.get(), 0, n_, r,
      [&](const DenseInfo& d, const T* delta) {
        // Block of G for W_l at row (i,c) is δ_(i,c) ⊗ a_i, so the layer's share of G Gᵀ is
        // (δ·δ') (a·a' + 1[bias]): Δ Δᵀ, A Aᵀ, one Hadamard accumulation.
        be_.syrk_lower(false, n_, d.d_in, T(1), act_[d.layer].get(), d.d_in, T(0), act_gram.get(), n_);
        if (tile == m) {
          be_.syrk_lower(false, m, d.d_out, T(1), delta, d.d_out, T(0), delta_gram.get(), m);
          be_.hadamard_expand_accumulate(n_, r, act_gram.get(), d.bias ? T(1) : T(0), 0, m, delta_gram.get(), m,
                                         gram.get());
          return;
        }
        // Row tile [row0, row0 + rows): only columns ≤ the tile's last row are needed (lower
        // triangle), so D_tile [rows × w] = Δ[row0 : row0+rows] · Δ[0 : w]ᵀ with w = row0 + rows.
        for (int64_t row0 = 0; row0 < m; row0 += tile) {
          const int64_t rows = std::min(tile, m - row0), w = row0 + rows;
          be_.gemm(false, true, rows, w, d.d_out, T(1), delta + row0 * d.d_out, d.d_out, delta, d.d_out, T(0),
                   delta_gram.get(), w);
          be_.hadamard_expand_accumulate(n_, r, act_gram.get(), d.bias ? T(1) : T(0), row0, rows, delta_gram.get(),
                                         w, gram.get());
        }
      },
      nullptr);
  return gram;
}

template <class T>
void Network<T>::layer_factors(const std::vector<T>& seeds, int64_t r,
                               const std::function<void(const LayerFactors&)>& visit) {
  Buffer<T> seeds_dev(be_, seeds.size());
  be_.upload(seeds_dev.get(), seeds.data(), seeds.size());
  backprop(
      seeds_dev.get(), 0, n_, r,
      [&](const DenseInfo& d, const T* delta) {
        visit(LayerFactors{d.layer, d.d_in, d.d_out, d.bias, d.offset, delta, act_[d.layer].get()});
      },
      nullptr);
}

template <class T>
Buffer<T> Network<T>::jacobian(const std::vector<T>& seeds, int64_t r) {
  const int64_t N = num_params();
  Buffer<T> g(be_, static_cast<size_t>(n_ * r * N));
  jacobian_blocks(seeds, r, n_, g.get(), [](int64_t) {});  // one block: all n examples
  return g;
}

template <class T>
int64_t Network<T>::examples_per_block(int64_t r, uint64_t block_bytes) const {
  const int64_t per_example = r * num_params() * static_cast<int64_t>(sizeof(T));
  return std::clamp<int64_t>(static_cast<int64_t>(block_bytes) / std::max<int64_t>(per_example, 1), 1, n_);
}

template <class T>
void Network<T>::backprop_blocks(const std::vector<T>& seeds, int64_t r, int64_t block, const BlockVisitor& visit) {
  backprop_blocks(seeds, r, block, visit, [](int64_t) {});
}

template <class T>
void Network<T>::backprop_blocks(const std::vector<T>& seeds, int64_t r, int64_t block, const BlockVisitor& visit,
                                 const std::function<void(int64_t rows)>& after) {
  const int64_t k = num_outputs();
  Buffer<T> seeds_dev(be_, seeds.size());
  be_.upload(seeds_dev.get(), seeds.data(), seeds.size());
  for (int64_t i0 = 0; i0 < n_; i0 += block) {
    const int64_t count = std::min(block, n_ - i0), rows = count * r;
    backprop(
        seeds_dev.get() + i0 * r * k, i0, count, r, [&](const DenseInfo& d, const T* delta) { visit(d, i0, rows, delta); },
        nullptr);
    after(rows);
  }
}

template <class T>
void Network<T>::jacobian_blocks(const std::vector<T>& seeds, int64_t r, int64_t block, T* out,
                                 const std::function<void(int64_t rows)>& consume) {
  const int64_t N = num_params();
  backprop_blocks(
      seeds, r, block,
      [&](const DenseInfo& d, int64_t i0, int64_t rows, const T* delta) {
        be_.assemble_jacobian_block(rows, i0 * r, r, d.d_out, d.d_in, d.bias, delta, act_[d.layer].get(), out, N,
                                    d.offset);
      },
      consume);
}

template <class T>
Buffer<T> Network<T>::normal(const std::vector<T>& seeds, int64_t r, uint64_t block_bytes) {
  const int64_t N = num_params(), block = examples_per_block(r, block_bytes);
  Buffer<T> normal(be_, static_cast<size_t>(N * N));
  Buffer<T> g_block(be_, static_cast<size_t>(block * r * N));
  // GᵀG += G_blockᵀ G_block
  jacobian_blocks(seeds, r, block, g_block.get(),
                  [&](int64_t rows) { be_.syrk_lower(true, N, rows, T(1), g_block.get(), N, T(1), normal.get(), N); });
  return normal;
}

template <class T>
Buffer<T> Network<T>::tsqr_r(const std::vector<T>& seeds, int64_t r, uint64_t block_bytes) {
  // TSQR: with R = 0 and, for each block, [R; G_block] = Q'·R', R ← R', the final R satisfies
  // RᵀR = Σ G_blockᵀG_block = G̃ᵀG̃, so σ(R) = σ(G̃); every step is an orthogonal
  // transformation (backward stable), so σ keeps the accuracy of an SVD of G̃ (ε·σ_max), not
  // the √ε·σ_max of GᵀG. The blocks are assembled straight below R in one stacked buffer.
  const int64_t N = num_params(), block = examples_per_block(r, block_bytes);
  Buffer<T> stack(be_, static_cast<size_t>((N + block * r) * N));  // R on top, zero to begin with
  jacobian_blocks(seeds, r, block, stack.get() + N * N, [&](int64_t rows) { be_.qr_r(N + rows, N, stack.get()); });
  return stack;
}

template <class T>
Buffer<T> Network<T>::residual_hessian(uint64_t block_bytes) {
  // Pearlmutter's R-op on the gradient of φ(θ) = Σ_i r_iᵀ f(x_i; θ) with r = ∂L/∂f held fixed:
  // row p of R is R_v{∇φ} for v = e_p. Directions are taken in blocks of B that lie in one
  // dense layer m (so the forward R-pass starts at layer m). Rows are example-major (i, v).
  //   forward:  R{z} = V a + W R{a} (+ V_b),   R{a} = φ'(z) ⊙ R{z}
  //   backward: R{g_z} = φ''(z) ⊙ R{z} ⊙ g_a + φ'(z) ⊙ R{g_a},   R{g_in} = R{g_out} W (+ g_out V)
  //   rows:     R{∇W} = Σ_i R{g_out}_i ⊗ a_i + g_out,i ⊗ R{a}_i,   R{∇b} = Σ_i R{g_out}_i
  if (grad_out_.empty()) throw Error(ErrorCode::kInternal, "residual_hessian needs gradient(keep=true)");
  const int64_t N = num_params(), L = static_cast<int64_t>(model_.layers.size());
  int64_t width_sum = 0, max_weights = 0;
  for (int64_t i = 0; i <= L; ++i) width_sum += width_in(i);
  for (const DenseInfo& d : dense_) max_weights = std::max(max_weights, d.d_out * d.d_in);
  Buffer<T> res(be_, static_cast<size_t>(N * N));
  // Work buffers sized for the largest block and reused by every block of every layer: on a VM
  // a first touch of a fresh page costs 10-30 µs, more than the small GEMMs these feed.
  auto ensure = [&](Buffer<T>& b, int64_t count) {
    if (static_cast<int64_t>(b.size()) < count) b = Buffer<T>(be_, static_cast<size_t>(count));
  };
  Buffer<T> vw_dev, vb_dev, vwp_dev, rows_w, rows_ra, rows_b, rg, rg_next;
  std::vector<Buffer<T>> ra_store(static_cast<size_t>(L + 1));
  for (size_t mi = 0; mi < dense_.size(); ++mi) {
    const DenseInfo& dm = dense_[mi];
    const int64_t per_dir = (n_ * (width_sum + 2 * max_width_) + dm.count + 2 * max_weights + max_width_) *
                            static_cast<int64_t>(sizeof(T));
    const int64_t B = std::clamp<int64_t>(static_cast<int64_t>(block_bytes) / std::max<int64_t>(per_dir, 1), 1, dm.count);
    ensure(vw_dev, B * dm.d_out * dm.d_in);
    ensure(vb_dev, B * dm.d_out);
    ensure(vwp_dev, B * dm.d_out * dm.d_in);  // V_W as [d_out × (v, q)]: g_out·V_W for all v in one GEMM
    // Per-layer products of all directions at once, moved into the rows of R afterwards.
    ensure(rows_w, B * max_weights);
    ensure(rows_ra, B * max_weights);
    ensure(rows_b, B * max_width_);
    ensure(rg, n_ * B * max_width_);
    ensure(rg_next, n_ * B * max_width_);
    // ra[i] = R{act[i]} for i > m; for i <= m it is zero (independent of V) and left null.
    std::vector<T*> ra(static_cast<size_t>(L + 1), nullptr);
    for (int64_t i = dm.layer + 1; i <= L; ++i) {
      ensure(ra_store[i], n_ * B * width_in(i));
      ra[i] = ra_store[i].get();
    }
    for (int64_t p0 = 0; p0 < dm.count; p0 += B) {
      check_cancel();
      const int64_t nb = std::min(B, dm.count - p0);
      // Unit directions e_{p0..p0+nb} of this layer, split into weight and bias parts.
      std::vector<T> vw(static_cast<size_t>(nb * dm.d_out * dm.d_in), T(0)), vb(static_cast<size_t>(nb * dm.d_out), T(0));
      std::vector<T> vwp(vw.size(), T(0));
      for (int64_t v = 0; v < nb; ++v) {
        const int64_t p = p0 + v;
        if (p < dm.d_out * dm.d_in) {
          vw[v * dm.d_out * dm.d_in + p] = T(1);
          const int64_t o = p / dm.d_in, q = p % dm.d_in;
          vwp[o * nb * dm.d_in + v * dm.d_in + q] = T(1);
        } else {
          vb[v * dm.d_out + (p - dm.d_out * dm.d_in)] = T(1);
        }
      }
      be_.upload(vw_dev.get(), vw.data(), vw.size());
      be_.upload(vb_dev.get(), vb.data(), vb.size());
      be_.upload(vwp_dev.get(), vwp.data(), vwp.size());

      // R-forward. ra[i] = R{act[i]} [(n·nb) × width], empty for i <= m (independent of V).
      {
        const int64_t d_out = dm.d_out, d_in = dm.d_in;
        // [n × d_in] · V_Wᵀ with V_W viewed as [(nb·d_out) × d_in]: row i, column (v, o).
        be_.gemm(false, true, n_, nb * d_out, d_in, T(1), act_[dm.layer].get(), d_in, vw_dev.get(), d_in, T(0),
                 ra[dm.layer + 1], nb * d_out);
        if (dm.bias) be_.add_row_vector(n_, nb * d_out, vb_dev.get(), ra[dm.layer + 1], nb * d_out);
      }
      size_t di = mi + 1;
      for (int64_t i = dm.layer + 1; i < L; ++i) {
        check_cancel();
        const Layer& l = model_.layers[i];
        const int64_t d_out = width_out(i), d_in = width_in(i);
        if (l.kind == Layer::Kind::kDense) {
          be_.gemm(false, true, n_ * nb, d_out, d_in, T(1), ra[i], d_in, weights_[di].get(), d_in, T(0),
                   ra[i + 1], d_out);
          ++di;
        } else {
          be_.copy(ra[i + 1], ra[i], static_cast<size_t>(n_ * nb * d_out));
          be_.scale_by_activation_derivative(ActivationFn<T>{l.activation, T(l.alpha)}, n_, nb, d_out,
                                             act_[i].get(), ra[i + 1]);
        }
      }

      // R-backward from R{∂L/∂f} = 0 (the residual term holds r fixed).
      be_.fill(rg.get(), static_cast<size_t>(n_ * nb * num_outputs()), T(0));
      int64_t dj = static_cast<int64_t>(dense_.size()) - 1;
      for (int64_t i = L - 1; i >= dense_.front().layer; --i) {
        check_cancel();
        const Layer& l = model_.layers[i];
        const int64_t d_out = width_out(i), d_in = width_in(i);
        const T* g_out = grad_out_[i + 1].get();
        if (l.kind == Layer::Kind::kActivation) {
          const ActivationFn<T> fn{l.activation, T(l.alpha)};
          if (ra[i] != nullptr)
            be_.rop_activation_backward(fn, n_, nb, d_out, act_[i].get(), ra[i], g_out, rg.get());
          else
            be_.scale_by_activation_derivative(fn, n_, nb, d_out, act_[i].get(), rg.get());
          continue;
        }
        const DenseInfo& d = dense_[dj];
        // Rows p0..p0+nb of R, columns of this layer, for all directions with one GEMM each:
        // R{∇W}_v = R{g_out}_vᵀ A_in (+ g_outᵀ R{A_in}_v),  R{∇b}_v = Σ_i R{g_out}_(i,v).
        T* rows = res.get() + (dm.offset + p0) * N + d.offset;
        // [R{g_out} viewed as n × (v, o)]ᵀ · A_in  →  [(v, o) × q]: block v is row v's weights.
        be_.gemm(true, false, nb * d_out, d_in, n_, T(1), rg.get(), nb * d_out, act_[i].get(), d_in, T(0),
                 rows_w.get(), d_in);
        be_.strided_axpby(nb, d_out, d_in, T(1), rows_w.get(), d_in, d_out * d_in, T(0), rows, d_in, N);
        if (ra[i] != nullptr) {
          // g_outᵀ · [R{A_in} viewed as n × (v, q)]  →  [o × (v, q)]: block v starts at column v·d_in.
          be_.gemm(true, false, d_out, nb * d_in, n_, T(1), g_out, d_out, ra[i], nb * d_in, T(0),
                   rows_ra.get(), nb * d_in);
          be_.strided_axpby(nb, d_out, d_in, T(1), rows_ra.get(), nb * d_in, d_in, T(1), rows, d_in, N);
        }
        if (d.bias) {
          be_.column_sums(n_, nb * d_out, rg.get(), nb * d_out, rows_b.get());
          be_.strided_axpby(nb, 1, d_out, T(1), rows_b.get(), d_out, d_out, T(0), rows + d_out * d_in, d_out, N);
        }
        if (i > dense_.front().layer) {
          be_.gemm(false, false, n_ * nb, d_in, d_out, T(1), rg.get(), d_out, weights_[dj].get(), d_in, T(0),
                   rg_next.get(), d_in);
          if (dj == static_cast<int64_t>(mi))  // + g_out · V_W for every v: [n × d_out] · [d_out × (v, q)]
            be_.gemm(false, false, n_, nb * d_in, d_out, T(1), g_out, d_out, vwp_dev.get(), nb * d_in, T(1),
                     rg_next.get(), nb * d_in);
          std::swap(rg, rg_next);
        }
        --dj;
      }
    }
  }
  return res;
}

template class Network<double>;
template class Network<float>;

}  // namespace basin
