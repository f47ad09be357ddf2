// Remote commands of the basin CLI (see remote.hpp). The CLI is thin: it encodes the same
// AnalysisRequest the local path builds, sends it, and decodes the proto result back into a
// basin::AnalysisResult so that printing is shared with --local.
#include "remote.hpp"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "basin/error.hpp"
#include "basin/npy.hpp"
#include "basin/v1/basin.grpc.pb.h"
#include "basin/wire/grpc_status.hpp"
#include "basin/wire/proto_convert.hpp"
#include "grpc/health/v1/health.grpc.pb.h"
#include "save_dir.hpp"

namespace basin::cli {
namespace {

struct Connection {
  std::string server;
  std::string token;
  std::string tls_ca, tls_cert, tls_key;
  double timeout_s = 0;  // 0 = no deadline
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::string read_text(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) invalid_argument(flag + " " + path + ": cannot read the file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Pulls the connection flags out of `args`; whatever is left is the command's own.
Connection take_connection_flags(std::vector<std::string>* args) {
  Connection c;
  c.server = env_or("BASIN_SERVER", "127.0.0.1:50051");
  c.token = env_or("BASIN_TOKEN", "");
  c.tls_ca = env_or("BASIN_TLS_CA", "");
  std::vector<std::string> rest;
  for (size_t i = 0; i < args->size(); ++i) {
    const std::string& a = (*args)[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args->size()) invalid_argument(a + ": missing value");
      return (*args)[++i];
    };
    if (a == "--server") c.server = value();
    else if (a == "--token") c.token = value();
    else if (a == "--tls-ca") c.tls_ca = value();
    else if (a == "--tls-cert") c.tls_cert = value();
    else if (a == "--tls-key") c.tls_key = value();
    else if (a == "--timeout") c.timeout_s = std::atof(value().c_str());
    else rest.push_back(a);
  }
  *args = rest;
  return c;
}

std::shared_ptr<grpc::Channel> open_channel(const Connection& c) {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (c.tls_ca.empty()) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read_text("--tls-ca", c.tls_ca);
    if (!c.tls_cert.empty()) {
      ssl.pem_cert_chain = read_text("--tls-cert", c.tls_cert);
      ssl.pem_private_key = read_text("--tls-key", c.tls_key);
    }
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  // Results can carry the whole Jacobian when asked (server limit: 1 GiB by default).
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  return grpc::CreateCustomChannel(c.server, creds, args);
}

std::unique_ptr<grpc::ClientContext> make_context(const Connection& c) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!c.token.empty()) ctx->AddMetadata("authorization", "Bearer " + c.token);
  if (c.timeout_s > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(c.timeout_s * 1000)));
  }
  return ctx;
}

const char* state_name(v1::JobState s) {
  switch (s) {
    case v1::JOB_STATE_QUEUED: return "queued";
    case v1::JOB_STATE_RUNNING: return "running";
    case v1::JOB_STATE_SUCCEEDED: return "succeeded";
    case v1::JOB_STATE_FAILED: return "failed";
    case v1::JOB_STATE_CANCELLED: return "cancelled";
    default: return "unknown";
  }
}

bool state_from_name(const std::string& s, v1::JobState* out) {
  for (v1::JobState st : {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED,
                          v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED}) {
    if (s == state_name(st)) {
      *out = st;
      return true;
    }
  }
  return false;
}

