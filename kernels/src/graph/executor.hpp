// The executor: a Graph's passes over a backend, and the matrices the engine needs from them.
//
// docs/ARCHITECTURE.md ("The executor") is the design. Every pass runs the nodes in topological
// order (forward, tangents) or in reverse (cotangents), calling each node's op (kernels/src/ops):
//   forward      primal values of every value, all n examples at once;
//   backward     cotangents of R seeded output directions per example (the identity: the rows
//                of G; the columns of S_i: the rows of G̃ = SᵀG; ∂L/∂f: the gradient), per
//                example (rows of G) or summed over examples (gradients);
//   tangents +   forward-over-reverse for blocks of unit directions in θ: rows of the Hessian's
//   rvjp         residual term.
// The public methods mirror the chain engine it replaced (kept as a test reference:
// tests/reference/chain_network.hpp).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "basin/backend.hpp"
#include "basin/graph.hpp"
#include "ops/op.hpp"

namespace basin {

template <class T>
class GraphNetwork {
 public:
  GraphNetwork(Backend<T>& backend, std::shared_ptr<const Graph> graph, const std::vector<double>& params,
               const std::vector<double>& inputs, int64_t n, const std::atomic<bool>* cancel);

  // Replaces θ (same graph), keeping the inputs; forward() must run again afterwards.
  void set_params(const std::vector<double>& params);

  int64_t num_examples() const { return n_; }
  int64_t num_outputs() const { return graph_->output_dim(); }
  int64_t num_params() const { return graph_->num_params(); }
  const Graph& graph() const { return *graph_; }

  void forward();
  std::vector<double> outputs() const;  // [n × k]
  // A value's primal on the host (after forward()): [n × size] batched, [size] otherwise. Only
  // values some derivative pass reads are kept (and the input and output); others throw. A
  // checkpointed segment's value is recomputed.
  std::vector<double> value_on_host(int v);

  // ∇θ L for r = ∂L/∂f [n × k]; keep = true keeps every value's cotangent for residual_hessian.
  std::vector<double> gradient(const std::vector<T>& dloss_df, bool keep);
  // Lower triangle of G̃G̃ᵀ [(n·r) × (n·r)] for seeds [(n·r) × k]: dense layers by the structured
  // form (ΔΔᵀ) ⊙ (AAᵀ + 1), every other parameter tensor by its materialised per-example block
  // B_t [(n·r) × count_t] (Σ_t B_t B_tᵀ). tile_rows < n·r bounds the structured work matrix.
  Buffer<T> gram(const std::vector<T>& seeds, int64_t r, int64_t tile_rows = 0);
  // Lower triangle of G̃ᵀG̃ [N × N], G̃ assembled over blocks of examples.
  Buffer<T> normal(const std::vector<T>& seeds, int64_t r, uint64_t block_bytes);
  // TSQR's R of G̃ over blocks of examples: [R; G_block] QR-factorised block after block.
  Buffer<T> tsqr_r(const std::vector<T>& seeds, int64_t r, uint64_t block_bytes);
  // G̃ [(n·r) × N].
  Buffer<T> jacobian(const std::vector<T>& seeds, int64_t r);
  // The residual term Σ_{i,c} r_ic ∇²θ f_c(x_i) [N × N] (needs gradient(…, keep = true)).
  Buffer<T> residual_hessian(uint64_t block_bytes);

  // For consecutive blocks of `block` examples [i0, i0 + block): back-propagates the host seeds
  // (r rows per example) and calls visit(t, i0, rows, B) for every parameter tensor t (index in
  // graph().parameters()) with its per-example Jacobian block B [rows × count_t] (backend memory).
  using BlockVisitor = std::function<void(size_t t, int64_t i0, int64_t rows, const T* block)>;
  // A dense layer's factors instead of its weight's (and bias's) block: the weight's block row
  // (i, c) is δ_(i,c) ⊗ a_i, the bias's is δ_(i,c) (docs/ARCHITECTURE.md "Structured Gram").
  struct DenseFactors {
    size_t weight;     // parameter index of W [d_out × d_in]
    int bias;          // parameter index of its bias, or -1 (then the bias, if any, is a block)
    int64_t i0, rows;  // examples [i0, i0 + rows / r)
    const T* delta;    // Δ [rows × d_out]
    int64_t d_out;
    const T* a;        // A [rows / r × d_in], the layer's input for those examples
    int64_t d_in;
  };
  using DenseFactorVisitor = std::function<void(const DenseFactors&)>;
  // With `dense`, dense layers whose weight is used once come as factors, not blocks.
  void parameter_blocks(const std::vector<T>& seeds, int64_t r, int64_t block, const BlockVisitor& visit,
                        const DenseFactorVisitor* dense = nullptr);

