// The host emulation of the CUDA backend's op kernels (kernels/cuda/ops/): each kernel's host
// side is the same plan the device launch uses (op_launch_plan.hpp: checks, folded maps, index
// count), and its grid-stride loop is a loop over the same element body
// (kernels/src/ops/kernels/<family>.hpp) in a shuffled order. So a result that depended on the
// order threads run in, on a fold of the maps, or on an index count would show here, against
// the CPU backend's own loops (test_cuda_op_kernels.cpp, basin_gpu_parity_emulated).
#pragma once

#include "basin/op_kernels.hpp"
#include "ops/op_launch_plan.hpp"
#include "shuffled_index.hpp"
#include "../../kernels/src/ops/kernels/broadcast.hpp"
#include "../../kernels/src/ops/kernels/conv.hpp"
#include "../../kernels/src/ops/kernels/layout.hpp"
#include "../../kernels/src/ops/kernels/pool.hpp"
#include "../../kernels/src/ops/kernels/gather.hpp"

namespace basin {
namespace test {

template <class T>
class EmulatedOpKernels final : public OpKernels<T> {
 public:
  void strided_copy(const StridedMap& out_map, const StridedMap& in_map, T alpha, T beta, const T* src,
                    T* dst) override {
    const cuda::ops::StridedCopyPlan p = cuda::ops::plan_strided_copy(out_map, in_map);
    for_each_index(p.count,
                   [&](int64_t i) { kernels::strided_copy_element(i, p.out, p.in, alpha, beta, src, dst); });
  }
  void binary(BinaryKind kind, const StridedMap& out_map, const StridedMap& a_map, const StridedMap& b_map, T alpha,
              T beta, const T* a, const T* b, T* dst) override {
    const cuda::ops::BinaryPlan p = cuda::ops::plan_binary(out_map, a_map, b_map);
    for_each_index(p.count,
                   [&](int64_t i) { kernels::binary_element(i, kind, p.out, p.a, p.b, alpha, beta, a, b, dst); });
  }
  void reduce_sum(const StridedMap& out_map, const StridedMap& in_map, int reduce_rank, T alpha, T beta, const T* src,
                  T* dst) override {
    const int64_t count = cuda::ops::reduction_count("reduce_sum", out_map, in_map, reduce_rank);
    for_each_index(count, [&](int64_t i) {
      kernels::reduce_sum_element(i, out_map, in_map, reduce_rank, alpha, beta, src, dst);
    });
  }
  void reduce_max(const StridedMap& out_map, const StridedMap& in_map, int reduce_rank, const T* src,
                  T* dst) override {
    const int64_t count = cuda::ops::reduction_count("reduce_max", out_map, in_map, reduce_rank);
    for_each_index(count, [&](int64_t i) { kernels::reduce_max_element(i, out_map, in_map, reduce_rank, src, dst); });
  }
  void im2col(const WindowGeometry& g, int64_t batch, const T* x, T* cols) override {
    cuda::ops::check_geometry("im2col", g, batch);
    for_each_index(cuda::ops::cols_count(g, batch), [&](int64_t i) { conv_kernels::im2col_element(g, i, x, cols); });
  }
  void col2im(const WindowGeometry& g, int64_t batch, const T* cols, T* x) override {
    cuda::ops::check_geometry("col2im", g, batch);
    for_each_index(cuda::ops::image_count(g, batch), [&](int64_t i) { conv_kernels::col2im_element(g, i, cols, x); });
  }
  void max_pool_forward(const WindowGeometry& g, int64_t batch, const T* x, T* y, T* argmax) override {
    cuda::ops::check_geometry("max_pool_forward", g, batch);
    for_each_index(cuda::ops::window_output_count(g, batch),
                   [&](int64_t i) { kernels::max_pool_forward_element(i, g, x, y, argmax); });
  }
  void max_pool_apply(const WindowGeometry& g, int64_t examples, int64_t rows_per_example, const T* argmax, const T* x,
                      T* y) override {
    const int64_t rows = cuda::ops::pooled_rows("max_pool_apply", g, examples, rows_per_example);
    for_each_index(cuda::ops::window_output_count(g, rows),
                   [&](int64_t i) { kernels::max_pool_apply_element(i, g, rows_per_example, argmax, x, y); });
  }
  void max_pool_transpose(const WindowGeometry& g, int64_t examples, int64_t rows_per_example, const T* argmax,
                          const T* gy, T* gx) override {
    const int64_t rows = cuda::ops::pooled_rows("max_pool_transpose", g, examples, rows_per_example);
    for_each_index(cuda::ops::image_count(g, rows),
                   [&](int64_t i) { kernels::max_pool_transpose_element(i, g, rows_per_example, argmax, gy, gx); });
  }
  void avg_pool(const WindowGeometry& g, int64_t batch, const T* x, T* y) override {
    cuda::ops::check_geometry("avg_pool", g, batch);
    for_each_index(cuda::ops::window_output_count(g, batch), [&](int64_t i) { kernels::avg_pool_element(i, g, x, y); });
  }
  void avg_pool_transpose(const WindowGeometry& g, int64_t batch, const T* gy, T* gx) override {
    cuda::ops::check_geometry("avg_pool_transpose", g, batch);
    for_each_index(cuda::ops::image_count(g, batch),
                   [&](int64_t i) { kernels::avg_pool_transpose_element(i, g, gy, gx); });
  }
  void gather_rows(const GatherGeometry& g, int64_t examples, T alpha, T beta, const T* idx, const T* table,
                   T* out) override {
    for_each_index(examples * g.rows * g.positions * g.width,
                   [&](int64_t i) { kernels::gather_rows_at(g, i, alpha, beta, idx, table, out); });
  }
  void gather_rows_transpose(const GatherGeometry& g, int64_t out_examples, int64_t sum_examples, T alpha,
                             const T* idx, const T* gout, T* gtable) override {
    for_each_index(out_examples * g.rows * g.vocab * g.width,
                   [&](int64_t i) { kernels::gather_rows_transpose_at(g, sum_examples, i, alpha, idx, gout, gtable); });
  }
};

}  // namespace test
}  // namespace basin