std::string format_time(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json job_json(const v1::Job& j) {
  nlohmann::json o = {{"id", j.id()},
                      {"user", j.user()},
                      {"state", state_name(j.state())},
                      {"priority", j.priority()},
                      {"stage", j.stage()},
                      {"fraction", j.fraction()},
                      {"attempts", j.attempts()},
                      {"created_unix_ms", j.created_unix_ms()},
                      {"started_unix_ms", j.started_unix_ms()},
                      {"finished_unix_ms", j.finished_unix_ms()}};
  if (j.state() == v1::JOB_STATE_QUEUED) o["queue_position"] = j.queue_position();
  if (!j.stage_detail().empty()) o["stage_detail"] = j.stage_detail();  // "lanczos 37/1201 (…)"
  if (j.has_error()) o["error"] = {{"code", j.error().code()}, {"message", j.error().message()}};
  return o;
}

std::string one_positional(const std::vector<std::string>& args, const std::string& command,
                           const std::string& what) {
  std::vector<std::string> pos;
  for (const std::string& a : args) {
    if (a.rfind("--", 0) != 0) pos.push_back(a);
  }
  if (pos.size() != 1) invalid_argument("basin " + command + ": expected exactly one " + what);
  return pos[0];
}

bool has_flag(const std::vector<std::string>& args, const std::string& flag) {
  for (const std::string& a : args) {
    if (a == flag) return true;
  }
  return false;
}

// "[##########----------]  50%  solve" on stderr, redrawn in place when it is a terminal.
void draw_progress(const v1::Job& j, bool tty) {
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(j.fraction() * kWidth + 0.5);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '-');
  std::ostringstream line;
  line << "[" << bar << "] " << static_cast<int>(j.fraction() * 100 + 0.5) << "%  "
       << state_name(j.state());
  if (j.state() == v1::JOB_STATE_QUEUED) {
    line << " (position " << j.queue_position() << ")";
  } else if (j.state() == v1::JOB_STATE_RUNNING) {
    line << " " << j.stage();
    if (!j.stage_detail().empty()) line << ": " << j.stage_detail();
  }
  std::cerr << (tty ? "\r" : "") << line.str() << (tty ? "\033[K" : "\n") << std::flush;
}

// The vectors of a result (--vectors) live on the server as .npy blobs: fetched with DownloadBlob
// and decoded into the arrays --local would have, so --save-dir writes the same files.
void download_vectors(v1::Basin::Stub& stub, const Connection& c, AnalysisResult& result) {
  for (VectorArray& v : result.vectors) {
    auto ctx = make_context(c);
    v1::DownloadBlobRequest req;
    req.set_blob_id(v.blob_id);
    auto reader = stub.DownloadBlob(ctx.get(), req);
    std::vector<uint8_t> bytes;
    v1::BlobChunk chunk;
    while (reader->Read(&chunk)) bytes.insert(bytes.end(), chunk.chunk().begin(), chunk.chunk().end());
    GRPC_CHECK(reader->Finish(), "DownloadBlob");
    const NpyArray a = parse_npy(bytes, v.name + " (blob " + v.blob_id + ")");
    if (a.shape != v.shape)
      throw Error(ErrorCode::kInternal, v.name + ": the blob holds shape " + a.shape_string() +
                                            ", not the shape the result names");
    v.data = a.to_double();
  }
}

// An .onnx --model goes as the file itself (uploaded once, content-addressed), which the server
// imports as --local does: the layer list cannot carry a graph. The inputs keep their shape
// (n, ...); the params are sent only when --params was given (else the file's initialisers).
void attach_onnx_model(v1::Basin::Stub& stub, const Connection& c, const AnalyzeOptions& o, v1::AnalyzeRequest* req) {
  if (!o.onnx) return;
  const std::string bytes = read_text("--model", o.model_path);
  constexpr size_t kChunk = 4u << 20;
  auto ctx = make_context(c);
  v1::UploadBlobResponse up;
  auto writer = stub.UploadBlob(ctx.get(), &up);
  size_t off = 0;
  do {  // at least one message, also for an empty file (the server names what is wrong with it)
    v1::UploadBlobRequest chunk;
    chunk.set_chunk(bytes.substr(off, kChunk));
    if (!writer->Write(chunk)) break;
    off += kChunk;
  } while (off < bytes.size());
  writer->WritesDone();
  GRPC_CHECK(writer->Finish(), "UploadBlob");
  req->set_onnx_blob_id(up.blob_id());  // the oneof: the layer list goes
  req->clear_param_names();
  v1::Tensor* x = req->mutable_inputs()->mutable_tensor();
  x->clear_shape();
  for (int64_t d : o.inputs_shape) x->add_shape(d);
  if (o.params_path.empty()) req->clear_params();
  for (const std::string& name : o.constants) req->add_constant_names(name);  // --constants
}

int cmd_submit(const Connection& c, std::vector<std::string> args) {
  // The analyze flag parser needs to know where to run; the connection says it.
  args.push_back("--server");
  args.push_back(c.server);
  AnalyzeOptions o = parse_analyze_args(args, /*allow_unknown=*/true);
  int priority = 0;
  for (size_t i = 0; i < o.rest.size(); ++i) {
    if (o.rest[i] == "--priority" && i + 1 < o.rest.size()) {
      priority = std::atoi(o.rest[++i].c_str());
    } else {
      invalid_argument("basin submit: unknown flag '" + o.rest[i] + "'");
    }
  }
  load_request_files(o);
  v1::SubmitJobRequest req;
  wire::request_to_proto(o.request, req.mutable_request(), o.checkpoints);
  req.set_priority(priority);
  v1::SubmitJobResponse resp;
  auto stub = v1::Basin::NewStub(open_channel(c));
  attach_onnx_model(*stub, c, o, req.mutable_request());
  auto ctx = make_context(c);
  GRPC_CHECK(stub->SubmitJob(ctx.get(), req, &resp), "SubmitJob");
  if (o.json) {
    std::cout << job_json(resp.job()).dump() << std::endl;
  } else {
    std::cout << resp.job_id() << std::endl;
  }
  return 0;
}

