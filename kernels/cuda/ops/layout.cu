// CUDA op kernels, layout family: strided_copy as a grid-stride loop over the element body of
// kernels/src/ops/kernels/layout.hpp (one thread per output element; the maps are folded on the
// host first, op_launch_plan.hpp).
#include "../launch.cuh"
#include "../../src/ops/kernels/layout.hpp"
#include "cuda_op_kernels.hpp"
#include "op_launch_plan.hpp"

namespace basin {
namespace cuda {
namespace ops {
namespace {

// Maps by value: PODs in the kernel's parameter space (constant memory), read by every thread.
template <class T>
__global__ void strided_copy_kernel(int64_t count, StridedMap out_map, StridedMap in_map, T alpha, T beta,
                                    const T* src, T* dst) {
  BASIN_FOR_EACH_INDEX(idx, count) ::basin::kernels::strided_copy_element(idx, out_map, in_map, alpha, beta, src, dst);
}

}  // namespace

template <class T>
void strided_copy(cudaStream_t stream, const StridedMap& out_map, const StridedMap& in_map, T alpha, T beta,
                  const T* src, T* dst) {
  const StridedCopyPlan p = plan_strided_copy(out_map, in_map);
  BASIN_LAUNCH(strided_copy_kernel<T>, p.count, stream, p.out, p.in, alpha, beta, src, dst);
}

template void strided_copy<double>(cudaStream_t, const StridedMap&, const StridedMap&, double, double, const double*,
                                   double*);
template void strided_copy<float>(cudaStream_t, const StridedMap&, const StridedMap&, float, float, const float*,
                                  float*);

}  // namespace ops
}  // namespace cuda
}  // namespace basin
