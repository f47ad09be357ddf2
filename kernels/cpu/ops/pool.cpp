// CPU op kernels, pool family: loops over the element bodies of kernels/src/ops/kernels/pool.hpp.
#include "cpu_op_kernels.hpp"
#include "ops/kernels/pool.hpp"

namespace basin {
namespace cpu {

template <class T>
void max_pool_forward(const WindowGeometry& g, int64_t batch, const T* x, T* y, T* argmax) {
  const int64_t n = batch * g.channels * g.out_h * g.out_w;
  for (int64_t i = 0; i < n; ++i) kernels::max_pool_forward_element(i, g, x, y, argmax);
}

template <class T>
void max_pool_apply(const WindowGeometry& g, int64_t examples, int64_t rows_per_example, const T* argmax, const T* x,
                    T* y) {
  const int64_t n = examples * rows_per_example * g.channels * g.out_h * g.out_w;
  for (int64_t i = 0; i < n; ++i) kernels::max_pool_apply_element(i, g, rows_per_example, argmax, x, y);
}

template <class T>
void max_pool_transpose(const WindowGeometry& g, int64_t examples, int64_t rows_per_example, const T* argmax,
                        const T* gy, T* gx) {
  const int64_t n = examples * rows_per_example * g.channels * g.height * g.width;
  for (int64_t i = 0; i < n; ++i) kernels::max_pool_transpose_element(i, g, rows_per_example, argmax, gy, gx);
}

template <class T>
void avg_pool(const WindowGeometry& g, int64_t batch, const T* x, T* y) {
  const int64_t n = batch * g.channels * g.out_h * g.out_w;
  for (int64_t i = 0; i < n; ++i) kernels::avg_pool_element(i, g, x, y);
}

template <class T>
void avg_pool_transpose(const WindowGeometry& g, int64_t batch, const T* gy, T* gx) {
  const int64_t n = batch * g.channels * g.height * g.width;
  for (int64_t i = 0; i < n; ++i) kernels::avg_pool_transpose_element(i, g, gy, gx);
}

template void max_pool_forward<double>(const WindowGeometry&, int64_t, const double*, double*, double*);
template void max_pool_apply<double>(const WindowGeometry&, int64_t, int64_t, const double*, const double*, double*);
template void max_pool_transpose<double>(const WindowGeometry&, int64_t, int64_t, const double*, const double*, double*);
template void avg_pool<double>(const WindowGeometry&, int64_t, const double*, double*);
template void avg_pool_transpose<double>(const WindowGeometry&, int64_t, const double*, double*);
template void max_pool_forward<float>(const WindowGeometry&, int64_t, const float*, float*, float*);
template void max_pool_apply<float>(const WindowGeometry&, int64_t, int64_t, const float*, const float*, float*);
template void max_pool_transpose<float>(const WindowGeometry&, int64_t, int64_t, const float*, const float*, float*);
template void avg_pool<float>(const WindowGeometry&, int64_t, const float*, float*);
template void avg_pool_transpose<float>(const WindowGeometry&, int64_t, const float*, float*);

}  // namespace cpu
}  // namespace basin