int cmd_watch(const Connection& c, const std::vector<std::string>& args) {
  v1::WatchJobRequest req;
  req.set_job_id(one_positional(args, "watch", "job id"));
  auto stub = v1::Basin::NewStub(open_channel(c));
  auto ctx = make_context(c);
  auto reader = stub->WatchJob(ctx.get(), req);
  const bool tty = isatty(2) != 0;
  v1::Job job;
  v1::Job last;
  while (reader->Read(&job)) {
    draw_progress(job, tty);
    last = job;
  }
  if (tty) std::cerr << "\n";
  GRPC_CHECK(reader->Finish(), "WatchJob");
  if (last.state() == v1::JOB_STATE_SUCCEEDED) return 0;
  std::cerr << "basin: job " << last.id() << " " << state_name(last.state());
  if (last.has_error()) std::cerr << ": " << last.error().code() << ": " << last.error().message();
  std::cerr << "\n";
  return 1;
}

int cmd_jobs(const Connection& c, const std::vector<std::string>& args) {
  v1::ListJobsRequest req;
  bool json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--json") {
      json = true;
    } else if (args[i] == "--state" && i + 1 < args.size()) {
      std::istringstream ss(args[++i]);
      std::string s;
      while (std::getline(ss, s, ',')) {
        v1::JobState st;
        if (!state_from_name(s, &st)) {
          invalid_argument("--state: '" + s + "'; expected queued, running, succeeded, failed or "
                           "cancelled");
        }
        req.add_states(st);
      }
    } else if (args[i] == "--limit" && i + 1 < args.size()) {
      req.set_limit(std::atoi(args[++i].c_str()));
    } else {
      invalid_argument("basin jobs: unknown argument '" + args[i] + "'");
    }
  }
  v1::ListJobsResponse resp;
  auto stub = v1::Basin::NewStub(open_channel(c));
  auto ctx = make_context(c);
  GRPC_CHECK(stub->ListJobs(ctx.get(), req, &resp), "ListJobs");
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const v1::Job& j : resp.jobs()) arr.push_back(job_json(j));
    std::cout << arr.dump() << std::endl;
    return 0;
  }
  std::printf("%-28s %-10s %-9s %5s  %-20s  %s\n", "ID", "STATE", "STAGE", "PCT", "CREATED", "DETAIL");
  for (const v1::Job& j : resp.jobs()) {
    std::printf("%-28s %-10s %-9s %4d%%  %-20s  %s\n", j.id().c_str(), state_name(j.state()),
                j.stage().c_str(), static_cast<int>(j.fraction() * 100 + 0.5),
                format_time(j.created_unix_ms()).c_str(), j.stage_detail().c_str());
  }
  return 0;
}

int cmd_cancel(const Connection& c, const std::vector<std::string>& args) {
  v1::CancelJobRequest req;
  req.set_job_id(one_positional(args, "cancel", "job id"));
  v1::Job job;
  auto stub = v1::Basin::NewStub(open_channel(c));
  auto ctx = make_context(c);
  GRPC_CHECK(stub->CancelJob(ctx.get(), req, &job), "CancelJob");
  std::cout << job.id() << " " << state_name(job.state())
            << (job.state() == v1::JOB_STATE_RUNNING ? " (cancelling at the next step)" : "")
            << std::endl;
  return 0;
}

