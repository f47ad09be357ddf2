// CPU op kernels, conv family: loops over kernels/src/ops/kernels/conv.hpp. STUB: not yet written.
#include "basin/error.hpp"
#include "cpu_op_kernels.hpp"

namespace basin {
namespace cpu {

template <class T>
void im2col(const WindowGeometry&, int64_t, const T*, T*) {
  throw Error(ErrorCode::kUnimplemented, "im2col: not yet written");
}

template <class T>
void col2im(const WindowGeometry&, int64_t, const T*, T*) {
  throw Error(ErrorCode::kUnimplemented, "col2im: not yet written");
}

template void im2col<double>(const WindowGeometry&, int64_t, const double*, double*);
template void col2im<double>(const WindowGeometry&, int64_t, const double*, double*);
template void im2col<float>(const WindowGeometry&, int64_t, const float*, float*);
template void col2im<float>(const WindowGeometry&, int64_t, const float*, float*);

}  // namespace cpu
}  // namespace basin
