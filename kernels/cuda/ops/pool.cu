// CUDA op kernels, pooling family. STUB until kernels/src/ops/kernels/pool.hpp's element bodies
// exist: every function throws kUnimplemented (the CPU backend runs pooling meanwhile).
#include <string>

#include "basin/error.hpp"
#include "cuda_op_kernels.hpp"

namespace basin {
namespace cuda {
namespace ops {
namespace {
[[noreturn]] void unimplemented(const char* what) {
  throw Error(ErrorCode::kUnimplemented, std::string("CUDA op kernel ") + what + " is not written yet");
}
}  // namespace

template <class T>
void max_pool_forward(cudaStream_t, const WindowGeometry&, int64_t, const T*, T*, T*) {
  unimplemented("max_pool_forward");
}
template <class T>
void max_pool_apply(cudaStream_t, const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*) {
  unimplemented("max_pool_apply");
}
template <class T>
void max_pool_transpose(cudaStream_t, const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*) {
  unimplemented("max_pool_transpose");
}
template <class T>
void avg_pool(cudaStream_t, const WindowGeometry&, int64_t, const T*, T*) {
  unimplemented("avg_pool");
}
template <class T>
void avg_pool_transpose(cudaStream_t, const WindowGeometry&, int64_t, const T*, T*) {
  unimplemented("avg_pool_transpose");
}

#define BASIN_INSTANTIATE(T)                                                                                  \
  template void max_pool_forward<T>(cudaStream_t, const WindowGeometry&, int64_t, const T*, T*, T*);           \
  template void max_pool_apply<T>(cudaStream_t, const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*); \
  template void max_pool_transpose<T>(cudaStream_t, const WindowGeometry&, int64_t, int64_t, const T*, const T*,  \
                                      T*);                                                                    \
  template void avg_pool<T>(cudaStream_t, const WindowGeometry&, int64_t, const T*, T*);                       \
  template void avg_pool_transpose<T>(cudaStream_t, const WindowGeometry&, int64_t, const T*, T*);
BASIN_INSTANTIATE(double)
BASIN_INSTANTIATE(float)
#undef BASIN_INSTANTIATE

}  // namespace ops
}  // namespace cuda
}  // namespace basin
