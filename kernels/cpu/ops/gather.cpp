// CPU op kernels, gather family: loops over the element bodies of kernels/src/ops/kernels/gather.hpp.
#include "cpu_op_kernels.hpp"
#include "ops/kernels/gather.hpp"

namespace basin {
namespace cpu {

template <class T>
void gather_rows(const GatherGeometry& g, int64_t examples, T alpha, T beta, const T* idx, const T* table, T* out) {
  const int64_t n = examples * g.rows * g.positions * g.width;
  for (int64_t i = 0; i < n; ++i) kernels::gather_rows_at(g, i, alpha, beta, idx, table, out);
}

template <class T>
void gather_rows_transpose(const GatherGeometry& g, int64_t out_examples, int64_t sum_examples, T alpha, const T* idx,
                           const T* gout, T* gtable) {
  const int64_t n = out_examples * g.rows * g.vocab * g.width;
  for (int64_t i = 0; i < n; ++i) kernels::gather_rows_transpose_at(g, sum_examples, i, alpha, idx, gout, gtable);
}

#define BASIN_INSTANTIATE(T)                                                                               \
  template void gather_rows<T>(const GatherGeometry&, int64_t, T, T, const T*, const T*, T*);             \
  template void gather_rows_transpose<T>(const GatherGeometry&, int64_t, int64_t, T, const T*, const T*, T*);
BASIN_INSTANTIATE(float)
BASIN_INSTANTIATE(double)
#undef BASIN_INSTANTIATE

}  // namespace cpu
}  // namespace basin
