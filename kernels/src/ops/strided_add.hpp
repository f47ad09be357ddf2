// One strided copy-and-accumulate between two tensors under the broadcast contract (op.hpp):
// the building block of the layout ops (layout.cpp) and of the (E, R) broadcasting around the
// pooling kernels (pool.cpp). Internal to kernels/src/ops.
#pragma once

#include <vector>

#include "op.hpp"

namespace basin {

// Row-major strides of a contiguous shape.
std::vector<int64_t> contiguous_strides(const Shape& shape);

// dst[e, r][d_off + Σ_d i_d·d_strides[d]] += src[e', r'][s_off + Σ_d i_d·s_strides[d]] for every
// index i of `dims` (row-major), e' = e or 0 and r' = r or 0 where src has E == 1 / R == 1; when
// dst.E == 1 < src.E the examples' results are summed into it. The destination side must be
// injective. dst.R must be the larger R (outputs have R == R_max). Throws kUnimplemented naming
// the node when the copy needs more than kMaxRank axes after folding.
template <class T>
void strided_add(const OpCall<T>& c, const Tensor<T>& src, const std::vector<int64_t>& s_strides, int64_t s_off,
                 const Tensor<T>& dst, const std::vector<int64_t>& d_strides, int64_t d_off, const Shape& dims);

// dst += src for tensors of the same per-example size, broadcast over (E, R) both ways.
template <class T>
void broadcast_add(const OpCall<T>& c, const Tensor<T>& src, const Tensor<T>& dst) {
  const Shape dims{src.size()};
  strided_add(c, src, {1}, 0, dst, {1}, 0, dims);
}

}  // namespace basin
