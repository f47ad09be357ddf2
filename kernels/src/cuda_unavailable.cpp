// Built when Basin is compiled without the CUDA backend: --device cuda reports why.
#include "basin/backend.hpp"
#include "basin/error.hpp"

namespace basin {

bool cuda_available(std::string* why) {
  if (why) *why = "this build of Basin has no CUDA backend (configured without nvcc or with -DBASIN_WITH_CUDA=OFF)";
  return false;
}

template <class T>
std::unique_ptr<Backend<T>> make_cuda_backend(int) {
  std::string why;
  cuda_available(&why);
  throw Error(ErrorCode::kUnavailable, "device cuda: " + why);
}
template std::unique_ptr<Backend<double>> make_cuda_backend<double>(int);
template std::unique_ptr<Backend<float>> make_cuda_backend<float>(int);

}  // namespace basin
