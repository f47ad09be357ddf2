// Element bodies of the pooling kernels (basin/op_kernels.hpp), shared by the CPU loops
// (kernels/cpu/ops/pool.cpp) and the CUDA kernels: ONE output element per index, no atomics
// (docs/ARCHITECTURE.md "Op kernels"). The transposes are gather-form: each input-gradient
// element sums, over the windows that contain it, what those windows send it.
//
// Layouts: x [batch, C, H, W], y [batch, C, out_h, out_w] (1-D pooling: H = 1, kernel_h = 1).
// The window of output (oh, ow) starts at (oh·stride_h − pad_top, ow·stride_w − pad_left) and
// takes the taps (kh·dilation_h, kw·dilation_w), kh < kernel_h, kw < kernel_w; taps outside
// the input are padding (−∞ for the max, 0 for the average). Semantics are PyTorch's
// (max_pool2d, avg_pool2d: first maximum wins, a NaN propagates; count_include_pad divides by
// the window clipped to the padded extent; a window with no input element averages to 0).
#pragma once

#include <cstdint>

#include "basin/activation.hpp"  // BASIN_HD
#include "basin/op_kernels.hpp"

namespace basin {
namespace kernels {

// ---- max ----

// y = the window's maximum, argmax = kh·kernel_w + kw of its first maximum (−1: no input
// element in the window, y = 0; the op refuses such geometries).
template <class T>
BASIN_HD inline void max_pool_forward_element(int64_t idx, const WindowGeometry& g, const T* x, T* y, T* argmax) {
  const int64_t ow = idx % g.out_w;
  const int64_t oh = (idx / g.out_w) % g.out_h;
  const int64_t plane = idx / (g.out_w * g.out_h);  // b·C + c
  const T* xp = x + plane * g.height * g.width;
  const int64_t h0 = oh * g.stride_h - g.pad_top, w0 = ow * g.stride_w - g.pad_left;
  T best = T(0);
  int64_t arg = -1;
  for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
    const int64_t ih = h0 + kh * g.dilation_h;
    if (ih < 0 || ih >= g.height) continue;
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      const int64_t iw = w0 + kw * g.dilation_w;
      if (iw < 0 || iw >= g.width) continue;
      const T v = xp[ih * g.width + iw];
      if (arg < 0 || v > best || v != v) {
        best = v;
        arg = kh * g.kernel_w + kw;
      }
    }
  }
  y[idx] = best;
  argmax[idx] = T(arg);
}

// y [(E·R), C, oh, ow] += x at the arg-max of example b / rows_per_example (argmax [E, C, oh, ow]).
template <class T>
BASIN_HD inline void max_pool_apply_element(int64_t idx, const WindowGeometry& g, int64_t rows_per_example,
                                            const T* argmax, const T* x, T* y) {
  const int64_t ow = idx % g.out_w;
  const int64_t oh = (idx / g.out_w) % g.out_h;
  const int64_t plane = idx / (g.out_w * g.out_h);  // b·C + c
  const int64_t c = plane % g.channels, b = plane / g.channels, e = b / rows_per_example;
  const int64_t a = static_cast<int64_t>(argmax[((e * g.channels + c) * g.out_h + oh) * g.out_w + ow]);
  if (a < 0) return;
  const int64_t ih = oh * g.stride_h - g.pad_top + (a / g.kernel_w) * g.dilation_h;
  const int64_t iw = ow * g.stride_w - g.pad_left + (a % g.kernel_w) * g.dilation_w;
  y[idx] += x[(plane * g.height + ih) * g.width + iw];
}

// The output positions along one axis whose window has tap k at input index i: o with
// o·stride − pad + k·dilation == i, 0 ≤ o < out. Returns −1 when there is none.
BASIN_HD inline int64_t window_of_tap(int64_t i, int64_t k, int64_t stride, int64_t pad, int64_t dilation,
                                      int64_t out) {
  const int64_t num = i + pad - k * dilation;
  if (num < 0 || num % stride != 0) return -1;
  const int64_t o = num / stride;
  return o < out ? o : -1;
}

