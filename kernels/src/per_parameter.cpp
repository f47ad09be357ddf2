// Per-parameter-tensor spectra.
//
// G's column block for a dense layer's weight W [d_out × d_in] has row (i, c) = δ_(i,c) ⊗ a_i and
// for its bias row (i, c) = δ_(i,c), where δ = Δ [(n·k) × d_out] is the back-propagated
// sensitivity of output c of example i to the layer's pre-activation and a_i its input. Hence
//   G_W G_Wᵀ = (Δ Δᵀ) ⊙ (A Aᵀ ⊗ 1_k 1_kᵀ),   G_b G_bᵀ = Δ Δᵀ,   G_b = Δ,
// the terms whose sum over layers is the structured Gram of the whole G. Each tensor's σ come
// from the smaller side: the (n·k)² Gram when n·k < count, else G_tᵀG_t [count²] accumulated
// over blocks of examples, so the dense problem is min(n·k, count)² (never larger than G's).
// As for G, a Gram resolves σ only to √ε·σ_max: under method auto, a tensor whose Gram finds
// values below that resolution is recomputed by the SVD of G_t (materialised, when it fits).
// Method svd takes the SVD of every G_t.
#include "per_parameter.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "spectrum.hpp"

namespace basin {
namespace {

// Work per block of examples for the G_tᵀG_t side.
constexpr uint64_t kBlockBytes = 32ull << 20;

enum class Way { kGram, kNormal, kSvd };

template <class T>
std::vector<double> sqrt_descending(const std::vector<T>& eigenvalues, size_t count) {
  std::vector<double> s(eigenvalues.size());
  for (size_t j = 0; j < s.size(); ++j) s[j] = std::sqrt(std::max(double(eigenvalues[j]), 0.0));
  std::sort(s.begin(), s.end(), std::greater<double>());
  s.resize(std::min(s.size(), count));
  return s;
}

template <class T>
class PerParameter {
 public:
  PerParameter(Backend<T>& be, GraphNetwork<T>& net, const AnalysisRequest& req, const std::vector<T>& seeds)
      : be_(be), net_(net), req_(req), seeds_(seeds), slots_(tensor_slots(req)),
        n_(req.num_examples), k_(req.output_dim()), m_(n_ * k_) {}

  std::vector<ParameterSpectrum> run(double svd_budget_bytes) {
    std::vector<Way> way(slots_.size());
    for (size_t t = 0; t < slots_.size(); ++t)
      way[t] = req_.method == Method::kSvd ? Way::kSvd : m_ < slots_[t].count ? Way::kGram : Way::kNormal;
    sigma_.assign(slots_.size(), {});
    full_pass(way, [](Way w) { return w != Way::kNormal; });
    normal_pass(way);
    std::vector<std::string> refined_from(slots_.size());
    if (req_.method == Method::kAuto) {
      // Refine the tensors whose Gram left values unresolved, when their G_t fits.
      std::vector<Way> refine(slots_.size(), Way::kNormal);
      bool any = false;
      for (size_t t = 0; t < slots_.size(); ++t) {
        const double tol = default_tolerance(sigma_[t], slots_[t].count, way[t]);
        const bool resolved = numerical_rank(sigma_[t], tol, std::nullopt, std::nullopt).rank ==
                              static_cast<int64_t>(sigma_[t].size());
        const double g_bytes = double(sizeof(T)) * (double(m_) * double(slots_[t].count) +
                                                    4.0 * double(sigma_[t].size()) * double(sigma_[t].size()));
        if (resolved || g_bytes > svd_budget_bytes) continue;
        refined_from[t] = way[t] == Way::kGram ? "gram" : "normal";
        refine[t] = way[t] = Way::kSvd;
        any = true;
      }
      if (any) full_pass(refine, [](Way w) { return w == Way::kSvd; });
    }
    double total = 0;
    for (const auto& s : sigma_)
      for (double v : s) total += v * v;
    std::vector<ParameterSpectrum> out(slots_.size());
    for (size_t t = 0; t < slots_.size(); ++t) {
      const TensorSlot& slot = slots_[t];
      ParameterSpectrum& p = out[t];
      p.name = slot.name;
      p.shape = slot.shape;
      p.offset = slot.offset;
      p.count = slot.count;
      const RankInfo ri = numerical_rank(sigma_[t], default_tolerance(sigma_[t], slot.count, way[t]), req_.rtol, req_.atol);
      p.jacobian.singular_values = sigma_[t];
      p.jacobian.rank = ri.rank;
      p.jacobian.tolerance = ri.tolerance;
      p.jacobian.gap = ri.gap;
      p.jacobian.level_set_dim = slot.count - ri.rank;
      p.jacobian.method = way[t] == Way::kGram ? "gram" : way[t] == Way::kNormal ? "normal" : "svd";
      p.jacobian.refined_from = refined_from[t];
      // tr(G_t G_tᵀ) = Σσ_t², and tr(G Gᵀ) = Σ_t tr(G_t G_tᵀ): the shares sum to 1.
      double own = 0;
      for (double v : sigma_[t]) own += v * v;
      p.gram_trace_fraction = total > 0 ? own / total : std::numeric_limits<double>::quiet_NaN();
    }
    return out;
  }

