// The device kernels the primitive ops are written in, beyond Backend's BLAS and solvers.
//
// Each backend implements this table once, one file per family (kernels/cpu/ops/<family>.cpp,
// kernels/cuda/ops/<family>.cu), both as loops over the SAME element bodies
// (kernels/src/ops/kernels/<family>.hpp, BASIN_HD: one output element per index, no atomics,
// no two indices writing one address), so the GPU logic is tested on the CPU
// (docs/ARCHITECTURE.md "Op kernels"). A new family adds its methods here, its bodies, and one
// file per backend.
//
// Index maps (StridedMap) address up to kMaxRank dimensions: the ops fold the example axis E,
// the direction axis R and the tensor's own dims into one map, with stride 0 for an axis a
// tensor is broadcast along.
#pragma once

#include <cstdint>

#include "basin/error.hpp"

namespace basin {

constexpr int kMaxRank = 8;

// Element i (row-major over dims) ↦ offset + Σ_d idx_d(i)·strides[d].
struct StridedMap {
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t strides[kMaxRank] = {};
  int64_t offset = 0;
  int64_t count() const {
    int64_t c = 1;
    for (int d = 0; d < rank; ++d) c *= dims[d];
    return c;
  }
};

// 2-D geometry of a convolution or a pooling window over one example's [C, H, W] (1-D: H = 1,
// kernel_h = 1). Output [.., out_h, out_w].
struct WindowGeometry {
  int64_t channels = 0, height = 0, width = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_left = 0;
  // Bottom/right padding: besides out_h/out_w it bounds the window that average pooling with
  // count_include_pad divides by (PyTorch clips a ceil_mode window at the padded extent).
  int64_t pad_bottom = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t out_h = 0, out_w = 0;
  bool count_include_pad = false;  // average pooling: divide by the whole window, pads included
};

// An embedding lookup (kernels/src/ops/kernels/gather.hpp): rows of a table [V, D] picked by
// integer indices [S] per example. Strides are 0 for what is shared by every example / row.
struct GatherGeometry {
  int64_t vocab = 0, width = 0;    // V rows of D entries
  int64_t positions = 0;           // S indices per example
  int64_t rows = 1;                // R directions per example
  int64_t table_example_stride = 0, table_row_stride = 0, index_example_stride = 0;
};

enum class BinaryKind : int { kAdd = 0, kMul = 1 };

template <class T>
class OpKernels {
 public:
  virtual ~OpKernels() = default;

  // ---- layout (kernels/src/ops/kernels/layout.hpp) ----
  // For every index i of `out_map` (out_map.dims == in_map.dims):
  //   dst[out_map(i)] = beta·dst[out_map(i)] + alpha·src[in_map(i)].
  // out_map must be injective (each destination written once). Permutes, slices, concatenation,
  // padding and broadcasting (in stride 0) are all this one kernel.
  virtual void strided_copy(const StridedMap& out_map, const StridedMap& in_map, T alpha, T beta, const T* src,
                            T* dst) = 0;

  // ---- broadcast arithmetic (kernels/src/ops/kernels/broadcast.hpp) ----
  // For every index i of out_map: dst[out(i)] = beta·dst[out(i)] + alpha·(a[a_map(i)] ∘ b[b_map(i)]),
  // ∘ = + or ·; the three maps share dims (broadcast inputs have stride 0 there).
  virtual void binary(BinaryKind kind, const StridedMap& out_map, const StridedMap& a_map, const StridedMap& b_map,
                      T alpha, T beta, const T* a, const T* b, T* dst) = 0;
  // Sum over the trailing `reduce_rank` dims of in_map: for every index o over the leading
  // in_map.rank − reduce_rank dims, dst[out_map(o)] = beta·dst[out_map(o)] + alpha·Σ_rest src[in_map(o, rest)].
  // out_map.rank == in_map.rank − reduce_rank (the ops permute the reduced axes last via the strides).
  virtual void reduce_sum(const StridedMap& out_map, const StridedMap& in_map, int reduce_rank, T alpha, T beta,
                          const T* src, T* dst) = 0;
  // The same maps, the maximum instead of the sum: dst[out_map(o)] = max_rest src[in_map(o, rest)]
  // (NaN propagates; an empty reduction gives −∞). Used by reduce_max, a stop-gradient (the
  // shift of Softmax), so it is forward-only. Not pure: a backend without it refuses reduce_max.
  virtual void reduce_max(const StridedMap& out_map, const StridedMap& in_map, int reduce_rank, const T* src,
                          T* dst) {
    (void)out_map, (void)in_map, (void)reduce_rank, (void)src, (void)dst;
    throw Error(ErrorCode::kUnimplemented, "op kernel reduce_max is not available on this backend");
  }

