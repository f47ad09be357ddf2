#include "per_parameter.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "basin/error.hpp"
#include "spectrum.hpp"

namespace basin {
namespace {

enum class Route { kNone, kGram, kSvd };

struct BlockPlan {
  Route primary = Route::kNone;
  bool refine = false;  // auto: redo with the SVD when the Gram shows an apparent deficiency
};

// Bytes of the two routes for an m × count block: the Gram needs Δ Δᵀ, the Hadamard product
// (both m²) and A Aᵀ (n²); the SVD the block, a working copy (a device transposes a tall one)
// and the solver's min(m, count)² work.
double gram_bytes(double sz, double n, double m) { return sz * (2 * m * m + n * n); }
double svd_bytes(double sz, double m, double count) {
  const double s = std::min(m, count);
  return sz * (2 * m * count + 4 * s * s);
}

BlockPlan plan_block(const AnalysisRequest& r, int64_t count, double sz, double budget) {
  const int64_t n = r.num_examples, m = n * r.model.output_dim();
  const bool gram_ok = m <= r.limits.max_dense_dim && gram_bytes(sz, double(n), double(m)) <= budget;
  const bool svd_ok =
      std::min(m, count) <= r.limits.max_dense_dim && svd_bytes(sz, double(m), double(count)) <= budget;
  BlockPlan p;
  switch (r.method) {
    case Method::kGram: p.primary = gram_ok ? Route::kGram : Route::kNone; break;
    case Method::kSvd: p.primary = svd_ok ? Route::kSvd : Route::kNone; break;
    case Method::kNormal: p.primary = svd_ok ? Route::kSvd : gram_ok ? Route::kGram : Route::kNone; break;
    case Method::kAuto:
      if (m <= count && gram_ok) {
        p.primary = Route::kGram;
        p.refine = svd_ok;
      } else {
        p.primary = svd_ok ? Route::kSvd : gram_ok ? Route::kGram : Route::kNone;
      }
      break;
  }
  return p;
}

[[noreturn]] void refuse(const AnalysisRequest& r, const ParameterTensor& t, double sz, double budget) {
  const int64_t n = r.num_examples, m = n * r.model.output_dim();
  resource_exhausted("want per_parameter: the Jacobian block of " + t.name + " is " + std::to_string(m) + " × " +
                     std::to_string(t.count) + "; neither its Gram (" +
                     std::to_string(int64_t(gram_bytes(sz, double(n), double(m)) / (1 << 20))) + " MiB) nor its SVD (" +
                     std::to_string(int64_t(svd_bytes(sz, double(m), double(t.count)) / (1 << 20))) +
                     " MiB) fits the " + std::to_string(int64_t(std::max(budget, 0.0) / (1 << 20))) +
                     " MiB left under the memory limit (--max-memory) with method " + method_name(r.method) +
                     " and the dense-solver limit of " + std::to_string(r.limits.max_dense_dim) +
                     "; use fewer examples or drop per_parameter from --want");
}

double elem_bytes(const AnalysisRequest& r) { return r.dtype == DType::kFloat64 ? 8 : 4; }

}  // namespace

std::vector<ParameterTensor> parameter_tensors(const Model& model) {
  std::vector<ParameterTensor> out;
  int64_t offset = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(model.layers.size()); ++i) {
    const Layer& l = model.layers[i];
    if (l.kind != Layer::Kind::kDense) continue;
    const int64_t d_in = model.width_after(i - 1);
    out.push_back({std::to_string(i) + ".weight", {l.out, d_in}, offset, l.out * d_in, i, false});
    offset += l.out * d_in;
    if (l.bias) {
      out.push_back({std::to_string(i) + ".bias", {l.out}, offset, l.out, i, true});
      offset += l.out;
    }
  }
  return out;
}

void validate_per_parameter(const AnalysisRequest& r, double budget) {
  for (const ParameterTensor& t : parameter_tensors(r.model))
    if (plan_block(r, t.count, elem_bytes(r), budget).primary == Route::kNone) refuse(r, t, elem_bytes(r), budget);
}

