#include "spectrum.hpp"

#include <algorithm>
#include <cmath>
#include <functional>

namespace basin {

RankInfo numerical_rank(const std::vector<double>& values, double default_tolerance,
                        std::optional<double> rtol, std::optional<double> atol) {
  std::vector<double> mag(values.size());
  std::transform(values.begin(), values.end(), mag.begin(), [](double v) { return std::fabs(v); });
  std::sort(mag.begin(), mag.end(), std::greater<double>());
  const double largest = mag.empty() ? 0.0 : mag.front();
  RankInfo info;
  info.tolerance = (rtol || atol) ? std::max(atol.value_or(0.0), rtol.value_or(0.0) * largest) : default_tolerance;
  info.rank = std::count_if(mag.begin(), mag.end(), [&](double v) { return v > info.tolerance; });
  const size_t r = static_cast<size_t>(info.rank);
  if (r >= 1 && r < mag.size() && mag[r] > 0) info.gap = mag[r - 1] / mag[r];
  return info;
}

}  // namespace basin