  // ---- convolution (kernels/src/ops/kernels/conv.hpp) ----
  // cols [batch, C·kh·kw, out_h·out_w] from x [batch, C, H, W] (zero padding); overwrites cols.
  virtual void im2col(const WindowGeometry& g, int64_t batch, const T* x, T* cols) = 0;
  // x [batch, C, H, W] += the transpose of im2col applied to cols.
  virtual void col2im(const WindowGeometry& g, int64_t batch, const T* cols, T* x) = 0;

  // ---- pooling (kernels/src/ops/kernels/pool.hpp) ----
  // y [batch, C, out_h, out_w] = max over each window of x [batch, C, H, W] (pads are −∞), and
  // argmax [batch, C, out_h, out_w] = the window position (kh·kw index) of the first maximum.
  virtual void max_pool_forward(const WindowGeometry& g, int64_t batch, const T* x, T* y, T* argmax) = 0;
  // The linear map "pick the arg-max" with example e's argmax for its R rows:
  // y [(E·R), C, oh, ow] += x [(E·R), C, H, W] at argmax [E, C, oh, ow].
  virtual void max_pool_apply(const WindowGeometry& g, int64_t examples, int64_t rows_per_example,
                              const T* argmax, const T* x, T* y) = 0;
  // Its transpose: gx [(E·R), C, H, W] += scatter of gy [(E·R), C, oh, ow] to the arg-max positions.
  virtual void max_pool_transpose(const WindowGeometry& g, int64_t examples, int64_t rows_per_example,
                                  const T* argmax, const T* gy, T* gx) = 0;
  // y [batch, C, oh, ow] += window averages of x; and its transpose gx += spread of gy.
  virtual void avg_pool(const WindowGeometry& g, int64_t batch, const T* x, T* y) = 0;
  virtual void avg_pool_transpose(const WindowGeometry& g, int64_t batch, const T* gy, T* gx) = 0;

  // ---- gather (kernels/src/ops/kernels/gather.hpp) ----
  // out [E, R, S, D] = beta·out + alpha·table[e, r, idx[e, s], :] (examples E = `examples`).
  // Not pure: a backend without it refuses the gather op.
  virtual void gather_rows(const GatherGeometry& g, int64_t examples, T alpha, T beta, const T* idx, const T* table,
                           T* out) {
    (void)g, (void)examples, (void)alpha, (void)beta, (void)idx, (void)table, (void)out;
    throw Error(ErrorCode::kUnimplemented, "op kernel gather_rows is not available on this backend");
  }
  // gtable [Eo, R, V, D] += alpha·(scatter-add of gout [Eo·sum_examples, R, S, D] to the rows idx
  // selects, summed over each group of sum_examples examples). Gather form, no atomics.
  virtual void gather_rows_transpose(const GatherGeometry& g, int64_t out_examples, int64_t sum_examples, T alpha,
                                     const T* idx, const T* gout, T* gtable) {
    (void)g, (void)out_examples, (void)sum_examples, (void)alpha, (void)idx, (void)gout, (void)gtable;
    throw Error(ErrorCode::kUnimplemented, "op kernel gather_rows_transpose is not available on this backend");
  }
};

}  // namespace basin
