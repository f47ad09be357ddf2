// The engine: validate → plan (method, memory) → backend → spectra → result.
#include "basin/analysis.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>

#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "loss.hpp"
#include "network.hpp"
#include "spectrum.hpp"

namespace basin {
namespace {

// Working block for blockwise G (normal method) and for the R-op passes: large enough for
// efficient BLAS-3, small enough to stay far below the size of G.
constexpr uint64_t kBlockBytes = 32ull << 20;
// Work per block of R-op directions: enough directions per GEMM, few pages to touch.
constexpr uint64_t kRopBlockBytes = 8ull << 20;

std::string human_bytes(double b) {
  std::ostringstream os;
  os.precision(3);
  if (b >= double(1ull << 30)) os << b / double(1ull << 30) << " GiB";
  else if (b >= double(1ull << 20)) os << b / double(1ull << 20) << " MiB";
  else os << b << " bytes";
  return os.str();
}

void check_finite(const std::vector<double>& v, const char* field, int64_t row_width) {
  for (size_t j = 0; j < v.size(); ++j) {
    if (std::isfinite(v[j])) continue;
    std::ostringstream os;
    os << field << ": value at ";
    if (row_width > 0) os << "[" << j / row_width << ", " << j % row_width << "]";
    else os << "[" << j << "]";
    os << " is " << (std::isnan(v[j]) ? "NaN" : "infinite") << "; expected finite numbers";
    invalid_argument(os.str());
  }
}

void check_float32_range(const std::vector<double>& v, const char* field, int64_t row_width) {
  for (size_t j = 0; j < v.size(); ++j) {
    if (std::fabs(v[j]) <= static_cast<double>(std::numeric_limits<float>::max())) continue;
    std::ostringstream os;
    os << field << ": value " << v[j] << " at ";
    if (row_width > 0) os << "[" << j / row_width << ", " << j % row_width << "]";
    else os << "[" << j << "]";
    os << " is outside the float32 range (|x| <= 3.4e38); use --dtype float64";
    invalid_argument(os.str());
  }
}

Method resolve_method(const AnalysisRequest& r) {
  if (r.method != Method::kAuto) return r.method;
  const int64_t m = r.num_examples * r.model.output_dim(), N = r.model.num_params();
  return m <= N ? Method::kGram : Method::kNormal;  // work on the small side
}

// Working memory of one analysis in bytes (an estimate that errs high).
double estimate_bytes(const AnalysisRequest& r, Method method) {
  const double sz = r.dtype == DType::kFloat64 ? 8 : 4;
  const double n = static_cast<double>(r.num_examples), k = static_cast<double>(r.model.output_dim());
  const double N = static_cast<double>(r.model.num_params()), m = n * k;
  double widths = static_cast<double>(r.model.input_dim), max_w = widths;
  for (size_t i = 0; i < r.model.layers.size(); ++i) {
    const double w = static_cast<double>(r.model.width_after(static_cast<int64_t>(i)));
    widths += w;
    max_w = std::max(max_w, w);
  }
  const double base = sz * (n * widths + N + 2 * m * max_w + m * k);
  double spectral = 0;
  if (r.want.jacobian || r.want.ggn) {
    switch (method) {
      case Method::kGram: spectral = sz * (2 * m * m + n * n); break;
      case Method::kNormal: spectral = sz * N * N + std::min<double>(kBlockBytes, sz * m * N); break;
      default: spectral = sz * (m * N + 4 * std::min(m, N) * std::min(m, N)); break;
    }
  }
  double hessian = 0;
  if (r.want.hessian)
    // GGN and R on the backend and their host copies, plus blocks for G̃ and the R-op passes.
    hessian = sz * (4 * N * N + n * widths) + std::min<double>(kBlockBytes, sz * m * N) + kBlockBytes;
  double jac = r.return_jacobian ? sz * m * N : 0;
  return base + std::max(spectral, hessian) + jac;
}

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

template <class T>
class Engine {
 public:
  Engine(const AnalysisRequest& req, const RunControl& control, Backend<T>& be)
      : req_(req), control_(control), be_(be),
        net_(be, req.model, req.params, req.inputs, req.num_examples, control.cancel) {}

