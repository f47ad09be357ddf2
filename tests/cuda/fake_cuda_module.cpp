// A stand-in for libbasin_cuda.so with the module's C entry points and a chosen ABI digest
// (FAKE_MODULE_ABI; none exported when it is undefined), for the loader's tests.
#include <cstddef>
#include <cstring>

extern "C" {
#ifdef FAKE_MODULE_ABI
__attribute__((visibility("default"))) const char* basin_cuda_module_abi() { return FAKE_MODULE_ABI; }
#endif
__attribute__((visibility("default"))) int basin_cuda_module_available(char* why, size_t size) {
  std::strncpy(why, "fake module: no device", size - 1);
  return 0;
}
__attribute__((visibility("default"))) void* basin_cuda_module_create_f64(int, int*, char*, size_t) { return nullptr; }
__attribute__((visibility("default"))) void* basin_cuda_module_create_f32(int, int*, char*, size_t) { return nullptr; }
}
