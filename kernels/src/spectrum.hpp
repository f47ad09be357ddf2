// Numerical rank, tolerance and gap of a spectrum (internal).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace basin {

struct RankInfo {
  int64_t rank = 0;
  double tolerance = 0;
  std::optional<double> gap;  // v[rank-1] / v[rank] when both exist and v[rank] > 0
};

// values: descending by magnitude is not required; magnitudes are compared with the tolerance.
// default_tolerance is used unless the user gave rtol/atol: tol = max(atol, rtol · max|v|).
RankInfo numerical_rank(const std::vector<double>& values, double default_tolerance,
                        std::optional<double> rtol, std::optional<double> atol);

}  // namespace basin