  AnalysisResult run() {
    AnalysisResult res;
    const int64_t n = req_.num_examples, k = req_.model.output_dim(), N = req_.model.num_params();
    const int64_t m = n * k;
    const BackendInfo info = be_.info();
    res.num_params = N;
    res.num_examples = n;
    res.num_outputs = k;
    res.backend = info.name;
    res.device = info.device_name;
    res.dtype = dtype_name(req_.dtype);
    res.loss = loss_name(req_.loss);
    res.reduction = reduction_name(req_.reduction);

    progress(Stage::kForward, 0);
    auto t0 = std::chrono::steady_clock::now();
    net_.forward();
    const std::vector<double> outputs = net_.outputs();
    for (size_t j = 0; j < outputs.size(); ++j)
      if (!std::isfinite(outputs[j]))
        invalid_argument("inputs/params: the forward pass overflowed in " + std::string(dtype_name(req_.dtype)) +
                         " (output [" + std::to_string(j / k) + ", " + std::to_string(j % k) +
                         "] is not finite); rescale the data or parameters" +
                         (req_.dtype == DType::kFloat32 ? ", or use --dtype float64" : ""));
    if (req_.return_outputs) res.outputs = outputs;
    LossTerms terms;
    if (req_.loss != Loss::kNone) {
      terms = loss_terms(req_.loss, req_.reduction, outputs, n, k, req_.targets, req_.labels);
      if (!std::isfinite(terms.value))
        invalid_argument(std::string("loss: ") + loss_name(req_.loss) + " overflowed to a non-finite value in " +
                         dtype_name(req_.dtype) + "; the outputs or targets are too large");
      res.loss_value = terms.value;
      const std::vector<double> grad = net_.gradient(cast(terms.dloss_df), req_.want.hessian);
      double sq = 0;
      for (double g : grad) sq += g * g;
      res.grad_norm = std::sqrt(sq);
    }
    res.timings.forward_ms = elapsed_ms(t0);

    const Method method = resolve_method(req_);
    std::vector<T> identity_seeds(static_cast<size_t>(m * k), T(0));
    for (int64_t row = 0; row < m; ++row) identity_seeds[row * k + row % k] = T(1);

    std::optional<Spectrum> jac;  // σ(G), when needed
    if (req_.want.jacobian || (req_.want.ggn && terms.scaled_identity)) {
      jac = resolved_spectrum(identity_seeds, method, res.timings);
      const RankInfo ri = numerical_rank(jac->sigma, jac->default_tolerance, req_.rtol, req_.atol);
      JacobianSpectrum js;
      js.method = method_name(jac->method);
      js.refined_from = jac->refined_from;
      js.singular_values = jac->sigma;
      js.rank = ri.rank;
      js.tolerance = ri.tolerance;
      js.gap = ri.gap;
      js.level_set_dim = N - ri.rank;
      if (req_.want.jacobian) res.jacobian = js;
    }

    if (req_.want.ggn) {
      // GGN = G̃ᵀG̃ with G̃ = SᵀG, so its eigenvalues are σ(G̃)² and its tolerance is the
      // σ-tolerance squared (in eigenvalue units).
      Spectrum factor;
      if (terms.scaled_identity) {
        factor = *jac;  // S_i = √c·I: σ(G̃) = √c·σ(G), no second pass needed
        for (double& v : factor.sigma) v *= std::sqrt(terms.scale);
        factor.default_tolerance *= std::sqrt(terms.scale);
      } else {
        factor = resolved_spectrum(cast(terms.factor_seeds), method, res.timings);
      }
      GgnSpectrum gs;
      gs.eigenvalues.resize(factor.sigma.size());
      for (size_t j = 0; j < factor.sigma.size(); ++j) gs.eigenvalues[j] = factor.sigma[j] * factor.sigma[j];
      const RankInfo ri = numerical_rank(gs.eigenvalues, factor.default_tolerance * factor.default_tolerance,
                                         req_.rtol, req_.atol);
      gs.rank = ri.rank;
      gs.tolerance = ri.tolerance;
      res.ggn = gs;
    }

    if (req_.want.hessian) res.hessian = hessian(terms, res.timings);

    if (req_.return_jacobian) {
      auto tj = std::chrono::steady_clock::now();
      Buffer<T> g = net_.jacobian(identity_seeds, k);
      std::vector<T> host(static_cast<size_t>(m * N));
      be_.download(host.data(), g.get(), host.size());
      res.jacobian_matrix = to_double(host);
      res.timings.jacobian_ms += elapsed_ms(tj);
    }
    progress(Stage::kDone, 1);
    return res;
  }

 private:
  struct Spectrum {
    std::vector<double> sigma;      // singular values, descending
    double default_tolerance = 0;   // the rank cut of the method used, on σ
    Method method = Method::kAuto;  // the method the values come from
    std::string refined_from;       // the Gram method auto tried first, if it fell back to SVD
  };