 private:
  // NumPy's matrix_rank rule on the matrix decomposed, as for G: max(n·k, count)·ε·σ_max for
  // the SVD of G_t, its square root (times σ_max) for the Gram sides, which see σ².
  double default_tolerance(const std::vector<double>& s, int64_t count, Way way) const {
    const double size = double(std::max(m_, count)), eps = std::numeric_limits<T>::epsilon();
    const double smax = s.empty() ? 0.0 : s.front();
    return way == Way::kSvd ? smax * size * eps : smax * std::sqrt(size * eps);
  }

  // One back-propagation of all n examples at once: the Gram side ((n·k)² matrices) and the SVD
  // of the materialised G_t for the tensors `selected` picks.
  void full_pass(const std::vector<Way>& way, const std::function<bool(Way)>& selected) {
    bool any = false;
    for (size_t t = 0; t < slots_.size(); ++t) any = any || selected(way[t]);
    if (!any) return;
    Buffer<T> act_gram, delta_gram, sum, g;
    // G_t materialised [rows × count]: its σ directly (svd) or from G_t G_tᵀ (gram).
    auto from_block = [&](size_t t, int64_t rows, const T* block) {
      const int64_t c = slots_[t].count;
      if (way[t] == Way::kSvd) {
        g = Buffer<T>(be_, static_cast<size_t>(rows * c));
        be_.copy(g.get(), block, static_cast<size_t>(rows * c));
        sigma_[t] = to_double(be_.singular_values(rows, c, g.get()), static_cast<size_t>(std::min(rows, c)));
        g = Buffer<T>();
        return;
      }
      ensure(sum, rows * rows);
      be_.syrk_lower(false, rows, c, T(1), block, c, T(0), sum.get(), rows);
      sigma_[t] = sqrt_descending(be_.symmetric_eigenvalues(rows, sum.get()), static_cast<size_t>(std::min(rows, c)));
    };
    const typename GraphNetwork<T>::BlockVisitor blocks = [&](size_t t, int64_t, int64_t rows, const T* block) {
      if (selected(way[t])) from_block(t, rows, block);
    };
    const typename GraphNetwork<T>::DenseFactorVisitor dense = [&](const typename GraphNetwork<T>::DenseFactors& f) {
      const int64_t rows = f.rows;
      if (f.bias >= 0 && selected(way[f.bias])) from_block(static_cast<size_t>(f.bias), rows, f.delta);  // G_b = Δ
      const size_t t = f.weight;
      if (!selected(way[t])) return;
      const int64_t c = slots_[t].count;
      if (way[t] == Way::kSvd) {
        // G_W rows (i, c) = δ ⊗ a_i.
        g = Buffer<T>(be_, static_cast<size_t>(rows * c));
        be_.assemble_jacobian_block(rows, 0, k_, f.d_out, f.d_in, false, f.delta, f.a, g.get(), c, 0);
        sigma_[t] = to_double(be_.singular_values(rows, c, g.get()), static_cast<size_t>(std::min(rows, c)));
        g = Buffer<T>();
        return;
      }
      // Gram side: (Δ Δᵀ) ⊙ (A Aᵀ expanded over the k outputs).
      ensure(delta_gram, rows * rows);
      ensure(act_gram, n_ * n_);
      ensure(sum, rows * rows);
      be_.syrk_lower(false, rows, f.d_out, T(1), f.delta, f.d_out, T(0), delta_gram.get(), rows);
      be_.syrk_lower(false, n_, f.d_in, T(1), f.a, f.d_in, T(0), act_gram.get(), n_);
      be_.fill(sum.get(), static_cast<size_t>(rows * rows), T(0));
      be_.hadamard_expand_accumulate(n_, k_, act_gram.get(), T(0), 0, rows, delta_gram.get(), rows, sum.get());
      sigma_[t] = sqrt_descending(be_.symmetric_eigenvalues(rows, sum.get()), static_cast<size_t>(std::min(rows, c)));
    };
    net_.parameter_blocks(seeds_, k_, n_, blocks, &dense);
  }

