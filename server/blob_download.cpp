// DownloadBlob: the bytes of a blob the caller owns (an upload, or the vectors of a result),
// streamed in chunks of at most max_chunk_bytes (4 MiB by default). Ownership, as for the blob ids
// inside a request: another user's blob reads exactly like a missing one (NOT_FOUND), and a
// malformed id is INVALID_ARGUMENT.
#include <algorithm>
#include <fstream>

#include "basin/error.hpp"
#include "basin/wire/grpc_status.hpp"
#include "service.hpp"

namespace basin::server {

grpc::Status BasinService::DownloadBlob(grpc::ServerContext* ctx, const v1::DownloadBlobRequest* req,
                                        grpc::ServerWriter<v1::BlobChunk>* writer) {
  try {
    std::string user;
    grpc::Status st = auth_->authenticate(*ctx, &user);
    if (!st.ok()) return st;
    const std::string hex = parse_blob_id(req->blob_id(), "blob_id");
    if (!store_->user_owns_blob(user, hex))
      throw Error(ErrorCode::kNotFound, "blob_id: unknown blob '" + req->blob_id() +
                                            "'; expected the id of a blob you uploaded or of a result's vectors");
    std::ifstream in(store_->blob_path(hex), std::ios::binary | std::ios::ate);
    if (!in) throw Error(ErrorCode::kInternal, "blob_id: blob " + hex + " is missing from disk");
    const int64_t size = static_cast<int64_t>(in.tellg());
    in.seekg(0);
    const int64_t chunk = std::max<int64_t>(1, options_.max_chunk_bytes);
    std::string buffer;
    int64_t sent = 0;
    do {
      const int64_t n = std::min(chunk, size - sent);
      buffer.resize(static_cast<size_t>(n));
      if (n > 0 && !in.read(buffer.data(), n)) throw Error(ErrorCode::kInternal, "blob_id: cannot read blob " + hex);
      v1::BlobChunk msg;
      msg.set_chunk(buffer);
      if (sent == 0) msg.set_size(size);
      if (ctx->IsCancelled() || !writer->Write(msg))
        return grpc::Status(grpc::StatusCode::CANCELLED, "download cancelled by the client");
      sent += n;
    } while (sent < size);
    return grpc::Status::OK;
  } catch (...) {
    return wire::status_from_exception(std::current_exception());
  }
}

}  // namespace basin::server
