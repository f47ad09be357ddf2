// basind: the Basin gRPC server. See server_options.cpp for flags, issue 4 for the contract.
//
// Signals: the SIGTERM/SIGINT handler only writes a byte to a self-pipe; main() blocks reading
// it, so the shutdown sequence runs as ordinary code (no async-signal-safety puzzles):
// health NOT_SERVING -> refuse new work -> running jobs finish or are requeued within
// --shutdown-timeout -> the gRPC server stops. (Blocking the signals and using sigwait is not
// enough: libraries such as OpenBLAS start threads before main(), with the signals unblocked,
// and a second SIGTERM delivered to one of them would kill the process mid-drain.)
#include <fcntl.h>
#include <ftw.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "auth.hpp"
#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "data_dir.hpp"
#include "metrics.hpp"
#include "scheduler.hpp"
#include "server_options.hpp"
#include "service.hpp"
#include "shutdown_watchdog.hpp"
#include "store.hpp"

#ifndef BASIN_VERSION
#define BASIN_VERSION "0.0.0"
#endif

namespace {

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const unsigned char b = static_cast<unsigned char>(sig);
  const int saved = errno;
  (void)!write(g_signal_pipe[1], &b, 1);
  errno = saved;
}

using namespace basin;
using namespace basin::server;

std::string read_file(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) invalid_argument(flag + " " + path + ": cannot read the file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  return remove(path);
}

void write_port_file(const std::string& path, int grpc_port, int metrics_port) {
  // Written to a temporary name and renamed, so a reader never sees half a file.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << grpc_port << "\n" << metrics_port << "\n";
    if (!out) throw Error(ErrorCode::kInternal, "--port-file " + path + ": cannot write");
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    throw Error(ErrorCode::kInternal, "--port-file " + path + ": cannot rename");
  }
}

