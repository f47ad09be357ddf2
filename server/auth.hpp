// Bearer-token authentication: `--tokens FILE` holds one "token user" pair per line.
#pragma once

#include <grpcpp/server_context.h>

#include <map>
#include <string>

namespace basin::server {

class Authenticator {
 public:
  // Open server: every caller is "anonymous".
  Authenticator() = default;
  // Throws basin::Error(kInvalidArgument) naming the file and line on a malformed file.
  static Authenticator from_file(const std::string& path);

  bool open() const { return tokens_.empty(); }
  // Reads `authorization: Bearer <token>`; fills *user or returns UNAUTHENTICATED.
  grpc::Status authenticate(const grpc::ServerContext& ctx, std::string* user) const;

 private:
  std::map<std::string, std::string> tokens_;  // token -> user
};

}  // namespace basin::server
