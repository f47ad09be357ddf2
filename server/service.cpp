#include "service.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <grpcpp/support/proto_buffer_reader.h>

#include "basin/echo.hpp"
#include "basin/error.hpp"
#include "basin/npy.hpp"
#ifdef BASIN_HAVE_ONNX
#include "basin/onnx_import.hpp"
#endif
#include "basin/wire/grpc_status.hpp"
#include "basin/wire/proto_convert.hpp"
#include "disk_space.hpp"
#include "host_memory.hpp"
#include "sha256.hpp"

#ifndef BASIN_VERSION
#define BASIN_VERSION "0.0.0"
#endif

namespace basin::server {
namespace {

// Runs a handler body; any exception becomes a status (the server never dies on a request).
// Every status leaves through wire::client_status: bounded, no source locations, internals
// logged with a request id. A full disk names the data dir and its free space.
template <class F>
grpc::Status guarded(const Store* store, F&& body) {
  try {
    return wire::client_status(body());
  } catch (const StorageFull& e) {
    return wire::client_status(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                            storage_full_message(store->data_dir())),
                               e.what());
  } catch (...) {
    return wire::status_from_exception(std::current_exception());
  }
}

grpc::Status unavailable_if_stopping(const JobManager* jobs) {
  if (jobs == nullptr || !jobs->accepting()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is shutting down; not accepting new work");
  }
  return grpc::Status::OK;
}

// Decoding on a handler thread stops once the client has cancelled or its deadline passed (the
// worker-side twin is the job's cancel flag).
wire::StopCheck client_stop_check(grpc::ServerContext* ctx) {
  return [ctx] {
    if (ctx->IsCancelled()) throw Error(ErrorCode::kCancelled, "the client cancelled the call");
    if (std::chrono::system_clock::now() >= ctx->deadline()) {
      throw Error(ErrorCode::kDeadlineExceeded,
                  "the client's deadline passed while the request was being validated");
    }
  };
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// An upload in progress: a private temporary file that is unlinked unless committed, so a
// disconnect, a bad hash or a quota failure leaves nothing behind.
class TempFile {
 public:
  explicit TempFile(const std::string& dir) : path_(dir + "/upload-XXXXXX") {
    fd_ = mkstemp(path_.data());
    if (fd_ < 0) {
      throw Error(ErrorCode::kInternal, "cannot create an upload file in " + dir + ": " +
                                            strerror(errno));
    }
  }
  ~TempFile() {
    if (fd_ >= 0) (void)close(fd_);
    if (!released_) (void)unlink(path_.c_str());
  }
  void write_all(const char* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        const std::string why = std::string("cannot write the upload ") + path_ + ": " + strerror(errno);
        if (errno == ENOSPC || errno == EDQUOT) throw StorageFull(why);
        throw Error(ErrorCode::kInternal, why);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  void sync_and_close() {
    if (fsync(fd_) != 0 || close(fd_) != 0) {
      fd_ = -1;
      const std::string why = std::string("cannot flush the upload ") + path_ + ": " + strerror(errno);
      if (errno == ENOSPC || errno == EDQUOT) throw StorageFull(why);
      throw Error(ErrorCode::kInternal, why);
    }
    fd_ = -1;
  }
  const std::string& path() const { return path_; }
  void release() { released_ = true; }  // the file was renamed (or removed) by the store

 private:
  std::string path_;
  int fd_ = -1;
  bool released_ = false;
};

}  // namespace

std::string parse_blob_id(const std::string& id, const std::string& field) {
  std::string hex = id.rfind("sha256:", 0) == 0 ? id.substr(7) : id;
  bool ok = hex.size() == 64;
  for (char c : hex) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  if (!ok) {
    invalid_argument(field + ": '" + echo(id) + "' is not a blob id; expected sha256:<64 lowercase hex "
                     "digits> as returned by UploadBlob");
  }
  return hex;
}

// Malformed protobuf. gRPC's own unary handler parses the request before any of our code runs
// and answers a parse failure with INTERNAL and an empty message. Instead, each unary method is
// re-registered (Service::MarkMethodStreamed, the sync API's hook behind the generated
// WithStreamedUnaryMethod_*) as a handler of raw bytes that parses them itself: a parse
// failure is INVALID_ARGUMENT naming the message type, and valid bytes go to the typed handler
// above unchanged. Cost: the same one parse and one serialisation gRPC would do, plus one more
// completion-queue round trip per call (the request is read by an explicit Read instead of
// arriving with the call) -- microseconds against a millisecond Analyze.
namespace {
// The position of rpc `name` in service basin.v1.Basin (the index the sync API's Service uses).
int method_index(const char* name) {
  const google::protobuf::ServiceDescriptor* service =
      v1::AnalyzeRequest::descriptor()->file()->FindServiceByName("Basin");
  const google::protobuf::MethodDescriptor* m = service ? service->FindMethodByName(name) : nullptr;
  if (m == nullptr) throw std::logic_error(std::string("basin.v1.Basin has no rpc ") + name);
  return m->index();
}
}  // namespace

template <class Request, class Response>
void BasinService::parse_own_requests(
    int method_index,
    grpc::Status (BasinService::*handler)(grpc::ServerContext*, const Request*, Response*)) {
  using Streamer = grpc::ServerUnaryStreamer<grpc::ByteBuffer, grpc::ByteBuffer>;
  MarkMethodStreamed(
      method_index,
      new grpc::internal::StreamedUnaryHandler<grpc::ByteBuffer, grpc::ByteBuffer>(
          [this, handler](grpc::ServerContext* ctx, Streamer* stream) {
            grpc::ByteBuffer in;
            if (!stream->Read(&in)) {
              return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "request: no message received");
            }
            Request request;
            const size_t size = in.Length();
            bool parsed = false;
            {
              grpc::ProtoBufferReader reader(&in);
              parsed = reader.status().ok() && request.ParseFromZeroCopyStream(&reader);
            }
            if (!parsed) {
              return grpc::Status(
                  grpc::StatusCode::INVALID_ARGUMENT,
                  "request: " + std::to_string(size) + " bytes that are not a valid " +
                      Request::descriptor()->full_name() +
                      " (protobuf parsing failed: a truncated or corrupted message, or one "
                      "built from a different .proto)");
            }
            Response response;
            grpc::Status st = (this->*handler)(ctx, &request, &response);
            if (!st.ok()) return st;
            grpc::ByteBuffer out;
            bool own = false;
            st = grpc::SerializationTraits<Response>::Serialize(response, &out, &own);
            if (!st.ok()) return st;
            if (static_cast<int64_t>(out.Length()) > options_.max_message_bytes) {
              return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                  "response: " + std::to_string(out.Length()) +
                                      " bytes, over the server's --max-message-bytes " +
                                      std::to_string(options_.max_message_bytes) +
                                      "; ask for less (omit_outputs, no return_jacobian, fewer "
                                      "checkpoints per request)");
            }
            if (!stream->Write(out)) {
              return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
            }
            return grpc::Status::OK;
          }));
}