int run(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::printf("basind %s\n", BASIN_VERSION);
    return 0;
  }
  bool help = false;
  ServerOptions opt =
      parse_server_options(std::vector<std::string>(argv + 1, argv + argc), &help);
  if (help) {
    std::fputs(server_usage(), stdout);
    return 0;
  }

  // Every file basind creates (database, WAL, uploads, blobs) is owner-only; SQLite gives the
  // -wal/-shm files the database's mode.
  umask(077);
  if (opt.check) return check_data_dir(opt.data_dir, stdout);

  // Without --data-dir the state is ephemeral: a private temporary directory, removed at exit.
  std::string temp_dir;
  if (opt.data_dir.empty()) {
    char tmpl[] = "/tmp/basind-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) throw Error(ErrorCode::kInternal, "cannot create a temp dir");
    temp_dir = opt.data_dir = tmpl;
  }
  struct TempDirGuard {
    std::string path;
    ~TempDirGuard() {
      if (!path.empty()) (void)nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
  } temp_guard{temp_dir};

  Authenticator auth = opt.tokens_file.empty() ? Authenticator()
                                               : Authenticator::from_file(opt.tokens_file);
  warn_about_exposure(opt);
  guard_data_dir(opt.data_dir, opt.allow_new_database);
  tighten_data_dir_modes(opt.data_dir);  // before SQLite opens (and copies the mode to -wal)
  Store store(opt.data_dir);
  BasinService service(opt, &auth, &store);
  JobManager::Options jopt;
  jopt.workers = opt.workers;
  jopt.max_queued_jobs_per_user = opt.max_queued_jobs_per_user;
  jopt.max_attempts = opt.max_attempts;
  jopt.keep_finished_in_memory = opt.keep_finished_in_memory;
  JobManager jobs(&store, jopt,
                  [&service](const std::string& user, const v1::AnalyzeRequest& req,
                             const RunControl& control) { return service.run(user, req, control); });
  service.set_job_manager(&jobs);
  jobs.recover();
  jobs.start();

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (opt.tls_cert.empty()) {
    creds = grpc::InsecureServerCredentials();
  } else {
    grpc::SslServerCredentialsOptions ssl(
        opt.tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                  : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    if (!opt.tls_client_ca.empty()) ssl.pem_root_certs = read_file("--tls-client-ca", opt.tls_client_ca);
    ssl.pem_key_cert_pairs.push_back(
        {read_file("--tls-key", opt.tls_key), read_file("--tls-cert", opt.tls_cert)});
    creds = grpc::SslServerCredentials(ssl);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(opt.listen, creds, &grpc_port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(opt.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(opt.max_message_bytes));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || grpc_port == 0) {
    std::fprintf(stderr, "basind: cannot listen on %s\n", opt.listen.c_str());
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(true);
    health->SetServingStatus("basin.v1.Basin", true);
  }

  std::unique_ptr<MetricsServer> metrics;
  int metrics_port = 0;
  if (!opt.metrics_listen.empty()) {
    metrics = std::make_unique<MetricsServer>(
        [&] { return render_prometheus(jobs.metrics(), service.device_info()); });
    metrics_port = metrics->start(opt.metrics_listen);
  }
  if (auth.open() && opt.listen.rfind("127.", 0) != 0 && opt.listen.rfind("localhost:", 0) != 0 &&
      opt.listen.rfind("[::1]", 0) != 0) {
    std::fprintf(stderr, "basind: WARNING: no --tokens, yet listening on %s: anyone who can reach "
                         "this address can run jobs as 'anonymous'\n", opt.listen.c_str());
  }
  if (!opt.port_file.empty()) write_port_file(opt.port_file, grpc_port, metrics_port);
  std::fprintf(stderr, "basind: listening on %s (port %d)%s, data in %s, %d worker(s)%s\n",
               opt.listen.c_str(), grpc_port, opt.tls_cert.empty() ? "" : " with TLS",
               opt.data_dir.c_str(), opt.workers,
               auth.open() ? ", open (no --tokens)" : ", bearer-token auth");

  unsigned char sig = 0;
  while (read(g_signal_pipe[0], &sig, 1) != 1) {
    // EINTR: the handler interrupted this very read; the byte is in the pipe, read again.
  }
  std::fprintf(stderr, "basind: signal %d, shutting down (timeout %.1f s)\n", sig,
               opt.shutdown_timeout_s);
  if (health != nullptr) {
    health->SetServingStatus(false);
    health->SetServingStatus("basin.v1.Basin", false);
  }
  // --shutdown-timeout bounds the exit: drain, cancel, stop the gRPC server, and if anything
  // still hangs after the grace, the watchdog exits anyway (shutdown_watchdog.hpp).
  const std::chrono::milliseconds drain_timeout(static_cast<int64_t>(opt.shutdown_timeout_s * 1000));
  ShutdownWatchdog watchdog(jobs, drain_timeout + kShutdownGrace);
  if (!jobs.drain_and_stop(drain_timeout)) {
    exit_abandoning(jobs, "shutdown: running work did not stop within --shutdown-timeout " +
                              std::to_string(opt.shutdown_timeout_s) + " s and its cancel grace");
  }
  // In-flight calls (WatchJob streams, Analyze calls still validating) are cancelled after a
  // short grace period.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (metrics) metrics->stop();
  watchdog.disarm();
  std::fprintf(stderr, "basind: stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  basin::configure_blas_threads();  // before any thread: it restarts OpenBLAS's
  // Later signals (a second Ctrl-C while draining) land in the same pipe and are ignored.
  // SIGPIPE: a vanished metrics client must not kill the server.
  if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
    std::perror("basind: pipe2");
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGTERM, &sa, nullptr) != 0 || sigaction(SIGINT, &sa, nullptr) != 0) {
    std::perror("basind: sigaction");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  try {
    return run(argc, argv);
  } catch (const basin::Error& e) {
    std::fprintf(stderr, "basind: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "basind: fatal: %s\n", e.what());
    return 1;
  }
}
