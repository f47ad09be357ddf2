// CPU op kernels, pool family: loops over kernels/src/ops/kernels/pool.hpp. STUB: not yet written.
#include "basin/error.hpp"
#include "cpu_op_kernels.hpp"

namespace basin {
namespace cpu {

template <class T>
void max_pool_forward(const WindowGeometry&, int64_t, const T*, T*, T*) {
  throw Error(ErrorCode::kUnimplemented, "max_pool_forward: not yet written");
}

template <class T>
void max_pool_apply(const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*) {
  throw Error(ErrorCode::kUnimplemented, "max_pool_apply: not yet written");
}

template <class T>
void max_pool_transpose(const WindowGeometry&, int64_t, int64_t, const T*, const T*, T*) {
  throw Error(ErrorCode::kUnimplemented, "max_pool_transpose: not yet written");
}

template <class T>
void avg_pool(const WindowGeometry&, int64_t, const T*, T*) {
  throw Error(ErrorCode::kUnimplemented, "avg_pool: not yet written");
}

template <class T>
void avg_pool_transpose(const WindowGeometry&, int64_t, const T*, T*) {
  throw Error(ErrorCode::kUnimplemented, "avg_pool_transpose: not yet written");
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