  // Default σ tolerance: NumPy's matrix_rank rule applied to the matrix actually decomposed.
  // Gram methods see σ² and resolve it to ε·σ_max², i.e. σ only to √ε·σ_max.
  double default_sigma_tolerance(const std::vector<double>& sigma, Method method) const {
    const double size = static_cast<double>(std::max(req_.num_examples * req_.model.output_dim(), req_.model.num_params()));
    const double eps = std::numeric_limits<T>::epsilon();
    return method == Method::kSvd ? sigma_max(sigma) * size * eps : sigma_max(sigma) * std::sqrt(size * eps);
  }

  // σ(G̃) for the given seeds. The Gram cannot tell a true σ = 1e-9·σ_max from zero; when auto
  // chose a Gram method and it found values below its resolution (an apparent rank
  // deficiency), they are recomputed by the SVD of G̃ itself, which resolves σ to ε·σ_max
  // (NumPy's matrix_rank rule), provided G̃ fits in memory.
  Spectrum resolved_spectrum(const std::vector<T>& seeds, Method method, Timings& timings) {
    const int64_t k = req_.model.output_dim();
    Spectrum s;
    s.method = method;
    s.sigma = singular_values(seeds, k, method, timings);
    s.default_tolerance = default_sigma_tolerance(s.sigma, method);
    const int64_t resolved = numerical_rank(s.sigma, s.default_tolerance, std::nullopt, std::nullopt).rank;
    if (req_.method == Method::kAuto && method != Method::kSvd && resolved < static_cast<int64_t>(s.sigma.size()) &&
        svd_fits()) {
      s.refined_from = method_name(method);
      s.method = Method::kSvd;
      s.sigma = singular_values(seeds, k, Method::kSvd, timings);
      s.default_tolerance = default_sigma_tolerance(s.sigma, Method::kSvd);
    }
    return s;
  }

  // G fits in the memory budget next to everything else (gesdd needs G plus min(m,N)² work).
  bool svd_fits() const {
    AnalysisRequest svd = req_;
    svd.method = Method::kSvd;
    return estimate_bytes(svd, Method::kSvd) <= double(req_.limits.max_memory_bytes);
  }
  // Milliseconds since t0 once the backend has finished its queued work (GPU work is async).
  double elapsed_ms(std::chrono::steady_clock::time_point t0) {
    be_.synchronize();
    return ms_since(t0);
  }
  static double sigma_max(const std::vector<double>& s) { return s.empty() ? 0.0 : s.front(); }
  static std::vector<T> cast(const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); }

  void progress(Stage stage, double fraction) {
    if (control_.cancel != nullptr && control_.cancel->load()) throw Error(ErrorCode::kCancelled, "analysis cancelled");
    if (control_.on_progress) control_.on_progress(stage, fraction);
  }

  // All min(m, N) singular values of G̃ (seeded by `seeds`, r rows per example), descending.
  std::vector<double> singular_values(const std::vector<T>& seeds, int64_t r, Method method, Timings& timings) {
    const int64_t m = req_.num_examples * r, N = req_.model.num_params();
    const size_t count = static_cast<size_t>(std::min(m, N));
    auto t0 = std::chrono::steady_clock::now();
    progress(Stage::kJacobian, 0);
    std::vector<T> values;
    if (method == Method::kSvd) {
      Buffer<T> g = net_.jacobian(seeds, r);
      timings.jacobian_ms += elapsed_ms(t0);
      progress(Stage::kSolve, 0);
      t0 = std::chrono::steady_clock::now();
      values = be_.singular_values(m, N, g.get());
    } else {
      Buffer<T> sym = method == Method::kGram ? net_.gram(seeds, r) : net_.normal(seeds, r, kBlockBytes);
      progress(Stage::kGram, 1);
      timings.jacobian_ms += elapsed_ms(t0);
      progress(Stage::kSolve, 0);
      t0 = std::chrono::steady_clock::now();
      const int64_t dim = method == Method::kGram ? m : N;
      values = be_.symmetric_eigenvalues(dim, sym.get());
      for (T& v : values) v = std::sqrt(std::max(v, T(0)));  // λ(G Gᵀ) = σ²; round-off may make λ < 0
      std::sort(values.begin(), values.end(), std::greater<T>());
    }
    timings.solve_ms += elapsed_ms(t0);
    values.resize(count);
    return to_double(values);
  }