  // gram() takes a parameter's per-example block in column ranges of at most this many bytes
  // when it is larger (and its op can: Op::vjp_param_rows). Default 32 MiB; tests set it small.
  void set_param_chunk_bytes(int64_t bytes) { param_chunk_bytes_ = std::max<int64_t>(bytes, 1); }

  // Whether gram() takes some parameter by the structured dense form instead of its block.
  bool has_structured_gram() const;

  // ---- Checkpointed segments (docs/ARCHITECTURE.md "Checkpointed segments"; checkpoints.cpp) ----
  // The graph's cuts — values through which every example's data flows, like the residual
  // stream between ResNet blocks — split its nodes into segments. With checkpointing on, the
  // forward pass keeps only the cut values (and the input, output, parameters, constants and
  // unbatched values); a backward pass recomputes a segment's primals, for the examples it is
  // working on, when it reaches it and frees them when it leaves. On by default where the primals
  // would pass 64 MiB; the curvature products and the residual Hessian turn it off (they keep
  // every primal). Takes effect at the next forward().
  void set_checkpointing(bool on) { checkpoint_ = on; }
  bool checkpointing() const { return checkpoint_; }
  size_t num_segments() const { return seg_begin_.size(); }
  // With checkpointing, gram() runs the nodes below one cut — where activations are large and
  // parameters few — over blocks of examples, storing those parameters' blocks for all rows (at
  // most split_block_bytes, default 64 MiB, and 1/4 of G), instead of every row at once. 0:
  // never. gram_split(r): the node it splits after for r rows per example (-1: none).
  void set_split_block_bytes(int64_t bytes) { split_block_bytes_ = bytes; }
  // The examples per block below the split: the largest cotangent there for a block's rows within
  // this many bytes (default 8 MiB; tests set it small).
  void set_split_pass_bytes(int64_t bytes) { split_pass_bytes_ = std::max<int64_t>(bytes, 1); }
  int64_t gram_split(int64_t r) const {
    int64_t low = 0;
    return checkpoint_ ? split_node(r, &low) : -1;
  }

  // ---- Curvature products (issue 12; defined in kernels/src/graph/products.cpp) ----
  // Operators applied to a block of b directions in θ, V [b × N] row-major in backend memory,
  // into out [b × N] (backend memory, overwritten), never forming an N×N or (n·k)×N matrix. The
  // passes run over blocks of examples whose working set (a tangent and a ġ of every value for
  // b directions) stays under pass_bytes, and are summed. `apply_m(u, i0, count)` replaces the
  // output tangents u [count × b × k] (host, example-major) of examples [i0, i0 + count) by
  // M_i u_i (the loss Hessian; the identity for GᵀG).
  using OutputMap = std::function<void(std::vector<T>& u, int64_t i0, int64_t count)>;
  //   H·V: tangents of every parameter = V's slices (jvp), then ġ backwards from ġ_out = M·J·V
  //   with the kept gradient cotangents (rvjp): the full Hessian (needs gradient(…, keep = true)).
  void hessian_product(const T* V, int64_t b, const OutputMap& apply_m, T* out, uint64_t pass_bytes);
  //   Jᵀ M J V (GGN·V; GᵀG·V with apply_m = identity): jvp, then vjp summed over examples.
  void gauss_newton_product(const T* V, int64_t b, const OutputMap& apply_m, T* out, uint64_t pass_bytes);
  //   J V for examples [i0, i0 + count): host [count × b × k].
  std::vector<T> jacobian_product(const T* V, int64_t b, int64_t i0, int64_t count);
  //   Jᵀ U summed over examples [i0, i0 + count), U host [count × b × k]; out [b × N] += .
  void jacobian_transpose_product(const std::vector<T>& U, int64_t b, int64_t i0, int64_t count, T* out);
  // Examples per pass of a product over b directions within pass_bytes (n when the graph has
  // differentiable nodes computed from parameters alone: their rvjp terms are not per example).
  int64_t product_examples(int64_t b, uint64_t pass_bytes) const;

 private:
  enum class Mode { kPerExample, kSummed };
  // A parameter tensor's cotangent is complete: visit(t, tensor). For Mode kPerExample, E = count.
  using ParamVisitor = std::function<void(size_t t, const Tensor<T>& cot)>;
  // A dense layer's factors for the structured Gram: Δ = cotangent of the layer output
  // [(count·r) × d_out], A = its input [count × d_in], the weight's parameter index and the
  // bias's (-1: none taken with it).
  using DenseVisitor = std::function<void(const Tensor<T>& delta, const Tensor<T>& a, size_t weight, int bias)>;

