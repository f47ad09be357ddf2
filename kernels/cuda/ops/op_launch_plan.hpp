// The host side of each CUDA op kernel launch: the argument checks, the folding of index maps
// (coalesce) and the number of indices the grid-stride loop runs over. Plain C++, shared by the
// kernels (layout.cu, broadcast.cu, conv.cu, pool.cu) and by the host emulation of the CUDA
// backend (tests/cuda/emulated_cuda_backend.hpp), which loops over the same element bodies with
// exactly these plans, so the CUDA path's logic is tested without a GPU
// (docs/ARCHITECTURE.md "Op kernels").
#pragma once

#include <cstdint>
#include <string>

#include "basin/error.hpp"
#include "basin/op_kernels.hpp"
#include "../../src/ops/kernels/layout.hpp"  // coalesce

namespace basin {
namespace cuda {
namespace ops {

[[noreturn]] inline void bad_launch(const char* kernel, const std::string& what) {
  throw Error(ErrorCode::kInternal, std::string("CUDA op kernel ") + kernel + ": " + what);
}

inline void check_map(const char* kernel, const char* name, const StridedMap& m) {
  if (m.rank < 0 || m.rank > kMaxRank)
    bad_launch(kernel, std::string(name) + " has rank " + std::to_string(m.rank) + ", expected 0.." +
                           std::to_string(kMaxRank));
  for (int d = 0; d < m.rank; ++d)
    if (m.dims[d] < 0) bad_launch(kernel, std::string(name) + " has a negative dimension " + std::to_string(d));
}

// `b` must address the same index space as `a` (same rank and dims).
inline void check_same_dims(const char* kernel, const char* a_name, const StridedMap& a, const char* b_name,
                            const StridedMap& b) {
  check_map(kernel, a_name, a);
  check_map(kernel, b_name, b);
  bool same = a.rank == b.rank;
  for (int d = 0; same && d < a.rank; ++d) same = a.dims[d] == b.dims[d];
  if (!same) bad_launch(kernel, std::string(b_name) + "'s dims differ from " + a_name + "'s");
}

// ---- layout ----
struct StridedCopyPlan {
  int64_t count = 0;  // one index per output element
  StridedMap out, in;
};
inline StridedCopyPlan plan_strided_copy(const StridedMap& out_map, const StridedMap& in_map) {
  check_same_dims("strided_copy", "out_map", out_map, "in_map", in_map);
  StridedCopyPlan p;
  p.count = out_map.count();
  p.out = out_map;
  p.in = in_map;
  if (p.count > 0) ::basin::kernels::coalesce(&p.out, &p.in);  // fewer dims: less index arithmetic
  return p;
}

// ---- broadcast ----
struct BinaryPlan {
  int64_t count = 0;
  StridedMap out, a, b;
};
inline BinaryPlan plan_binary(const StridedMap& out_map, const StridedMap& a_map, const StridedMap& b_map) {
  check_same_dims("binary", "out_map", out_map, "a_map", a_map);
  check_same_dims("binary", "out_map", out_map, "b_map", b_map);
  BinaryPlan p;
  p.count = out_map.count();
  p.out = out_map;
  p.a = a_map;
  p.b = b_map;
  if (p.count > 0) {
    int rank = p.out.rank;
    int64_t* strides[3] = {p.out.strides, p.a.strides, p.b.strides};
    ::basin::kernels::coalesce(&rank, p.out.dims, 3, strides);
    p.out.rank = p.a.rank = p.b.rank = rank;
    for (int d = 0; d < rank; ++d) p.a.dims[d] = p.b.dims[d] = p.out.dims[d];
  }
  return p;
}

// reduce_sum, reduce_max: one index per output element (the leading in_map.rank − reduce_rank
// dims of in_map).
inline int64_t reduction_count(const char* kernel, const StridedMap& out_map, const StridedMap& in_map,
                               int reduce_rank) {
  check_map(kernel, "out_map", out_map);
  check_map(kernel, "in_map", in_map);
  if (reduce_rank < 0 || reduce_rank > in_map.rank || out_map.rank != in_map.rank - reduce_rank)
    bad_launch(kernel, "reduce_rank " + std::to_string(reduce_rank) + " with in_map rank " +
                           std::to_string(in_map.rank) + " and out_map rank " + std::to_string(out_map.rank) +
                           " (expected out rank = in rank − reduce_rank)");
  for (int d = 0; d < out_map.rank; ++d)
    if (out_map.dims[d] != in_map.dims[d]) bad_launch(kernel, "out_map's dims differ from in_map's kept dims");
  return out_map.count();
}

// ---- windows (convolution, pooling) ----
inline void check_geometry(const char* kernel, const WindowGeometry& g, int64_t batch) {
  const int64_t sizes[] = {g.channels, g.height, g.width, g.kernel_h, g.kernel_w, g.out_h, g.out_w, batch};
  for (int64_t s : sizes)
    if (s < 0) bad_launch(kernel, "negative size in the window geometry or batch");
  if (g.stride_h <= 0 || g.stride_w <= 0 || g.dilation_h <= 0 || g.dilation_w <= 0)
    bad_launch(kernel, "strides and dilations must be positive");
}
// The (E·R) rows of max_pool_apply / max_pool_transpose (rows_per_example ≥ 1: the bodies divide
// by it to find each row's example).
inline int64_t pooled_rows(const char* kernel, const WindowGeometry& g, int64_t examples, int64_t rows_per_example) {
  check_geometry(kernel, g, examples);
  if (rows_per_example < 1) bad_launch(kernel, "rows_per_example must be at least 1");
  return examples * rows_per_example;
}
// Elements of one [batch, C, H, W] image tensor.
inline int64_t image_count(const WindowGeometry& g, int64_t batch) { return batch * g.channels * g.height * g.width; }
// Elements of one [batch, C, out_h, out_w] window-output tensor.
inline int64_t window_output_count(const WindowGeometry& g, int64_t batch) {
  return batch * g.channels * g.out_h * g.out_w;
}
// Elements of im2col's [batch, C·kh·kw, out_h·out_w].
inline int64_t cols_count(const WindowGeometry& g, int64_t batch) {
  return batch * g.channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
}

}  // namespace ops
}  // namespace cuda
}  // namespace basin
