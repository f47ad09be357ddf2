// Request validation (internal): everything that can be checked before any work -- shapes,
// finiteness and float32 range of the values, labels, tolerances, and the limits (Hessian size,
// dense-solver size, returned G, the host memory estimate of memory_plan.hpp). The public entry
// points, validate_request / validate_checkpoints / check_layer_count, are in basin/analysis.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "basin/analysis.hpp"

namespace basin {

// Every value of `v` finite; otherwise kInvalidArgument naming `field` and the value's index
// ([row, column] when row_width > 0, [j] otherwise).
void check_finite(const std::vector<double>& v, const char* field, int64_t row_width);
// Every value of `v` within float32's range (for --dtype float32); same error naming as above.
void check_float32_range(const std::vector<double>& v, const char* field, int64_t row_width);

// params (or checkpoint b of a batch, `field` = "params[b]"): length N, finite, in range for float32.
void validate_params(const std::vector<double>& params, const AnalysisRequest& r, const std::string& field);

// Each tensor's dense problem is min(n·k, count)² (its Gram or G_tᵀG_t): within the dense-solver
// limit, and its matrices within the memory budget next to the rest of the analysis.
void check_per_parameter_limits(const AnalysisRequest& r);

// Everything but the parameters.
void validate_request_except_params(const AnalysisRequest& r);

}  // namespace basin
