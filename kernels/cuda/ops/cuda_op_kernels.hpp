// The CUDA backend's op kernels: grid-stride kernels over the element bodies of
// kernels/src/ops/kernels/ (one .cu per family in this folder), on the device context's stream.
// STUB: every method throws until its family's .cu is written.
#pragma once

#include "basin/error.hpp"
#include "basin/op_kernels.hpp"
#include "../device_context.hpp"

namespace basin {

template <class T>
class CudaOpKernels final : public OpKernels<T> {
 public:
  explicit CudaOpKernels(const cuda::DeviceContext& ctx) : ctx_(ctx) {}
  void strided_copy(const StridedMap&, const StridedMap&, T, T, const T*, T*) override { unimplemented("strided_copy"); }
  void binary(BinaryKind, const StridedMap&, const StridedMap&, const StridedMap&, T, T, const T*, const T*, T*) override { unimplemented("binary"); }
  void reduce_sum(const StridedMap&, const StridedMap&, int, T, T, const T*, T*) override { unimplemented("reduce_sum"); }
  void im2col(const WindowGeometry&, int64_t, const T*, T*) override { unimplemented("im2col"); }
  void col2im(const WindowGeometry&, int64_t, const T*, T*) override { unimplemented("col2im"); }
  void max_pool_forward(const WindowGeometry&, int64_t, const T*, T*, T*) override { unimplemented("max_pool_forward"); }
  void max_pool_apply(const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*) override { unimplemented("max_pool_apply"); }
  void max_pool_transpose(const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*) override { unimplemented("max_pool_transpose"); }
  void avg_pool(const WindowGeometry&, int64_t, const T*, T*) override { unimplemented("avg_pool"); }
  void avg_pool_transpose(const WindowGeometry&, int64_t, const T*, T*) override { unimplemented("avg_pool_transpose"); }

 private:
  [[noreturn]] static void unimplemented(const char* what) {
    throw Error(ErrorCode::kUnimplemented, std::string("CUDA op kernel ") + what + " is not written yet");
  }
  const cuda::DeviceContext& ctx_;
};

}  // namespace basin
