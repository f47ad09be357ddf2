// The engine: validate (request_validation.cpp) → plan (method, memory: memory_plan.cpp) →
// backend → spectra (batched solves: solve_queue.cpp) → result.
#include "basin/analysis.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <utility>

#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "loss.hpp"
#include "memory_plan.hpp"
#include "graph/executor.hpp"
#include "provenance.hpp"
#include "per_parameter.hpp"
#include "rank_bounds.hpp"
#include "solve_queue.hpp"
#include "spectra/matrix_free.hpp"
#include "spectrum.hpp"
#include "vectors.hpp"

namespace basin {
namespace {

// The name JacobianSpectrum::method reports for values computed by TSQR (not a request method).
constexpr const char* kTsqrName = "tsqr";
// GgnSpectrum::method when M = 0 (cross-entropy with k = 1): nothing is computed.
constexpr const char* kZeroName = "zero";

template <class T>
std::unique_ptr<Backend<T>> make_backend(Device device) {
  if (device == Device::kCpu) return make_cpu_backend<T>();
  if (device == Device::kCuda) return make_cuda_backend<T>(0);
  std::string why;
  if (cuda_available(&why)) return make_cuda_backend<T>(0);
  return make_cpu_backend<T>();
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// One engine per request: one backend, one GraphNetwork holding the data, every checkpoint.
template <class T>
class Engine {
 public:
  Engine(const AnalysisRequest& req, const std::vector<std::vector<double>>& checkpoints, const RunControl& control,
         Backend<T>& be)
      : req_(req), checkpoints_(checkpoints), control_(control), be_(be), info_(be.info()),
        plan_(plan_memory(req, info_)),
        graph_(req.graph ? req.graph : std::make_shared<const Graph>(graph_from_model(req.model))),
        net_(be, graph_, checkpoints.front(), req.inputs, req.num_examples, control.cancel),
        queue_(be, sym_dim(req.output_dim()), queue_capacity(jacobian_problems(), sym_dim(req.output_dim()))),
        ggn_queue_(be, sym_dim(ggn_factor_cols()), queue_capacity(ggn_problems(), sym_dim(ggn_factor_cols()))) {}

  std::vector<AnalysisResult> run() {
    const int64_t n = req_.num_examples, k = req_.output_dim(), N = req_.num_params();
    const int64_t m = n * k;
    const size_t B = checkpoints_.size();
    identity_seeds_.assign(static_cast<size_t>(m * k), T(0));
    for (int64_t row = 0; row < m; ++row) identity_seeds_[row * k + row % k] = T(1);
    const bool need_jacobian = req_.want.jacobian || req_.want.ggn;  // σ(G) also gives an MSE GGN

    // Pass 1, per checkpoint: forward, loss, the symmetric matrices (solved now, or queued for
    // one batched solve), the Hessian.
    std::vector<AnalysisResult> results(B);
    std::vector<LossTerms> terms(B);
    std::vector<Pending> jac(B), ggn(B);
    std::vector<RankBounds> bounds(B);
    for (size_t b = 0; b < B; ++b) {
      current_ = b;
      AnalysisResult& res = results[b];
      res.num_params = N;
      res.num_examples = n;
      res.num_outputs = k;
      res.backend = info_.name;
      res.device = info_.device_name;
      res.dtype = dtype_name(req_.dtype);
      res.loss = loss_name(req_.loss);
      res.reduction = reduction_name(req_.reduction);
      forward_and_loss(b, res, terms[b]);
      bounds[b] = compute_bounds(b, terms[b]);
      if (need_jacobian && (req_.want.jacobian || terms[b].scaled_identity))
        jac[b] = begin_spectrum(identity_seeds_, k, queue_, res.timings);
      if (req_.want.ggn && !terms[b].scaled_identity && terms[b].factor_cols > 0)
        ggn[b] = begin_spectrum(cast(terms[b].factor_seeds), terms[b].factor_cols, ggn_queue_, res.timings);
      std::vector<BlockSpectrum> h_blocks;
      if (req_.want.hessian) {
        res.hessian = hessian(terms[b], res.timings, req_.want.per_parameter ? &h_blocks : nullptr);
        res.hessian->bound = bounds[b].hessian;
      }
      if (req_.want.per_parameter) per_parameter(res, std::move(h_blocks));
      if (req_.want.any_hessian_spectra() || req_.want.any_ggn_spectra()) {  // matrix-free spectra (issue 12)
        load(b);
        compute_spectra(be_, net_, req_, terms[b], res,
                        [this](Stage s, double f, const std::string& detail) { progress(s, f, detail); });
      }
      if (req_.return_jacobian) {
        auto tj = std::chrono::steady_clock::now();
        Buffer<T> g = net_.jacobian(identity_seeds_, k);
        std::vector<T> host(static_cast<size_t>(m * N));
        be_.download(host.data(), g.get(), host.size());
        res.jacobian_matrix = to_double(host);
        res.timings.jacobian_ms += elapsed_ms(tj);
      }
    }
    progress(Stage::kSolve, 0.9);
    queue_.flush();
    queue_.release();
    ggn_queue_.flush();
    ggn_queue_.release();
    progress_span_ = {0.9, 0.1};  // pass 2: the last tenth

    // Pass 2: spectra, ranks (and the SVD refinement where auto's Gram could not resolve them).
    for (size_t b = 0; b < B; ++b) {
      current_ = b;
      AnalysisResult& res = results[b];
      std::optional<Spectrum> sigma;  // σ(G), when needed
      if (jac[b].active) {
        sigma = finish_spectrum(jac[b], b, identity_seeds_, k, queue_, res.timings);
        const RankInfo ri = numerical_rank(sigma->sigma, sigma->default_tolerance, req_.rtol, req_.atol);
        JacobianSpectrum js;
        js.method = sigma->method;
        js.refined_from = sigma->refined_from;
        js.singular_values = sigma->sigma;
        js.rank = ri.rank;
        js.tolerance = ri.tolerance;
        js.gap = ri.gap;
        js.level_set_dim = N - ri.rank;
        js.bound = bounds[b].jacobian;
        if (req_.want.jacobian) res.jacobian = js;
        if (req_.vectors.jacobian()) add_jacobian_vectors(b, js.rank, res);
      }
      if (req_.want.ggn) {
        // GGN = G̃ᵀG̃ with G̃ = SᵀG, so its eigenvalues are σ(G̃)² and its tolerance is the
        // σ-tolerance squared (in eigenvalue units).
        Spectrum factor;
        if (terms[b].scaled_identity) {
          factor = *sigma;  // S_i = √c·I: σ(G̃) = √c·σ(G), no second pass needed
          for (double& v : factor.sigma) v *= std::sqrt(terms[b].scale);
          factor.default_tolerance *= std::sqrt(terms[b].scale);
        } else if (terms[b].factor_cols > 0) {
          factor = finish_spectrum(ggn[b], b, cast(terms[b].factor_seeds), terms[b].factor_cols, ggn_queue_,
                                   res.timings);
        } else {
          factor.method = kZeroName;  // M = 0 (cross-entropy, k = 1): GGN = 0, nothing to compute
        }
        GgnSpectrum gs;
        // min(n·r, N) computed values, then the structural zeros up to min(n·k, N) (README).
        gs.eigenvalues.assign(static_cast<size_t>(std::min(m, N)), 0.0);
        for (size_t j = 0; j < factor.sigma.size() && j < gs.eigenvalues.size(); ++j)
          gs.eigenvalues[j] = factor.sigma[j] * factor.sigma[j];
        const RankInfo ri = numerical_rank(gs.eigenvalues, factor.default_tolerance * factor.default_tolerance,
                                           req_.rtol, req_.atol);
        gs.rank = ri.rank;
        gs.tolerance = ri.tolerance;
        gs.gap = ri.gap;
        gs.method = factor.method;
        gs.refined_from = factor.refined_from;
        gs.bound = bounds[b].ggn;
        res.ggn = gs;
        if (req_.vectors.ggn) add_ggn_vectors(b, terms[b], static_cast<int64_t>(gs.eigenvalues.size()), res);
      }
      if (hessian_vectors_) res.vectors.push_back(std::move(*hessian_vectors_));
      hessian_vectors_.reset();
      progress(Stage::kSolve, 1);
    }
    current_ = B - 1;
    progress(Stage::kDone, 1);
    return results;
  }

 private:
  struct Spectrum {
    std::vector<double> sigma;      // singular values, descending
    double default_tolerance = 0;   // the rank cut of the method used, on σ
    std::string method;             // the method the values come from ("gram" … "svd", "tsqr")
    std::string refined_from;       // the Gram method auto tried first, if it fell back to svd/tsqr
  };
  // A spectrum begun in pass 1: its values, or the ticket of its matrix in the solve queue.
  struct Pending {
    bool active = false;
    std::vector<double> sigma;
    int64_t ticket = -1;
  };

  // The symmetric problem size of the planned method for r seeds per example, and how many of
  // them to solve at once.
  int64_t sym_dim(int64_t r) const {
    return plan_.method == Method::kGram ? req_.num_examples * r : req_.num_params();
  }
  // Columns of the GGN's loss factor S_i (LossTerms::factor_cols): k for MSE, k − 1 for
  // cross-entropy.
  int64_t ggn_factor_cols() const {
    return loss_factor_cols(req_);  // P·(C − 1) for a sequence output (loss.hpp)
  }
  // What pass 1 pushes: σ(G) when wanted (or for an MSE GGN, which is σ(G) scaled) into queue_,
  // the factor spectrum of a cross-entropy GGN into ggn_queue_ (its Gram is n·(k−1) square).
  int64_t jacobian_problems() const {
    const bool mse = req_.loss == Loss::kMse;
    return static_cast<int64_t>(checkpoints_.size()) * (req_.want.jacobian || (req_.want.ggn && mse) ? 1 : 0);
  }
  int64_t ggn_problems() const {
    const bool ce = req_.loss == Loss::kCrossEntropy && ggn_factor_cols() > 0;
    return static_cast<int64_t>(checkpoints_.size()) * (req_.want.ggn && ce ? 1 : 0);
  }
  int64_t queue_capacity(int64_t problems, int64_t dim) const {
    if (!be_.has_batched_solver() || problems <= 1 || plan_.method == Method::kSvd || dim > kBatchedSolveMaxDim ||
        dim == 0)
      return 1;
    double bytes = std::min<double>(double(kBatchedSolveBytes),
                                    double(req_.limits.max_memory_bytes) - estimate_bytes(req_, plan_.method));
    if (plan_.device_budget > 0)
      bytes = std::min(bytes, 0.5 * (plan_.device_budget - device_estimate_bytes(req_, plan_.method, plan_.gram_tile_rows)));
    if (jacobian_problems() > 0 && ggn_problems() > 0) bytes *= 0.5;  // two queues share the budget
    const double each = double(dim) * double(dim) * sizeof(T);
    return std::clamp<int64_t>(static_cast<int64_t>(bytes / each), 1, problems);
  }

  // Makes checkpoint b the network's parameters and runs the forward pass (if it is not
  // already the current state).
  void load(size_t b) {
    if (loaded_ == static_cast<int64_t>(b)) return;
    if (loaded_ >= 0 || b != 0) net_.set_params(checkpoints_[b]);
    net_.forward();
    loaded_ = static_cast<int64_t>(b);
  }

  void forward_and_loss(size_t b, AnalysisResult& res, LossTerms& terms) {
    const int64_t n = req_.num_examples, k = req_.output_dim();
    progress(Stage::kForward, 0);
    auto t0 = std::chrono::steady_clock::now();
    load(b);
    const std::vector<double> outputs = net_.outputs();
    const std::string which = checkpoints_.size() > 1 ? " of checkpoint " + std::to_string(b) : "";
    for (size_t j = 0; j < outputs.size(); ++j)
      if (!std::isfinite(outputs[j]))
        invalid_argument("inputs/params: the forward pass overflowed in " + std::string(dtype_name(req_.dtype)) +
                         " (output [" + std::to_string(j / k) + ", " + std::to_string(j % k) + "]" + which +
                         " is not finite); rescale the data or parameters" +
                         (req_.dtype == DType::kFloat32 ? ", or use --dtype float64" : ""));
    if (req_.return_outputs) res.outputs = outputs;
    if (req_.loss != Loss::kNone) {
      terms = loss_terms(req_.loss, req_.reduction, outputs, n, k, req_.targets, req_.labels, loss_classes(req_));
      if (!std::isfinite(terms.value))
        invalid_argument(std::string("loss: ") + loss_name(req_.loss) + " overflowed to a non-finite value in " +
                         dtype_name(req_.dtype) + which + "; the outputs or targets are too large");
      res.loss_value = terms.value;
      const std::vector<double> grad = net_.gradient(cast(terms.dloss_df), req_.want.hessian || req_.want.any_hessian_spectra());
      double sq = 0;
      for (double g : grad) sq += g * g;
      res.grad_norm = std::sqrt(sq);
    }
    res.timings.forward_ms = elapsed_ms(t0);
  }

  // The rank bounds of checkpoint b (its forward pass is the network's current state).
  RankBounds compute_bounds(size_t b, const LossTerms& terms) {
    load(b);
    if (req_.graph)
      return graph_rank_bounds(req_.num_examples, req_.output_dim(), req_.num_params(), req_.loss, terms.factor_ranks);
    RankBoundInputs in;
    in.model = &req_.model;
    in.num_examples = req_.num_examples;
    in.loss = req_.loss;
    in.dtype = req_.dtype;
    // act[i] of the chain: its graph has one node per layer (graph_from_model).
    in.activation = [this](int64_t i) {
      return net_.value_on_host(i == 0 ? graph_->input() : graph_->nodes()[static_cast<size_t>(i - 1)].output);
    };
    in.factor_ranks = terms.factor_ranks;
    return rank_bounds(in);
  }

  // Default σ tolerance: NumPy's matrix_rank rule applied to the matrix actually decomposed.
  // Gram methods see σ² and resolve it to ε·σ_max², i.e. σ only to √ε·σ_max.
  // rows_per_example: r, G̃ being (n·r) × N (k for G itself).
  double default_sigma_tolerance(const std::vector<double>& sigma, Method method, int64_t rows_per_example) const {
    const double size = static_cast<double>(std::max(req_.num_examples * rows_per_example, req_.num_params()));
    const double eps = std::numeric_limits<T>::epsilon();
    return method == Method::kSvd ? sigma_max(sigma) * size * eps : sigma_max(sigma) * std::sqrt(size * eps);
  }

  // Pass 1 of σ(G̃) for the given seeds (r rows per example) with the planned method: the SVD
  // and unbatched solves finish here; batched Gram / GᵀG solves are queued in `queue`.
  Pending begin_spectrum(const std::vector<T>& seeds, int64_t r, SymmetricSolveQueue<T>& queue, Timings& timings) {
    Pending p;
    p.active = true;
    if (plan_.method == Method::kSvd || queue.capacity() == 1) {
      const bool keep = keep_jacobian(r);
      p.sigma = singular_values(seeds, r, plan_.method, timings, keep ? &queue : nullptr);
      if (keep && all_resolved(p.sigma, plan_.method, r)) take_kept_jacobian(&queue);  // no refinement to come
      return p;
    }
    auto t0 = std::chrono::steady_clock::now();
    progress(Stage::kJacobian, 0);
    Buffer<T> sym = symmetric_matrix(seeds, r, plan_.method);
    progress(Stage::kGram, 1);
    timings.jacobian_ms += elapsed_ms(t0);
    p.ticket = queue.push(sym.get());
    return p;
  }

  // Every value is above the resolution of the method that computed it (no refinement needed).
  bool all_resolved(const std::vector<double>& sigma, Method method, int64_t r) const {
    const double tol = default_sigma_tolerance(sigma, method, r);
    return numerical_rank(sigma, tol, std::nullopt, std::nullopt).rank == static_cast<int64_t>(sigma.size());
  }

  // Pass 2: the values of a begun spectrum, with its tolerance. The Gram cannot tell a true
  // σ = 1e-9·σ_max from zero; when auto chose a Gram method and it found values below its
  // resolution (an apparent rank deficiency), they are recomputed by the SVD of G̃ itself,
  // which resolves σ to ε·σ_max (NumPy's matrix_rank rule), provided G̃ fits in memory. When it
  // does not and G̃ is tall (normal), TSQR gets the same accuracy from blocks of G̃.
  // A genuine deficiency is all that is left to refine: a cross-entropy factor has k − 1
  // columns (loss.hpp), so the softmax's null direction is never among the small values.
  Spectrum finish_spectrum(const Pending& p, size_t b, const std::vector<T>& seeds, int64_t r,
                           const SymmetricSolveQueue<T>& queue, Timings& timings) {
    const int64_t k = r;  // rows of G̃ per example
    Spectrum s;
    s.method = method_name(plan_.method);
    if (p.ticket >= 0) {
      std::vector<T> values = queue.values(p.ticket);
      timings.solve_ms += queue.solve_ms(p.ticket);
      s.sigma = sigma_from_eigenvalues(values);
      // GᵀG (normal, N×N) has N eigenvalues; only min(n·r, N) are singular values of G̃.
      s.sigma.resize(static_cast<size_t>(std::min(req_.num_examples * k, req_.num_params())));
    } else {
      s.sigma = p.sigma;
    }
    s.default_tolerance = default_sigma_tolerance(s.sigma, plan_.method, k);
    Buffer<T> kept = take_kept_jacobian(&queue);
    if (req_.method != Method::kAuto || plan_.method == Method::kSvd || all_resolved(s.sigma, plan_.method, k))
      return s;
    if (kept.get() != nullptr) {  // G̃ itself from pass 1: no second Jacobian pass
      auto t0 = std::chrono::steady_clock::now();
      progress(Stage::kSolve, 0);
      s.sigma = to_double(be_.singular_values(req_.num_examples * k, req_.num_params(), kept.get()));
      s.sigma.resize(static_cast<size_t>(std::min(req_.num_examples * k, req_.num_params())));
      timings.solve_ms += elapsed_ms(t0);
      s.method = method_name(Method::kSvd);
    } else if (svd_fits()) {
      load(b);
      s.sigma = singular_values(seeds, k, Method::kSvd, timings);
      s.method = method_name(Method::kSvd);
    } else {
      const int64_t block = plan_.method == Method::kNormal
                                ? tsqr_block_examples(req_, double(req_.limits.max_memory_bytes), plan_.device_budget)
                                : 0;
      if (block == 0) return s;  // neither fits: the Gram's answer stands
      load(b);
      s.sigma = tsqr_singular_values(seeds, k, block, timings);
      s.method = kTsqrName;
    }
    s.refined_from = method_name(plan_.method);
    // σ of an orthogonal factorisation of G̃ (gesdd on G̃, or on TSQR's R): the SVD's rule.
    s.default_tolerance = default_sigma_tolerance(s.sigma, Method::kSvd, k);
    return s;
  }

  // G fits in the memory budget next to everything else (the SVD needs G plus min(m,N)² work),
  // on the host and, for a device, in its free memory.
  bool svd_fits() const {
    return estimate_bytes(req_, Method::kSvd) <= double(req_.limits.max_memory_bytes) &&
           (plan_.device_budget == 0 || device_estimate_bytes(req_, Method::kSvd) <= plan_.device_budget);
  }
  // Milliseconds since t0 once the backend has finished its queued work (GPU work is async).
  double elapsed_ms(std::chrono::steady_clock::time_point t0) {
    be_.synchronize();
    return ms_since(t0);
  }
  static double sigma_max(const std::vector<double>& s) { return s.empty() ? 0.0 : s.front(); }
  static std::vector<T> cast(const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); }
  // λ(G̃G̃ᵀ) = σ², descending; round-off may make a λ slightly negative.
  static std::vector<double> sigma_from_eigenvalues(std::vector<T> values) {
    for (T& v : values) v = std::sqrt(std::max(v, T(0)));
    std::sort(values.begin(), values.end(), std::greater<T>());
    return to_double(values);
  }

  // Progress over the whole request: checkpoint `current_` of B at `fraction` of its own work,
  // never going backwards (a stage's fraction restarts at 0 when the next stage begins).
  // `detail` (the matrix-free spectra's "lanczos 37/1201 …"; empty elsewhere) goes to on_detail.
  void progress(Stage stage, double fraction, const std::string& detail = {}) {
    if (control_.cancel != nullptr && control_.cancel->load()) throw Error(ErrorCode::kCancelled, "analysis cancelled");
    if (control_.on_detail) control_.on_detail(detail);
    if (!control_.on_progress) return;
    const double B = static_cast<double>(checkpoints_.size());
    const double within = std::min(1.0, (double(current_) + fraction) / B);  // of this pass
    const double overall = stage == Stage::kDone ? 1.0 : progress_span_[0] + progress_span_[1] * within;
    reported_ = std::max(reported_, overall);
    control_.on_progress(stage, reported_);
  }

  // Lower triangle of the Gram G̃G̃ᵀ (gram) or of G̃ᵀG̃ (normal).
  Buffer<T> symmetric_matrix(const std::vector<T>& seeds, int64_t r, Method method) {
    return method == Method::kGram ? net_.gram(seeds, r, plan_.gram_tile_rows) : net_.normal(seeds, r, kBlockBytes);
  }

  // auto's Gram may find an apparent deficiency that only the SVD of G̃ resolves
  // (finish_spectrum). Where G̃ is small (64 MiB at most), pass 1 materialises it, forms the
  // Gram from it by one SYRK and keeps it for that SVD, so a rank-deficient G (the common case)
  // costs one Jacobian pass, not two. One checkpoint only.
  // Larger G̃ keep the Gram's smaller working set (a ResNet's G is gigabytes); a full-rank G̃
  // is dropped as soon as pass 1 has its values.
  static constexpr double kKeptJacobianBytes = 64.0 * 1024 * 1024;
  bool keep_jacobian(int64_t r) const {
    if (req_.method != Method::kAuto || plan_.method == Method::kSvd || checkpoints_.size() != 1 || !svd_fits())
      return false;
    // A structured dense Gram ((ΔΔᵀ)⊙(AAᵀ + 1)) is far cheaper than the SYRK of G̃: keep it.
    if (plan_.method == Method::kGram && net_.has_structured_gram()) return false;
    const double g_bytes = double(req_.num_examples * r) * double(req_.num_params()) * sizeof(T);
    if (g_bytes > kKeptJacobianBytes) return false;
    // G̃ stays alive through pass 1: it must fit beside the planned analysis.
    if (estimate_bytes(req_, plan_.method) + g_bytes > double(req_.limits.max_memory_bytes)) return false;
    return plan_.device_budget == 0 ||
           device_estimate_bytes(req_, plan_.method, plan_.gram_tile_rows) + g_bytes <= plan_.device_budget;
  }
  Buffer<T> take_kept_jacobian(const void* key) {
    for (size_t i = 0; i < kept_jacobians_.size(); ++i)
      if (kept_jacobians_[i].first == key) {
        Buffer<T> g = std::move(kept_jacobians_[i].second);
        kept_jacobians_.erase(kept_jacobians_.begin() + static_cast<std::ptrdiff_t>(i));
        return g;
      }
    return Buffer<T>();
  }

  // All min(m, N) singular values of G̃ (seeded by `seeds`, r rows per example), descending.
  // With keep_as, a Gram method works from G̃ materialised, kept under that key (keep_jacobian).
  std::vector<double> singular_values(const std::vector<T>& seeds, int64_t r, Method method, Timings& timings,
                                      const void* keep_as = nullptr) {
    const int64_t m = req_.num_examples * r, N = req_.num_params();
    const size_t count = static_cast<size_t>(std::min(m, N));
    auto t0 = std::chrono::steady_clock::now();
    progress(Stage::kJacobian, 0);
    std::vector<double> values;
    if (method != Method::kSvd && keep_as != nullptr) {
      Buffer<T> g = net_.jacobian(seeds, r);
      const int64_t dim = method == Method::kGram ? m : N;
      Buffer<T> sym(be_, static_cast<size_t>(dim * dim));
      if (method == Method::kGram)
        be_.syrk_lower(false, m, N, T(1), g.get(), N, T(0), sym.get(), m);
      else
        be_.syrk_lower(true, N, m, T(1), g.get(), N, T(0), sym.get(), N);
      progress(Stage::kGram, 1);
      timings.jacobian_ms += elapsed_ms(t0);
      progress(Stage::kSolve, 0);
      t0 = std::chrono::steady_clock::now();
      values = sigma_from_eigenvalues(be_.symmetric_eigenvalues(dim, sym.get()));
      kept_jacobians_.emplace_back(keep_as, std::move(g));
    } else if (method == Method::kSvd) {
      Buffer<T> g = net_.jacobian(seeds, r);
      timings.jacobian_ms += elapsed_ms(t0);
      progress(Stage::kSolve, 0);
      t0 = std::chrono::steady_clock::now();
      values = to_double(be_.singular_values(m, N, g.get()));
    } else {
      Buffer<T> sym = symmetric_matrix(seeds, r, method);
      progress(Stage::kGram, 1);
      timings.jacobian_ms += elapsed_ms(t0);
      progress(Stage::kSolve, 0);
      t0 = std::chrono::steady_clock::now();
      values = sigma_from_eigenvalues(be_.symmetric_eigenvalues(method == Method::kGram ? m : N, sym.get()));
    }
    timings.solve_ms += elapsed_ms(t0);
    values.resize(count);
    return values;
  }

  // All N = min(n·r, N) singular values of a tall G̃ by TSQR in blocks of `block` examples: R
  // [N×N] with σ(R) = σ(G̃), then the SVD of R. The QRs count as the Jacobian's assembly.
  std::vector<double> tsqr_singular_values(const std::vector<T>& seeds, int64_t r, int64_t block, Timings& timings) {
    const int64_t N = req_.num_params();
    auto t0 = std::chrono::steady_clock::now();
    progress(Stage::kJacobian, 0);
    Buffer<T> stack = net_.tsqr_r(seeds, r, static_cast<uint64_t>(block * r * N) * sizeof(T));
    timings.jacobian_ms += elapsed_ms(t0);
    progress(Stage::kSolve, 0);
    t0 = std::chrono::steady_clock::now();
    std::vector<double> values = to_double(be_.singular_values(N, N, stack.get()));  // R: the first N rows
    timings.solve_ms += elapsed_ms(t0);
    return values;
  }

  // Per-tensor spectra of G's column blocks (their work counts as the Jacobian's), with the
  // Hessian's diagonal blocks when the Hessian was computed.
  void per_parameter(AnalysisResult& res, std::vector<BlockSpectrum> h_blocks) {
    auto t0 = std::chrono::steady_clock::now();
    progress(Stage::kJacobian, 0);
    // auto's SVD refinement of a tensor may use what the planned analysis leaves of the budget.
    double budget = double(req_.limits.max_memory_bytes) - estimate_bytes(req_, plan_.method);
    if (plan_.device_budget > 0)
      budget = std::min(budget, plan_.device_budget - device_estimate_bytes(req_, plan_.method, plan_.gram_tile_rows));
    res.per_parameter = per_parameter_spectra(be_, net_, req_, identity_seeds_, budget);
    for (size_t t = 0; t < h_blocks.size() && t < res.per_parameter.size(); ++t)
      res.per_parameter[t].hessian_block = std::move(h_blocks[t]);
    res.timings.jacobian_ms += elapsed_ms(t0);
  }

  HessianSpectrum hessian(const LossTerms& terms, Timings& timings, std::vector<BlockSpectrum>* blocks) {
    const int64_t N = req_.num_params();
    progress(Stage::kHessian, 0);
    auto t0 = std::chrono::steady_clock::now();
    // H = GᵀMG + R. GᵀMG = G̃ᵀG̃ accumulated blockwise; R by R-op passes; both stay on the
    // backend, combined there (R symmetrised, H = GGN + R, their Frobenius norms).
    Buffer<T> h;
    if (terms.factor_cols > 0) {
      h = net_.normal(cast(terms.factor_seeds), terms.factor_cols, kBlockBytes);
    } else {  // M = 0 (cross-entropy, k = 1): the GGN part is zero
      h = Buffer<T>(be_, static_cast<size_t>(N * N));
      be_.fill(h.get(), h.size(), T(0));
    }
    progress(Stage::kHessian, 0.3);
    Buffer<T> residual = net_.residual_hessian(kRopBlockBytes);
    const std::array<double, 2> norms_sq = be_.combine_hessian(N, h.get(), residual.get());
    timings.hessian_ms += elapsed_ms(t0);
    progress(Stage::kSolve, 0.5);
    t0 = std::chrono::steady_clock::now();
    HessianSpectrum hs;
    if (blocks != nullptr) *blocks = hessian_blocks(be_, req_, h.get());  // before the solve destroys H
    hs.eigenvalues = req_.vectors.hessian ? hessian_eigensystem(N, h.get())
                                          : to_double(be_.symmetric_eigenvalues(N, h.get()));
    hs.residual_eigenvalues = to_double(be_.symmetric_eigenvalues(N, residual.get()));
    timings.solve_ms += elapsed_ms(t0);
    // ‖H − GGN‖/‖H‖ is undefined (reported as null) when H = 0, e.g. cross-entropy with k = 1.
    hs.residual_rel = norms_sq[0] > 0 ? std::sqrt(norms_sq[1] / norms_sq[0]) : std::numeric_limits<double>::quiet_NaN();
    double lmax = 0;
    for (double v : hs.eigenvalues) lmax = std::max(lmax, std::fabs(v));
    const RankInfo ri = numerical_rank(hs.eigenvalues, lmax * static_cast<double>(N) * std::numeric_limits<T>::epsilon(),
                                       req_.rtol, req_.atol);
    hs.rank = ri.rank;
    hs.tolerance = ri.tolerance;
    hs.gap = ri.gap;
    return hs;
  }

  // ---- --vectors (kernels/src/vectors.cpp); checkpoint batches are refused, so b is 0 ----
  // G's bases from the SVD of the materialised G, cut at the reported rank.
  void add_jacobian_vectors(size_t b, int64_t rank, AnalysisResult& res) {
    const int64_t m = req_.num_examples * req_.output_dim(), N = req_.num_params();
    load(b);
    auto t0 = std::chrono::steady_clock::now();
    Buffer<T> g = net_.jacobian(identity_seeds_, req_.output_dim());
    std::vector<VectorArray> bases = jacobian_bases(be_, g.get(), m, N, rank, req_.vectors);
    for (VectorArray& a : bases) res.vectors.push_back(std::move(a));
    res.timings.solve_ms += elapsed_ms(t0);
  }
  // GGN eigenvectors: the right singular vectors of G̃ = SᵀG, seeded by the loss factor's rows
  // (r = seeds / (n·k) rows per example).
  void add_ggn_vectors(size_t b, const LossTerms& terms, int64_t count, AnalysisResult& res) {
    const int64_t n = req_.num_examples, k = req_.output_dim(), N = req_.num_params();
    const int64_t r = static_cast<int64_t>(terms.factor_seeds.size()) / (n * k);
    load(b);
    auto t0 = std::chrono::steady_clock::now();
    Buffer<T> g = net_.jacobian(cast(terms.factor_seeds), r);
    res.vectors.push_back(ggn_eigenvectors(be_, g.get(), n * r, N, count, req_.vectors.k));
    res.timings.solve_ms += elapsed_ms(t0);
  }
  // H's eigenvalues with its eigenvectors (kept for the result until pass 2 appends them).
  std::vector<double> hessian_eigensystem(int64_t N, T* h) {
    const std::vector<double> values = to_double(be_.symmetric_eigensystem(N, h));
    std::vector<T> rows(static_cast<size_t>(N * N));
    be_.download(rows.data(), h, rows.size());
    hessian_vectors_ = hessian_eigenvectors(to_double(rows), N, req_.vectors.k);
    return values;
  }

  const AnalysisRequest& req_;
  const std::vector<std::vector<double>>& checkpoints_;
  const RunControl& control_;
  Backend<T>& be_;
  const BackendInfo info_;
  const MemoryPlan plan_;
  const std::shared_ptr<const Graph> graph_;  // the request's, or its chain as a graph
  GraphNetwork<T> net_;
  SymmetricSolveQueue<T> queue_;      // σ(G) (and an MSE GGN's)
  SymmetricSolveQueue<T> ggn_queue_;  // a cross-entropy GGN's factor spectrum
  std::vector<T> identity_seeds_;
  std::vector<std::pair<const void*, Buffer<T>>> kept_jacobians_;  // G̃ kept for auto's SVD (keep_jacobian)
  size_t current_ = 0;     // the checkpoint being worked on (for progress)
  double reported_ = 0;    // the last progress fraction reported
  // {start, width} of the current pass in the request's progress: pass 1 (forward, Grams,
  // Hessians) is the first 90 %, pass 2 (batched solves' results, refinements) the rest.
  std::array<double, 2> progress_span_{0.0, 0.9};
  int64_t loaded_ = -1;    // the checkpoint whose forward pass the network holds
  std::optional<VectorArray> hessian_vectors_;  // --vectors hessian, from pass 1
};

template <class T>
std::vector<AnalysisResult> run_with(const AnalysisRequest& req, const std::vector<std::vector<double>>& checkpoints,
                                     const RunControl& control) {
  std::unique_ptr<Backend<T>> backend = make_backend<T>(req.device);
  Engine<T> engine(req, checkpoints, control, *backend);
  return engine.run();
}

}  // namespace

AnalysisResult analyze(const AnalysisRequest& request, const RunControl& control) {
  // A batch of one: the same validation (errors name "params"), engine and provenance.
  return std::move(analyze_checkpoints(request, {request.params}, control).front());
}

std::vector<AnalysisResult> analyze_checkpoints(const AnalysisRequest& request,
                                                const std::vector<std::vector<double>>& checkpoints,
                                                const RunControl& control) {
  const auto started = std::chrono::system_clock::now();
  const auto t0 = std::chrono::steady_clock::now();
  if (control.on_progress) control.on_progress(Stage::kValidate, 0);
  // Validation is linear in the request, but a batch can be large: stop between checkpoints
  // when the caller cancels (a worker's flag is set by a client's deadline or a shutdown).
  auto stop_if_cancelled = [&] {
    if (control.cancel != nullptr && control.cancel->load(std::memory_order_relaxed))
      throw Error(ErrorCode::kCancelled, "analysis cancelled");
  };
  validate_checkpoints(request, checkpoints, stop_if_cancelled);
  stop_if_cancelled();
  validate_vectors(request, checkpoints.size());  // (the spectra options: validate_checkpoints)
  std::vector<AnalysisResult> results = request.dtype == DType::kFloat32 ? run_with<float>(request, checkpoints, control)
                                                                          : run_with<double>(request, checkpoints, control);
  fill_provenance(request, checkpoints, started, ms_since(t0), results);
  return results;
}

}  // namespace basin