  // G_tᵀG_t [count × count] for the tall tensors, accumulated over blocks of examples.
  void normal_pass(const std::vector<Way>& way) {
    if (std::none_of(way.begin(), way.end(), [](Way w) { return w == Way::kNormal; })) return;
    std::vector<Buffer<T>> normal(slots_.size());
    int64_t widest = 1;
    for (size_t t = 0; t < slots_.size(); ++t) {
      if (way[t] != Way::kNormal) continue;
      normal[t] = Buffer<T>(be_, static_cast<size_t>(slots_[t].count * slots_[t].count));
      widest = std::max(widest, slots_[t].count);
    }
    const int64_t per_example = k_ * widest * static_cast<int64_t>(sizeof(T));
    const int64_t block = std::clamp<int64_t>(static_cast<int64_t>(kBlockBytes) / per_example, 1, n_);
    Buffer<T> g_block(be_, static_cast<size_t>(block * k_ * widest));
    auto accumulate = [&](size_t t, int64_t rows, const T* g) {
      const int64_t c = slots_[t].count;
      be_.syrk_lower(true, c, rows, T(1), g, c, T(1), normal[t].get(), c);
    };
    const typename GraphNetwork<T>::BlockVisitor blocks = [&](size_t t, int64_t, int64_t rows, const T* b) {
      if (way[t] == Way::kNormal) accumulate(t, rows, b);
    };
    const typename GraphNetwork<T>::DenseFactorVisitor dense = [&](const typename GraphNetwork<T>::DenseFactors& f) {
      if (f.bias >= 0 && way[f.bias] == Way::kNormal) accumulate(static_cast<size_t>(f.bias), f.rows, f.delta);
      if (way[f.weight] != Way::kNormal) return;
      // The block's rows for examples [i0, …): A holds exactly those examples' layer inputs.
      be_.assemble_jacobian_block(f.rows, 0, k_, f.d_out, f.d_in, false, f.delta, f.a, g_block.get(),
                                  slots_[f.weight].count, 0);
      accumulate(f.weight, f.rows, g_block.get());
    };
    net_.parameter_blocks(seeds_, k_, block, blocks, &dense);
    for (size_t t = 0; t < slots_.size(); ++t)
      if (way[t] == Way::kNormal)
        sigma_[t] = sqrt_descending(be_.symmetric_eigenvalues(slots_[t].count, normal[t].get()),
                                    static_cast<size_t>(std::min(m_, slots_[t].count)));
  }

