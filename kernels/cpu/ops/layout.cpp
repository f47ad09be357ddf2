// CPU op kernels, layout family: strided_copy as a loop over kernels/src/ops/kernels/layout.hpp's
// element body semantics. The maps are folded first (coalesce), then the innermost dimension
// runs as a plain loop (a memcpy when both sides are contiguous and nothing is scaled) and the
// outer ones as an odometer, so the common cases — contiguous blocks, permutes with a
// contiguous inner run — stream. Results are bit-identical to the element body.
#include <cstring>

#include "basin/error.hpp"
#include "cpu_op_kernels.hpp"
#include "ops/kernels/layout.hpp"

namespace basin {
namespace cpu {

namespace {

// One inner run of n elements: dst[k·so] = beta·dst[k·so] + alpha·src[k·si].
template <class T>
void run(int64_t n, int64_t so, int64_t si, T alpha, T beta, const T* src, T* dst) {
  if (beta == T(0)) {
    if (so == 1 && si == 1) {
      if (alpha == T(1)) {
        std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
      } else {
        for (int64_t k = 0; k < n; ++k) dst[k] = alpha * src[k];
      }
    } else if (so == 1 && si == 0) {
      const T v = alpha * src[0];
      for (int64_t k = 0; k < n; ++k) dst[k] = v;
    } else {
      for (int64_t k = 0; k < n; ++k) dst[k * so] = alpha * src[k * si];
    }
    return;
  }
  if (so == 1 && si == 1) {
    if (alpha == T(1) && beta == T(1)) {
      for (int64_t k = 0; k < n; ++k) dst[k] = dst[k] + src[k];
    } else {
      for (int64_t k = 0; k < n; ++k) dst[k] = beta * dst[k] + alpha * src[k];
    }
  } else {
    for (int64_t k = 0; k < n; ++k) dst[k * so] = beta * dst[k * so] + alpha * src[k * si];
  }
}

}  // namespace

template <class T>
void strided_copy(const StridedMap& out_map, const StridedMap& in_map, T alpha, T beta, const T* src, T* dst) {
  if (out_map.rank != in_map.rank || out_map.rank < 0 || out_map.rank > kMaxRank)
    throw Error(ErrorCode::kInternal, "strided_copy: maps of different or invalid rank");
  for (int d = 0; d < out_map.rank; ++d)
    if (out_map.dims[d] != in_map.dims[d]) throw Error(ErrorCode::kInternal, "strided_copy: maps of different dims");
  if (out_map.count() == 0) return;
  StridedMap o = out_map, s = in_map;
  kernels::coalesce(&o, &s);
  const int inner = o.rank - 1;
  const int64_t n = o.dims[inner];
  const int64_t outer = o.count() / n;
  int64_t idx[kMaxRank] = {};
  int64_t off_o = o.offset, off_s = s.offset;
  for (int64_t b = 0; b < outer; ++b) {
    run(n, o.strides[inner], s.strides[inner], alpha, beta, src + off_s, dst + off_o);
    // advance the odometer over dims [0, inner)
    for (int d = inner - 1; d >= 0; --d) {
      ++idx[d];
      off_o += o.strides[d];
      off_s += s.strides[d];
      if (idx[d] < o.dims[d]) break;
      off_o -= o.strides[d] * o.dims[d];
      off_s -= s.strides[d] * s.dims[d];
      idx[d] = 0;
    }
  }
}

template void strided_copy<double>(const StridedMap&, const StridedMap&, double, double, const double*, double*);
template void strided_copy<float>(const StridedMap&, const StridedMap&, float, float, const float*, float*);

}  // namespace cpu
}  // namespace basin