BasinService::BasinService(const ServerOptions& options, const Authenticator* auth, Store* store)
    : options_(options), auth_(auth), store_(store) {
  // By name: a method's index is its position in service Basin of basin.proto, looked up in the
  // service's descriptor so that adding or reordering rpcs cannot route bytes to the wrong
  // handler. (The streams UploadBlob, DownloadBlob and WatchJob are left to gRPC: its stream
  // readers report a malformed message as a failed Read.)
  parse_own_requests(method_index("Analyze"), &BasinService::Analyze);
  parse_own_requests(method_index("SubmitJob"), &BasinService::SubmitJob);
  parse_own_requests(method_index("GetJob"), &BasinService::GetJob);
  parse_own_requests(method_index("CancelJob"), &BasinService::CancelJob);
  parse_own_requests(method_index("ListJobs"), &BasinService::ListJobs);
  parse_own_requests(method_index("GetServerInfo"), &BasinService::GetServerInfo);
}

std::vector<uint8_t> BasinService::read_blob(const std::string& user, const std::string& blob_id,
                                             const std::string& field) {
  const std::string hex = parse_blob_id(blob_id, field);
  // A well-formed id naming no blob of the caller's is NOT_FOUND (the request refers to an
  // entity that does not exist for this caller, and would be fine once it is uploaded); a
  // malformed one is INVALID_ARGUMENT (parse_blob_id). Another user's blob reads exactly like
  // a missing one: ids are not secrets, so ownership, not knowledge of the hash, grants access.
  if (!store_->user_owns_blob(user, hex)) {
    throw Error(ErrorCode::kNotFound,
                field + ": unknown blob '" + echo(blob_id) +
                    "'; expected the id of a blob you uploaded with UploadBlob");
  }
  std::ifstream in(store_->blob_path(hex), std::ios::binary | std::ios::ate);
  if (!in) throw Error(ErrorCode::kInternal, field + ": blob " + hex + " is missing from disk");
  const std::streamsize size = in.tellg();
  in.seekg(0);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    throw Error(ErrorCode::kInternal, field + ": cannot read blob " + hex);
  }
  return bytes;
}