  void ensure(Buffer<T>& b, int64_t count) {
    if (static_cast<int64_t>(b.size()) < count) b = Buffer<T>(be_, static_cast<size_t>(count));
  }
  static std::vector<double> to_double(const std::vector<T>& v, size_t count) {
    std::vector<double> d(v.begin(), v.end());
    d.resize(std::min(d.size(), count));
    return d;
  }

  Backend<T>& be_;
  GraphNetwork<T>& net_;
  const AnalysisRequest& req_;
  const std::vector<T>& seeds_;
  const std::vector<TensorSlot> slots_;
  const int64_t n_, k_, m_;
  std::vector<std::vector<double>> sigma_;
};

}  // namespace

std::vector<TensorSlot> tensor_slots(const AnalysisRequest& req) {
  if (req.graph) {
    std::vector<TensorSlot> slots;
    for (int v : req.graph->parameters()) {
      const GraphValue& p = req.graph->value(v);
      slots.push_back({p.name, p.shape, p.param_offset, shape_numel(p.shape), 0, p.shape.size() == 1});
    }
    return slots;
  }
  const Model& model = req.model;
  const std::vector<std::string> names = model.tensor_names();
  std::vector<TensorSlot> slots;
  int64_t offset = 0;
  size_t dense = 0;
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const Layer& l = model.layers[i];
    if (l.kind != Layer::Kind::kDense) continue;
    const int64_t d_in = model.width_after(static_cast<int64_t>(i) - 1);
    slots.push_back({names[slots.size()], {l.out, d_in}, offset, l.out * d_in, dense, false});
    offset += l.out * d_in;
    if (l.bias) {
      slots.push_back({names[slots.size()], {l.out}, offset, l.out, dense, true});
      offset += l.out;
    }
    ++dense;
  }
  return slots;
}

template <class T>
std::vector<ParameterSpectrum> per_parameter_spectra(Backend<T>& be, GraphNetwork<T>& net, const AnalysisRequest& req,
                                                     const std::vector<T>& identity_seeds, double svd_budget_bytes) {
  return PerParameter<T>(be, net, req, identity_seeds).run(svd_budget_bytes);
}

template <class T>
std::vector<BlockSpectrum> hessian_blocks(Backend<T>& be, const AnalysisRequest& req, const T* h) {
  const int64_t N = req.num_params();
  std::vector<BlockSpectrum> out;
  for (const TensorSlot& s : tensor_slots(req)) {
    // H_tt = H[offset : offset + count, offset : offset + count]; its lower triangle is H's.
    Buffer<T> block(be, static_cast<size_t>(s.count * s.count));
    be.strided_axpby(1, s.count, s.count, T(1), h + s.offset * N + s.offset, N, 0, T(0), block.get(), s.count, 0);
    BlockSpectrum b;
    const std::vector<T> values = be.symmetric_eigenvalues(s.count, block.get());
    b.eigenvalues.assign(values.begin(), values.end());
    double lmax = 0;
    for (double v : b.eigenvalues) lmax = std::max(lmax, std::fabs(v));
    // The Hessian's rule with the block's size: max|λ|·count·ε.
    const RankInfo ri = numerical_rank(b.eigenvalues, lmax * double(s.count) * std::numeric_limits<T>::epsilon(),
                                       req.rtol, req.atol);
    b.rank = ri.rank;
    b.tolerance = ri.tolerance;
    out.push_back(std::move(b));
  }
  return out;
}

template std::vector<ParameterSpectrum> per_parameter_spectra(Backend<double>&, GraphNetwork<double>&, const AnalysisRequest&,
                                                              const std::vector<double>&, double);
template std::vector<ParameterSpectrum> per_parameter_spectra(Backend<float>&, GraphNetwork<float>&, const AnalysisRequest&,
                                                              const std::vector<float>&, double);
template std::vector<BlockSpectrum> hessian_blocks(Backend<double>&, const AnalysisRequest&, const double*);
template std::vector<BlockSpectrum> hessian_blocks(Backend<float>&, const AnalysisRequest&, const float*);

}  // namespace basin
