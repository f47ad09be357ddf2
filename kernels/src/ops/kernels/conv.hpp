// Element bodies of the convolution kernels (im2col, col2im): one output element per call,
// shared by the CPU loops (kernels/cpu/ops/conv.cpp) and the CUDA kernels (kernels/cuda/ops/),
// so the device logic is tested on the host (docs/ARCHITECTURE.md "Op kernels").
//
// Layouts (row-major, WindowGeometry g of basin/op_kernels.hpp; 1-D: height = 1, kernel_h = 1):
//   x     [batch, C, H, W]
//   cols  [batch, C·kh·kw, oh·ow]   row (c·kh + i)·kw + j, column oy·ow + ox
//   cols[b, (c, i, j), (oy, ox)] = x[b, c, oy·sh − pad_top + i·dh, ox·sw − pad_left + j·dw]
//                                  (0 outside the image: zero padding).
// col2im is the transpose of that map in gather form: each x element sums the cols entries that
// read it (no scatter, no atomics, no two indices writing one address).
//
// Plain integer arithmetic only (no std:: calls), so nvcc compiles the bodies for the device.
#pragma once

#include <cstdint>

#include "basin/activation.hpp"  // BASIN_HD
#include "basin/op_kernels.hpp"

namespace basin {
namespace conv_kernels {

// cols[b, (c, i, j), (oy, ox)] for one example b.
template <class T>
BASIN_HD inline T im2col_value(const WindowGeometry& g, const T* x, int64_t b, int64_t c, int64_t i, int64_t j,
                               int64_t oy, int64_t ox) {
  const int64_t y = oy * g.stride_h - g.pad_top + i * g.dilation_h;
  const int64_t xx = ox * g.stride_w - g.pad_left + j * g.dilation_w;
  if (y < 0 || y >= g.height || xx < 0 || xx >= g.width) return T(0);
  return x[((b * g.channels + c) * g.height + y) * g.width + xx];
}

// cols[index] for index < batch·C·kh·kw·oh·ow (row-major over cols' layout).
template <class T>
BASIN_HD inline void im2col_element(const WindowGeometry& g, int64_t index, const T* x, T* cols) {
  int64_t rest = index;
  const int64_t ox = rest % g.out_w;
  rest /= g.out_w;
  const int64_t oy = rest % g.out_h;
  rest /= g.out_h;
  const int64_t j = rest % g.kernel_w;
  rest /= g.kernel_w;
  const int64_t i = rest % g.kernel_h;
  rest /= g.kernel_h;
  const int64_t c = rest % g.channels;
  const int64_t b = rest / g.channels;
  cols[index] = im2col_value(g, x, b, c, i, j, oy, ox);
}

// The output position o along one axis that kernel tap t reads input position p from
// (o·stride − pad + t·dilation = p), or −1 when there is none (not on the stride grid, or
// outside [0, out)).
BASIN_HD inline int64_t conv_source(int64_t p, int64_t t, int64_t stride, int64_t pad, int64_t dilation,
                                    int64_t out) {
  const int64_t s = p + pad - t * dilation;
  if (s < 0) return -1;
  const int64_t o = s / stride;
  if (o * stride != s || o >= out) return -1;
  return o;
}

// The output positions o ∈ [*lo, *hi) whose input position o·stride + offset lies in [0, in)
// (offset = tap·dilation − pad): the valid span of one cols row, for row-wise loops.
BASIN_HD inline void conv_valid_range(int64_t offset, int64_t stride, int64_t in, int64_t out, int64_t* lo,
                                      int64_t* hi) {
  const int64_t first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const int64_t last = in - 1 - offset < 0 ? 0 : (in - 1 - offset) / stride + 1;
  *lo = first < out ? first : out;
  *hi = last < out ? last : out;
  if (*hi < *lo) *hi = *lo;
}

// Σ of the cols entries of example b that im2col read from x[b, c, y, xx].
template <class T>
BASIN_HD inline T col2im_sum(const WindowGeometry& g, const T* cols, int64_t b, int64_t c, int64_t y, int64_t xx) {
  const int64_t P = g.out_h * g.out_w;
  const T* base = cols + (b * g.channels + c) * g.kernel_h * g.kernel_w * P;
  T sum = T(0);
  for (int64_t i = 0; i < g.kernel_h; ++i) {
    const int64_t oy = conv_source(y, i, g.stride_h, g.pad_top, g.dilation_h, g.out_h);
    if (oy < 0) continue;
    for (int64_t j = 0; j < g.kernel_w; ++j) {
      const int64_t ox = conv_source(xx, j, g.stride_w, g.pad_left, g.dilation_w, g.out_w);
      if (ox < 0) continue;
      sum += base[(i * g.kernel_w + j) * P + oy * g.out_w + ox];
    }
  }
  return sum;
}

// x[index] += Σ of the cols entries that read it, index < batch·C·H·W.
template <class T>
BASIN_HD inline void col2im_element(const WindowGeometry& g, int64_t index, const T* cols, T* x) {
  int64_t rest = index;
  const int64_t xx = rest % g.width;
  rest /= g.width;
  const int64_t y = rest % g.height;
  rest /= g.height;
  const int64_t c = rest % g.channels;
  const int64_t b = rest / g.channels;
  x[index] += col2im_sum(g, cols, b, c, y, xx);
}

}  // namespace conv_kernels
}  // namespace basin