v1::AnalyzeResponse BasinService::run(const std::string& user, const v1::AnalyzeRequest& request,
                                      const RunControl& control) {
  const auto t0 = std::chrono::steady_clock::now();
  wire::BlobReader reader = [&](const std::string& id, const std::string& field) {
    return read_blob(user, id, field);
  };
  // The job's cancel flag (set by CancelJob, a gone or late Analyze client, or a shutdown)
  // stops decoding as it stops the engine.
  const wire::StopCheck stop = [&control] {
    if (control.cancel != nullptr && control.cancel->load(std::memory_order_relaxed))
      throw Error(ErrorCode::kCancelled, "analysis cancelled");
  };
  wire::DecodedRequest decoded =
      wire::decode_request(request, reader, options_.default_device, options_.limits, stop);
  v1::AnalyzeResponse response;
  // All checkpoints in one engine run: the data go to the device once and small eigen-problems
  // are solved in batches.
  std::vector<AnalysisResult> results = analyze_checkpoints(decoded.base, decoded.checkpoints, control);
  // --vectors: each array becomes a .npy blob of the caller's; the result carries its id.
  for (AnalysisResult& result : results)
    for (VectorArray& v : result.vectors) {
      v.blob_id = store_blob(user, serialize_npy(make_npy_f64(v.shape, v.data)));
      v.data = {};
    }
  for (const AnalysisResult& result : results) wire::result_to_proto(result, response.add_results());
  response.set_total_ms(ms_since(t0));
  return response;
}

