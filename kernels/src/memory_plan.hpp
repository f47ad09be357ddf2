// The memory plan (internal): the method auto resolves to, the working-memory estimate of each
// method on the host and on a device, and the plan that fits a request into the free memory a
// device reports (docs/ARCHITECTURE.md, "The memory plan"). Pure functions of the request's sizes:
// nothing here allocates or computes a spectrum.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "basin/analysis.hpp"
#include "basin/backend.hpp"

namespace basin {

// Working block for blockwise G (normal method) and for the R-op passes: large enough for
// efficient BLAS-3, small enough to stay far below the size of G.
constexpr uint64_t kBlockBytes = 32ull << 20;
// Work per block of R-op directions: enough directions per GEMM, few pages to touch.
constexpr uint64_t kRopBlockBytes = 8ull << 20;
// The smallest Gram row tile worth tiling with (below it the GEMMs are too thin to be fast).
constexpr int64_t kMinGramTileRows = 64;

// "512 bytes", "3.5 MiB", "8 GiB": sizes in error messages.
std::string human_bytes(double b);

// The request's method, auto resolved: gram when n·k <= N, normal otherwise (the small side).
Method resolve_method(const AnalysisRequest& r);

// The widths of the activations act[0..L]: their sum and the largest (one O(L) pass).
std::pair<double, double> activation_widths(const AnalysisRequest& r);

// Memory every method needs: activations, parameters, back-propagation buffers, seeds; plus
// G itself on the host when it is returned.
double base_bytes(const AnalysisRequest& r);

// Working memory of one analysis in bytes (an estimate that errs high).
// gram_tile_rows: the Gram's Δ Δᵀ work matrix covers this many rows (0: all n·k).
double estimate_bytes(const AnalysisRequest& r, Method method, int64_t gram_tile_rows = 0);

// TSQR, the tall case's accuracy path (Network::tsqr_r): R [N×N] with a block of `block_rows`
// rows of G̃ stacked below it, plus the QR's panel work. On a device the QR also holds a
// column-major copy of the stack while it runs.
double tsqr_estimate_bytes(const AnalysisRequest& r, int64_t block_rows, bool device);

// Examples per TSQR block: ideally blocks of at least N rows and at least kBlockBytes of G̃, but
// no more than fits the host budget and, when device_budget > 0, the device's. 0 when not even
// one does.
int64_t tsqr_block_examples(const AnalysisRequest& r, double host_budget, double device_budget);

// Device memory is not the host's 8 GiB budget: before any launch, the method (and the Gram's
// row tile) is chosen so the estimate fits the free memory the backend reports, keeping 10%
// for the libraries' own workspaces and fragmentation. Backends that report no free memory
// (the CPU: the host budget of validate_request applies) are not planned.
struct MemoryPlan {
  Method method = Method::kAuto;
  int64_t gram_tile_rows = 0;  // 0: the whole (n·k)² square at once
  double device_budget = 0;    // bytes usable on the device; 0: not a device
};

// estimate_bytes plus a device eigen-solver's workspace (and, for the SVD of a tall G, the
// transposed copy cuSOLVER's gesvd needs).
double device_estimate_bytes(const AnalysisRequest& r, Method method, int64_t gram_tile_rows = 0);

// Largest Gram row tile whose device estimate fits `budget`, or 0.
int64_t largest_gram_tile(const AnalysisRequest& r, double budget);

// Largest n (≤ the request's) whose device estimate with `method` fits `budget`; 0 when none does.
int64_t largest_fitting_examples(const AnalysisRequest& r, Method method, double budget);

// The plan for `r` on a backend described by `info`: the resolved method, and on a device the
// budget and, when the whole Gram does not fit, its row tile. Throws kResourceExhausted saying
// what was needed, what is free and what would fit when nothing does.
MemoryPlan plan_memory(const AnalysisRequest& r, const BackendInfo& info);

}  // namespace basin
