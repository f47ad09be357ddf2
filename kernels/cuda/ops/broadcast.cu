// CUDA op kernels, broadcast family: binary, reduce_sum and reduce_max as grid-stride loops over the element
// bodies of kernels/src/ops/kernels/broadcast.hpp (one thread per output element; a reduction's
// thread runs over its reduced dims itself, in row-major order, so no atomics and a result
// independent of the launch shape).
#include "../launch.cuh"
#include "../../src/ops/kernels/broadcast.hpp"
#include "cuda_op_kernels.hpp"
#include "op_launch_plan.hpp"

namespace basin {
namespace cuda {
namespace ops {
namespace {

template <class T>
__global__ void binary_kernel(int64_t count, BinaryKind kind, StridedMap out_map, StridedMap a_map, StridedMap b_map,
                              T alpha, T beta, const T* a, const T* b, T* dst) {
  BASIN_FOR_EACH_INDEX(idx, count)
  ::basin::kernels::binary_element(idx, kind, out_map, a_map, b_map, alpha, beta, a, b, dst);
}

template <class T>
__global__ void reduce_sum_kernel(int64_t count, StridedMap out_map, StridedMap in_map, int reduce_rank, T alpha,
                                  T beta, const T* src, T* dst) {
  BASIN_FOR_EACH_INDEX(idx, count)
  ::basin::kernels::reduce_sum_element(idx, out_map, in_map, reduce_rank, alpha, beta, src, dst);
}

template <class T>
__global__ void reduce_max_kernel(int64_t count, StridedMap out_map, StridedMap in_map, int reduce_rank, const T* src,
                                  T* dst) {
  BASIN_FOR_EACH_INDEX(idx, count) ::basin::kernels::reduce_max_element(idx, out_map, in_map, reduce_rank, src, dst);
}

}  // namespace

template <class T>
void binary(cudaStream_t stream, BinaryKind kind, const StridedMap& out_map, const StridedMap& a_map,
            const StridedMap& b_map, T alpha, T beta, const T* a, const T* b, T* dst) {
  const BinaryPlan p = plan_binary(out_map, a_map, b_map);
  BASIN_LAUNCH(binary_kernel<T>, p.count, stream, kind, p.out, p.a, p.b, alpha, beta, a, b, dst);
}

template <class T>
void reduce_sum(cudaStream_t stream, const StridedMap& out_map, const StridedMap& in_map, int reduce_rank, T alpha,
                T beta, const T* src, T* dst) {
  const int64_t count = reduction_count("reduce_sum", out_map, in_map, reduce_rank);
  BASIN_LAUNCH(reduce_sum_kernel<T>, count, stream, out_map, in_map, reduce_rank, alpha, beta, src, dst);
}

template <class T>
void reduce_max(cudaStream_t stream, const StridedMap& out_map, const StridedMap& in_map, int reduce_rank,
                const T* src, T* dst) {
  const int64_t count = reduction_count("reduce_max", out_map, in_map, reduce_rank);
  BASIN_LAUNCH(reduce_max_kernel<T>, count, stream, out_map, in_map, reduce_rank, src, dst);
}

#define BASIN_INSTANTIATE(T)                                                                                    \
  template void binary<T>(cudaStream_t, BinaryKind, const StridedMap&, const StridedMap&, const StridedMap&, T, T, \
                          const T*, const T*, T*);                                                              \
  template void reduce_sum<T>(cudaStream_t, const StridedMap&, const StridedMap&, int, T, T, const T*, T*);       \
  template void reduce_max<T>(cudaStream_t, const StridedMap&, const StridedMap&, int, const T*, T*);
BASIN_INSTANTIATE(double)
BASIN_INSTANTIATE(float)
#undef BASIN_INSTANTIATE

}  // namespace ops
}  // namespace cuda
}  // namespace basin
