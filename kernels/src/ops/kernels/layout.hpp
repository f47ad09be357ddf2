// Element body of the layout family's one kernel, strided_copy (basin/op_kernels.hpp), shared by
// the CPU loop (kernels/cpu/ops/layout.cpp) and the CUDA kernel: ONE output element per index,
// no atomics (docs/ARCHITECTURE.md "Op kernels"). Plus coalesce(), the host-side folding of
// adjacent dimensions both maps walk contiguously, which the ops and the loops use to keep maps
// short (an (E, R, d0, d1) copy of contiguous tensors is one dimension).
#pragma once

#include <cstdint>

#include "basin/activation.hpp"  // BASIN_HD
#include "basin/op_kernels.hpp"

namespace basin {
namespace kernels {

// Offsets of element `idx` (row-major over out_map.dims) in both maps.
BASIN_HD inline void strided_offsets(int64_t idx, const StridedMap& out_map, const StridedMap& in_map, int64_t* o,
                                     int64_t* s) {
  int64_t oo = out_map.offset, ss = in_map.offset;
  for (int d = out_map.rank - 1; d >= 0; --d) {
    const int64_t n = out_map.dims[d];
    const int64_t i = idx % n;
    idx /= n;
    oo += i * out_map.strides[d];
    ss += i * in_map.strides[d];
  }
  *o = oo;
  *s = ss;
}

// dst[out_map(idx)] = beta·dst[out_map(idx)] + alpha·src[in_map(idx)]; beta == 0 overwrites (the
// destination is not read, as in BLAS).
template <class T>
BASIN_HD inline void strided_copy_element(int64_t idx, const StridedMap& out_map, const StridedMap& in_map, T alpha,
                                          T beta, const T* src, T* dst) {
  int64_t o = 0, s = 0;
  strided_offsets(idx, out_map, in_map, &o, &s);
  dst[o] = beta == T(0) ? alpha * src[s] : beta * dst[o] + alpha * src[s];
}

// Folds the index space `dims[0..rank)` walked by `k` stride arrays: drops dimensions of size 1
// and merges dimension d into d + 1 wherever every array has strides[d] == strides[d+1]·dims[d+1].
// The element order (row-major) and every offset are unchanged. rank becomes ≥ 1.
inline void coalesce(int* rank, int64_t* dims, int k, int64_t* const* strides) {
  int r = 0;
  for (int d = 0; d < *rank; ++d) {
    if (dims[d] == 1) continue;
    if (r > 0) {
      bool merge = true;
      for (int a = 0; a < k; ++a) merge = merge && strides[a][r - 1] == strides[a][d] * dims[d];
      if (merge) {
        dims[r - 1] *= dims[d];
        for (int a = 0; a < k; ++a) strides[a][r - 1] = strides[a][d];
        continue;
      }
    }
    dims[r] = dims[d];
    for (int a = 0; a < k; ++a) strides[a][r] = strides[a][d];
    ++r;
  }
  if (r == 0) {
    dims[0] = 1;
    for (int a = 0; a < k; ++a) strides[a][0] = 0;
    r = 1;
  }
  *rank = r;
}

// The two maps of one strided_copy, folded together (their dims must agree).
inline void coalesce(StridedMap* out_map, StridedMap* in_map) {
  int64_t* strides[2] = {out_map->strides, in_map->strides};
  int rank = out_map->rank;
  coalesce(&rank, out_map->dims, 2, strides);
  out_map->rank = in_map->rank = rank;
  for (int d = 0; d < rank; ++d) in_map->dims[d] = out_map->dims[d];
}

}  // namespace kernels
}  // namespace basin
