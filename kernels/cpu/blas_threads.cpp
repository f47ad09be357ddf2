// OpenBLAS's idle workers (docs/ARCHITECTURE.md, "Host memory" and "BLAS threads").
//
// After every multi-threaded call OpenBLAS's worker threads spin (sched_yield) for about 2^28
// cycles before they sleep. Basin's passes interleave BLAS calls with their own loops, so on a
// machine with few cores the spinning workers take the cores those loops run on (measured on 2
// cores: a ReLU backward 36 ms with one BLAS thread, 113 ms with two). OPENBLAS_THREAD_TIMEOUT=4
// makes them sleep at once. OpenBLAS reads it when its threads start, at load time, so Basin's
// programs set it (unless the user did), have OpenBLAS read its environment again and stop its
// threads; the next call starts them with the new timeout. Other BLAS libraries, and OpenBLAS
// builds without these entry points (OpenMP), are left as they are.
#include <dlfcn.h>

#include <cstdlib>

#include "basin/backend.hpp"

namespace basin {

void configure_blas_threads() {
  if (std::getenv("OPENBLAS_THREAD_TIMEOUT") != nullptr) return;  // the user's choice stands
  using Fn = void (*)();
  const auto read_env = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_read_env"));
  const auto shutdown = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "blas_thread_shutdown_"));
  if (read_env == nullptr || shutdown == nullptr) return;
  setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);
  read_env();
  shutdown();
}

}  // namespace basin
