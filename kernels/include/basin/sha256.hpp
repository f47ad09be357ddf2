// Incremental SHA-256 (OpenSSL's EVP) for content-addressed blobs and result provenance.
#pragma once

#include <cstddef>
#include <string>

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace basin {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t size);
  std::string hex_digest();  // 64 lowercase hex digits; call once

 private:
  EVP_MD_CTX* ctx_;
};

std::string sha256_hex(const std::string& data);

}  // namespace basin
