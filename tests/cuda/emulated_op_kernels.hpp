// The host emulation of the CUDA backend's op kernels (kernels/cuda/ops/): each kernel's host
// side is the same plan the device launch uses (op_launch_plan.hpp: checks, folded maps, index
// count), and its grid-stride loop is a loop over the same element body
// (kernels/src/ops/kernels/<family>.hpp) in a shuffled order. So a result that depended on the
// order threads run in, on a fold of the maps, or on an index count would show here, against
// the CPU backend's own loops (test_cuda_op_kernels.cpp, basin_gpu_parity_emulated).
#pragma once

#include <string>

#include "basin/error.hpp"
#include "basin/op_kernels.hpp"
#include "ops/op_launch_plan.hpp"
#include "shuffled_index.hpp"
#include "../../kernels/src/ops/kernels/broadcast.hpp"
#include "../../kernels/src/ops/kernels/conv.hpp"
#include "../../kernels/src/ops/kernels/layout.hpp"

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
    const int64_t count = cuda::ops::reduce_sum_count(out_map, in_map, reduce_rank);
    for_each_index(count, [&](int64_t i) {
      kernels::reduce_sum_element(i, out_map, in_map, reduce_rank, alpha, beta, src, dst);
    });
  }
  void im2col(const WindowGeometry& g, int64_t batch, const T* x, T* cols) override {
    cuda::ops::check_geometry("im2col", g, batch);
    for_each_index(cuda::ops::cols_count(g, batch), [&](int64_t i) { conv_kernels::im2col_element(g, i, x, cols); });
  }
  void col2im(const WindowGeometry& g, int64_t batch, const T* cols, T* x) override {
    cuda::ops::check_geometry("col2im", g, batch);
    for_each_index(cuda::ops::image_count(g, batch), [&](int64_t i) { conv_kernels::col2im_element(g, i, cols, x); });
  }
  // Pooling: as kernels/cuda/ops/pool.cu (a stub until the pool bodies exist).
  void max_pool_forward(const WindowGeometry&, int64_t, const T*, T*, T*) override { unimplemented("max_pool_forward"); }
  void max_pool_apply(const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*) override {
    unimplemented("max_pool_apply");
  }
  void max_pool_transpose(const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*) override {
    unimplemented("max_pool_transpose");
  }
  void avg_pool(const WindowGeometry&, int64_t, const T*, T*) override { unimplemented("avg_pool"); }
  void avg_pool_transpose(const WindowGeometry&, int64_t, const T*, T*) override { unimplemented("avg_pool_transpose"); }

 private:
  [[noreturn]] static void unimplemented(const char* what) {
    throw Error(ErrorCode::kUnimplemented, std::string("CUDA op kernel ") + what + " is not written yet");
  }
};

}  // namespace test
}  // namespace basin
