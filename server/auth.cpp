#include "auth.hpp"

#include <fstream>
#include <sstream>

#include "basin/error.hpp"

namespace basin::server {

Authenticator Authenticator::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) invalid_argument("--tokens " + path + ": cannot open the file");
  Authenticator a;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    std::istringstream ls(line);
    std::string token, user, extra;
    if (!(ls >> token)) continue;  // blank or comment
    if (!(ls >> user) || (ls >> extra)) {
      invalid_argument("--tokens " + path + ":" + std::to_string(lineno) +
                       ": expected 'token user'");
    }
    if (!a.tokens_.emplace(token, user).second) {
      invalid_argument("--tokens " + path + ":" + std::to_string(lineno) +
                       ": duplicate token");
    }
  }
  if (a.tokens_.empty()) invalid_argument("--tokens " + path + ": no tokens in the file");
  return a;
}

grpc::Status Authenticator::authenticate(const grpc::ServerContext& ctx, std::string* user) const {
  if (open()) {
    *user = "anonymous";
    return grpc::Status::OK;
  }
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing 'authorization: Bearer <token>' metadata");
  }
  const std::string value(it->second.data(), it->second.size());
  static const std::string kPrefix = "Bearer ";
  if (value.compare(0, kPrefix.size(), kPrefix) != 0) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization metadata: expected 'Bearer <token>'");
  }
  auto t = tokens_.find(value.substr(kPrefix.size()));
  if (t == tokens_.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown token");
  }
  *user = t->second;
  return grpc::Status::OK;
}

}  // namespace basin::server
