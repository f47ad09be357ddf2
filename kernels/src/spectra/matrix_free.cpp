#include "matrix_free.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <type_traits>

#include "basin/error.hpp"
#include "host_linalg.hpp"
#include "memory_plan.hpp"
#include "spectra.hpp"

namespace basin {

namespace {

constexpr uint64_t kProductPassBytes = 256ull << 20;  // tangents + ġ of one product pass
// Rows of the loss factor's Gram G̃G̃ᵀ [m × m] (m = n·r) the GGN's null-space path accepts (its
// eigen-solve holds ~4 m² doubles: 512 MiB at the limit).
constexpr int64_t kMaxNullSpaceRows = 4096;
constexpr int64_t kDefaultTraceProbes = 30;
constexpr int64_t kDefaultDensityProbes = 4;
constexpr int64_t kDefaultDensitySteps = 80;

int64_t wanted(const AnalysisRequest& r) { return r.spectra.top_k + r.spectra.bottom_k; }
bool any_top(const Want& w) { return w.hessian_top || w.ggn_top; }
bool any_trace(const Want& w) { return w.hessian_trace || w.ggn_trace; }
bool any_density(const Want& w) { return w.hessian_density || w.ggn_density; }
bool any_spectra(const Want& w) { return w.any_hessian_spectra() || w.any_ggn_spectra(); }

int64_t block_of(const AnalysisRequest& r) {
  return r.spectra.lanczos_block > 0 ? r.spectra.lanczos_block : lanczos_default_block(wanted(r));
}
int64_t trace_probes(const AnalysisRequest& r) { return r.spectra.probes > 0 ? r.spectra.probes : kDefaultTraceProbes; }
int64_t density_probes(const AnalysisRequest& r) {
  return r.spectra.probes > 0 ? r.spectra.probes : kDefaultDensityProbes;
}
int64_t density_steps(const AnalysisRequest& r) {
  return std::min(r.num_params(), r.spectra.lanczos_steps > 0 ? r.spectra.lanczos_steps : kDefaultDensitySteps);
}
LanczosOptions lanczos_options(const AnalysisRequest& r) {
  LanczosOptions o;
  o.top = r.spectra.top_k;
  o.bottom = r.spectra.bottom_k;
  o.basis = r.spectra.lanczos_steps;
  o.block = r.spectra.lanczos_block;
  o.tol = r.spectra.tol;
  o.max_restarts = r.spectra.max_restarts;
  o.seed = r.spectra.seed;
  o.vectors = r.spectra.eigenvectors;
  return o;
}
double elem_bytes(const AnalysisRequest& r) { return r.dtype == DType::kFloat32 ? 4.0 : 8.0; }

}  // namespace

bool spectra_dense(const AnalysisRequest& r) {
  if (r.spectra.method == "dense") return true;
  if (r.spectra.method == "matrix_free") return false;
  return r.num_params() <= r.limits.max_hessian_params;
}

double spectra_bytes(const AnalysisRequest& r) {
  const double N = static_cast<double>(r.num_params());
  const double p = static_cast<double>(block_of(r));
  double vectors = 0;
  if (spectra_dense(r)) {
    vectors = N + 2 * std::max<double>(wanted(r), 1) + p;  // the dense matrix (N rows) and the vectors
  } else {
    if (any_top(r.want)) {
      const int64_t K = wanted(r), b = block_of(r);
      const int64_t m = r.spectra.lanczos_steps > 0 ? r.spectra.lanczos_steps
                                                    : lanczos_default_basis(K, b, r.num_params());
      vectors = std::max<double>(vectors, static_cast<double>(lanczos_vectors_held(K, b, m)));
    }
    if (any_trace(r.want)) vectors = std::max<double>(vectors, 2.0 * (trace_probes(r) / 3) + 2 * p);
    if (any_density(r.want)) {
      const double group = std::min<double>(p, density_probes(r));
      vectors = std::max<double>(vectors, group * (density_steps(r) + 2));
    }
  }
  double null_space = 0;  // the GGN's null-space path (ggn_null_space_bottom): the Gram's eigen-solve
  if (!spectra_dense(r) && r.want.ggn_top && r.spectra.bottom_k > 0) {
    const double m = std::min<double>(double(r.num_examples) * double(r.output_dim()), kMaxNullSpaceRows);
    null_space = 4.0 * m * m * 8.0;
  }
  return vectors * N * 8.0 + 4.0 * p * N * elem_bytes(r) + double(kProductPassBytes) + null_space;
}

void validate_spectra(const AnalysisRequest& r) {
  if (!any_spectra(r.want)) return;
  const SpectraOptions& s = r.spectra;
  const int64_t N = r.num_params();
  if (s.method != "auto" && s.method != "dense" && s.method != "matrix_free")
    invalid_argument("spectra method: '" + s.method + "'; expected auto, dense or matrix_free");
  if (!(s.tol > 0) || !std::isfinite(s.tol)) invalid_argument("tol: must be a finite number > 0");
  if (s.lanczos_steps < 0 || s.lanczos_block < 0 || s.probes < 0 || s.top_k < 0 || s.bottom_k < 0)
    invalid_argument("top_k, bottom_k, lanczos_steps, lanczos_block, probes: must be >= 0");
  if (any_top(r.want) && (s.top_k >= N || s.bottom_k >= N))  // before their sum (no overflow)
    invalid_argument("top_k = " + std::to_string(s.top_k) + ", bottom_k = " + std::to_string(s.bottom_k) +
                     ": each must be less than N = " + std::to_string(N));
  if (any_top(r.want)) {
    if (wanted(r) == 0) invalid_argument("top_k/bottom_k: both are 0; ask for at least one eigenvalue");
    if (wanted(r) >= N)
      invalid_argument("top_k + bottom_k = " + std::to_string(wanted(r)) + " must be less than N = " +
                       std::to_string(N) + " (want hessian or ggn gives every eigenvalue)");
    if (!spectra_dense(r)) check_lanczos_options(lanczos_options(r), N);
  }
  if (any_trace(r.want) && trace_probes(r) < 4)
    invalid_argument("probes = " + std::to_string(s.probes) + ": the Hutch++ trace needs at least 4");
  if (any_density(r.want) && !spectra_dense(r) && s.lanczos_steps > N)
    invalid_argument("lanczos_steps = " + std::to_string(s.lanczos_steps) + " exceeds N = " + std::to_string(N));
  if (spectra_dense(r) && N > r.limits.max_dense_dim)
    resource_exhausted("spectra method dense: the matrix is N × N with N = " + std::to_string(N) +
                       ", over the dense-solver limit of " + std::to_string(r.limits.max_dense_dim) +
                       "; use --spectra-method matrix_free");
  const double need = spectra_bytes(r);
  if (need > double(r.limits.max_memory_bytes)) {
    std::string fits;
    if (any_top(r.want) && !spectra_dense(r)) {
      // The longest restart length whose vectors fit beside the products' blocks.
      const double N8 = double(N) * 8.0, p = double(block_of(r));
      const double room = (double(r.limits.max_memory_bytes) - 4.0 * p * double(N) * elem_bytes(r) -
                           double(kProductPassBytes)) / N8;
      const int64_t K = wanted(r), b = block_of(r);
      // lanczos_vectors_held is the basis plus a part independent of it.
      const int64_t m = static_cast<int64_t>(std::floor(room)) - (lanczos_vectors_held(K, b, 0));
      fits = m >= K + 2 * b ? "; --lanczos-steps " + std::to_string(m) + " would fit"
                            : "; not even the shortest restart length (" + std::to_string(K + 2 * b) +
                                  ") fits: ask for fewer eigenvalues or a smaller --lanczos-block";
    }
    resource_exhausted("memory: the matrix-free spectra need about " + human_bytes(need) + " (bytes ≈ (M + K + b)·N·8 " +
                       "+ the products' blocks, N = " + std::to_string(N) + "), over the limit of " +
                       human_bytes(double(r.limits.max_memory_bytes)) + fits + " (or raise --max-memory)");
  }
}

namespace {

// The GGN's K smallest eigenvalues when G̃ = SᵀG [m × N] has m ≤ N − K rows: they are exact zeros
// (rank ≤ m), with eigenvectors in null(G̃). A Krylov method would have to tell them from the
// GGN's smallest nonzero eigenvalues (σ_min(G̃)², often ~1e-8·λmax and below), a convergence rate
// of √(λ_min⁺/λ_max) per step; instead random vectors are projected onto null(G̃) by
// x − G̃ᵀ (G̃G̃ᵀ)⁺ G̃ x (twice, so that the error of the pseudo-inverse, ε·κ(G̃G̃ᵀ), is squared),
// from J·V / Jᵀ·U products and the structured Gram, orthonormalised, and certified like the
// Lanczos pairs: θ = vᵀ(GGN v), residual ‖GGN v − θ v‖ by one more product each.
bool ggn_null_space_applies(const AnalysisRequest& r, const LossTerms& terms) {
  const int64_t m = r.num_examples * terms.factor_cols;
  return r.spectra.top_k > 0 && r.spectra.bottom_k > 0 && m <= kMaxNullSpaceRows &&
         r.num_params() - m >= r.spectra.bottom_k &&
         terms.factor_seeds.size() == static_cast<size_t>(m * r.output_dim());
}

// Call where ggn_null_space_applies; `scale` = max|λ| (the top's).
template <class T>
void ggn_null_space_bottom(Backend<T>& be, GraphNetwork<T>& net, const AnalysisRequest& r, const LossTerms& terms,
                           const SymmetricOperator& op, int64_t p, double scale, EigenEnds* out,
                           std::vector<double>* vectors, const SpectraProgress& progress) {
  const int64_t N = r.num_params(), n = r.num_examples, k = r.output_dim(), rc = terms.factor_cols;
  const int64_t K = r.spectra.bottom_k, m = n * rc;
  progress(Stage::kLanczos, 0, "ggn null space: Gram " + std::to_string(m) + " x " + std::to_string(m));
  // (G̃G̃ᵀ)⁺ = Z diag(1/w) Zᵀ over the eigenvalues above m·ε·max w.
  std::vector<double> z, inv;
  if (m > 0) {
    const std::vector<T> seeds(terms.factor_seeds.begin(), terms.factor_seeds.end());
    Buffer<T> g = net.gram(seeds, rc);
    std::vector<T> lower(static_cast<size_t>(m * m));
    be.download(lower.data(), g.get(), lower.size());
    z.assign(static_cast<size_t>(m * m), 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j <= i; ++j) z[i * m + j] = z[j * m + i] = static_cast<double>(lower[i * m + j]);
    const std::vector<double> w = spectra_detail::symmetric_eig(m, z);
    const double wmax = w.empty() ? 0.0 : std::max(std::fabs(w.front()), std::fabs(w.back()));
    inv.resize(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i)
      inv[i] = w[i] > double(m) * std::numeric_limits<double>::epsilon() * wmax ? 1.0 / w[i] : 0.0;
  }
  Buffer<T> xdev(be, static_cast<size_t>(p * N)), ydev(be, static_cast<size_t>(p * N));
  constexpr uint64_t kPass = 256ull << 20;
  // x [b × N] host ← x − G̃ᵀ (G̃G̃ᵀ)⁺ G̃ x.
  auto project = [&](double* x, int64_t b) {
    if (m == 0) return;
    const std::vector<T> xt(x, x + b * N);
    be.upload(xdev.get(), xt.data(), xt.size());
    be.fill(ydev.get(), static_cast<size_t>(b * N), T(0));
    const int64_t block = std::max<int64_t>(1, net.product_examples(b, kPass));
    std::vector<double> c(static_cast<size_t>(b * m), 0.0);  // G̃x: c[d·m + i·rc + j] = s_ijᵀ (J x_d)_i
    for (int64_t i0 = 0; i0 < n; i0 += block) {
      const int64_t count = std::min(block, n - i0);
      const std::vector<T> u = net.jacobian_product(xdev.get(), b, i0, count);  // [count × b × k]
      for (int64_t i = 0; i < count; ++i)
        for (int64_t d = 0; d < b; ++d)
          for (int64_t j = 0; j < rc; ++j) {
            const double* sv = terms.factor_seeds.data() + ((i0 + i) * rc + j) * k;
            double v = 0;
            for (int64_t q = 0; q < k; ++q) v += sv[q] * static_cast<double>(u[(i * b + d) * k + q]);
            c[d * m + (i0 + i) * rc + j] = v;
          }
    }
    // y = (G̃G̃ᵀ)⁺ c per direction: Z diag(inv) Zᵀ c.
    std::vector<double> t(static_cast<size_t>(b * m)), y(static_cast<size_t>(b * m));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, m, m, 1.0, c.data(), m, z.data(), m, 0.0, t.data(), m);
    for (int64_t d = 0; d < b; ++d)
      for (int64_t i = 0; i < m; ++i) t[d * m + i] *= inv[i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, m, m, 1.0, t.data(), m, z.data(), m, 0.0, y.data(), m);
    for (int64_t i0 = 0; i0 < n; i0 += block) {
      const int64_t count = std::min(block, n - i0);
      std::vector<T> uu(static_cast<size_t>(count * b * k), T(0));  // S_i y_i per example and direction
      for (int64_t i = 0; i < count; ++i)
        for (int64_t d = 0; d < b; ++d)
          for (int64_t j = 0; j < rc; ++j) {
            const double* sv = terms.factor_seeds.data() + ((i0 + i) * rc + j) * k;
            const double yv = y[d * m + (i0 + i) * rc + j];
            for (int64_t q = 0; q < k; ++q) uu[(i * b + d) * k + q] += static_cast<T>(yv * sv[q]);
          }
      net.jacobian_transpose_product(uu, b, i0, count, ydev.get());
    }
    std::vector<T> back(static_cast<size_t>(b * N));
    be.download(back.data(), ydev.get(), back.size());
    for (int64_t e = 0; e < b * N; ++e) x[e] -= static_cast<double>(back[e]);
  };
  std::mt19937_64 rng(r.spectra.seed + 3);
  std::vector<double> v(static_cast<size_t>(K * N));
  spectra_detail::random_block(rng, v.data(), K * N, false);
  int64_t matvecs = 0;
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t j0 = 0; j0 < K; j0 += p) {
      const int64_t b = std::min(p, K - j0);
      progress(Stage::kLanczos, 0.5 * pass + 0.5 * double(j0 + b) / double(K),
               "ggn null space: projection " + std::to_string(pass + 1) + "/2, vectors " + std::to_string(j0 + b) +
                   "/" + std::to_string(K));
      project(v.data() + j0 * N, b);
      matvecs += b;
      // Orthonormal among themselves (combinations of null vectors stay null).
      std::vector<double> rr(static_cast<size_t>(b * b));
      spectra_detail::orthonormalise_block(v.data(), j0, v.data() + j0 * N, b, N, nullptr, rr.data(), rng);
    }
  // Certificates: θ = vᵀAv and ‖Av − θv‖, one product each.
  out->method = "null_space";
  out->converged = true;
  std::vector<double> y(static_cast<size_t>(p * N));
  std::vector<std::pair<double, int64_t>> order;
  std::vector<double> theta(static_cast<size_t>(K)), resid(static_cast<size_t>(K));
  for (int64_t j0 = 0; j0 < K; j0 += p) {
    const int64_t b = std::min(p, K - j0);
    progress(Stage::kLanczos, 1.0, "ggn null space: residuals " + std::to_string(j0 + b) + "/" + std::to_string(K));
    op.apply(v.data() + j0 * N, b, y.data());
    matvecs += b;
    for (int64_t j = 0; j < b; ++j) {
      const double th = spectra_detail::dot(v.data() + (j0 + j) * N, y.data() + j * N, N);
      cblas_daxpy(N, -th, v.data() + (j0 + j) * N, 1, y.data() + j * N, 1);
      theta[j0 + j] = th;
      resid[j0 + j] = spectra_detail::norm(y.data() + j * N, N);
    }
  }
  for (int64_t j = 0; j < K; ++j) order.emplace_back(theta[j], j);
  std::sort(order.begin(), order.end());
  for (const auto& [th, j] : order) {
    out->eigenvalues.push_back(th);
    out->residual_norms.push_back(resid[j]);
    out->converged = out->converged && resid[j] <= r.spectra.tol * scale;
    if (vectors != nullptr) vectors->insert(vectors->end(), v.begin() + j * N, v.begin() + (j + 1) * N);
  }
  out->matvecs = matvecs;
}

}  // namespace