std::string BasinService::store_blob(const std::string& user, const std::vector<uint8_t>& bytes) {
  TempFile tmp(store_->tmp_dir());
  Sha256 hash;
  hash.update(bytes.data(), bytes.size());
  tmp.write_all(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  tmp.sync_and_close();
  const std::string hex = hash.hex_digest();
  bool newly_owned = false;
  {
    // Results are stored even past the upload quota: the work is done, and refusing to keep
    // its vectors would lose it. They count towards the quota of later uploads.
    std::lock_guard<std::mutex> lock(upload_mu_);
    (void)store_->commit_blob(user, hex, static_cast<int64_t>(bytes.size()), tmp.path(), &newly_owned);
    tmp.release();
  }
  return "sha256:" + hex;
}

BackendInfo BasinService::device_info() {
  std::lock_guard<std::mutex> lock(device_mu_);
  try {
    if (!info_backend_) {
      std::string why;
      const bool want_cuda = options_.default_device != Device::kCpu;
      if (want_cuda && cuda_available(&why)) {
        info_backend_ = make_cuda_backend<double>();
      } else {
        info_backend_ = make_cpu_backend<double>();
      }
    }
    return info_backend_->info();
  } catch (const std::exception& e) {
    BackendInfo info;
    info.name = "unknown";
    info.device_name = std::string("device query failed: ") + e.what();
    return info;
  }
}

grpc::Status BasinService::Analyze(grpc::ServerContext* ctx, const v1::AnalyzeRequest* req,
                                   v1::AnalyzeResponse* resp) {
  return guarded(store_, [&] {
    const auto t0 = std::chrono::steady_clock::now();
    std::string user;
    grpc::Status st = auth_->authenticate(*ctx, &user);
    if (!st.ok()) return st;
    st = unavailable_if_stopping(jobs_);
    if (!st.ok()) return st;
    // Validate on the handler thread: a bad request fails at once, without queueing. Decoding
    // is linear and bounded by the limits, and stops when the client goes or its deadline passes.
    wire::BlobReader reader = [&](const std::string& id, const std::string& field) {
      return read_blob(user, id, field);
    };
    (void)wire::decode_request(*req, reader, options_.default_device, options_.limits,
                               client_stop_check(ctx));
    const std::string id = jobs_->submit(user, *req, /*priority=*/0, /*ephemeral=*/true);
    *resp = jobs_->wait_ephemeral(
        id, [ctx] { return ctx->IsCancelled(); }, ctx->deadline());
    const double compute_ms = resp->total_ms();
    resp->set_total_ms(ms_since(t0));
    resp->set_queue_ms(std::max(0.0, resp->total_ms() - compute_ms));
    return grpc::Status::OK;
  });
}

grpc::Status BasinService::UploadBlob(grpc::ServerContext* ctx,
                                      grpc::ServerReader<v1::UploadBlobRequest>* reader,
                                      v1::UploadBlobResponse* resp) {
  return guarded(store_, [&] {
    std::string user;
    grpc::Status st = auth_->authenticate(*ctx, &user);
    if (!st.ok()) return st;
    st = unavailable_if_stopping(jobs_);
    if (!st.ok()) return st;

    const int64_t used = store_->user_blob_bytes(user);
    TempFile tmp(store_->tmp_dir());
    Sha256 hash;
    int64_t total = 0;
    std::string expected;
    v1::UploadBlobRequest msg;
    int64_t index = 0;
    while (reader->Read(&msg)) {
      if (!msg.expected_id().empty()) {
        if (index != 0) {
          invalid_argument("expected_id: only allowed in the first message of an upload");
        }
        expected = parse_blob_id(msg.expected_id(), "expected_id");
      }
      const int64_t n = static_cast<int64_t>(msg.chunk().size());
      if (n > options_.max_chunk_bytes) {
        invalid_argument("chunk: message " + std::to_string(index) + " carries " +
                         std::to_string(n) + " bytes; expected at most " +
                         std::to_string(options_.max_chunk_bytes) + " bytes per message");
      }
      total += n;
      // Conservative: content the user already owns would not count, but we only know the
      // hash at the end. Refusing early keeps a runaway upload from filling the disk.
      if (used + total > options_.max_stored_bytes_per_user) {
        throw Error(ErrorCode::kResourceExhausted,
                    "quota max_stored_bytes_per_user exceeded: user '" + user + "' stores " +
                        std::to_string(used) + " bytes and this upload reached " +
                        std::to_string(total) + " (limit " +
                        std::to_string(options_.max_stored_bytes_per_user) + ")");
      }
      hash.update(msg.chunk().data(), msg.chunk().size());
      tmp.write_all(msg.chunk().data(), msg.chunk().size());
      ++index;
    }
    // Read() returns false both at a clean end of stream and when the client went away; only
    // the former may commit anything.
    if (ctx->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "upload cancelled by the client");
    }
    tmp.sync_and_close();
    const std::string hex = hash.hex_digest();
    if (!expected.empty() && expected != hex) {
      invalid_argument("expected_id: the content hashes to sha256:" + hex + ", not sha256:" +
                       expected);
    }
    bool newly_owned = false;
    {
      std::lock_guard<std::mutex> lock(upload_mu_);
      // Re-checked under the commit lock: concurrent uploads by one user each passed the
      // streaming check against the same starting total. Content the user already owns is free.
      const int64_t now_used = store_->user_blob_bytes(user);
      if (!store_->user_owns_blob(user, hex) &&
          now_used + total > options_.max_stored_bytes_per_user) {
        throw Error(ErrorCode::kResourceExhausted,
                    "quota max_stored_bytes_per_user exceeded: user '" + user + "' stores " +
                        std::to_string(now_used) + " bytes, this blob has " +
                        std::to_string(total) + " (limit " +
                        std::to_string(options_.max_stored_bytes_per_user) + ")");
      }
      (void)store_->commit_blob(user, hex, total, tmp.path(), &newly_owned);
      tmp.release();
    }
    resp->set_blob_id("sha256:" + hex);
    resp->set_size(total);
    // Storage is shared across users, but only the caller's own history is reported: telling
    // Bob that Alice already uploaded these exact bytes would leak what Alice works on.
    resp->set_deduplicated(!newly_owned);
    return grpc::Status::OK;
  });
}

