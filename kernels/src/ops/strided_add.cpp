// strided_add (strided_add.hpp): one strided_copy over (E, R, dims…), folded.
#include "strided_add.hpp"

#include <algorithm>

#include "basin/error.hpp"
#include "op_util.hpp"
#include "ops/kernels/layout.hpp"

namespace basin {

std::vector<int64_t> contiguous_strides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t d = s.size(); d-- > 1;) st[d - 1] = st[d] * s[d];
  return st;
}

template <class T>
void strided_add(const OpCall<T>& c, const Tensor<T>& src, const std::vector<int64_t>& s_strides, int64_t s_off,
                 const Tensor<T>& dst, const std::vector<int64_t>& d_strides, int64_t d_off, const Shape& dims) {
  if (!src || !dst || shape_numel(dims) == 0) return;
  const int64_t E = std::max(src.E, dst.E), R = std::max(src.R, dst.R);
  if (dst.R != R)
    throw Error(ErrorCode::kInternal, "node '" + c.node.name + "': output with fewer directions than its input");
  if (dst.E != E) {  // dst.E == 1 < E: per-example results, then summed over the examples
    Buffer<T> storage;
    Tensor<T> tmp = tensor_in(storage, c.be, E, R, dst.shape);
    strided_add(c, src, s_strides, s_off, tmp, d_strides, d_off, dims);
    add_into(c.be, tmp, dst);
    return;
  }
  const int64_t ss = src.size(), ds = dst.size();
  std::vector<int64_t> dm{E, R}, so{R * ds, ds}, si{src.E == 1 ? 0 : src.R * ss, src.R == 1 ? 0 : ss};
  dm.insert(dm.end(), dims.begin(), dims.end());
  so.insert(so.end(), d_strides.begin(), d_strides.end());
  si.insert(si.end(), s_strides.begin(), s_strides.end());
  int rank = static_cast<int>(dm.size());
  int64_t* strides[2] = {so.data(), si.data()};
  kernels::coalesce(&rank, dm.data(), 2, strides);
  if (rank > kMaxRank)
    op_error(c.node,
             "the copy needs " + std::to_string(rank) + " axes after folding; at most " + std::to_string(kMaxRank) +
                 " are supported",
             true);
  StridedMap om, im;
  om.rank = im.rank = rank;
  om.offset = d_off;
  im.offset = s_off;
  for (int d = 0; d < rank; ++d) {
    om.dims[d] = im.dims[d] = dm[d];
    om.strides[d] = so[d];
    im.strides[d] = si[d];
  }
  c.kernels.strided_copy(om, im, T(1), T(1), src.data, dst.data);
}

#define BASIN_INSTANTIATE(T)                                                                             \
  template void strided_add<T>(const OpCall<T>&, const Tensor<T>&, const std::vector<int64_t>&, int64_t, \
                               const Tensor<T>&, const std::vector<int64_t>&, int64_t, const Shape&);
BASIN_INSTANTIATE(double)
BASIN_INSTANTIATE(float)
#undef BASIN_INSTANTIATE

}  // namespace basin
