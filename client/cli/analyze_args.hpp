// `basin analyze` flags → a basin::AnalysisRequest. Shared by the local and the remote forms so
// that both accept exactly the same flags and files.
#pragma once

#include <string>
#include <vector>

#include "basin/analysis.hpp"

namespace basin::cli {

struct AnalyzeOptions {
  AnalysisRequest request;
  bool local = false;       // --local: run in this process
  std::string server;       // --server HOST:PORT
  std::string token;        // --token, else $BASIN_TOKEN
  std::string tls_ca, tls_cert, tls_key;  // --tls-ca (else $BASIN_TLS_CA), --tls-cert, --tls-key
  double timeout_s = 0;     // --timeout SECONDS (remote; 0 = none)
  bool json = false;        // --json: the JSON contract on stdout
  bool pretty = false;      // --pretty: indented JSON
  bool want_given = false;  // --want was given (else defaults, see README)
  std::string model_path, params_path, inputs_path, targets_path, save_jacobian;
  std::string save_dir;     // --save-dir DIR: result.json and the --vectors .npy files
  std::vector<std::string> constants;  // --constants a,b: ONNX initialisers that are not parameters
  // --params of shape [B, N]: the checkpoints of a training run, one result each (request.params
  // holds the first). Empty for a single parameter vector.
  std::vector<std::vector<double>> checkpoints;
  std::vector<std::string> rest;  // flags this parser does not know (for the remote commands)
  // --inputs' shape [n, ...]: the per-example shape is what follows n (an ONNX model's input
  // shape; a chain's inputs are flattened per example to input_dim).
  std::vector<int64_t> inputs_shape;
  bool onnx = false;        // --model is an .onnx file (--server uploads it as a blob)
};

// Parses flags (argv after "analyze"). Throws basin::Error(kInvalidArgument) naming the flag.
AnalyzeOptions parse_analyze_args(const std::vector<std::string>& args, bool allow_unknown = false);

// Reads --model/--params/--inputs/--targets into options.request and applies the default
// --want. Throws basin::Error naming the file and what was expected.
void load_request_files(AnalyzeOptions& options);

// Writes G (when --save-jacobian) and prints the results: JSON (one line per checkpoint unless
// --pretty) or a short summary of each.
void print_results(const AnalyzeOptions& options, const std::vector<AnalysisResult>& results);

// Human-readable summary of a result.
std::string summary(const AnalysisRequest& request, const AnalysisResult& result);

std::string usage();

}  // namespace basin::cli
