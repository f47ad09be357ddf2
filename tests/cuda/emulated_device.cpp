// Device selection for basin_gpu_parity_emulated: "CUDA" is always available and is the host
// emulation of the CUDA backend (emulated_cuda_backend.hpp). Linked before basin_kernels, these
// definitions satisfy analysis.cpp's references, so the real ones in libbasin_cuda.a are never
// pulled in. This runs the GPU parity suite on machines without a GPU to check the suite itself;
// it says nothing about CUDA -- basin_gpu_parity_tests on a GPU does.
#include <memory>
#include <string>

#include "basin/backend.hpp"
#include "emulated_cuda_backend.hpp"

namespace basin {

bool cuda_available(std::string* why) {
  if (why) why->clear();
  return true;
}

template <class T>
std::unique_ptr<Backend<T>> make_cuda_backend(int) {
  return std::make_unique<test::EmulatedCudaBackend<T>>();
}
template std::unique_ptr<Backend<double>> make_cuda_backend<double>(int);
template std::unique_ptr<Backend<float>> make_cuda_backend<float>(int);

}  // namespace basin
