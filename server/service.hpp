// basin.v1.Basin, the gRPC service: auth -> validate -> queue -> engine -> store.
//
// Every handler authenticates first, catches every exception at its boundary (a bad request
// becomes a status, never a crash: status_from_exception), and maps basin::Error codes through
// the single table in grpc_status.cpp.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "auth.hpp"
#include "basin/backend.hpp"
#include "basin/v1/basin.grpc.pb.h"
#include "scheduler.hpp"
#include "server_options.hpp"
#include "store.hpp"

namespace basin::server {

class BasinService final : public v1::Basin::Service {
 public:
  // Installs the unary methods as byte handlers that parse their own requests (see
  // parse_own_requests in service.cpp): malformed protobuf is INVALID_ARGUMENT, not INTERNAL.
  BasinService(const ServerOptions& options, const Authenticator* auth, Store* store);

  // The JobManager runs requests through run(); it is created after the service.
  void set_job_manager(JobManager* jobs) { jobs_ = jobs; }

  // The worker-side body of a job: decode (resolving blobs) and run every checkpoint.
  v1::AnalyzeResponse run(const std::string& user, const v1::AnalyzeRequest& request,
                          const RunControl& control);

  // Device the server reports in GetServerInfo and the metrics.
  BackendInfo device_info();

  grpc::Status Analyze(grpc::ServerContext* ctx, const v1::AnalyzeRequest* req,
                       v1::AnalyzeResponse* resp) override;
  grpc::Status UploadBlob(grpc::ServerContext* ctx,
                          grpc::ServerReader<v1::UploadBlobRequest>* reader,
                          v1::UploadBlobResponse* resp) override;
  // server/blob_download.cpp: a blob the caller owns, in chunks of max_chunk_bytes.
  grpc::Status DownloadBlob(grpc::ServerContext* ctx, const v1::DownloadBlobRequest* req,
                            grpc::ServerWriter<v1::BlobChunk>* writer) override;
  grpc::Status SubmitJob(grpc::ServerContext* ctx, const v1::SubmitJobRequest* req,
                         v1::SubmitJobResponse* resp) override;
  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req,
                      v1::Job* resp) override;
  grpc::Status WatchJob(grpc::ServerContext* ctx, const v1::WatchJobRequest* req,
                        grpc::ServerWriter<v1::Job>* writer) override;
  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req,
                         v1::Job* resp) override;
  grpc::Status ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* req,
                        v1::ListJobsResponse* resp) override;
  grpc::Status GetServerInfo(grpc::ServerContext* ctx, const v1::GetServerInfoRequest* req,
                             v1::GetServerInfoResponse* resp) override;

 private:
  std::vector<uint8_t> read_blob(const std::string& user, const std::string& blob_id,
                                 const std::string& field);
  // Stores `bytes` as a blob owned by `user` (content-addressed, as UploadBlob does); returns
  // its id. The result vectors of a request (--vectors) travel this way.
  std::string store_blob(const std::string& user, const std::vector<uint8_t>& bytes);
  template <class Request, class Response>
  void parse_own_requests(int method_index,
                          grpc::Status (BasinService::*handler)(grpc::ServerContext*,
                                                                const Request*, Response*));

  ServerOptions options_;
  const Authenticator* auth_;
  Store* store_;
  JobManager* jobs_ = nullptr;
  std::mutex upload_mu_;  // serialises the final quota check + commit of concurrent uploads
  std::mutex device_mu_;
  std::unique_ptr<Backend<double>> info_backend_;
};

// "sha256:<hex>" or "<hex>" -> "<hex>"; throws kInvalidArgument naming `field` otherwise.
std::string parse_blob_id(const std::string& id, const std::string& field);

}  // namespace basin::server