template <class T>
std::vector<ParameterSpectrum> per_parameter_jacobian(Backend<T>& be, Network<T>& net, const std::vector<T>& seeds,
                                                      const AnalysisRequest& r, double budget, Timings& timings) {
  using clock = std::chrono::steady_clock;
  const int64_t n = r.num_examples, k = r.model.output_dim(), m = n * k;
  const double eps = std::numeric_limits<T>::epsilon();
  const std::vector<ParameterTensor> tensors = parameter_tensors(r.model);
  std::vector<ParameterSpectrum> out(tensors.size());
  double solve_ms = 0;
  const auto t_all = clock::now();
  // Times a solve (the rest of the pass counts as the Jacobian's assembly).
  auto timed = [&](auto&& solve) {
    const auto t0 = clock::now();
    auto values = solve();
    be.synchronize();
    solve_ms += std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    return values;
  };
  net.layer_factors(seeds, k, [&](const typename Network<T>::LayerFactors& f) {
    for (size_t ti = 0; ti < tensors.size(); ++ti) {
      const ParameterTensor& t = tensors[ti];
      if (t.layer != f.layer) continue;
      const BlockPlan plan = plan_block(r, t.count, sizeof(T), budget);
      if (plan.primary == Route::kNone) refuse(r, t, sizeof(T), budget);
      const size_t values = static_cast<size_t>(std::min(m, t.count));
      // σ of the block [m × count], materialised, by the SVD.
      auto svd = [&] {
        return timed([&] {
          Buffer<T> block(be, static_cast<size_t>(m * t.count));
          if (t.is_bias) be.copy(block.get(), f.delta, block.size());
          else be.assemble_jacobian_block(m, 0, k, f.d_out, f.d_in, false, f.delta, f.act, block.get(), t.count, 0);
          std::vector<T> s = be.singular_values(m, t.count, block.get());
          std::vector<double> sigma(s.begin(), s.end());
          sigma.resize(values);
          return sigma;
        });
      };
      // σ from the eigenvalues of the block's Gram [m × m].
      auto gram = [&] {
        Buffer<T> delta_gram(be, static_cast<size_t>(m * m));
        be.syrk_lower(false, m, f.d_out, T(1), f.delta, f.d_out, T(0), delta_gram.get(), m);
        Buffer<T> sym;
        if (!t.is_bias) {
          Buffer<T> act_gram(be, static_cast<size_t>(n * n));
          be.syrk_lower(false, n, f.d_in, T(1), f.act, f.d_in, T(0), act_gram.get(), n);
          sym = Buffer<T>(be, static_cast<size_t>(m * m));  // zero-filled
          be.hadamard_expand_accumulate(n, k, act_gram.get(), T(0), 0, m, delta_gram.get(), m, sym.get());
        } else {
          sym = std::move(delta_gram);
        }
        return timed([&] {
          std::vector<T> lambda = be.symmetric_eigenvalues(m, sym.get());
          std::vector<double> sigma(lambda.size());
          for (size_t j = 0; j < lambda.size(); ++j) sigma[j] = std::sqrt(std::max<double>(lambda[j], 0.0));
          std::sort(sigma.begin(), sigma.end(), std::greater<double>());
          sigma.resize(values);
          return sigma;
        });
      };
      // The rank rule of the whole G (analysis.cpp): NumPy's max(m, count)·ε·σ_max for the
      // SVD, √(max(m, count)·ε)·σ_max for a Gram (it sees σ², resolved to ε·σ_max²).
      const double size = static_cast<double>(std::max(m, t.count));
      auto default_tol = [&](const std::vector<double>& s, Route route) {
        const double smax = s.empty() ? 0.0 : s.front();
        return route == Route::kSvd ? smax * size * eps : smax * std::sqrt(size * eps);
      };
      JacobianSpectrum& js = out[ti].jacobian;
      Route used = plan.primary;
      js.singular_values = used == Route::kSvd ? svd() : gram();
      if (used == Route::kGram && plan.refine) {
        const double tol = default_tol(js.singular_values, Route::kGram);
        if (numerical_rank(js.singular_values, tol, std::nullopt, std::nullopt).rank <
            static_cast<int64_t>(js.singular_values.size())) {
          js.singular_values = svd();
          js.refined_from = "gram";
          used = Route::kSvd;
        }
      }
      js.method = used == Route::kSvd ? "svd" : "gram";
      const RankInfo ri = numerical_rank(js.singular_values, default_tol(js.singular_values, used), r.rtol, r.atol);
      js.rank = ri.rank;
      js.tolerance = ri.tolerance;
      js.gap = ri.gap;
      js.level_set_dim = t.count - ri.rank;
    }
  });
  // ‖G_l‖²_F = Σ σ², and the blocks partition G's columns, so their sum is ‖G‖²_F.
  double total = 0;
  std::vector<double> sq(tensors.size(), 0.0);
  for (size_t ti = 0; ti < tensors.size(); ++ti) {
    for (double s : out[ti].jacobian.singular_values) sq[ti] += s * s;
    total += sq[ti];
  }
  for (size_t ti = 0; ti < tensors.size(); ++ti) {
    const ParameterTensor& t = tensors[ti];
    out[ti].name = t.name;
    out[ti].shape = t.shape;
    out[ti].offset = t.offset;
    out[ti].count = t.count;
    out[ti].gram_trace_fraction = total > 0 ? sq[ti] / total : std::numeric_limits<double>::quiet_NaN();
  }
  be.synchronize();
  timings.solve_ms += solve_ms;
  timings.jacobian_ms += std::chrono::duration<double, std::milli>(clock::now() - t_all).count() - solve_ms;
  return out;
}

template <class T>
std::vector<std::vector<double>> hessian_block_eigenvalues(Backend<T>& be, const Model& model, const T* h) {
  const int64_t N = model.num_params();
  std::vector<std::vector<double>> out;
  for (const ParameterTensor& t : parameter_tensors(model)) {
    // H_ll = H[o : o+c, o : o+c]: its lower triangle lies in H's lower triangle.
    Buffer<T> block(be, static_cast<size_t>(t.count * t.count));
    be.strided_axpby(1, t.count, t.count, T(1), h + t.offset * N + t.offset, N, 0, T(0), block.get(), t.count, 0);
    const std::vector<T> values = be.symmetric_eigenvalues(t.count, block.get());
    out.emplace_back(values.begin(), values.end());
  }
  return out;
}

template std::vector<ParameterSpectrum> per_parameter_jacobian<double>(Backend<double>&, Network<double>&,
                                                                       const std::vector<double>&,
                                                                       const AnalysisRequest&, double, Timings&);
template std::vector<ParameterSpectrum> per_parameter_jacobian<float>(Backend<float>&, Network<float>&,
                                                                      const std::vector<float>&,
                                                                      const AnalysisRequest&, double, Timings&);
template std::vector<std::vector<double>> hessian_block_eigenvalues<double>(Backend<double>&, const Model&,
                                                                            const double*);
template std::vector<std::vector<double>> hessian_block_eigenvalues<float>(Backend<float>&, const Model&,
                                                                           const float*);

}  // namespace basin
