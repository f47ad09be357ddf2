// CPU op kernels, layout family: loops over kernels/src/ops/kernels/layout.hpp. STUB: not yet written.
#include "basin/error.hpp"
#include "cpu_op_kernels.hpp"

namespace basin {
namespace cpu {

template <class T>
void strided_copy(const StridedMap&, const StridedMap&, T, T, const T*, T*) {
  throw Error(ErrorCode::kUnimplemented, "strided_copy: not yet written");
}

template void strided_copy<double>(const StridedMap&, const StridedMap&, double, double, const double*, double*);
template void strided_copy<float>(const StridedMap&, const StridedMap&, float, float, const float*, float*);

}  // namespace cpu
}  // namespace basin
