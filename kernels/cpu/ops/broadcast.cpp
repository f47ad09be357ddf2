// CPU op kernels, broadcast family: loops over kernels/src/ops/kernels/broadcast.hpp. STUB: not yet written.
#include "basin/error.hpp"
#include "cpu_op_kernels.hpp"

namespace basin {
namespace cpu {

template <class T>
void binary(BinaryKind, const StridedMap&, const StridedMap&, const StridedMap&, T, T, const T*, const T*, T*) {
  throw Error(ErrorCode::kUnimplemented, "binary: not yet written");
}

template <class T>
void reduce_sum(const StridedMap&, const StridedMap&, int, T, T, const T*, T*) {
  throw Error(ErrorCode::kUnimplemented, "reduce_sum: not yet written");
}

template void binary<double>(BinaryKind, const StridedMap&, const StridedMap&, const StridedMap&, double, double, const double*, const double*, double*);
template void reduce_sum<double>(const StridedMap&, const StridedMap&, int, double, double, const double*, double*);
template void binary<float>(BinaryKind, const StridedMap&, const StridedMap&, const StridedMap&, float, float, const float*, const float*, float*);
template void reduce_sum<float>(const StridedMap&, const StridedMap&, int, float, float, const float*, float*);

}  // namespace cpu
}  // namespace basin
