#include "loss.hpp"

#include <algorithm>
#include <cmath>

#include "basin/graph.hpp"

namespace basin {

LossTerms loss_terms(Loss loss, Reduction reduction, const std::vector<double>& f, int64_t n, int64_t k,
                     const std::vector<double>& targets, const std::vector<int64_t>& labels, int64_t classes) {
  LossTerms t;
  t.dloss_df.assign(static_cast<size_t>(n * k), 0.0);
  if (loss == Loss::kMse) {
    t.factor_cols = k;
    t.factor_seeds.assign(static_cast<size_t>(n * k * k), 0.0);
    t.factor_ranks.assign(static_cast<size_t>(n), k);
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
    const int64_t C = classes > 0 ? classes : k, P = k / C;  // positions of C logits
    const double denom = reduction == Reduction::kMean ? static_cast<double>(n * P) : 1.0;
    const double inv_sqrt = 1.0 / std::sqrt(denom);
    const int64_t r = C - 1;  // columns of each position's factor
    t.factor_cols = P * r;
    t.factor_seeds.assign(static_cast<size_t>(n * P * r * k), 0.0);
    t.factor_ranks.assign(static_cast<size_t>(n), 0);
    std::vector<double> p(static_cast<size_t>(C)), v(static_cast<size_t>(C));
    double sum = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t q = 0; q < P; ++q) {
        const double* fi = f.data() + i * k + q * C;
        const double m = *std::max_element(fi, fi + C);
        double z = 0;
        for (int64_t c = 0; c < C; ++c) z += std::exp(fi[c] - m);
        const double lse = m + std::log(z);
        for (int64_t c = 0; c < C; ++c) p[c] = std::exp(fi[c] - lse);
        const int64_t y = labels[i * P + q];
        sum += lse - fi[y];
        for (int64_t c = 0; c < C; ++c) t.dloss_df[i * k + q * C + c] = (p[c] - (c == y ? 1.0 : 0.0)) / denom;
        t.factor_ranks[i] += std::count_if(p.begin(), p.end(), [](double u) { return u > 0; }) - 1;
        // Householder: v = √p + e_j (j = C − 1), Q = I − v vᵀ/(1 + √p_j) is symmetric orthogonal
        // with Q √p = −e_j (‖√p‖ = 1, vᵀv = 2(1 + √p_j) ≥ 2: no cancellation for any p), so its
        // other columns U[:, c] = e_c − v v_c/(1 + √p_j), c < j, are an orthonormal basis of √p⊥.
        // Column c of position q's block of S_i: √p_a · U[a, c] / √denom at output q·C + a.
        const int64_t j = C - 1;
        for (int64_t a = 0; a < C; ++a) v[a] = std::sqrt(p[a]) + (a == j ? 1.0 : 0.0);
        const double beta = 1.0 / (1.0 + std::sqrt(p[j]));
        for (int64_t c = 0; c < r; ++c) {
          double* row = t.factor_seeds.data() + (i * P * r + q * r + c) * k + q * C;
          for (int64_t a = 0; a < C; ++a)
            row[a] = std::sqrt(p[a]) * ((a == c ? 1.0 : 0.0) - beta * v[a] * v[c]) * inv_sqrt;
        }
      }
    t.value = sum / denom;
  }
  return t;
}

int64_t loss_classes(const AnalysisRequest& r) {
  const int64_t k = r.output_dim();
  if (!r.graph || r.graph->output() < 0) return k;
  const Shape& s = r.graph->value(r.graph->output()).shape;
  return s.size() >= 2 && s.back() > 0 ? s.back() : k;
}

int64_t loss_factor_cols(const AnalysisRequest& r) {
  const int64_t k = r.output_dim();
  if (r.loss != Loss::kCrossEntropy) return k;
  const int64_t C = loss_classes(r);
  return (k / C) * (C - 1);
}

}  // namespace basin
