// The CUDA backend's op kernels (basin/op_kernels.hpp): grid-stride kernels over the element
// bodies of kernels/src/ops/kernels/, one .cu per family in this folder (layout.cu, broadcast.cu,
// conv.cu, pool.cu), each defining the functions below for float and double. The host side of
// every launch (argument checks, map folding, index counts) is op_launch_plan.hpp, which the
// host emulation of this backend (tests/cuda/emulated_cuda_backend.hpp) runs too.
//
// Every kernel runs on the stream of the backend that owns this table (its StreamContext), so
// it is ordered with the backend's BLAS calls and copies without extra synchronisation.
// Plain C++ header (nvcc only compiles the .cu files).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "basin/op_kernels.hpp"
#include "../device_context.hpp"

namespace basin {
namespace cuda {
namespace ops {

// layout.cu
template <class T>
void strided_copy(cudaStream_t stream, const StridedMap& out_map, const StridedMap& in_map, T alpha, T beta,
                  const T* src, T* dst);
// broadcast.cu
template <class T>
void binary(cudaStream_t stream, BinaryKind kind, const StridedMap& out_map, const StridedMap& a_map,
            const StridedMap& b_map, T alpha, T beta, const T* a, const T* b, T* dst);
template <class T>
void reduce_sum(cudaStream_t stream, const StridedMap& out_map, const StridedMap& in_map, int reduce_rank, T alpha,
                T beta, const T* src, T* dst);
template <class T>
void reduce_max(cudaStream_t stream, const StridedMap& out_map, const StridedMap& in_map, int reduce_rank,
                const T* src, T* dst);
// conv.cu
template <class T>
void im2col(cudaStream_t stream, const WindowGeometry& g, int64_t batch, const T* x, T* cols);
template <class T>
void col2im(cudaStream_t stream, const WindowGeometry& g, int64_t batch, const T* cols, T* x);
// pool.cu
template <class T>
void max_pool_forward(cudaStream_t stream, const WindowGeometry& g, int64_t batch, const T* x, T* y, T* argmax);
template <class T>
void max_pool_apply(cudaStream_t stream, const WindowGeometry& g, int64_t examples, int64_t rows_per_example,
                    const T* argmax, const T* x, T* y);
template <class T>
void max_pool_transpose(cudaStream_t stream, const WindowGeometry& g, int64_t examples, int64_t rows_per_example,
                        const T* argmax, const T* gy, T* gx);
template <class T>
void avg_pool(cudaStream_t stream, const WindowGeometry& g, int64_t batch, const T* x, T* y);
template <class T>
void avg_pool_transpose(cudaStream_t stream, const WindowGeometry& g, int64_t batch, const T* gy, T* gx);

// gather.cu
template <class T>
void gather_rows(cudaStream_t stream, const GatherGeometry& g, int64_t examples, T alpha, T beta, const T* idx,
                 const T* table, T* out);
template <class T>
void gather_rows_transpose(cudaStream_t stream, const GatherGeometry& g, int64_t out_examples, int64_t sum_examples,
                           T alpha, const T* idx, const T* gout, T* gtable);

}  // namespace ops
}  // namespace cuda

template <class T>
class CudaOpKernels final : public OpKernels<T> {
 public:
  explicit CudaOpKernels(const cuda::StreamContext& ctx) : ctx_(ctx) {}

  void strided_copy(const StridedMap& o, const StridedMap& i, T alpha, T beta, const T* src, T* dst) override {
    ctx_.activate();
    cuda::ops::strided_copy(ctx_.stream(), o, i, alpha, beta, src, dst);
  }
  void binary(BinaryKind kind, const StridedMap& o, const StridedMap& a_map, const StridedMap& b_map, T alpha, T beta,
              const T* a, const T* b, T* dst) override {
    ctx_.activate();
    cuda::ops::binary(ctx_.stream(), kind, o, a_map, b_map, alpha, beta, a, b, dst);
  }
  void reduce_sum(const StridedMap& o, const StridedMap& i, int reduce_rank, T alpha, T beta, const T* src,
                  T* dst) override {
    ctx_.activate();
    cuda::ops::reduce_sum(ctx_.stream(), o, i, reduce_rank, alpha, beta, src, dst);
  }
  void reduce_max(const StridedMap& o, const StridedMap& i, int reduce_rank, const T* src, T* dst) override {
    ctx_.activate();
    cuda::ops::reduce_max(ctx_.stream(), o, i, reduce_rank, src, dst);
  }
  void im2col(const WindowGeometry& g, int64_t batch, const T* x, T* cols) override {
    ctx_.activate();
    cuda::ops::im2col(ctx_.stream(), g, batch, x, cols);
  }
  void col2im(const WindowGeometry& g, int64_t batch, const T* cols, T* x) override {
    ctx_.activate();
    cuda::ops::col2im(ctx_.stream(), g, batch, cols, x);
  }
  void max_pool_forward(const WindowGeometry& g, int64_t batch, const T* x, T* y, T* argmax) override {
    ctx_.activate();
    cuda::ops::max_pool_forward(ctx_.stream(), g, batch, x, y, argmax);
  }
  void max_pool_apply(const WindowGeometry& g, int64_t e, int64_t r, const T* argmax, const T* x, T* y) override {
    ctx_.activate();
    cuda::ops::max_pool_apply(ctx_.stream(), g, e, r, argmax, x, y);
  }
  void max_pool_transpose(const WindowGeometry& g, int64_t e, int64_t r, const T* argmax, const T* gy,
                          T* gx) override {
    ctx_.activate();
    cuda::ops::max_pool_transpose(ctx_.stream(), g, e, r, argmax, gy, gx);
  }
  void avg_pool(const WindowGeometry& g, int64_t batch, const T* x, T* y) override {
    ctx_.activate();
    cuda::ops::avg_pool(ctx_.stream(), g, batch, x, y);
  }
  void avg_pool_transpose(const WindowGeometry& g, int64_t batch, const T* gy, T* gx) override {
    ctx_.activate();
    cuda::ops::avg_pool_transpose(ctx_.stream(), g, batch, gy, gx);
  }
  void gather_rows(const GatherGeometry& g, int64_t examples, T alpha, T beta, const T* idx, const T* table,
                   T* out) override {
    ctx_.activate();
    cuda::ops::gather_rows(ctx_.stream(), g, examples, alpha, beta, idx, table, out);
  }
  void gather_rows_transpose(const GatherGeometry& g, int64_t out_examples, int64_t sum_examples, T alpha,
                             const T* idx, const T* gout, T* gtable) override {
    ctx_.activate();
    cuda::ops::gather_rows_transpose(ctx_.stream(), g, out_examples, sum_examples, alpha, idx, gout, gtable);
  }

 private:
  const cuda::StreamContext& ctx_;
};

}  // namespace basin