grpc::Status BasinService::SubmitJob(grpc::ServerContext* ctx, const v1::SubmitJobRequest* req,
                                     v1::SubmitJobResponse* resp) {
  return guarded(store_, [&] {
    std::string user;
    grpc::Status st = auth_->authenticate(*ctx, &user);
    if (!st.ok()) return st;
    st = unavailable_if_stopping(jobs_);
    if (!st.ok()) return st;
    wire::BlobReader reader = [&](const std::string& id, const std::string& field) {
      return read_blob(user, id, field);
    };
    // The prefix makes field names match the SubmitJobRequest message the client built.
    try {
      (void)wire::decode_request(req->request(), reader, options_.default_device,
                                 options_.limits, client_stop_check(ctx));
    } catch (const Error& e) {
      throw Error(e.code(), std::string("request.") + e.what());
    }
    const std::string id = jobs_->submit(user, req->request(), req->priority(), false);
    resp->set_job_id(id);
    if (!jobs_->get(user, id, false, resp->mutable_job())) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "job " + id + " vanished after submit");
    }
    return grpc::Status::OK;
  });
}

grpc::Status BasinService::GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req,
                                  v1::Job* resp) {
  return guarded(store_, [&] {
    std::string user;
    grpc::Status st = auth_->authenticate(*ctx, &user);
    if (!st.ok()) return st;
    if (!jobs_->get(user, req->job_id(), req->include_result(), resp)) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job_id: no job '" + echo(req->job_id()) + "'");
    }
    return grpc::Status::OK;
  });
}

grpc::Status BasinService::WatchJob(grpc::ServerContext* ctx, const v1::WatchJobRequest* req,
                                    grpc::ServerWriter<v1::Job>* writer) {
  return guarded(store_, [&] {
    std::string user;
    grpc::Status st = auth_->authenticate(*ctx, &user);
    if (!st.ok()) return st;
    v1::Job last;
    if (!jobs_->get(user, req->job_id(), false, &last)) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job_id: no job '" + echo(req->job_id()) + "'");
    }
    if (!writer->Write(last)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
    while (last.state() == v1::JOB_STATE_QUEUED || last.state() == v1::JOB_STATE_RUNNING) {
      v1::Job now;
      const bool known = jobs_->wait_for_change(
          user, req->job_id(), last, [ctx] { return ctx->IsCancelled(); }, &now);
      if (!known) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "job_id: no job '" + echo(req->job_id()) + "'");
      }
      if (ctx->IsCancelled()) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
      const bool changed = now.state() != last.state() ||
                           now.queue_position() != last.queue_position() ||
                           now.stage() != last.stage() || now.fraction() != last.fraction();
      if (!changed) continue;
      if (!writer->Write(now)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
      last = std::move(now);
    }
    return grpc::Status::OK;
  });
}