int cmd_result(const Connection& c, std::vector<std::string> args) {
  std::string save_dir;
  for (size_t i = 0; i < args.size(); ++i)
    if (args[i] == "--save-dir") {
      if (i + 1 >= args.size()) invalid_argument("--save-dir: missing value");
      save_dir = args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      break;
    }
  v1::GetJobRequest req;
  req.set_job_id(one_positional(args, "result", "job id"));
  req.set_include_result(true);
  const bool pretty = has_flag(args, "--pretty");
  if (!save_dir.empty()) prepare_save_dir(save_dir);
  v1::Job job;
  auto stub = v1::Basin::NewStub(open_channel(c));
  auto ctx = make_context(c);
  GRPC_CHECK(stub->GetJob(ctx.get(), req, &job), "GetJob");
  if (job.state() != v1::JOB_STATE_SUCCEEDED) {
    std::string msg = "job " + job.id() + " is " + state_name(job.state());
    if (job.has_error()) msg += ": " + job.error().code() + ": " + job.error().message();
    throw Error(job.state() == v1::JOB_STATE_FAILED
                    ? wire::from_grpc_code(static_cast<grpc::StatusCode>(job.error().grpc_code()))
                    : ErrorCode::kUnavailable,
                msg);
  }
  // One JSON object per checkpoint (one line each unless --pretty): the --local contract.
  if (!save_dir.empty() && job.result().results_size() != 1)
    invalid_argument("--save-dir: job " + job.id() + " has " + std::to_string(job.result().results_size()) +
                     " results (checkpoints); it writes the files of one");
  for (const v1::AnalysisResult& r : job.result().results()) {
    AnalysisResult result = wire::result_from_proto(r);
    // A job's queue time is submission to start; its total, submission to finish (server clock).
    result.provenance.queue_ms = double(job.started_unix_ms() - job.created_unix_ms());
    result.provenance.total_ms = double(job.finished_unix_ms() - job.created_unix_ms());
    const std::string json = result_to_json(result, pretty ? 2 : -1);
    if (!save_dir.empty()) {
      download_vectors(*stub, c, result);
      write_save_dir(save_dir, result, json);
    }
    std::cout << json << std::endl;
  }
  return 0;
}

// "N MiB free of M MiB" (a GPU's), "N MiB available of M MiB (host RAM)" for the cpu backend,
// or "not reported" by a server that reports none.
std::string memory_line(const v1::GetServerInfoResponse& info) {
  if (info.device_memory_total_bytes() <= 0) return "not reported by the server";
  std::ostringstream os;
  const bool host = info.backend() == "cpu";
  os << info.device_memory_free_bytes() / (1 << 20) << (host ? " MiB available of " : " MiB free of ")
     << info.device_memory_total_bytes() / (1 << 20) << " MiB" << (host ? " (host RAM)" : "");
  return os.str();
}

int cmd_info(const Connection& c, const std::vector<std::string>& args) {
  v1::GetServerInfoResponse info;
  auto stub = v1::Basin::NewStub(open_channel(c));
  auto ctx = make_context(c);
  GRPC_CHECK(stub->GetServerInfo(ctx.get(), {}, &info), "GetServerInfo");
  const auto& l = info.limits();
  if (has_flag(args, "--json")) {
    nlohmann::json o = {
        {"version", info.version()},
        {"backend", info.backend()},
        {"device", info.device_name()},
        {"device_memory_total_bytes", info.device_memory_total_bytes()},
        {"device_memory_free_bytes", info.device_memory_free_bytes()},
        {"queue_length", info.queue_length()},
        {"workers", info.workers()},
        {"user", info.user()},
        {"cuda_available", info.cuda_available()},
        {"limits",
         {{"max_message_bytes", l.max_message_bytes()},
          {"max_chunk_bytes", l.max_chunk_bytes()},
          {"max_queued_jobs_per_user", l.max_queued_jobs_per_user()},
          {"max_stored_bytes_per_user", l.max_stored_bytes_per_user()},
          {"max_hessian_params", l.max_hessian_params()},
          {"max_dense_dim", l.max_dense_dim()},
          {"max_memory_bytes", l.max_memory_bytes()},
          {"max_jacobian_bytes", l.max_jacobian_bytes()},
          {"max_layers", l.max_layers()}}}};
    std::cout << o.dump() << std::endl;
    return 0;
  }
  std::cout << "server    " << c.server << " (basind " << info.version() << ")\n"
            << "you are   " << info.user() << "\n"
            << "backend   " << info.backend() << ": " << info.device_name() << "\n"
            << "memory    " << memory_line(info) << "\n"
            << "cuda      "
            << (info.cuda_available() ? "available" : "unavailable (" +
                                                          info.cuda_unavailable_reason() + ")")
            << "\n"
            << "queue     " << info.queue_length() << " job(s), " << info.workers()
            << " worker(s)\n"
            << "limits    hessian <= " << l.max_hessian_params() << " params, dense <= "
            << l.max_dense_dim() << ", " << l.max_layers() << " layers, " << l.max_queued_jobs_per_user()
            << " queued jobs/user, " << l.max_stored_bytes_per_user() / (1 << 20)
            << " MiB stored/user\n";
  return 0;
}

