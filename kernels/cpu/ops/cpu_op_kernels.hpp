// The CPU backend's op kernels: loops over the element bodies of kernels/src/ops/kernels/, one
// file per family (layout.cpp, broadcast.cpp, conv.cpp, pool.cpp) defining the functions below
// for float and double. CpuOpKernels forwards the OpKernels table to them (basin/op_kernels.hpp).
#pragma once

#include "basin/op_kernels.hpp"

namespace basin {
namespace cpu {

// layout.cpp
template <class T>
void strided_copy(const StridedMap& out_map, const StridedMap& in_map, T alpha, T beta, const T* src, T* dst);
// broadcast.cpp
template <class T>
void binary(BinaryKind kind, const StridedMap& out_map, const StridedMap& a_map, const StridedMap& b_map, T alpha,
            T beta, const T* a, const T* b, T* dst);
template <class T>
void reduce_sum(const StridedMap& out_map, const StridedMap& in_map, int reduce_rank, T alpha, T beta, const T* src,
                T* dst);
template <class T>
void reduce_max(const StridedMap& out_map, const StridedMap& in_map, int reduce_rank, const T* src, T* dst);
// conv.cpp
template <class T>
void im2col(const WindowGeometry& g, int64_t batch, const T* x, T* cols);
template <class T>
void col2im(const WindowGeometry& g, int64_t batch, const T* cols, T* x);
// pool.cpp
template <class T>
void max_pool_forward(const WindowGeometry& g, int64_t batch, const T* x, T* y, T* argmax);
template <class T>
void max_pool_apply(const WindowGeometry& g, int64_t examples, int64_t rows_per_example, const T* argmax, const T* x,
                    T* y);
template <class T>
void max_pool_transpose(const WindowGeometry& g, int64_t examples, int64_t rows_per_example, const T* argmax,
                        const T* gy, T* gx);
template <class T>
void avg_pool(const WindowGeometry& g, int64_t batch, const T* x, T* y);
template <class T>
void avg_pool_transpose(const WindowGeometry& g, int64_t batch, const T* gy, T* gx);

// gather.cpp
template <class T>
void gather_rows(const GatherGeometry& g, int64_t examples, T alpha, T beta, const T* idx, const T* table, T* out);
template <class T>
void gather_rows_transpose(const GatherGeometry& g, int64_t out_examples, int64_t sum_examples, T alpha, const T* idx,
                           const T* gout, T* gtable);

}  // namespace cpu

template <class T>
class CpuOpKernels final : public OpKernels<T> {
 public:
  void strided_copy(const StridedMap& o, const StridedMap& i, T alpha, T beta, const T* src, T* dst) override {
    cpu::strided_copy(o, i, alpha, beta, src, dst);
  }
  void binary(BinaryKind kind, const StridedMap& o, const StridedMap& a_map, const StridedMap& b_map, T alpha, T beta,
              const T* a, const T* b, T* dst) override {
    cpu::binary(kind, o, a_map, b_map, alpha, beta, a, b, dst);
  }
  void reduce_sum(const StridedMap& o, const StridedMap& i, int reduce_rank, T alpha, T beta, const T* src,
                  T* dst) override {
    cpu::reduce_sum(o, i, reduce_rank, alpha, beta, src, dst);
  }
  void reduce_max(const StridedMap& o, const StridedMap& i, int reduce_rank, const T* src, T* dst) override {
    cpu::reduce_max(o, i, reduce_rank, src, dst);
  }
  void im2col(const WindowGeometry& g, int64_t batch, const T* x, T* cols) override { cpu::im2col(g, batch, x, cols); }
  void col2im(const WindowGeometry& g, int64_t batch, const T* cols, T* x) override { cpu::col2im(g, batch, cols, x); }
  void max_pool_forward(const WindowGeometry& g, int64_t batch, const T* x, T* y, T* argmax) override {
    cpu::max_pool_forward(g, batch, x, y, argmax);
  }
  void max_pool_apply(const WindowGeometry& g, int64_t e, int64_t r, const T* argmax, const T* x, T* y) override {
    cpu::max_pool_apply(g, e, r, argmax, x, y);
  }
  void max_pool_transpose(const WindowGeometry& g, int64_t e, int64_t r, const T* argmax, const T* gy,
                          T* gx) override {
    cpu::max_pool_transpose(g, e, r, argmax, gy, gx);
  }
  void avg_pool(const WindowGeometry& g, int64_t batch, const T* x, T* y) override { cpu::avg_pool(g, batch, x, y); }
  void avg_pool_transpose(const WindowGeometry& g, int64_t batch, const T* gy, T* gx) override {
    cpu::avg_pool_transpose(g, batch, gy, gx);
  }
  void gather_rows(const GatherGeometry& g, int64_t examples, T alpha, T beta, const T* idx, const T* table,
                   T* out) override {
    cpu::gather_rows(g, examples, alpha, beta, idx, table, out);
  }
  void gather_rows_transpose(const GatherGeometry& g, int64_t out_examples, int64_t sum_examples, T alpha,
                             const T* idx, const T* gout, T* gtable) override {
    cpu::gather_rows_transpose(g, out_examples, sum_examples, alpha, idx, gout, gtable);
  }
};

// The one (stateless) instance per precision the CPU backend hands out.
template <class T>
CpuOpKernels<T>& cpu_op_kernels();

}  // namespace basin
