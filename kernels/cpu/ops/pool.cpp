// CPU op kernels, pool family: loops over kernels/src/ops/kernels/pool.hpp. The loops walk the
// planes and positions directly (no index decomposition) and call the same per-position
// functions the element bodies call, so the results are the bodies' bit for bit.
#include <vector>

#include "cpu_op_kernels.hpp"
#include "ops/kernels/pool.hpp"

namespace basin {
namespace cpu {

namespace {
// The candidate windows of every input index along one axis (kernels::windows_over), computed once
// per call instead of once per element.
struct WindowRanges {
  std::vector<int64_t> lo, hi;
  WindowRanges(int64_t n, int64_t k, int64_t stride, int64_t pad, int64_t dilation, int64_t out)
      : lo(static_cast<size_t>(n)), hi(static_cast<size_t>(n)) {
    for (int64_t i = 0; i < n; ++i) kernels::windows_over(i, k, stride, pad, dilation, out, &lo[i], &hi[i]);
  }
};
}  // namespace

template <class T>
void max_pool_forward(const WindowGeometry& g, int64_t batch, const T* x, T* y, T* argmax) {
  int64_t idx = 0;
  for (int64_t p = 0; p < batch * g.channels; ++p)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow, ++idx) {
        int64_t a = -1;
        y[idx] = kernels::max_window(g, p, oh, ow, x, &a);
        argmax[idx] = T(a);
      }
}

template <class T>
void max_pool_apply(const WindowGeometry& g, int64_t examples, int64_t rows_per_example, const T* argmax, const T* x,
                    T* y) {
  const int64_t osize = g.out_h * g.out_w;
  for (int64_t p = 0; p < examples * rows_per_example * g.channels; ++p) {
    const int64_t c = p % g.channels, e = p / g.channels / rows_per_example;
    const T* ap = argmax + (e * g.channels + c) * osize;
    T* yp = y + p * osize;
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t a = static_cast<int64_t>(ap[oh * g.out_w + ow]);
        if (a >= 0) yp[oh * g.out_w + ow] += kernels::max_pick(g, p, oh, ow, a, x);
      }
  }
}

template <class T>
void max_pool_transpose(const WindowGeometry& g, int64_t examples, int64_t rows_per_example, const T* argmax,
                        const T* gy, T* gx) {
  const int64_t osize = g.out_h * g.out_w, isize = g.height * g.width;
  const WindowRanges rh(g.height, g.kernel_h, g.stride_h, g.pad_top, g.dilation_h, g.out_h);
  const WindowRanges rw(g.width, g.kernel_w, g.stride_w, g.pad_left, g.dilation_w, g.out_w);
  for (int64_t p = 0; p < examples * rows_per_example * g.channels; ++p) {
    const int64_t c = p % g.channels, e = p / g.channels / rows_per_example;
    const T* ap = argmax + (e * g.channels + c) * osize;
    const T* gp = gy + p * osize;
    T* xp = gx + p * isize;
    for (int64_t ih = 0; ih < g.height; ++ih)
      for (int64_t iw = 0; iw < g.width; ++iw)
        xp[ih * g.width + iw] += kernels::max_gather(g, ih, iw, rh.lo[ih], rh.hi[ih], rw.lo[iw], rw.hi[iw], ap, gp);
  }
}

template <class T>
void avg_pool(const WindowGeometry& g, int64_t batch, const T* x, T* y) {
  int64_t idx = 0;
  for (int64_t p = 0; p < batch * g.channels; ++p)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow, ++idx)
        y[idx] += kernels::avg_of_window(g, oh, ow, x + p * g.height * g.width);
}

template <class T>
void avg_pool_transpose(const WindowGeometry& g, int64_t batch, const T* gy, T* gx) {
  const int64_t osize = g.out_h * g.out_w, isize = g.height * g.width;
  const WindowRanges rh(g.height, g.kernel_h, g.stride_h, g.pad_top, 1, g.out_h);
  const WindowRanges rw(g.width, g.kernel_w, g.stride_w, g.pad_left, 1, g.out_w);
  for (int64_t p = 0; p < batch * g.channels; ++p) {
    const T* gp = gy + p * osize;
    T* xp = gx + p * isize;
    for (int64_t ih = 0; ih < g.height; ++ih)
      for (int64_t iw = 0; iw < g.width; ++iw)
        xp[ih * g.width + iw] += kernels::avg_gather(g, rh.lo[ih], rh.hi[ih], rw.lo[iw], rw.hi[iw], gp);
  }
}

#define BASIN_INSTANTIATE(T)                                                                            \
  template void max_pool_forward<T>(const WindowGeometry&, int64_t, const T*, T*, T*);                  \
  template void max_pool_apply<T>(const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*);     \
  template void max_pool_transpose<T>(const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*); \
  template void avg_pool<T>(const WindowGeometry&, int64_t, const T*, T*);                              \
  template void avg_pool_transpose<T>(const WindowGeometry&, int64_t, const T*, T*);
BASIN_INSTANTIATE(double)
BASIN_INSTANTIATE(float)
#undef BASIN_INSTANTIATE

}  // namespace cpu
}  // namespace basin