// Exit 0 only when the server answers SERVING: what a container health check needs.
int cmd_health(Connection c, const std::vector<std::string>& args) {
  if (c.timeout_s <= 0) c.timeout_s = 5;
  grpc::health::v1::HealthCheckRequest req;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--service" && i + 1 < args.size()) req.set_service(args[++i]);
  }
  grpc::health::v1::HealthCheckResponse resp;
  auto stub = grpc::health::v1::Health::NewStub(open_channel(c));
  auto ctx = make_context(c);
  const grpc::Status st = stub->Check(ctx.get(), req, &resp);
  if (!st.ok()) {
    std::cout << "UNREACHABLE (" << wire::grpc_code_name(st.error_code()) << ": "
              << st.error_message() << ")" << std::endl;
    return 1;
  }
  std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status())
            << std::endl;
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

}  // namespace

std::string remote_usage() {
  return "remote commands (all take --server HOST:PORT [$BASIN_SERVER], --token T [$BASIN_TOKEN],\n"
         "                 --tls-ca PEM [--tls-cert PEM --tls-key PEM], --timeout SECONDS):\n"
         "  basin analyze --server HOST:PORT ...        same flags and JSON as --local\n"
         "  basin submit ... [--priority N] [--json]     prints the job id\n"
         "  basin watch ID                               progress bar; exit 0 when it succeeded\n"
         "  basin jobs [--state queued,running,...] [--limit N] [--json]\n"
         "  basin cancel ID\n"
         "  basin result ID [--json] [--pretty] [--save-dir DIR]   the --local JSON, one line per checkpoint;\n"
         "                                               --save-dir writes result.json and the --vectors files\n"
         "  basin info [--json]\n"
         "  basin health [--service NAME]               exit 0 only when SERVING\n";
}

int remote_analyze(AnalyzeOptions& o) {
  load_request_files(o);
  Connection c;
  c.server = o.server;
  c.token = o.token;
  // The shared analyze parser took the connection flags (TLS falls back to $BASIN_TLS_CA).
  c.tls_ca = o.tls_ca;
  c.tls_cert = o.tls_cert;
  c.tls_key = o.tls_key;
  c.timeout_s = o.timeout_s;
  v1::AnalyzeRequest req;
  wire::request_to_proto(o.request, &req, o.checkpoints);
  v1::AnalyzeResponse resp;
  auto stub = v1::Basin::NewStub(open_channel(c));
  attach_onnx_model(*stub, c, o, &req);
  auto ctx = make_context(c);
  GRPC_CHECK(stub->Analyze(ctx.get(), req, &resp), "Analyze");
  const size_t expected = std::max<size_t>(1, o.checkpoints.size());
  if (static_cast<size_t>(resp.results_size()) != expected) {
    throw Error(ErrorCode::kInternal, "Analyze: expected " + std::to_string(expected) + " results, got " +
                                          std::to_string(resp.results_size()));
  }
  std::vector<AnalysisResult> results;
  for (const v1::AnalysisResult& r : resp.results()) {
    results.push_back(wire::result_from_proto(r));
    results.back().provenance.queue_ms = resp.queue_ms();
    results.back().provenance.total_ms = resp.total_ms();
  }
  if (!o.save_dir.empty())
    for (AnalysisResult& r : results) download_vectors(*stub, c, r);
  print_results(o, results);
  return 0;
}

int run_remote_command(const std::string& command, const std::vector<std::string>& args_in) {
  std::vector<std::string> args = args_in;
  if (command == "help" || has_flag(args, "--help")) {
    std::cout << remote_usage();
    return 0;
  }
  const Connection c = take_connection_flags(&args);
  if (command == "submit") return cmd_submit(c, args);
  if (command == "watch") return cmd_watch(c, args);
  if (command == "jobs") return cmd_jobs(c, args);
  if (command == "cancel") return cmd_cancel(c, args);
  if (command == "result") return cmd_result(c, args);
  if (command == "info") return cmd_info(c, args);
  if (command == "health") return cmd_health(c, args);
  invalid_argument("unknown command '" + command + "'\n" + usage() + remote_usage());
}

}  // namespace basin::cli
