// basin: the command-line client. `basin analyze --local` runs the engine in this process;
// the remote commands talk to a basind server (cli/remote.cpp, built with gRPC).
#include <iostream>
#include <string>
#include <vector>

#include "analyze_args.hpp"
#include "basin/backend.hpp"
#include "basin/error.hpp"
#ifdef BASIN_HAVE_GRPC_CLIENT
#include "remote.hpp"
#endif

namespace {

int exit_code_for(basin::ErrorCode code) {
  switch (code) {
    case basin::ErrorCode::kInvalidArgument: return 2;
    case basin::ErrorCode::kResourceExhausted: return 3;
    case basin::ErrorCode::kUnavailable: return 4;
    default: return 1;
  }
}

int analyze_local(basin::cli::AnalyzeOptions& options) {
  basin::cli::load_request_files(options);
  basin::AnalysisRequest& request = options.request;
  if (request.device == basin::Device::kAuto) {
    std::string why;
    if (basin::cuda_available(&why)) {
      std::cerr << "basin: using the cuda backend (a CUDA device and driver are usable)\n";
      request.device = basin::Device::kCuda;
    } else {
      std::cerr << "basin: using the cpu backend (" << why << ")\n";
      request.device = basin::Device::kCpu;
    }
  }
  if (options.checkpoints.empty()) {
    basin::cli::print_results(options, {basin::analyze(request)});
  } else {
    basin::cli::print_results(options, basin::analyze_checkpoints(request, options.checkpoints));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  basin::configure_blas_threads();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::cout << basin::cli::usage();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << "basin " << BASIN_VERSION << "\n";
    return 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    if (command == "analyze") {
      basin::cli::AnalyzeOptions options = basin::cli::parse_analyze_args(args);
      if (options.local) return analyze_local(options);
#ifdef BASIN_HAVE_GRPC_CLIENT
      return basin::cli::remote_analyze(options);
#endif
    }
    // ---- remote section: the server commands (implemented in cli/remote.cpp) ----
#ifdef BASIN_HAVE_GRPC_CLIENT
    return basin::cli::run_remote_command(command, args);
#else
    if (command == "analyze")
      throw basin::Error(basin::ErrorCode::kUnavailable, "--server: this build of basin has no gRPC client");
    throw basin::Error(basin::ErrorCode::kInvalidArgument,
                       "unknown command '" + command + "'\n" + basin::cli::usage());
#endif
  } catch (const basin::Error& e) {
    std::cerr << "basin: error: " << e.what() << "\n";
    return exit_code_for(e.code());
  } catch (const std::exception& e) {
    std::cerr << "basin: error: " << e.what() << "\n";
    return 1;
  }
}