// gx [(E·R), C, H, W] += Σ over the windows whose arg-max is this element of gy there.
template <class T>
BASIN_HD inline void max_pool_transpose_element(int64_t idx, const WindowGeometry& g, int64_t rows_per_example,
                                                const T* argmax, const T* gy, T* gx) {
  const int64_t iw = idx % g.width;
  const int64_t ih = (idx / g.width) % g.height;
  const int64_t plane = idx / (g.width * g.height);  // b·C + c
  const int64_t c = plane % g.channels, b = plane / g.channels, e = b / rows_per_example;
  const T* ap = argmax + (e * g.channels + c) * g.out_h * g.out_w;
  const T* gp = gy + plane * g.out_h * g.out_w;
  T sum = T(0);
  for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
    const int64_t oh = window_of_tap(ih, kh, g.stride_h, g.pad_top, g.dilation_h, g.out_h);
    if (oh < 0) continue;
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      const int64_t ow = window_of_tap(iw, kw, g.stride_w, g.pad_left, g.dilation_w, g.out_w);
      if (ow < 0) continue;
      if (static_cast<int64_t>(ap[oh * g.out_w + ow]) == kh * g.kernel_w + kw) sum += gp[oh * g.out_w + ow];
    }
  }
  gx[idx] += sum;
}

// ---- average (dilation 1) ----

// The input rows [*h0, *h1) and columns [*w0, *w1) of window (oh, ow) and its divisor (0: the
// window holds no input element).
BASIN_HD inline int64_t avg_window(const WindowGeometry& g, int64_t oh, int64_t ow, int64_t* h0, int64_t* h1,
                                   int64_t* w0, int64_t* w1) {
  int64_t hs = oh * g.stride_h - g.pad_top, ws = ow * g.stride_w - g.pad_left;
  int64_t he = hs + g.kernel_h, we = ws + g.kernel_w;
  if (he > g.height + g.pad_bottom) he = g.height + g.pad_bottom;
  if (we > g.width + g.pad_right) we = g.width + g.pad_right;
  const int64_t padded = (he - hs) * (we - ws);
  if (hs < 0) hs = 0;
  if (ws < 0) ws = 0;
  if (he > g.height) he = g.height;
  if (we > g.width) we = g.width;
  *h0 = hs, *h1 = he, *w0 = ws, *w1 = we;
  if (hs >= he || ws >= we) return 0;
  return g.count_include_pad ? padded : (he - hs) * (we - ws);
}

// y [batch, C, oh, ow] += the window's average.
template <class T>
BASIN_HD inline void avg_pool_element(int64_t idx, const WindowGeometry& g, const T* x, T* y) {
  const int64_t ow = idx % g.out_w;
  const int64_t oh = (idx / g.out_w) % g.out_h;
  const int64_t plane = idx / (g.out_w * g.out_h);
  int64_t h0, h1, w0, w1;
  const int64_t div = avg_window(g, oh, ow, &h0, &h1, &w0, &w1);
  if (div == 0) return;
  const T* xp = x + plane * g.height * g.width;
  T sum = T(0);
  for (int64_t ih = h0; ih < h1; ++ih)
    for (int64_t iw = w0; iw < w1; ++iw) sum += xp[ih * g.width + iw];
  y[idx] += sum / T(div);
}

// gx [batch, C, H, W] += Σ over the windows containing this element of gy / divisor.
template <class T>
BASIN_HD inline void avg_pool_transpose_element(int64_t idx, const WindowGeometry& g, const T* gy, T* gx) {
  const int64_t iw = idx % g.width;
  const int64_t ih = (idx / g.width) % g.height;
  const int64_t plane = idx / (g.width * g.height);
  const T* gp = gy + plane * g.out_h * g.out_w;
  T sum = T(0);
  for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
    const int64_t oh = window_of_tap(ih, kh, g.stride_h, g.pad_top, 1, g.out_h);
    if (oh < 0) continue;
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      const int64_t ow = window_of_tap(iw, kw, g.stride_w, g.pad_left, 1, g.out_w);
      if (ow < 0) continue;
      int64_t h0, h1, w0, w1;
      const int64_t div = avg_window(g, oh, ow, &h0, &h1, &w0, &w1);
      if (div != 0) sum += gp[oh * g.out_w + ow] / T(div);
    }
  }
  gx[idx] += sum;
}

}  // namespace kernels
}  // namespace basin
