// One checking macro per library for the CPU backend.
#pragma once

#include <string>

#include "basin/error.hpp"

// LAPACKE returns info: 0 = success, < 0 = illegal argument, > 0 = did not converge.
#define BASIN_LAPACK_CHECK(call)                                                              \
  do {                                                                                        \
    const long long basin_info_ = static_cast<long long>(call);                               \
    if (basin_info_ != 0)                                                                     \
      throw ::basin::Error(::basin::ErrorCode::kInternal,                                     \
                           std::string("LAPACK call failed: ") + #call + " returned info=" +  \
                               std::to_string(basin_info_) +                                   \
                               (basin_info_ > 0 ? " (no convergence)" : " (illegal argument)")); \
  } while (0)
