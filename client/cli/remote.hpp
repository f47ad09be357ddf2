// The basin CLI's remote commands: talk to a basind server over gRPC.
//
// Called from main.cpp (inside #ifdef BASIN_HAVE_GRPC_CLIENT, which server/CMakeLists.txt
// defines on the `basin` target together with adding remote.cpp):
//   basin analyze --server HOST:PORT ...   -> remote_analyze(options)
//   basin submit|watch|jobs|cancel|result|info|health ...  -> run_remote_command(cmd, args)
// Both return the process exit code and throw basin::Error (code from the gRPC status) on
// failure, which main() maps to exit codes like every other error.
#pragma once

#include <string>
#include <vector>

#include "analyze_args.hpp"

namespace basin::cli {

// Same flags and the same JSON as `basin analyze --local`; the analysis runs on the server.
int remote_analyze(AnalyzeOptions& options);

// Everything but analyze. Common flags: --server HOST:PORT (default $BASIN_SERVER, else
// 127.0.0.1:50051), --token T (default $BASIN_TOKEN), --tls-ca PEM [--tls-cert PEM --tls-key PEM].
int run_remote_command(const std::string& command, const std::vector<std::string>& args);

std::string remote_usage();

}  // namespace basin::cli
