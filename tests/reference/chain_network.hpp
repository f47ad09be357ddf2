// The chain engine Basin had before the operation graph, kept as an INDEPENDENT REFERENCE for the
// tests: the graph executor (kernels/src/graph/executor.cpp) must give its numbers on every chain
// (tests/ops/test_executor.cpp, the engine tests' helpers). Not part of the library.
//
// Notation (DESIGN.md): n examples, k outputs, N parameters, layer i maps act[i] -> act[i+1];
// act[0] = X. "Seeds" are the output-space directions back-propagated per example: the
// identity (one row per output c) gives the rows of G; the rows of S_iᵀ, where the loss
// Hessian block is M_i = S_i S_iᵀ, give G̃ = SᵀG whose Gram has the GGN's non-zero spectrum;
// ∂L/∂f_i gives the gradient.
#pragma once

#include <atomic>
#include <functional>
#include <vector>

#include "basin/backend.hpp"
#include "basin/model.hpp"

namespace basin {

template <class T>
class Network {
 public:
  // Uploads the parameters (PyTorch order) and the inputs [n × input_dim].
  Network(Backend<T>& backend, const Model& model, const std::vector<double>& params,
          const std::vector<double>& inputs, int64_t n, const std::atomic<bool>* cancel);

  // Replaces the parameters (same architecture), keeping the inputs on the backend: the
  // checkpoints of a batch reuse one Network. forward() must run again afterwards.
  void set_params(const std::vector<double>& params);

  int64_t num_examples() const { return n_; }
  int64_t num_outputs() const { return widths_.back(); }
  int64_t num_params() const { return model_.num_params(); }

  // act[i+1] = layer_i(act[i]) for every layer.
  void forward();
  std::vector<double> outputs() const;  // [n × k] on the host
  // act[i] [n × width_after(i − 1)] on the host, i = 0..L (after forward()).
  std::vector<double> activation_on_host(int64_t i) const;

  // ∇θ L given r = ∂L/∂f [n × k] (host). Keeps the per-layer output gradients when keep is
  // true (needed by the Hessian R-op).
  std::vector<double> gradient(const std::vector<T>& dloss_df, bool keep);

  // Lower triangle of the structured Gram G̃G̃ᵀ [(n·r) × (n·r)] for seeds [(n·r) × k] (host),
  // without materialising G̃:  Σ_l (Δ_l Δ_lᵀ) ⊙ (Ā_l Ā_lᵀ ⊗ 1_r 1_rᵀ).
  // tile_rows < n·r bounds the per-layer Δ_l Δ_lᵀ work matrix to tile_rows × n·r (row tiles
  // of the lower triangle, GEMMs instead of one SYRK) when the whole square does not fit.
  Buffer<T> gram(const std::vector<T>& seeds, int64_t r, int64_t tile_rows = 0);
  // Lower triangle of G̃ᵀG̃ [N × N], accumulated over blocks of examples (G̃ built blockwise).
  Buffer<T> normal(const std::vector<T>& seeds, int64_t r, uint64_t block_bytes);
  // The triangular factor R [N × N] of G̃ = Q·R (upper triangle; the strictly lower part zero),
  // by TSQR over blocks of examples: [R; G̃_block] is QR-factorised block after block, so
  // σ(R) = σ(G̃) to ε·σ_max without materialising G̃. R is the first N·N elements of the
  // returned buffer (N + block rows long).
  Buffer<T> tsqr_r(const std::vector<T>& seeds, int64_t r, uint64_t block_bytes);
  // G̃ itself [(n·r) × N].
  Buffer<T> jacobian(const std::vector<T>& seeds, int64_t r);
  // Full residual term R = Σ_{i,c} (∂L/∂f_ic) ∇²θ f_c(x_i) [N × N] by R-op (forward-over-reverse)
  // passes over blocks of unit directions; requires gradient(…, keep = true) first.
  Buffer<T> residual_hessian(uint64_t block_bytes);

  // One back-propagation of `seeds` [(n·r) × k] over all n examples, handing every dense
  // layer (last to first) its sensitivities Δ [(n·r) × d_out] and its input A [n × d_in]: the
  // factors of that layer's column blocks of G̃ (weight rows δ ⊗ a, bias rows δ).
  struct LayerFactors {
    int64_t layer;   // index in model.layers (nn.Sequential's module index)
    int64_t d_in, d_out;
    bool bias;
    int64_t offset;  // first parameter of the layer in θ
    const T* delta;
    const T* act;
  };
  void layer_factors(const std::vector<T>& seeds, int64_t r, const std::function<void(const LayerFactors&)>& visit);

  struct DenseInfo {
    int64_t layer;      // index in model.layers
    int64_t d_in, d_out;
    bool bias;
    int64_t offset;     // first parameter of this layer in θ
    int64_t count;      // d_out·d_in (+ d_out)
  };
  // Per-layer access for the per-parameter-tensor spectra (per_parameter.cpp).
  using BlockVisitor = std::function<void(const DenseInfo& dense, int64_t i0, int64_t rows, const T* delta)>;
  const std::vector<DenseInfo>& dense_layers() const { return dense_; }
  const T* activation(int64_t i) const { return act_[i].get(); }  // act[i] [n × width], after forward()
  // For consecutive blocks of `block` examples [i0, i0 + block): back-propagates the host seeds
  // (r rows per example) and calls visit(dense, i0, rows, Δ) for every dense layer, last to first.
  void backprop_blocks(const std::vector<T>& seeds, int64_t r, int64_t block, const BlockVisitor& visit);

 private:
  // Calls visit(dense, Δ) for every dense layer, last to first, where Δ [(count·r) × d_out] is
  // the sensitivity of the seeded outputs to that layer's pre-activation output for examples
  // [i0, i0+count). Seeds are on the backend.
  using DenseVisitor = std::function<void(const DenseInfo& dense, const T* delta)>;
  void backprop(const T* seeds, int64_t i0, int64_t count, int64_t r, const DenseVisitor& visit,
                std::vector<Buffer<T>>* keep);
  void backprop_blocks(const std::vector<T>& seeds, int64_t r, int64_t block, const BlockVisitor& visit,
                       const std::function<void(int64_t rows)>& after);
  // Examples per block of G̃ rows: as many as fit in block_bytes, at least 1, at most n.
  int64_t examples_per_block(int64_t r, uint64_t block_bytes) const;
  // For consecutive blocks of `block` examples: assembles their rows of G̃ into out [rows × N]
  // (leading dimension N), then calls consume(rows).
  void jacobian_blocks(const std::vector<T>& seeds, int64_t r, int64_t block, T* out,
                       const std::function<void(int64_t rows)>& consume);
  void check_cancel() const;
  // Widths of act[layer] and act[layer + 1], from widths_ (computed once: O(1) per layer).
  int64_t width_in(int64_t layer) const { return widths_[static_cast<size_t>(layer)]; }
  int64_t width_out(int64_t layer) const { return widths_[static_cast<size_t>(layer) + 1]; }

  Backend<T>& be_;
  Model model_;
  std::vector<int64_t> widths_;  // model_.widths(): act[i] is n × widths_[i]
  int64_t n_;
  const std::atomic<bool>* cancel_;
  std::vector<DenseInfo> dense_;
  std::vector<Buffer<T>> weights_, biases_;  // per dense layer
  std::vector<Buffer<T>> act_;               // act_[i], i = 0..L
  std::vector<Buffer<T>> grad_out_;          // ∂L/∂act[i] (kept by gradient(…, true))
  int64_t max_width_ = 0;
};

extern template class Network<double>;
extern template class Network<float>;

}  // namespace basin