  // With `chunks` (per-example mode), a parameter block over kParamChunkBytes that the op can
  // produce in column ranges (Op::vjp_param_rows) goes to chunks piece by piece instead of visit.
  // The nodes a backward pass runs: [lo, hi) (hi = -1: all), seeded at `seed_value` (-1: the
  // output); with stop_cot, the cotangent of `stop_value` is handed out at the end (the seed of a
  // later pass over the nodes below it).
  struct NodeRange {
    int64_t lo = 0, hi = -1;
    int seed_value = -1;
    int stop_value = -1;
    Buffer<T>* stop_cot = nullptr;
  };
  void backward(const T* seeds, int64_t i0, int64_t count, int64_t r, Mode mode, const ParamVisitor& visit,
                const DenseVisitor* dense, std::vector<Buffer<T>>* keep, const ParamVisitor* chunks = nullptr,
                const NodeRange& range = NodeRange());
  Tensor<T> primal(int v, int64_t i0, int64_t count) const;
  OpCall<T> call(size_t node, int64_t i0, int64_t count) const;
  int64_t examples_per_block(int64_t r, uint64_t block_bytes) const;
  void jacobian_blocks(const std::vector<T>& seeds, int64_t r, int64_t block, T* out,
                       const std::function<void(int64_t rows)>& consume);
  void check_cancel() const;
  // The forward-over-reverse passes (products.cpp), shared by the curvature products and the
  // residual Hessian, for b directions and examples [i0, i0 + count):
  //   parameter_tangents: tan[p] = the parameters' slices of V [b × N] (the rest null);
  //   tangent_pass: tangents of every value downstream of a seeded tan (jvp);
  //   reverse_tangent_pass: ġ backwards (rvjp with the kept cotangents ḡ) from a seeded dg (the
  //   output's ġ, or none; the parameters' ġ accumulate into dg[p]).
  void parameter_tangents(const T* V, int64_t b, std::vector<Buffer<T>>& tan);
  void tangent_pass(int64_t b, int64_t i0, int64_t count, std::vector<Buffer<T>>& tan);
  void reverse_tangent_pass(int64_t b, int64_t i0, int64_t count, std::vector<Buffer<T>>& tan,
                            std::vector<Buffer<T>>& dg);
  void upload_params(const std::vector<double>& params);
  // Checkpointed segments (checkpoints.cpp).
  void find_segments();
  void ensure_segment(int s, int64_t i0, int64_t count);  // primals of segment s for those examples
  int cut_value(int s) const;
  bool released(int v) const;
  void compute_segment(int s, int64_t i0, int64_t count, bool with_cut);
  void restore_cuts();
  void drop_segment(int s);                               // frees its recomputable primals
  void keep_all_primals();                                // every primal resident, checkpointing off
  int64_t primal_bytes() const;                           // of every batched node value, all examples
  // The cut gram() splits at for r rows per example (-1: none) and its parameters' columns.
  int64_t split_node(int64_t r, int64_t* low_params) const;
  void release_below_split(int64_t split);
  void gram_below_split(const T* cut_cot, int64_t r, int64_t split, int64_t low_params,
                        const std::function<void(const Tensor<T>&)>& add_block);

  Backend<T>& be_;
  std::shared_ptr<const Graph> graph_;
  int64_t n_;
  const std::atomic<bool>* cancel_;
  std::vector<std::unique_ptr<Op<T>>> ops_;  // per node
  std::vector<char> live_;                   // per node: its output reaches the graph's output
  std::vector<int> param_index_;             // per value: index in graph().parameters(), or -1
  std::vector<int> uses_;                    // per value: uses by live nodes
  std::vector<Buffer<T>> primal_;            // per value (null: freed after its last forward use)
  std::vector<char> keep_primal_;            // per value: a derivative pass reads it (Op::reads_primal)
  std::vector<int64_t> last_use_;            // per value: the last live node that takes it
  std::vector<Buffer<T>> kept_;              // per value: gradient cotangents (gradient(…, true))
  int64_t param_chunk_bytes_ = int64_t(32) << 20;
  // Checkpointed segments.
  std::vector<int> segment_;                    // per node: its segment
  std::vector<int64_t> producer_;               // per value: the node computing it, or -1
  std::vector<int64_t> seg_begin_, seg_end_;    // per segment: nodes [begin, end)
  std::vector<char> recomputable_;              // per value: a batched node value inside a segment (not a cut, not the output)
  std::vector<int64_t> seg_first_, seg_count_;  // per segment: examples its primals hold (count 0: none)
  std::vector<int64_t> primal_first_;           // per value: the first example of its primal buffer
  bool checkpoint_ = false;
  bool release_cuts_ = false;                   // the pass frees each cut value once past it (gram())
  int64_t split_block_bytes_ = int64_t(64) << 20;
  int64_t split_pass_bytes_ = int64_t(8) << 20;
};

extern template class GraphNetwork<double>;
extern template class GraphNetwork<float>;

}  // namespace basin
