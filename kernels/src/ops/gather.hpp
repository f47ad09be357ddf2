// The gather op's check of the data it reads (kernels/src/ops/gather.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "basin/graph.hpp"

namespace basin {

// Every gather node whose indices are the graph's input: each of the n examples' ids must be an
// integer in [0, rows of its table); throws basin::Error(kInvalidArgument) naming the node, the
// bad id and its example and position otherwise.
void check_gather_indices(const Graph& graph, const std::vector<double>& inputs, int64_t num_examples);

}  // namespace basin