  HessianSpectrum hessian(const LossTerms& terms, Timings& timings) {
    const int64_t N = req_.model.num_params(), k = req_.model.output_dim();
    progress(Stage::kHessian, 0);
    auto t0 = std::chrono::steady_clock::now();
    // H = GᵀMG + R. GᵀMG = G̃ᵀG̃ accumulated blockwise; R by R-op passes.
    Buffer<T> ggn = net_.normal(cast(terms.factor_seeds), k, kBlockBytes);
    progress(Stage::kHessian, 0.3);
    Buffer<T> residual = net_.residual_hessian(kRopBlockBytes);
    const size_t nn = static_cast<size_t>(N * N);
    std::vector<T> g_host(nn), r_host(nn);
    be_.download(g_host.data(), ggn.get(), nn);
    be_.download(r_host.data(), residual.get(), nn);
    // Lower triangles, in place: g_host becomes H = GGN + R and r_host the symmetrised R
    // (R is computed row by row in full, so average it with its transpose; for j < i the upper
    // entry r[j][i] is still unread when r[i][j] is overwritten). ‖·‖_F² = Σ_diag + 2 Σ_lower.
    double h_sq = 0, r_sq = 0;
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j <= i; ++j) {
        const double rij = 0.5 * (static_cast<double>(r_host[i * N + j]) + static_cast<double>(r_host[j * N + i]));
        const double hij = static_cast<double>(g_host[i * N + j]) + rij;
        const double w = i == j ? 1.0 : 2.0;
        h_sq += w * hij * hij;
        r_sq += w * rij * rij;
        g_host[i * N + j] = static_cast<T>(hij);
        r_host[i * N + j] = static_cast<T>(rij);
      }
    }
    timings.hessian_ms += elapsed_ms(t0);
    progress(Stage::kSolve, 0.5);
    t0 = std::chrono::steady_clock::now();
    HessianSpectrum hs;
    be_.upload(ggn.get(), g_host.data(), nn);
    hs.eigenvalues = to_double(be_.symmetric_eigenvalues(N, ggn.get()));
    be_.upload(residual.get(), r_host.data(), nn);
    hs.residual_eigenvalues = to_double(be_.symmetric_eigenvalues(N, residual.get()));
    timings.solve_ms += elapsed_ms(t0);
    // ‖H − GGN‖/‖H‖ is undefined (reported as null) when H = 0, e.g. cross-entropy with k = 1.
    hs.residual_rel = h_sq > 0 ? std::sqrt(r_sq / h_sq) : std::numeric_limits<double>::quiet_NaN();
    double lmax = 0;
    for (double v : hs.eigenvalues) lmax = std::max(lmax, std::fabs(v));
    const RankInfo ri = numerical_rank(hs.eigenvalues, lmax * static_cast<double>(N) * std::numeric_limits<T>::epsilon(),
                                       req_.rtol, req_.atol);
    hs.rank = ri.rank;
    hs.tolerance = ri.tolerance;
    return hs;
  }

  const AnalysisRequest& req_;
  const RunControl& control_;
  Backend<T>& be_;
  Network<T> net_;
};

template <class T>
AnalysisResult run_with(const AnalysisRequest& req, const RunControl& control) {
  std::unique_ptr<Backend<T>> backend = make_backend<T>(req.device);
  Engine<T> engine(req, control, *backend);
  return engine.run();
}

}  // namespace

