// --save-dir DIR: result.json (the JSON the CLI prints) and one .npy per --vectors array.
#pragma once

#include <string>

#include "basin/analysis.hpp"

namespace basin::cli {

// Creates DIR (and its parents) when missing and checks that a file can be written in it, before
// any analysis runs. Throws Error(kInvalidArgument) naming DIR and the reason.
void prepare_save_dir(const std::string& dir);

// Writes DIR/<name>.npy (float64, C order) for every array of result.vectors (their data must be
// on the host) and DIR/result.json = `json` followed by a newline.
void write_save_dir(const std::string& dir, const AnalysisResult& result, const std::string& json);

}  // namespace basin::cli
