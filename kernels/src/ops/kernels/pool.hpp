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
// Each element body decomposes its index and calls a per-position function (max_window,
// max_gather, avg_of_window, avg_gather) that the CPU loops call directly from nested loops, so
// both run the same arithmetic.
#pragma once

#include <cstdint>

#include "basin/activation.hpp"  // BASIN_HD
#include "basin/op_kernels.hpp"

namespace basin {
namespace kernels {

// ---- window arithmetic along one axis ----

// The taps [*t0, *t1) of window o that fall inside an input of length n:
// 0 ≤ o·stride − pad + t·dilation < n.
BASIN_HD inline void taps_inside(int64_t o, int64_t k, int64_t stride, int64_t pad, int64_t dilation, int64_t n,
                                 int64_t* t0, int64_t* t1) {
  const int64_t start = o * stride - pad;
  int64_t lo = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
  int64_t hi = n - 1 - start < 0 ? 0 : (n - 1 - start) / dilation + 1;
  if (hi > k) hi = k;
  if (lo > hi) lo = hi;
  *t0 = lo, *t1 = hi;
}

// The windows [*o0, *o1] (inclusive; empty when *o0 > *o1) that may have a tap at input index i:
// o·stride − pad + t·dilation = i for some 0 ≤ t < k, 0 ≤ o < out. (With dilation > 1 a window
// in the range hits i only when (i + pad − o·stride) is a multiple of the dilation.)
BASIN_HD inline void windows_over(int64_t i, int64_t k, int64_t stride, int64_t pad, int64_t dilation, int64_t out,
                                  int64_t* o0, int64_t* o1) {
  const int64_t num = i + pad, first = num - (k - 1) * dilation;
  *o0 = first <= 0 ? 0 : stride == 1 ? first : (first + stride - 1) / stride;
  const int64_t last = stride == 1 ? num : num / stride;
  *o1 = last < out - 1 ? last : out - 1;
}

// ---- max ----

// Window (oh, ow) of plane p (= b·C + c): its first maximum (a NaN propagates) and that tap's
// index kh·kernel_w + kw (−1: no input element in the window, max 0; the op refuses such
// geometries).
template <class T>
BASIN_HD inline T max_window(const WindowGeometry& g, int64_t plane, int64_t oh, int64_t ow, const T* x, int64_t* arg) {
  int64_t h0, h1, w0, w1;
  taps_inside(oh, g.kernel_h, g.stride_h, g.pad_top, g.dilation_h, g.height, &h0, &h1);
  taps_inside(ow, g.kernel_w, g.stride_w, g.pad_left, g.dilation_w, g.width, &w0, &w1);
  // the window's origin (possibly in the padding: an offset, never a pointer, until a tap is inside)
  const int64_t base =
      plane * g.height * g.width + (oh * g.stride_h - g.pad_top) * g.width + (ow * g.stride_w - g.pad_left);
  T best = T(0);
  int64_t a = -1;
  for (int64_t kh = h0; kh < h1; ++kh)
    for (int64_t kw = w0; kw < w1; ++kw) {
      const T v = x[base + kh * g.dilation_h * g.width + kw * g.dilation_w];
      if (a < 0 || v > best || v != v) {
        best = v;
        a = kh * g.kernel_w + kw;
      }
    }
  *arg = a;
  return best;
}

// y [batch, C, oh, ow] = the window's maximum, argmax = its tap (as T).
template <class T>
BASIN_HD inline void max_pool_forward_element(int64_t idx, const WindowGeometry& g, const T* x, T* y, T* argmax) {
  const int64_t ow = idx % g.out_w;
  const int64_t oh = (idx / g.out_w) % g.out_h;
  const int64_t plane = idx / (g.out_w * g.out_h);
  int64_t a = -1;
  y[idx] = max_window(g, plane, oh, ow, x, &a);
  argmax[idx] = T(a);
}

// x at the arg-max `a` of window (oh, ow) of plane p (0 when a < 0).
template <class T>
BASIN_HD inline T max_pick(const WindowGeometry& g, int64_t plane, int64_t oh, int64_t ow, int64_t a, const T* x) {
  if (a < 0) return T(0);
  const int64_t ih = oh * g.stride_h - g.pad_top + (a / g.kernel_w) * g.dilation_h;
  const int64_t iw = ow * g.stride_w - g.pad_left + (a % g.kernel_w) * g.dilation_w;
  return x[(plane * g.height + ih) * g.width + iw];
}

// y [(E·R), C, oh, ow] += x at the arg-max of example b / rows_per_example (argmax [E, C, oh, ow]).
template <class T>
BASIN_HD inline void max_pool_apply_element(int64_t idx, const WindowGeometry& g, int64_t rows_per_example,
                                            const T* argmax, const T* x, T* y) {
  const int64_t ow = idx % g.out_w;
  const int64_t oh = (idx / g.out_w) % g.out_h;
  const int64_t plane = idx / (g.out_w * g.out_h);  // b·C + c
  const int64_t c = plane % g.channels, e = plane / g.channels / rows_per_example;
  const int64_t a = static_cast<int64_t>(argmax[((e * g.channels + c) * g.out_h + oh) * g.out_w + ow]);
  if (a >= 0) y[idx] += max_pick(g, plane, oh, ow, a, x);
}

// Σ over the windows whose arg-max is input (ih, iw) of gy there, given the candidate windows
// [oh0, oh1] × [ow0, ow1] (windows_over); ap, gp: the plane's arg-max and cotangent [out_h, out_w].
template <class T>
BASIN_HD inline T max_gather(const WindowGeometry& g, int64_t ih, int64_t iw, int64_t oh0, int64_t oh1, int64_t ow0,
                             int64_t ow1, const T* ap, const T* gp) {
  T sum = T(0);
  for (int64_t oh = oh0; oh <= oh1; ++oh) {
    const int64_t rh = ih + g.pad_top - oh * g.stride_h;  // = kh·dilation_h
    if (g.dilation_h != 1 && rh % g.dilation_h != 0) continue;
    const int64_t row = (g.dilation_h == 1 ? rh : rh / g.dilation_h) * g.kernel_w;
    for (int64_t ow = ow0; ow <= ow1; ++ow) {
      const int64_t rw = iw + g.pad_left - ow * g.stride_w;  // = kw·dilation_w
      if (g.dilation_w != 1 && rw % g.dilation_w != 0) continue;
      const int64_t tap = row + (g.dilation_w == 1 ? rw : rw / g.dilation_w);
      if (static_cast<int64_t>(ap[oh * g.out_w + ow]) == tap) sum += gp[oh * g.out_w + ow];
    }
  }
  return sum;
}

// gx [(E·R), C, H, W] += Σ over the windows whose arg-max is this element of gy there.
template <class T>
BASIN_HD inline void max_pool_transpose_element(int64_t idx, const WindowGeometry& g, int64_t rows_per_example,
                                                const T* argmax, const T* gy, T* gx) {
  const int64_t iw = idx % g.width;
  const int64_t ih = (idx / g.width) % g.height;
  const int64_t plane = idx / (g.width * g.height);  // b·C + c
  const int64_t c = plane % g.channels, e = plane / g.channels / rows_per_example;
  const int64_t osize = g.out_h * g.out_w;
  int64_t oh0, oh1, ow0, ow1;
  windows_over(ih, g.kernel_h, g.stride_h, g.pad_top, g.dilation_h, g.out_h, &oh0, &oh1);
  windows_over(iw, g.kernel_w, g.stride_w, g.pad_left, g.dilation_w, g.out_w, &ow0, &ow1);
  gx[idx] += max_gather(g, ih, iw, oh0, oh1, ow0, ow1, argmax + (e * g.channels + c) * osize, gy + plane * osize);
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

// The average of window (oh, ow) of the plane xp [H, W].
template <class T>
BASIN_HD inline T avg_of_window(const WindowGeometry& g, int64_t oh, int64_t ow, const T* xp) {
  int64_t h0, h1, w0, w1;
  const int64_t div = avg_window(g, oh, ow, &h0, &h1, &w0, &w1);
  if (div == 0) return T(0);
  T sum = T(0);
  for (int64_t ih = h0; ih < h1; ++ih)
    for (int64_t iw = w0; iw < w1; ++iw) sum += xp[ih * g.width + iw];
  return sum / T(div);
}

// y [batch, C, oh, ow] += the window's average.
template <class T>
BASIN_HD inline void avg_pool_element(int64_t idx, const WindowGeometry& g, const T* x, T* y) {
  const int64_t ow = idx % g.out_w;
  const int64_t oh = (idx / g.out_w) % g.out_h;
  const int64_t plane = idx / (g.out_w * g.out_h);
  y[idx] += avg_of_window(g, oh, ow, x + plane * g.height * g.width);
}

// Σ over the windows [oh0, oh1] × [ow0, ow1] containing an input element (windows_over) of
// gy / divisor; gp: the plane's gy [out_h, out_w].
template <class T>
BASIN_HD inline T avg_gather(const WindowGeometry& g, int64_t oh0, int64_t oh1, int64_t ow0, int64_t ow1, const T* gp) {
  T sum = T(0);
  for (int64_t oh = oh0; oh <= oh1; ++oh)
    for (int64_t ow = ow0; ow <= ow1; ++ow) {
      int64_t h0, h1, w0, w1;
      const int64_t div = avg_window(g, oh, ow, &h0, &h1, &w0, &w1);
      if (div != 0) sum += gp[oh * g.out_w + ow] / T(div);
    }
  return sum;
}

// gx [batch, C, H, W] += Σ over the windows containing this element of gy / divisor.
template <class T>
BASIN_HD inline void avg_pool_transpose_element(int64_t idx, const WindowGeometry& g, const T* gy, T* gx) {
  const int64_t iw = idx % g.width;
  const int64_t ih = (idx / g.width) % g.height;
  const int64_t plane = idx / (g.width * g.height);
  int64_t oh0, oh1, ow0, ow1;
  windows_over(ih, g.kernel_h, g.stride_h, g.pad_top, 1, g.out_h, &oh0, &oh1);
  windows_over(iw, g.kernel_w, g.stride_w, g.pad_left, 1, g.out_w, &ow0, &ow1);
  gx[idx] += avg_gather(g, oh0, oh1, ow0, ow1, gy + plane * g.out_h * g.out_w);
}

}  // namespace kernels
}  // namespace basin