void validate_request(const AnalysisRequest& r) {
  r.model.validate();
  const int64_t N = r.model.num_params(), k = r.model.output_dim(), d = r.model.input_dim;
  if (static_cast<int64_t>(r.params.size()) != N)
    invalid_argument("params: got " + std::to_string(r.params.size()) + " values, expected " + std::to_string(N) +
                     " (the parameter count of " + describe(r.model) +
                     ", in PyTorch parameters_to_vector order)");
  if (r.num_examples <= 0) invalid_argument("inputs: no examples; expected at least one row of " + std::to_string(d) + " features");
  if (static_cast<int64_t>(r.inputs.size()) != r.num_examples * d)
    invalid_argument("inputs: got " + std::to_string(r.inputs.size()) + " values, expected n × input_dim = " +
                     std::to_string(r.num_examples) + " × " + std::to_string(d));
  check_finite(r.params, "params", 0);
  check_finite(r.inputs, "inputs", d);
  if (r.dtype == DType::kFloat32) {
    check_float32_range(r.params, "params", 0);
    check_float32_range(r.inputs, "inputs", d);
    check_float32_range(r.targets, "targets", k);
  }
  if (!r.want.jacobian && !r.want.ggn && !r.want.hessian)
    invalid_argument("want: nothing requested; expected one or more of jacobian, ggn, hessian");
  switch (r.loss) {
    case Loss::kNone:
      if (r.want.ggn || r.want.hessian)
        invalid_argument(std::string("loss: none, but want includes ") + (r.want.ggn ? "ggn" : "hessian") +
                         "; the GGN and the Hessian need a loss (mse or cross_entropy)");
      if (!r.targets.empty() || !r.labels.empty())
        invalid_argument("targets: given, but loss is none; pass a loss (mse or cross_entropy) or drop the targets");
      break;
    case Loss::kMse:
      if (!r.labels.empty())
        invalid_argument("targets: integer labels given for loss mse; expected float targets of shape (n, k) = (" +
                         std::to_string(r.num_examples) + ", " + std::to_string(k) + ")");
      if (static_cast<int64_t>(r.targets.size()) != r.num_examples * k)
        invalid_argument("targets: got " + std::to_string(r.targets.size()) + " values, expected n × k = " +
                         std::to_string(r.num_examples) + " × " + std::to_string(k) + " float targets for loss mse");
      check_finite(r.targets, "targets", k);
      break;
    case Loss::kCrossEntropy:
      if (!r.targets.empty())
        invalid_argument("targets: float targets given for loss cross_entropy; expected integer class labels of shape (n,) = (" +
                         std::to_string(r.num_examples) + ",)");
      if (static_cast<int64_t>(r.labels.size()) != r.num_examples)
        invalid_argument("targets: got " + std::to_string(r.labels.size()) + " labels, expected one per example (n = " +
                         std::to_string(r.num_examples) + ") for loss cross_entropy");
      for (size_t i = 0; i < r.labels.size(); ++i)
        if (r.labels[i] < 0 || r.labels[i] >= k)
          invalid_argument("targets: label[" + std::to_string(i) + "] = " + std::to_string(r.labels[i]) +
                           " is out of range; expected 0 <= label < " + std::to_string(k) + " (the number of outputs)");
      break;
  }
  for (const auto& [name, value] : {std::pair<const char*, std::optional<double>>{"rtol", r.rtol}, {"atol", r.atol}})
    if (value && (!std::isfinite(*value) || *value < 0))
      invalid_argument(std::string(name) + ": got " + std::to_string(*value) + ", expected a finite number >= 0");

  // Limits, before any work.
  const int64_t m = r.num_examples * k;
  if (r.want.hessian && N > r.limits.max_hessian_params)
    resource_exhausted("want hessian: the exact Hessian is N × N with N = " + std::to_string(N) +
                       " parameters, over the limit of " + std::to_string(r.limits.max_hessian_params) +
                       " (raise --hessian-limit, or drop hessian from --want)");
  const Method method = resolve_method(r);
  if (r.want.jacobian || r.want.ggn) {
    const int64_t dense = method == Method::kGram ? m : method == Method::kNormal ? N : std::min(m, N);
    if (dense > r.limits.max_dense_dim)
      resource_exhausted(std::string("method ") + method_name(method) + ": the dense problem is " + std::to_string(dense) +
                         " × " + std::to_string(dense) + " (n·k = " + std::to_string(m) + ", N = " + std::to_string(N) +
                         "), over the dense-solver limit of " + std::to_string(r.limits.max_dense_dim) +
                         "; use fewer examples or a smaller model");
  }
  if (r.return_jacobian) {
    const double bytes = double(m) * double(N) * (r.dtype == DType::kFloat64 ? 8 : 4);
    if (bytes > double(r.limits.max_jacobian_bytes))
      resource_exhausted("save jacobian: G is " + std::to_string(m) + " × " + std::to_string(N) + " = " + human_bytes(bytes) +
                         ", over the limit of " + human_bytes(double(r.limits.max_jacobian_bytes)));
  }
  const double need = estimate_bytes(r, method);
  if (need > double(r.limits.max_memory_bytes))
    resource_exhausted(std::string("memory: method ") + method_name(method) + " needs about " + human_bytes(need) +
                       ", over the limit of " + human_bytes(double(r.limits.max_memory_bytes)) +
                       " (n·k = " + std::to_string(m) + ", N = " + std::to_string(N) +
                       "); use fewer examples, --dtype float32, or raise --max-memory");
}

AnalysisResult analyze(const AnalysisRequest& request, const RunControl& control) {
  if (control.on_progress) control.on_progress(Stage::kValidate, 0);
  validate_request(request);
  if (request.dtype == DType::kFloat32) return run_with<float>(request, control);
  return run_with<double>(request, control);
}

}  // namespace basin
