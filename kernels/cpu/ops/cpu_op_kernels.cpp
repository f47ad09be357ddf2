#include "cpu_op_kernels.hpp"

namespace basin {

template <class T>
CpuOpKernels<T>& cpu_op_kernels() {
  static CpuOpKernels<T> kernels;
  return kernels;
}

template CpuOpKernels<double>& cpu_op_kernels();
template CpuOpKernels<float>& cpu_op_kernels();

}  // namespace basin