grpc::Status BasinService::CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req,
                                     v1::Job* resp) {
  return guarded(store_, [&] {
    std::string user;
    grpc::Status st = auth_->authenticate(*ctx, &user);
    if (!st.ok()) return st;
    if (!jobs_->cancel(user, req->job_id(), resp)) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "job_id: no job '" + echo(req->job_id()) + "'");
    }
    return grpc::Status::OK;
  });
}

grpc::Status BasinService::ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* req,
                                    v1::ListJobsResponse* resp) {
  return guarded(store_, [&] {
    std::string user;
    grpc::Status st = auth_->authenticate(*ctx, &user);
    if (!st.ok()) return st;
    std::vector<int> states(req->states().begin(), req->states().end());
    for (v1::Job& j : jobs_->list(user, states, req->limit())) *resp->add_jobs() = std::move(j);
    return grpc::Status::OK;
  });
}

grpc::Status BasinService::GetServerInfo(grpc::ServerContext* ctx,
                                         const v1::GetServerInfoRequest* /*req*/,
                                         v1::GetServerInfoResponse* resp) {
  return guarded(store_, [&] {
    std::string user;
    grpc::Status st = auth_->authenticate(*ctx, &user);
    if (!st.ok()) return st;
    const BackendInfo info = device_info();
    resp->set_version(BASIN_VERSION);
    resp->set_backend(info.name);
    resp->set_device_name(info.device_name);
    if (info.memory_total_bytes == 0 && info.name == "cpu") {
      // The CPU backend's memory is the host's (it reports none itself, so the engine's device
      // memory plan leaves it alone).
      const HostMemory host = host_memory();
      resp->set_device_memory_total_bytes(static_cast<int64_t>(host.total_bytes));
      resp->set_device_memory_free_bytes(static_cast<int64_t>(host.available_bytes));
    } else {
      resp->set_device_memory_total_bytes(static_cast<int64_t>(info.memory_total_bytes));
      resp->set_device_memory_free_bytes(static_cast<int64_t>(info.memory_free_bytes));
    }
    v1::ServerLimits* l = resp->mutable_limits();
    l->set_max_message_bytes(options_.max_message_bytes);
    l->set_max_chunk_bytes(options_.max_chunk_bytes);
    l->set_max_queued_jobs_per_user(options_.max_queued_jobs_per_user);
    l->set_max_stored_bytes_per_user(options_.max_stored_bytes_per_user);
    l->set_max_hessian_params(options_.limits.max_hessian_params);
    l->set_max_dense_dim(options_.limits.max_dense_dim);
    l->set_max_memory_bytes(static_cast<int64_t>(options_.limits.max_memory_bytes));
    l->set_max_jacobian_bytes(static_cast<int64_t>(options_.limits.max_jacobian_bytes));
    l->set_max_layers(options_.limits.max_layers);
    resp->set_queue_length(jobs_->queue_length());
    resp->set_workers(options_.workers);
    resp->set_user(user);
    std::string why;
    const bool cuda = cuda_available(&why);
    resp->set_cuda_available(cuda);
    if (!cuda) resp->set_cuda_unavailable_reason(why);
    for (const std::string& op : op_names()) resp->add_supported_ops(op);
#ifdef BASIN_HAVE_ONNX
    // "Gemm, MatMul, Conv, ... (and the Erf pattern of exact GELU, ...)": the op types, in order
    const std::string onnx_ops = onnx_supported_ops();
    for (size_t start = 0; start < onnx_ops.size();) {
      size_t end = std::min(onnx_ops.find(", ", start), onnx_ops.find(" (", start));
      if (end == std::string::npos) end = onnx_ops.size();
      if (end > start) resp->add_supported_onnx_ops(onnx_ops.substr(start, end - start));
      if (end < onnx_ops.size() && onnx_ops[end] == ' ') break;  // the parenthesised remark
      start = end + 2;
    }
#endif
    return grpc::Status::OK;
  });
}

}  // namespace basin::server
