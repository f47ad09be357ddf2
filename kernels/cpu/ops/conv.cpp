// CPU op kernels, conv family: the element bodies of kernels/src/ops/kernels/conv.hpp evaluated
// row by row. For one row of the output the valid span of every kernel tap is an interval
// (conv_valid_range), so the loops copy and add contiguous runs instead of testing each
// index; each element still gets exactly the value its body computes — im2col the same
// copy or 0, col2im the same sum over the taps in the same (i, j) order, added to x once —
// so the host result is bit-identical to the per-index bodies the CUDA kernels run
// (tests/ops/test_conv.cpp checks it).
#include <vector>

#include "cpu_op_kernels.hpp"
#include "ops/kernels/conv.hpp"

namespace basin {
namespace cpu {

template <class T>
void im2col(const WindowGeometry& g, int64_t batch, const T* x, T* cols) {
  const int64_t P = g.out_h * g.out_w;
  T* row = cols;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < g.channels; ++c) {
      const T* image = x + (b * g.channels + c) * g.height * g.width;
      for (int64_t i = 0; i < g.kernel_h; ++i)
        for (int64_t j = 0; j < g.kernel_w; ++j, row += P) {
          const int64_t off = j * g.dilation_w - g.pad_left;
          int64_t lo = 0, hi = 0;
          conv_kernels::conv_valid_range(off, g.stride_w, g.width, g.out_w, &lo, &hi);
          for (int64_t oy = 0; oy < g.out_h; ++oy) {
            T* out = row + oy * g.out_w;
            const int64_t y = oy * g.stride_h - g.pad_top + i * g.dilation_h;
            if (y < 0 || y >= g.height) {
              for (int64_t ox = 0; ox < g.out_w; ++ox) out[ox] = T(0);
              continue;
            }
            const T* src = image + y * g.width;
            for (int64_t ox = 0; ox < lo; ++ox) out[ox] = T(0);
            if (g.stride_w == 1)
              for (int64_t ox = lo; ox < hi; ++ox) out[ox] = src[ox + off];
            else
              for (int64_t ox = lo; ox < hi; ++ox) out[ox] = src[ox * g.stride_w + off];
            for (int64_t ox = hi; ox < g.out_w; ++ox) out[ox] = T(0);
          }
        }
    }
}

template <class T>
void col2im(const WindowGeometry& g, int64_t batch, const T* cols, T* x) {
  const int64_t P = g.out_h * g.out_w, K = g.kernel_h * g.kernel_w;
  std::vector<T> acc(static_cast<size_t>(g.width));
  std::vector<int64_t> lo(static_cast<size_t>(g.kernel_w)), hi(static_cast<size_t>(g.kernel_w));
  for (int64_t j = 0; j < g.kernel_w; ++j)
    conv_kernels::conv_valid_range(j * g.dilation_w - g.pad_left, g.stride_w, g.width, g.out_w, &lo[j], &hi[j]);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < g.channels; ++c) {
      const T* base = cols + (b * g.channels + c) * K * P;
      T* image = x + (b * g.channels + c) * g.height * g.width;
      for (int64_t y = 0; y < g.height; ++y) {
        for (T& a : acc) a = T(0);
        for (int64_t i = 0; i < g.kernel_h; ++i) {
          const int64_t oy = conv_kernels::conv_source(y, i, g.stride_h, g.pad_top, g.dilation_h, g.out_h);
          if (oy < 0) continue;
          for (int64_t j = 0; j < g.kernel_w; ++j) {
            const T* src = base + (i * g.kernel_w + j) * P + oy * g.out_w;
            const int64_t off = j * g.dilation_w - g.pad_left;  // output ox reads x position ox·sw + off
            if (g.stride_w == 1)
              for (int64_t ox = lo[j]; ox < hi[j]; ++ox) acc[ox + off] += src[ox];
            else
              for (int64_t ox = lo[j]; ox < hi[j]; ++ox) acc[ox * g.stride_w + off] += src[ox];
          }
        }
        T* out = image + y * g.width;
        for (int64_t xx = 0; xx < g.width; ++xx) out[xx] += acc[xx];
      }
    }
}

template void im2col<double>(const WindowGeometry&, int64_t, const double*, double*);
template void col2im<double>(const WindowGeometry&, int64_t, const double*, double*);
template void im2col<float>(const WindowGeometry&, int64_t, const float*, float*);
template void col2im<float>(const WindowGeometry&, int64_t, const float*, float*);

}  // namespace cpu
}  // namespace basin
