#include "loss.hpp"

#include <algorithm>
#include <cmath>

namespace basin {

LossTerms loss_terms(Loss loss, Reduction reduction, const std::vector<double>& f, int64_t n, int64_t k,
                     const std::vector<double>& targets, const std::vector<int64_t>& labels) {
  LossTerms t;
  t.dloss_df.assign(static_cast<size_t>(n * k), 0.0);
  t.factor_seeds.assign(static_cast<size_t>(n * k * k), 0.0);
  if (loss == Loss::kMse) {
    const double denom = reduction == Reduction::kMean ? static_cast<double>(n * k) : 1.0;
    double sum = 0;
    for (int64_t j = 0; j < n * k; ++j) {
      const double r = f[j] - targets[j];
      sum += r * r;
      t.dloss_df[j] = 2.0 * r / denom;
    }
    t.value = sum / denom;
    t.scaled_identity = true;
    t.scale = 2.0 / denom;
    const double s = std::sqrt(t.scale);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t r = 0; r < k; ++r) t.factor_seeds[(i * k + r) * k + r] = s;
  } else if (loss == Loss::kCrossEntropy) {
    const double denom = reduction == Reduction::kMean ? static_cast<double>(n) : 1.0;
    const double inv_sqrt = 1.0 / std::sqrt(denom);
    std::vector<double> p(static_cast<size_t>(k));
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double* fi = f.data() + i * k;
      const double m = *std::max_element(fi, fi + k);
      double z = 0;
      for (int64_t c = 0; c < k; ++c) z += std::exp(fi[c] - m);
      const double lse = m + std::log(z);
      for (int64_t c = 0; c < k; ++c) p[c] = std::exp(fi[c] - lse);
      const int64_t y = labels[i];
      sum += lse - fi[y];
      for (int64_t c = 0; c < k; ++c) t.dloss_df[i * k + c] = (p[c] - (c == y ? 1.0 : 0.0)) / denom;
      // Column r of S_i: √p_r (e_r − p) / √denom.
      for (int64_t r = 0; r < k; ++r) {
        const double sr = std::sqrt(p[r]) * inv_sqrt;
        double* row = t.factor_seeds.data() + (i * k + r) * k;
        for (int64_t c = 0; c < k; ++c) row[c] = sr * ((c == r ? 1.0 : 0.0) - p[c]);
      }
    }
    t.value = sum / denom;
  }
  return t;
}

}  // namespace basin
