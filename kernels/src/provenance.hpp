// A result's provenance (internal): build info, digests of the model and data, host, times.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "basin/analysis.hpp"

namespace basin {

// Written at build time by cmake/write_build_info.cmake.
const char* build_version();
const char* build_commit();
bool build_source_modified();

// SHA-256 (hex) of an array as provenance digests it: the ASCII header "<dtype>[d0,d1,…]\n",
// then the little-endian bytes of its values.
std::string array_sha256(const std::string& dtype, const std::vector<int64_t>& shape, const void* data,
                         size_t bytes);

// Fills every result's provenance. results[b] came from checkpoints[b]; the engine ran from
// `started` for `duration_ms`.
void fill_provenance(const AnalysisRequest& request, const std::vector<std::vector<double>>& checkpoints,
                     std::chrono::system_clock::time_point started, double duration_ms,
                     std::vector<AnalysisResult>& results);

}  // namespace basin