template <class T>
void compute_spectra(Backend<T>& be, GraphNetwork<T>& net, const AnalysisRequest& r, const LossTerms& terms,
                     AnalysisResult& res, const SpectraProgress& progress) {
  const int64_t N = r.num_params(), k = r.output_dim();
  const int64_t p = std::max<int64_t>(1, block_of(r));
  Buffer<T> xdev(be, static_cast<size_t>(p * N)), ydev(be, static_cast<size_t>(p * N));
  // M_i u for the output tangents of examples [i0, i0 + count): the loss Hessian M_i = S_i S_iᵀ.
  const typename GraphNetwork<T>::OutputMap apply_m = [&](std::vector<T>& u, int64_t i0, int64_t count) {
    const int64_t b = static_cast<int64_t>(u.size()) / std::max<int64_t>(count * k, 1);
    if (terms.scaled_identity) {
      for (T& v : u) v *= static_cast<T>(terms.scale);
      return;
    }
    const int64_t rc = terms.factor_cols;
    std::vector<double> out(static_cast<size_t>(k));
    for (int64_t i = 0; i < count; ++i)
      for (int64_t d = 0; d < b; ++d) {
        T* ui = u.data() + (i * b + d) * k;
        std::fill(out.begin(), out.end(), 0.0);
        for (int64_t j = 0; j < rc; ++j) {
          const double* s = terms.factor_seeds.data() + ((i0 + i) * rc + j) * k;
          double c = 0;
          for (int64_t q = 0; q < k; ++q) c += s[q] * static_cast<double>(ui[q]);
          for (int64_t q = 0; q < k; ++q) out[q] += c * s[q];
        }
        for (int64_t q = 0; q < k; ++q) ui[q] = static_cast<T>(out[q]);
      }
  };
  auto make_op = [&](bool hessian) {
    SymmetricOperator op;
    op.dim = N;
    op.max_block = p;
    op.apply = [&, hessian](const double* x, int64_t b, double* y) {
      for (int64_t j0 = 0; j0 < b; j0 += p) {
        const int64_t bb = std::min(p, b - j0);
        const size_t cnt = static_cast<size_t>(bb * N);
        if constexpr (std::is_same_v<T, double>) {
          be.upload(xdev.get(), x + j0 * N, cnt);
        } else {
          const std::vector<T> xt(x + j0 * N, x + j0 * N + cnt);
          be.upload(xdev.get(), xt.data(), cnt);
        }
        if (hessian) net.hessian_product(xdev.get(), bb, apply_m, ydev.get(), kProductPassBytes);
        else net.gauss_newton_product(xdev.get(), bb, apply_m, ydev.get(), kProductPassBytes);
        if constexpr (std::is_same_v<T, double>) {
          be.download(y + j0 * N, ydev.get(), cnt);
        } else {
          std::vector<T> yt(cnt);
          be.download(yt.data(), ydev.get(), cnt);
          std::copy(yt.begin(), yt.end(), y + j0 * N);
        }
      }
    };
    return op;
  };
  auto hook_for = [&](Stage stage) {
    return [&progress, stage](int64_t it, int64_t total, const std::string& detail) {
      progress(stage, std::min(1.0, double(it) / double(std::max<int64_t>(total, 1))), detail);
    };
  };
  auto vectors_array = [&](const std::string& name, const std::vector<double>& rows, int64_t count) {
    VectorArray a;
    a.name = name;
    a.shape = {N, count};
    a.data.assign(static_cast<size_t>(N * count), 0.0);
    for (int64_t j = 0; j < count; ++j)
      for (int64_t i = 0; i < N; ++i) a.data[i * count + j] = rows[j * N + i];
    for (int64_t j = 0; j < count; ++j) a.indices.push_back(j);
    return a;
  };
  const bool dense = spectra_dense(r);

  for (const bool hessian : {true, false}) {
    const std::string prefix = hessian ? "hessian" : "ggn";
    const bool top = hessian ? r.want.hessian_top : r.want.ggn_top;
    const bool trace = hessian ? r.want.hessian_trace : r.want.ggn_trace;
    const bool density = hessian ? r.want.hessian_density : r.want.ggn_density;
    if (!top && !trace && !density) continue;
    const SymmetricOperator op = make_op(hessian);
    auto& top_out = hessian ? res.hessian_top : res.ggn_top;
    auto& bottom_out = hessian ? res.hessian_bottom : res.ggn_bottom;
    auto& trace_out = hessian ? res.hessian_trace : res.ggn_trace;
    auto& density_out = hessian ? res.hessian_density : res.ggn_density;
    if (dense) {
      // The exact path: A assembled column block by column block from the products, then one
      // dense eigen-solve; the residuals of the eigenpairs reported are checked by products.
      progress(Stage::kHessian, 0, "dense products 0/" + std::to_string(N));
      std::vector<double> a(static_cast<size_t>(N * N)), unit(static_cast<size_t>(p * N));
      for (int64_t j0 = 0; j0 < N; j0 += p) {
        const int64_t b = std::min(p, N - j0);
        std::fill(unit.begin(), unit.end(), 0.0);
        for (int64_t j = 0; j < b; ++j) unit[j * N + j0 + j] = 1.0;
        op.apply(unit.data(), b, a.data() + j0 * N);
        progress(Stage::kHessian, double(j0 + b) / double(N),
                 "dense products " + std::to_string(j0 + b) + "/" + std::to_string(N));
      }
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < i; ++j) a[i * N + j] = a[j * N + i] = 0.5 * (a[i * N + j] + a[j * N + i]);
      double tr = 0;
      for (int64_t i = 0; i < N; ++i) tr += a[i * N + i];
      progress(Stage::kSolve, 0, "dense eigen-solve");
      const std::vector<double> w = spectra_detail::symmetric_eig(N, a);  // ascending; a: vectors (columns)
      double lmax = 0;
      for (double v : w) lmax = std::max(lmax, std::fabs(v));
      if (top) {
        auto end_of = [&](bool largest, int64_t count) {
          EigenEnds e;
          e.method = "dense";
          e.matvecs = N;
          e.converged = true;
          std::vector<double> rows(static_cast<size_t>(count * N)), y(static_cast<size_t>(p * N));
          for (int64_t j = 0; j < count; ++j) {
            const int64_t col = largest ? N - 1 - j : j;
            e.eigenvalues.push_back(w[col]);
            for (int64_t i = 0; i < N; ++i) rows[j * N + i] = a[i * N + col];
          }
          for (int64_t j0 = 0; j0 < count; j0 += p) {
            const int64_t b = std::min(p, count - j0);
            op.apply(rows.data() + j0 * N, b, y.data());
            e.matvecs += b;
            for (int64_t j = 0; j < b; ++j) {
              cblas_daxpy(N, -e.eigenvalues[j0 + j], rows.data() + (j0 + j) * N, 1, y.data() + j * N, 1);
              e.residual_norms.push_back(spectra_detail::norm(y.data() + j * N, N));
              e.converged = e.converged && e.residual_norms.back() <= r.spectra.tol * lmax;
            }
          }
          if (r.spectra.eigenvectors)
            res.vectors.push_back(vectors_array(prefix + (largest ? "_top" : "_bottom") + "_eigenvectors", rows, count));
          return e;
        };
        top_out = end_of(true, r.spectra.top_k);
        if (r.spectra.bottom_k > 0) bottom_out = end_of(false, r.spectra.bottom_k);
      }
      if (trace) trace_out = TraceEstimate{tr, 0.0, 0, N, "dense"};
      if (density) {
        SpectralDensity d;
        d.nodes = {std::vector<double>(w.rbegin(), w.rend())};
        d.weights = {std::vector<double>(static_cast<size_t>(N), 1.0 / double(N))};
        d.probes = 1;
        d.steps = N;
        d.matvecs = N;
        d.method = "dense";
        const SmoothedDensity sm = smooth_density(d.nodes, d.weights);
        d.grid = sm.grid;
        d.density = sm.density;
        d.bandwidth = sm.bandwidth;
        density_out = std::move(d);
      }
      continue;
    }
    if (top) {
      // The GGN's zeros from its null space where that applies (ggn_null_space_bottom), the top
      // by Lanczos alone.
      LanczosOptions lo = lanczos_options(r);
      const bool null_space = !hessian && ggn_null_space_applies(r, terms);
      if (null_space) lo.bottom = 0;
      const LanczosResult lr = block_lanczos(op, lo, hook_for(Stage::kLanczos));
      auto to_ends = [&](const EigenEnd& e) {
        EigenEnds out;
        out.eigenvalues = e.eigenvalues;
        out.residual_norms = e.residual_norms;
        out.converged = e.converged;
        out.matvecs = lr.matvecs;
        out.method = "lanczos";
        return out;
      };
      top_out = to_ends(lr.top);
      if (r.spectra.eigenvectors)
        res.vectors.push_back(vectors_array(prefix + "_top_eigenvectors", lr.top.vectors,
                                            static_cast<int64_t>(lr.top.eigenvalues.size())));
      if (r.spectra.bottom_k > 0) {
        std::vector<double> rows;
        EigenEnds ends;
        double scale = 0;
        for (double v : lr.top.eigenvalues) scale = std::max(scale, std::fabs(v));
        if (null_space) {
          ggn_null_space_bottom(be, net, r, terms, op, p, scale, &ends, r.spectra.eigenvectors ? &rows : nullptr,
                                progress);
          bottom_out = ends;
        } else {
          bottom_out = to_ends(lr.bottom);
          rows = lr.bottom.vectors;
        }
        if (r.spectra.eigenvectors)
          res.vectors.push_back(vectors_array(prefix + "_bottom_eigenvectors", rows,
                                              static_cast<int64_t>(bottom_out->eigenvalues.size())));
      }
    }
    if (trace) {
      const TraceResult t = hutch_plus_plus(op, trace_probes(r), r.spectra.seed + 1, hook_for(Stage::kTrace));
      trace_out = TraceEstimate{t.estimate, t.std_error, t.probes, t.matvecs, "hutch++"};
    }
    if (density) {
      const DensityResult d =
          slq(op, density_probes(r), density_steps(r), r.spectra.seed + 2, hook_for(Stage::kDensity));
      const SmoothedDensity sm = smooth_density(d.nodes, d.weights);
      density_out = SpectralDensity{d.nodes, d.weights, d.probes, d.steps, d.matvecs, "slq", sm.grid, sm.density,
                                    sm.bandwidth};
    }
  }
}

template void compute_spectra<double>(Backend<double>&, GraphNetwork<double>&, const AnalysisRequest&,
                                      const LossTerms&, AnalysisResult&, const SpectraProgress&);
template void compute_spectra<float>(Backend<float>&, GraphNetwork<float>&, const AnalysisRequest&, const LossTerms&,
                                     AnalysisResult&, const SpectraProgress&);

}  // namespace basin
