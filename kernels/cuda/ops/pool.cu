// CUDA op kernels, pooling family: grid-stride loops over the element bodies of
// kernels/src/ops/kernels/pool.hpp. Forward kernels: one thread per output element (its
// window); transposes: one thread per input-gradient element, gathering over the windows that
// contain it (no atomics, no two threads writing one address).
#include "../launch.cuh"
#include "../../src/ops/kernels/pool.hpp"
#include "cuda_op_kernels.hpp"
#include "op_launch_plan.hpp"

namespace basin {
namespace cuda {
namespace ops {
namespace {

template <class T>
__global__ void max_pool_forward_kernel(int64_t count, WindowGeometry g, const T* x, T* y, T* argmax) {
  BASIN_FOR_EACH_INDEX(idx, count) ::basin::kernels::max_pool_forward_element(idx, g, x, y, argmax);
}
template <class T>
__global__ void max_pool_apply_kernel(int64_t count, WindowGeometry g, int64_t rows_per_example, const T* argmax,
                                      const T* x, T* y) {
  BASIN_FOR_EACH_INDEX(idx, count) ::basin::kernels::max_pool_apply_element(idx, g, rows_per_example, argmax, x, y);
}
template <class T>
__global__ void max_pool_transpose_kernel(int64_t count, WindowGeometry g, int64_t rows_per_example, const T* argmax,
                                          const T* gy, T* gx) {
  BASIN_FOR_EACH_INDEX(idx, count)
  ::basin::kernels::max_pool_transpose_element(idx, g, rows_per_example, argmax, gy, gx);
}
template <class T>
__global__ void avg_pool_kernel(int64_t count, WindowGeometry g, const T* x, T* y) {
  BASIN_FOR_EACH_INDEX(idx, count) ::basin::kernels::avg_pool_element(idx, g, x, y);
}
template <class T>
__global__ void avg_pool_transpose_kernel(int64_t count, WindowGeometry g, const T* gy, T* gx) {
  BASIN_FOR_EACH_INDEX(idx, count) ::basin::kernels::avg_pool_transpose_element(idx, g, gy, gx);
}

}  // namespace

template <class T>
void max_pool_forward(cudaStream_t stream, const WindowGeometry& g, int64_t batch, const T* x, T* y, T* argmax) {
  check_geometry("max_pool_forward", g, batch);
  BASIN_LAUNCH(max_pool_forward_kernel<T>, window_output_count(g, batch), stream, g, x, y, argmax);
}
template <class T>
void max_pool_apply(cudaStream_t stream, const WindowGeometry& g, int64_t examples, int64_t rows_per_example,
                    const T* argmax, const T* x, T* y) {
  const int64_t rows = pooled_rows("max_pool_apply", g, examples, rows_per_example);
  BASIN_LAUNCH(max_pool_apply_kernel<T>, window_output_count(g, rows), stream, g, rows_per_example, argmax, x, y);
}
template <class T>
void max_pool_transpose(cudaStream_t stream, const WindowGeometry& g, int64_t examples, int64_t rows_per_example,
                        const T* argmax, const T* gy, T* gx) {
  const int64_t rows = pooled_rows("max_pool_transpose", g, examples, rows_per_example);
  BASIN_LAUNCH(max_pool_transpose_kernel<T>, image_count(g, rows), stream, g, rows_per_example, argmax, gy, gx);
}
template <class T>
void avg_pool(cudaStream_t stream, const WindowGeometry& g, int64_t batch, const T* x, T* y) {
  check_geometry("avg_pool", g, batch);
  BASIN_LAUNCH(avg_pool_kernel<T>, window_output_count(g, batch), stream, g, x, y);
}
template <class T>
void avg_pool_transpose(cudaStream_t stream, const WindowGeometry& g, int64_t batch, const T* gy, T* gx) {
  check_geometry("avg_pool_transpose", g, batch);
  BASIN_LAUNCH(avg_pool_transpose_kernel<T>, image_count(g, batch), stream, g, gy, gx);
}

#define BASIN_INSTANTIATE(T)                                                                                  \
  template void max_pool_forward<T>(cudaStream_t, const WindowGeometry&, int64_t, const T*, T*, T*);           \
  template void max_pool_apply<T>(cudaStream_t, const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*); \
  template void max_pool_transpose<T>(cudaStream_t, const WindowGeometry&, int64_t, int64_t, const T*, const T*,  \
                                      T*);                                                                    \
  template void avg_pool<T>(cudaStream_t, const WindowGeometry&, int64_t, const T*, T*);                       \
  template void avg_pool_transpose<T>(cudaStream_t, const WindowGeometry&, int64_t, const T*, T*);
BASIN_INSTANTIATE(double)
BASIN_INSTANTIATE(float)
#undef BASIN_INSTANTIATE

}  // namespace ops
}  // namespace cuda
}  // namespace basin
