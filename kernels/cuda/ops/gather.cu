// CUDA op kernels, gather family: grid-stride loops over the element bodies of
// kernels/src/ops/kernels/gather.hpp. The lookup: one thread per output element; the transpose
// (scatter-add of rows): one thread per table-gradient element, gathering the positions whose
// index selects its row (no atomics, no two threads writing one address).
#include "../launch.cuh"
#include "../../src/ops/kernels/gather.hpp"
#include "cuda_op_kernels.hpp"

namespace basin {
namespace cuda {
namespace ops {
namespace {

template <class T>
__global__ void gather_rows_kernel(int64_t count, GatherGeometry g, T alpha, T beta, const T* idx, const T* table,
                                   T* out) {
  BASIN_FOR_EACH_INDEX(i, count)::basin::kernels::gather_rows_at(g, i, alpha, beta, idx, table, out);
}
template <class T>
__global__ void gather_rows_transpose_kernel(int64_t count, GatherGeometry g, int64_t sum_examples, T alpha,
                                             const T* idx, const T* gout, T* gtable) {
  BASIN_FOR_EACH_INDEX(i, count)::basin::kernels::gather_rows_transpose_at(g, sum_examples, i, alpha, idx, gout, gtable);
}

}  // namespace

template <class T>
void gather_rows(cudaStream_t stream, const GatherGeometry& g, int64_t examples, T alpha, T beta, const T* idx,
                 const T* table, T* out) {
  const int64_t count = examples * g.rows * g.positions * g.width;
  if (count == 0) return;
  BASIN_LAUNCH(gather_rows_kernel<T>, count, stream, g, alpha, beta, idx, table, out);
}
template <class T>
void gather_rows_transpose(cudaStream_t stream, const GatherGeometry& g, int64_t out_examples, int64_t sum_examples,
                           T alpha, const T* idx, const T* gout, T* gtable) {
  const int64_t count = out_examples * g.rows * g.vocab * g.width;
  if (count == 0) return;
  BASIN_LAUNCH(gather_rows_transpose_kernel<T>, count, stream, g, sum_examples, alpha, idx, gout, gtable);
}

#define BASIN_INSTANTIATE(T)                                                                                   \
  template void gather_rows<T>(cudaStream_t, const GatherGeometry&, int64_t, T, T, const T*, const T*, T*);   \
  template void gather_rows_transpose<T>(cudaStream_t, const GatherGeometry&, int64_t, int64_t, T, const T*,  \
                                         const T*, T*);
BASIN_INSTANTIATE(double)
BASIN_INSTANTIATE(float)
#undef BASIN_INSTANTIATE

}  // namespace ops
}  // namespace cuda
}  // namespace basin
