// CUDA op kernels, convolution family: im2col and col2im as grid-stride loops over the element
// bodies of kernels/src/ops/kernels/conv.hpp. im2col: one thread per cols entry; col2im: one
// thread per image element, gathering the cols entries that read it (no atomics). The GEMMs
// around them are the backend's cuBLAS calls.
#include "../launch.cuh"
#include "../../src/ops/kernels/conv.hpp"
#include "cuda_op_kernels.hpp"
#include "op_launch_plan.hpp"

namespace basin {
namespace cuda {
namespace ops {
namespace {

template <class T>
__global__ void im2col_kernel(int64_t count, WindowGeometry g, const T* x, T* cols) {
  BASIN_FOR_EACH_INDEX(idx, count) ::basin::conv_kernels::im2col_element(g, idx, x, cols);
}

template <class T>
__global__ void col2im_kernel(int64_t count, WindowGeometry g, const T* cols, T* x) {
  BASIN_FOR_EACH_INDEX(idx, count) ::basin::conv_kernels::col2im_element(g, idx, cols, x);
}

}  // namespace

template <class T>
void im2col(cudaStream_t stream, const WindowGeometry& g, int64_t batch, const T* x, T* cols) {
  check_geometry("im2col", g, batch);
  BASIN_LAUNCH(im2col_kernel<T>, cols_count(g, batch), stream, g, x, cols);
}

template <class T>
void col2im(cudaStream_t stream, const WindowGeometry& g, int64_t batch, const T* cols, T* x) {
  check_geometry("col2im", g, batch);
  BASIN_LAUNCH(col2im_kernel<T>, image_count(g, batch), stream, g, cols, x);
}

#define BASIN_INSTANTIATE(T)                                                                  \
  template void im2col<T>(cudaStream_t, const WindowGeometry&, int64_t, const T*, T*); \
  template void col2im<T>(cudaStream_t, const WindowGeometry&, int64_t, const T*, T*);
BASIN_INSTANTIATE(double)
BASIN_INSTANTIATE(float)
#undef BASIN_INSTANTIATE

}  // namespace ops
}  // namespace cuda
}  // namespace basin
