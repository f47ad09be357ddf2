// Broadcast arithmetic on Tensors for the element-wise and reduction ops (binary.cpp,
// reduce.cpp): turns tensors of aligned shapes into the StridedMaps of OpKernels::binary and
// OpKernels::reduce_sum (internal).
//
// A Layout is how an op sees one operand: its E and R (op.hpp) and its dims aligned to the op's
// rank (1 on an axis it is broadcast along). Each axis of the leading pair (E, R) and of the dims
// is either the same size in two layouts, or 1 in one of them: 1 in the source means
// "broadcast" (stride 0), 1 in the destination means "summed over" — which is the op.hpp
// broadcast contract (a cotangent summed over the examples of a parameter, a bias summed over the
// positions it was added to). The maps fold E, R and the dims into as few dims as the broadcast
// pattern allows (adjacent axes that are contiguous in every operand merge), so the kernels'
// fast paths see a residual add as one flat run and a bias as [rows, C, H·W].
#pragma once

#include "op.hpp"

namespace basin {

struct Layout {
  int64_t E = 1;
  int64_t R = 1;
  Shape dims;  // aligned to the op's rank
};

template <class T>
Layout layout_of(const Tensor<T>& t, const Shape& dims) {
  return Layout{t.E, t.R, dims};
}

// Right-aligns `shape` to `rank` dims (leading 1s); rank(shape) ≤ rank.
Shape align_to(const Shape& shape, size_t rank);

// The number of dims of the folded maps of a broadcast of these layouts' dims (E and R not
// counted): ops check at shape-inference time that it leaves room for E and R in kMaxRank.
int folded_rank(const std::vector<const Shape*>& dims);

// dst = beta·dst + alpha·src, src broadcast to dst's layout and summed over the axes where dst
// is 1 and src is not (beta = 0: dst is overwritten, not read).
template <class T>
void accumulate(const OpCall<T>& c, T alpha, const T* src, const Layout& ls, T beta, T* dst, const Layout& ld);

// dst = the maximum of src over the axes where dst is 1 and src is not (reduce_max's forward;
// no broadcast: every other axis has the same size in both).
template <class T>
void maximum(const OpCall<T>& c, const T* src, const Layout& ls, T* dst, const Layout& ld);

// dst = beta·dst + alpha·Σ (a ∘ b): a and b broadcast to their common layout (the largest size
// on every axis, dst's included), summed into dst where it is 1 (through a scratch buffer of the
// full layout only when dst is smaller than it).
template <class T>
void combine(const OpCall<T>& c, BinaryKind kind, T alpha, const T* a, const Layout& la, const T* b, const Layout& lb,
             T beta, T* dst, const Layout& ld);

}  // namespace basin
