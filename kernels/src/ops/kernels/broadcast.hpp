// Element bodies of the broadcast family (OpKernels::binary, reduce_sum, reduce_max): each takes
// the index of ONE output element and writes that element only (no atomics), so the CPU loops
// (kernels/cpu/ops/broadcast.cpp) and the CUDA grid-stride loops run the same logic
// (docs/ARCHITECTURE.md "Op kernels").
//
// Both write dst = beta·dst + alpha·v; beta == 0 overwrites without reading dst (so stale NaNs in
// an uninitialised output do not survive), as BLAS does.
#pragma once

#include <cmath>
#include <cstdint>

#include "basin/activation.hpp"  // BASIN_HD
#include "basin/op_kernels.hpp"

namespace basin {
namespace kernels {

template <class T>
BASIN_HD inline T combine(BinaryKind kind, T a, T b) {
  return kind == BinaryKind::kAdd ? a + b : a * b;
}

template <class T>
BASIN_HD inline void store(T* p, T alpha, T beta, T v) {
  *p = beta == T(0) ? alpha * v : beta * *p + alpha * v;
}

// dst[out(idx)] = beta·dst[out(idx)] + alpha·(a[a_map(idx)] ∘ b[b_map(idx)]); the three maps share
// out_map's dims. idx < out_map.count().
template <class T>
BASIN_HD inline void binary_element(int64_t idx, BinaryKind kind, const StridedMap& out_map, const StridedMap& a_map,
                                    const StridedMap& b_map, T alpha, T beta, const T* a, const T* b, T* dst) {
  int64_t i = idx, oo = out_map.offset, oa = a_map.offset, ob = b_map.offset;
  for (int d = out_map.rank - 1; d >= 0; --d) {
    const int64_t n = out_map.dims[d];
    const int64_t q = i / n, k = i - q * n;
    oo += k * out_map.strides[d];
    oa += k * a_map.strides[d];
    ob += k * b_map.strides[d];
    i = q;
  }
  store(dst + oo, alpha, beta, combine(kind, a[oa], b[ob]));
}

// Output element idx of reduce_sum: idx enumerates out_map (= the leading in_map.rank −
// reduce_rank dims of in_map); the sum runs over the trailing reduce_rank dims of in_map, in
// row-major order (an odometer, no division in the loop).
template <class T>
BASIN_HD inline void reduce_sum_element(int64_t idx, const StridedMap& out_map, const StridedMap& in_map,
                                        int reduce_rank, T alpha, T beta, const T* src, T* dst) {
  const int kept = in_map.rank - reduce_rank;
  int64_t i = idx, oo = out_map.offset, oi = in_map.offset;
  for (int d = kept - 1; d >= 0; --d) {
    const int64_t n = in_map.dims[d];
    const int64_t q = i / n, k = i - q * n;
    oo += k * out_map.strides[d];
    oi += k * in_map.strides[d];
    i = q;
  }
  int64_t inner = 1;
  for (int d = kept; d < in_map.rank; ++d) inner *= in_map.dims[d];
  int64_t counter[kMaxRank] = {};
  T sum = T(0);
  for (int64_t j = 0; j < inner; ++j) {
    sum += src[oi];
    for (int d = in_map.rank - 1; d >= kept; --d) {  // next index of the reduced dims
      oi += in_map.strides[d];
      if (++counter[d] < in_map.dims[d]) break;
      oi -= in_map.strides[d] * in_map.dims[d];
      counter[d] = 0;
    }
  }
  store(dst + oo, alpha, beta, sum);
}

// Output element idx of reduce_max: the same traversal as reduce_sum_element, the maximum
// instead of the sum (a NaN anywhere gives NaN; an empty reduction −∞).
template <class T>
BASIN_HD inline void reduce_max_element(int64_t idx, const StridedMap& out_map, const StridedMap& in_map,
                                        int reduce_rank, const T* src, T* dst) {
  const int kept = in_map.rank - reduce_rank;
  int64_t i = idx, oo = out_map.offset, oi = in_map.offset;
  for (int d = kept - 1; d >= 0; --d) {
    const int64_t n = in_map.dims[d];
    const int64_t q = i / n, k = i - q * n;
    oo += k * out_map.strides[d];
    oi += k * in_map.strides[d];
    i = q;
  }
  int64_t inner = 1;
  for (int d = kept; d < in_map.rank; ++d) inner *= in_map.dims[d];
  int64_t counter[kMaxRank] = {};
  T m = T(-INFINITY);
  for (int64_t j = 0; j < inner; ++j) {
    const T v = src[oi];
    if (v > m || v != v) m = v;
    if (m != m) break;
    for (int d = in_map.rank - 1; d >= kept; --d) {
      oi += in_map.strides[d];
      if (++counter[d] < in_map.dims[d]) break;
      oi -= in_map.strides[d] * in_map.dims[d];
      counter[d] = 0;
    }
  }
  dst[oo] = m;
}

}  // namespace kernels
}  // namespace basin
