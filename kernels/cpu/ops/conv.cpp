// CPU op kernels, conv family: loops over the element bodies of kernels/src/ops/kernels/conv.hpp.
// The loops walk the output in row-major order with the index already split into its axes (no
// per-element division), calling the same value functions the CUDA kernels call per index.
#include "cpu_op_kernels.hpp"
#include "ops/kernels/conv.hpp"

namespace basin {
namespace cpu {

template <class T>
void im2col(const WindowGeometry& g, int64_t batch, const T* x, T* cols) {
  T* out = cols;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t i = 0; i < g.kernel_h; ++i)
        for (int64_t j = 0; j < g.kernel_w; ++j)
          for (int64_t oy = 0; oy < g.out_h; ++oy)
            for (int64_t ox = 0; ox < g.out_w; ++ox) *out++ = conv_kernels::im2col_value(g, x, b, c, i, j, oy, ox);
}

template <class T>
void col2im(const WindowGeometry& g, int64_t batch, const T* cols, T* x) {
  T* out = x;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t y = 0; y < g.height; ++y)
        for (int64_t xx = 0; xx < g.width; ++xx) *out++ += conv_kernels::col2im_sum(g, cols, b, c, y, xx);
}

template void im2col<double>(const WindowGeometry&, int64_t, const double*, double*);
template void col2im<double>(const WindowGeometry&, int64_t, const double*, double*);
template void im2col<float>(const WindowGeometry&, int64_t, const float*, float*);
template void col2im<float>(const WindowGeometry&, int64_t, const float*, float*);

}  // namespace cpu
}  // namespace basin
