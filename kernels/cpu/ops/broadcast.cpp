// CPU op kernels, broadcast family: loops over kernels/src/ops/kernels/broadcast.hpp, with fast
// paths for the layouts every residual add, bias and parameter cotangent produces (the ops fold
// E, R and the shape into as few dims as the broadcasting allows, so these cover nearly all
// calls): an innermost dim run with unit or zero strides, a reduction over a contiguous run, and
// a reduction over an outer dim (summing examples) done row by row. Anything else runs the
// element bodies themselves. The fast paths compute the same sums in the same order as the
// bodies, except that a long contiguous run is summed in 8 interleaved partial sums (SIMD lanes;
// a serial sum is latency-bound), so those results differ from the body's in the last bits
// (tests/ops/test_binary.cpp checks the loops against the bodies).
#include <algorithm>

#include "cpu_op_kernels.hpp"
#include "ops/kernels/broadcast.hpp"

namespace basin {
namespace cpu {
namespace {

// dst[k·so] = beta·dst[k·so] + alpha·(a[k·sa] ∘ b[k·sb]) for k < n.
template <class T, BinaryKind K>
void binary_run(int64_t n, T alpha, T beta, const T* a, int64_t sa, const T* b, int64_t sb, T* dst, int64_t so) {
  using kernels::combine;
  if (so == 1 && sa == 1 && sb == 1) {
    if (beta == T(0))
      for (int64_t k = 0; k < n; ++k) dst[k] = alpha * combine(K, a[k], b[k]);
    else
      for (int64_t k = 0; k < n; ++k) dst[k] = beta * dst[k] + alpha * combine(K, a[k], b[k]);
  } else if (so == 1 && sa == 1 && sb == 0) {
    const T bv = *b;
    if (beta == T(0))
      for (int64_t k = 0; k < n; ++k) dst[k] = alpha * combine(K, a[k], bv);
    else
      for (int64_t k = 0; k < n; ++k) dst[k] = beta * dst[k] + alpha * combine(K, a[k], bv);
  } else if (so == 1 && sa == 0 && sb == 1) {
    const T av = *a;
    if (beta == T(0))
      for (int64_t k = 0; k < n; ++k) dst[k] = alpha * combine(K, av, b[k]);
    else
      for (int64_t k = 0; k < n; ++k) dst[k] = beta * dst[k] + alpha * combine(K, av, b[k]);
  } else {
    for (int64_t k = 0; k < n; ++k) kernels::store(dst + k * so, alpha, beta, combine(K, a[k * sa], b[k * sb]));
  }
}

// Calls f(offset of each map) for every index of the leading `rank` dims of the maps (an
// odometer over dims[0, rank)), in row-major order.
template <int M, class F>
void for_each_outer(int rank, const int64_t* dims, const StridedMap* const (&maps)[M], F f) {
  int64_t off[M];
  for (int m = 0; m < M; ++m) off[m] = maps[m]->offset;
  int64_t outer = 1;
  for (int d = 0; d < rank; ++d) outer *= dims[d];
  int64_t counter[kMaxRank] = {};
  for (int64_t o = 0; o < outer; ++o) {
    f(off);
    for (int d = rank - 1; d >= 0; --d) {
      for (int m = 0; m < M; ++m) off[m] += maps[m]->strides[d];
      if (++counter[d] < dims[d]) break;
      for (int m = 0; m < M; ++m) off[m] -= maps[m]->strides[d] * dims[d];
      counter[d] = 0;
    }
  }
}

// Σ_k p[k·stride] for k < n; unit-stride runs of 32 or more in 8 partial sums.
template <class T>
T sum_run(const T* p, int64_t n, int64_t stride) {
  T s = T(0);
  int64_t k = 0;
  if (stride == 1 && n >= 32) {
    T acc[8] = {};
    for (; k + 8 <= n; k += 8)
      for (int l = 0; l < 8; ++l) acc[l] += p[k + l];
    s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }
  for (; k < n; ++k) s += p[k * stride];
  return s;
}

template <class T, BinaryKind K>
void binary_loop(const StridedMap& o, const StridedMap& am, const StridedMap& bm, T alpha, T beta, const T* a,
                 const T* b, T* dst) {
  if (o.rank == 0) {
    kernels::store(dst + o.offset, alpha, beta, kernels::combine(K, a[am.offset], b[bm.offset]));
    return;
  }
  const int last = o.rank - 1;
  const int64_t n = o.dims[last];
  const StridedMap* const maps[3] = {&o, &am, &bm};
  for_each_outer<3>(last, o.dims, maps, [&](const int64_t* off) {
    binary_run<T, K>(n, alpha, beta, a + off[1], am.strides[last], b + off[2], bm.strides[last], dst + off[0],
                     o.strides[last]);
  });
}

// The strided copy reduce_sum does with reduce_rank == 0: dst[k·so] = beta·dst + alpha·src[k·si].
template <class T>
void copy_run(int64_t n, T alpha, T beta, const T* src, int64_t si, T* dst, int64_t so) {
  if (so == 1 && si == 1) {
    if (beta == T(0))
      for (int64_t k = 0; k < n; ++k) dst[k] = alpha * src[k];
    else
      for (int64_t k = 0; k < n; ++k) dst[k] = beta * dst[k] + alpha * src[k];
  } else if (so == 1 && si == 0) {
    const T v = *src;
    if (beta == T(0))
      for (int64_t k = 0; k < n; ++k) dst[k] = alpha * v;
    else
      for (int64_t k = 0; k < n; ++k) dst[k] = beta * dst[k] + alpha * v;
  } else {
    for (int64_t k = 0; k < n; ++k) kernels::store(dst + k * so, alpha, beta, src[k * si]);
  }
}

}  // namespace

template <class T>
void binary(BinaryKind kind, const StridedMap& out_map, const StridedMap& a_map, const StridedMap& b_map, T alpha,
            T beta, const T* a, const T* b, T* dst) {
  if (out_map.count() == 0) return;
  if (kind == BinaryKind::kAdd)
    binary_loop<T, BinaryKind::kAdd>(out_map, a_map, b_map, alpha, beta, a, b, dst);
  else
    binary_loop<T, BinaryKind::kMul>(out_map, a_map, b_map, alpha, beta, a, b, dst);
}

template <class T>
void reduce_sum(const StridedMap& out_map, const StridedMap& in_map, int reduce_rank, T alpha, T beta, const T* src,
                T* dst) {
  const int kept = in_map.rank - reduce_rank;
  int64_t outputs = 1, inner = 1;
  for (int d = 0; d < kept; ++d) outputs *= in_map.dims[d];
  for (int d = kept; d < in_map.rank; ++d) inner *= in_map.dims[d];
  if (outputs == 0) return;
  const StridedMap* const maps[2] = {&out_map, &in_map};

  if (reduce_rank == 0 || inner == 1) {  // a strided copy (broadcast where in strides are 0)
    if (kept == 0) {
      kernels::store(dst + out_map.offset, alpha, beta, inner == 1 ? src[in_map.offset] : T(0));
      return;
    }
    // Any size-1 reduced dims contribute no offset beyond in_map.offset.
    const int last = kept - 1;
    const int64_t n = in_map.dims[last];
    for_each_outer<2>(last, in_map.dims, maps, [&](const int64_t* off) {
      copy_run(n, alpha, beta, src + off[1], in_map.strides[last], dst + off[0], out_map.strides[last]);
    });
    return;
  }

  const int64_t last_stride = in_map.strides[in_map.rank - 1];
  if (last_stride == 1 || kept == 0 || inner == 0) {
    // One output at a time; the innermost reduced dim is a contiguous run (or nothing is kept).
    const int64_t run = in_map.dims[in_map.rank - 1];
    const int red_outer = reduce_rank - 1;  // reduced dims walked by the odometer
    const int64_t* red_dims = in_map.dims + kept;
    const int64_t* red_strides = in_map.strides + kept;
    for_each_outer<2>(kept, in_map.dims, maps, [&](const int64_t* off) {
      T sum = T(0);
      const T* base = src + off[1];
      int64_t counter[kMaxRank] = {};
      int64_t pos = 0, outer = inner / std::max<int64_t>(run, 1);
      if (run == 0) outer = 0;
      for (int64_t o = 0; o < outer; ++o) {
        sum += sum_run(base + pos, run, last_stride);
        for (int d = red_outer - 1; d >= 0; --d) {
          pos += red_strides[d];
          if (++counter[d] < red_dims[d]) break;
          pos -= red_strides[d] * red_dims[d];
          counter[d] = 0;
        }
      }
      kernels::store(dst + off[0], alpha, beta, sum);
    });
    return;
  }

  if (in_map.strides[kept - 1] == 1) {
    // The innermost kept dim is contiguous in the input (summing examples or rows into a
    // parameter's cotangent): add whole input rows into a row of partial sums, in the same
    // reduced-index order as the element body.
    const int last = kept - 1;
    const int64_t n = in_map.dims[last], so = out_map.strides[last];
    const int64_t* red_dims = in_map.dims + kept;
    const int64_t* red_strides = in_map.strides + kept;
    constexpr int64_t kChunk = 256;
    T sums[kChunk];
    for_each_outer<2>(last, in_map.dims, maps, [&](const int64_t* off) {
      for (int64_t k0 = 0; k0 < n; k0 += kChunk) {
        const int64_t len = std::min(kChunk, n - k0);
        std::fill(sums, sums + len, T(0));
        const T* base = src + off[1] + k0;
        int64_t counter[kMaxRank] = {};
        int64_t pos = 0;
        for (int64_t j = 0; j < inner; ++j) {
          const T* p = base + pos;
          for (int64_t k = 0; k < len; ++k) sums[k] += p[k];
          for (int d = reduce_rank - 1; d >= 0; --d) {
            pos += red_strides[d];
            if (++counter[d] < red_dims[d]) break;
            pos -= red_strides[d] * red_dims[d];
            counter[d] = 0;
          }
        }
        T* out = dst + off[0] + k0 * so;
        for (int64_t k = 0; k < len; ++k) kernels::store(out + k * so, alpha, beta, sums[k]);
      }
    });
    return;
  }

  const int64_t count = out_map.count();
  for (int64_t i = 0; i < count; ++i) kernels::reduce_sum_element(i, out_map, in_map, reduce_rank, alpha, beta, src, dst);
}

template <class T>
void reduce_max(const StridedMap& out_map, const StridedMap& in_map, int reduce_rank, const T* src, T* dst) {
  const int64_t count = out_map.count();
  for (int64_t i = 0; i < count; ++i) kernels::reduce_max_element(i, out_map, in_map, reduce_rank, src, dst);
}

template void binary<double>(BinaryKind, const StridedMap&, const StridedMap&, const StridedMap&, double, double, const double*, const double*, double*);
template void reduce_sum<double>(const StridedMap&, const StridedMap&, int, double, double, const double*, double*);
template void binary<float>(BinaryKind, const StridedMap&, const StridedMap&, const StridedMap&, float, float, const float*, const float*, float*);
template void reduce_sum<float>(const StridedMap&, const StridedMap&, int, float, float, const float*, float*);
template void reduce_max<double>(const StridedMap&, const StridedMap&, int, const double*, double*);
template void reduce_max<float>(const StridedMap&, const StridedMap&, int, const float*, float*);

}  // namespace cpu
}  // namespace basin
