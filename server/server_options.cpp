#include "server_options.hpp"

#include <cerrno>
#include <cstdlib>

#include "basin/error.hpp"

namespace basin::server {
namespace {

int64_t parse_int(const std::string& flag, const std::string& v, int64_t min_value) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || x < min_value) {
    invalid_argument(flag + ": '" + v + "' is not an integer >= " + std::to_string(min_value));
  }
  return x;
}

double parse_double(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(x >= 0)) {
    invalid_argument(flag + ": '" + v + "' is not a number >= 0");
  }
  return x;
}

}  // namespace

const char* server_usage() {
  return "usage: basind [options]\n"
         "  --listen HOST:PORT          gRPC address (default 127.0.0.1:50051 without --tokens,\n"
         "                              0.0.0.0:50051 with; port 0 picks a free port)\n"
         "  --data-dir DIR              SQLite job database + blobs (default: temporary);\n"
         "                              files 0600, directories 0700\n"
         "  --allow-new-database        start with a new, empty job database although the data\n"
         "                              dir was used before (its basin.db is missing, empty or\n"
         "                              not SQLite; the old files are kept as *.lost-<time>)\n"
         "  --check                     verify --data-dir (database integrity and schema, blobs\n"
         "                              against their hashes, jobs' blobs) and exit: 0 clean,\n"
         "                              1 problems found, 2 no such directory\n"
         "  --tokens FILE               'token user' per line; enables bearer-token auth\n"
         "  --workers N                 concurrent analyses (default 1)\n"
         "  --shutdown-timeout SECONDS  on SIGTERM, wait this long for running jobs (default 30)\n"
         "  --metrics-listen HOST:PORT  Prometheus text endpoint (plain HTTP)\n"
         "  --tls-cert PEM --tls-key PEM [--tls-client-ca PEM]   TLS (mutual with a client CA)\n"
         "  --device auto|cpu|cuda      default device for requests that do not name one\n"
         "  --max-message-bytes N       largest gRPC message (default 64 MiB)\n"
         "  --max-queued-jobs N         per-user quota of queued jobs (default 100)\n"
         "  --max-stored-bytes N        per-user quota of blob bytes (default 16 GiB)\n"
         "  --max-attempts N            runs interrupted by crashes before a job fails (default 3)\n"
         "  --keep-finished-in-memory N finished jobs held in memory, most recent (default 256);\n"
         "                              older ones are read from the job database on demand\n"
         "  --max-hessian-params N --max-dense-dim N --max-memory-bytes N   engine limits\n"
         "  --max-layers N              layers per model (default 10000; ONNX: 4x as many nodes),\n"
         "                              refused with RESOURCE_EXHAUSTED before any other work\n"
         "  --port-file FILE            write the bound ports (tests, scripts)\n"
         "  --version                   print the version and exit\n";
}

ServerOptions parse_server_options(const std::vector<std::string>& args, bool* help) {
  ServerOptions o;
  *help = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      *help = true;
      return o;
    }
    if (a == "--check") {
      o.check = true;
      continue;
    }
    if (a == "--allow-new-database") {
      o.allow_new_database = true;
      continue;
    }
    if (i + 1 >= args.size()) invalid_argument(a + ": unknown flag or missing value");
    const std::string v = args[++i];
    if (a == "--listen") o.listen = v;
    else if (a == "--data-dir") o.data_dir = v;
    else if (a == "--tokens") o.tokens_file = v;
    else if (a == "--workers") o.workers = static_cast<int>(parse_int(a, v, 1));
    else if (a == "--shutdown-timeout") o.shutdown_timeout_s = parse_double(a, v);
    else if (a == "--metrics-listen") o.metrics_listen = v;
    else if (a == "--tls-cert") o.tls_cert = v;
    else if (a == "--tls-key") o.tls_key = v;
    else if (a == "--tls-client-ca") o.tls_client_ca = v;
    else if (a == "--port-file") o.port_file = v;
    else if (a == "--max-message-bytes") o.max_message_bytes = parse_int(a, v, 1 << 20);
    else if (a == "--max-queued-jobs") o.max_queued_jobs_per_user = parse_int(a, v, 0);
    else if (a == "--max-stored-bytes") o.max_stored_bytes_per_user = parse_int(a, v, 0);
    else if (a == "--max-attempts") o.max_attempts = static_cast<int>(parse_int(a, v, 1));
    else if (a == "--keep-finished-in-memory") o.keep_finished_in_memory = parse_int(a, v, 0);
    else if (a == "--max-hessian-params") o.limits.max_hessian_params = parse_int(a, v, 0);
    else if (a == "--max-dense-dim") o.limits.max_dense_dim = parse_int(a, v, 1);
    else if (a == "--max-layers") o.limits.max_layers = parse_int(a, v, 1);
    else if (a == "--max-memory-bytes") o.limits.max_memory_bytes = static_cast<uint64_t>(parse_int(a, v, 1));
    else if (a == "--device") {
      if (!device_from_name(v, &o.default_device)) {
        invalid_argument("--device: '" + v + "'; expected auto, cpu or cuda");
      }
    } else {
      invalid_argument(a + ": unknown flag (see --help)");
    }
  }
  if (o.check && o.data_dir.empty()) invalid_argument("--check: needs --data-dir DIR");
  if (o.listen.empty()) o.listen = o.tokens_file.empty() ? "127.0.0.1:50051" : "0.0.0.0:50051";
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    invalid_argument("--tls-cert and --tls-key: give both or neither");
  }
  if (!o.tls_client_ca.empty() && o.tls_cert.empty()) {
    invalid_argument("--tls-client-ca: needs --tls-cert and --tls-key");
  }
  // A chunk must fit in a message with room for framing.
  if (o.max_message_bytes < o.max_chunk_bytes + (64 << 10)) {
    invalid_argument("--max-message-bytes: must be at least 4 MiB + 64 KiB (one upload chunk)");
  }
  return o;
}

}  // namespace basin::server
