// The memory plan: method resolution, working-memory estimates, the device plan (memory_plan.hpp).
#include "memory_plan.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "basin/error.hpp"

namespace basin {

std::string human_bytes(double b) {
  std::ostringstream os;
  os.precision(3);
  if (b >= double(1ull << 30)) os << b / double(1ull << 30) << " GiB";
  else if (b >= double(1ull << 20)) os << b / double(1ull << 20) << " MiB";
  else os << b << " bytes";
  return os.str();
}

Method resolve_method(const AnalysisRequest& r) {
  if (r.method != Method::kAuto) return r.method;
  const int64_t m = r.num_examples * r.output_dim(), N = r.num_params();
  return m <= N ? Method::kGram : Method::kNormal;  // work on the small side
}

std::pair<double, double> activation_widths(const AnalysisRequest& r) {
  double sum = 0, max_w = 0;
  auto add = [&](double w) {
    sum += w;
    max_w = std::max(max_w, w);
  };
  if (r.graph) {
    for (const GraphValue& v : r.graph->values())
      if (v.batched) add(static_cast<double>(shape_numel(v.shape)));
  } else {
    for (const int64_t width : r.model.widths()) add(static_cast<double>(width));
  }
  return {sum, max_w};
}

double largest_materialised_block(const AnalysisRequest& r) {
  // Dense weights ([out, in], used once) take the structured Gram; every other parameter tensor
  // (convolution kernels, normalisation scales, embeddings) is materialised per example, one at
  // a time: (n·k) × its size. Chains have none.
  double largest = 0;
  if (r.graph)
    for (int v : r.graph->parameters()) {
      const GraphValue& p = r.graph->value(v);
      if (p.shape.size() != 2) largest = std::max(largest, static_cast<double>(shape_numel(p.shape)));
    }
  return largest * static_cast<double>(r.num_examples) * static_cast<double>(r.output_dim());
}

// Memory every method needs: activations, parameters, back-propagation buffers, seeds; plus
// G itself on the host when it is returned.
double base_bytes(const AnalysisRequest& r) {
  const double sz = r.dtype == DType::kFloat64 ? 8 : 4;
  const double n = static_cast<double>(r.num_examples), k = static_cast<double>(r.output_dim());
  const double N = static_cast<double>(r.num_params()), m = n * k;
  const auto [widths, max_w] = activation_widths(r);
  const double jac = r.return_jacobian ? sz * m * N : 0;
  return sz * (n * widths + N + 2 * m * max_w + m * k) + jac;
}

// Working memory of one analysis in bytes (an estimate that errs high).
// gram_tile_rows: the Gram's Δ Δᵀ work matrix covers this many rows (0: all n·k).
double estimate_bytes(const AnalysisRequest& r, Method method, int64_t gram_tile_rows) {
  const double sz = r.dtype == DType::kFloat64 ? 8 : 4;
  const double n = static_cast<double>(r.num_examples), k = static_cast<double>(r.output_dim());
  const double N = static_cast<double>(r.num_params()), m = n * k;
  const double widths = activation_widths(r).first;
  double spectral = 0;
  if (r.want.jacobian || r.want.ggn) {
    switch (method) {
      case Method::kGram: {
        const double tile = gram_tile_rows > 0 ? std::min<double>(double(gram_tile_rows), m) : m;
        spectral = sz * (m * m + tile * m + n * n + largest_materialised_block(r));
        break;
      }
      case Method::kNormal: spectral = sz * N * N + std::min<double>(kBlockBytes, sz * m * N); break;
      default: spectral = sz * (m * N + 4 * std::min(m, N) * std::min(m, N)); break;
    }
  }
  double hessian = 0;
  if (r.want.hessian)
    // GGN and R on the backend (doubled: margin for the solver), blocks for G̃ and the R-op passes.
    hessian = sz * (4 * N * N + n * widths) + std::min<double>(kBlockBytes, sz * m * N) + kBlockBytes;
  return base_bytes(r) + std::max(spectral, hessian);
}

// TSQR, the tall case's accuracy path (Network::tsqr_r): R [N×N] with a block of `block_rows`
// rows of G̃ stacked below it, plus the QR's panel work (and the N×N SVD's afterwards, smaller).
// On a device the QR also holds a column-major copy of the stack while it runs.
double tsqr_estimate_bytes(const AnalysisRequest& r, int64_t block_rows, bool device) {
  const double sz = r.dtype == DType::kFloat64 ? 8 : 4;
  const double N = static_cast<double>(r.num_params());
  const double stack = sz * N * (N + double(block_rows)) + sz * 66 * N;
  return base_bytes(r) + (device ? 2 : 1) * stack;
}

// Examples per TSQR block: ideally blocks of at least N rows (each QR of [R; G_block] then does
// at least as much new work as it redoes on R) and at least kBlockBytes of G̃, but no more than
// fits the host budget and, when device_budget > 0, the device's. 0 when not even one does.
int64_t tsqr_block_examples(const AnalysisRequest& r, double host_budget, double device_budget) {
  const int64_t n = r.num_examples, k = r.output_dim(), N = r.num_params();
  const double sz = r.dtype == DType::kFloat64 ? 8 : 4;
  const int64_t wanted = std::clamp<int64_t>(
      std::max<int64_t>((N + k - 1) / k, static_cast<int64_t>(double(kBlockBytes) / (sz * double(k * N)))), 1, n);
  auto fits = [&](int64_t examples) {
    return tsqr_estimate_bytes(r, examples * k, false) <= host_budget &&
           (device_budget == 0 || tsqr_estimate_bytes(r, examples * k, true) <= device_budget);
  };
  int64_t lo = 0, hi = wanted;  // invariant: fits(lo) or lo = 0
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// estimate_bytes plus a device eigen-solver's workspace (cuSOLVER's tridiagonal reduction works
// on panels of ~64 columns; LAPACK's dsyevd on the host needs only 2n + 1).
double device_estimate_bytes(const AnalysisRequest& r, Method method, int64_t gram_tile_rows) {
  const double sz = r.dtype == DType::kFloat64 ? 8 : 4;
  const double m = double(r.num_examples) * double(r.output_dim()), N = double(r.num_params());
  const double dim = method == Method::kGram ? m : method == Method::kNormal ? N : 0;
  double extra = sz * 66 * std::max(dim, r.want.hessian ? N : 0.0);
  // cuSOLVER's gesvd takes only rows ≥ cols: a tall G (n·k > N) is transposed into a second
  // n·k × N buffer first (CudaBackend::singular_values), plus its bidiagonalisation panels.
  if (method == Method::kSvd && m > N) extra += sz * (m * N + 66 * m);
  return estimate_bytes(r, method, gram_tile_rows) + extra;
}

// Largest Gram row tile whose estimate fits `budget`, or 0. The estimate never decreases with
// the tile (it is max(Gram work, Hessian work), the Gram part linear in the tile), so a
// bisection finds it.
int64_t largest_gram_tile(const AnalysisRequest& r, double budget) {
  const int64_t m = r.num_examples * r.output_dim();
  if (m <= 0 || device_estimate_bytes(r, Method::kGram, 1) > budget) return 0;
  int64_t lo = 1, hi = m;  // invariant: tile lo fits
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (device_estimate_bytes(r, Method::kGram, mid) <= budget) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// Largest n (≤ the request's) whose estimate with `method` fits `budget`; 0 when none does.
int64_t largest_fitting_examples(const AnalysisRequest& r, Method method, double budget) {
  AnalysisRequest probe;
  probe.model = r.model;
  probe.graph = r.graph;
  probe.want = r.want;
  probe.dtype = r.dtype;
  probe.return_jacobian = r.return_jacobian;
  auto fits = [&](int64_t n) {
    probe.num_examples = n;
    return method == Method::kGram ? largest_gram_tile(probe, budget) >= std::min<int64_t>(kMinGramTileRows, n * r.output_dim())
                                   : device_estimate_bytes(probe, method) <= budget;
  };
  int64_t lo = 0, hi = r.num_examples;  // invariant: fits(lo) or lo = 0
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

MemoryPlan plan_memory(const AnalysisRequest& r, const BackendInfo& info) {
  MemoryPlan plan;
  plan.method = resolve_method(r);
  if (info.memory_free_bytes == 0) return plan;
  plan.device_budget = 0.9 * double(info.memory_free_bytes);
  const double budget = plan.device_budget;
  if (device_estimate_bytes(r, plan.method) <= budget) return plan;
  // The Gram's one large temporary, Δ_l Δ_lᵀ, can be built in row tiles. (Switching between
  // gram and normal never helps: auto already picked the smaller of (n·k)² and N².)
  if (plan.method == Method::kGram && (r.want.jacobian || r.want.ggn)) {
    const int64_t m = r.num_examples * r.output_dim();
    const int64_t tile = largest_gram_tile(r, budget);
    if (tile >= std::min<int64_t>(kMinGramTileRows, m)) {
      plan.gram_tile_rows = tile;
      return plan;
    }
  }
  // Nothing fits: say what was needed, what is free, and what would fit.
  const Method method = plan.method;
  std::ostringstream os;
  os << "memory: method " << method_name(method) << " needs about " << human_bytes(device_estimate_bytes(r, method))
     << " of device memory, but " << info.device_name << " has " << human_bytes(double(info.memory_free_bytes))
     << " free of " << human_bytes(double(info.memory_total_bytes)) << " (n·k = "
     << r.num_examples * r.output_dim() << ", N = " << r.num_params() << ")";
  const int64_t n_fit = largest_fitting_examples(r, method, budget);
  if (n_fit > 0) os << "; at most n = " << n_fit << " examples would fit";
  else os << "; not even one example fits with this model";
  if (r.dtype == DType::kFloat64) os << " (--dtype float32 halves the memory)";
  if (r.want.hessian) os << ", or drop hessian from --want";
  os << ", or run on the cpu (--device cpu)";
  resource_exhausted(os.str());
}

}  // namespace basin
