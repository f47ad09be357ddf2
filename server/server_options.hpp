// basind's command line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "basin/analysis.hpp"

namespace basin::server {

struct ServerOptions {
  std::string listen;          // empty: 127.0.0.1:50051 when open, 0.0.0.0:50051 with --tokens
  std::string data_dir;        // empty: a temporary directory removed at exit
  std::string tokens_file;
  int workers = 1;
  double shutdown_timeout_s = 30;
  std::string metrics_listen;  // HOST:PORT, empty = off
  std::string tls_cert, tls_key, tls_client_ca;
  std::string port_file;       // written once listening: "<grpc port>\n<metrics port>\n"
  int64_t max_message_bytes = 64ll << 20;
  int64_t max_chunk_bytes = 4ll << 20;
  int64_t max_queued_jobs_per_user = 100;
  int64_t max_stored_bytes_per_user = 16ll << 30;
  int max_attempts = 3;
  int64_t keep_finished_in_memory = 256;  // finished jobs held in memory; older: from SQLite
  Device default_device = Device::kAuto;
  bool check = false;               // --check: verify --data-dir and exit (server/data_dir.hpp)
  bool allow_new_database = false;  // start a new database in a used data dir (data_dir.hpp)
  Limits limits;
};

// Throws basin::Error(kInvalidArgument) naming the flag. Sets *help for --help.
ServerOptions parse_server_options(const std::vector<std::string>& args, bool* help);
const char* server_usage();

}  // namespace basin::server
