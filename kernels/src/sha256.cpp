#include "basin/sha256.hpp"

#include <openssl/evp.h>

#include "basin/error.hpp"

namespace basin {
namespace {
void check(int ok, const char* what) {
  if (ok != 1) throw Error(ErrorCode::kInternal, std::string("openssl: ") + what + " failed");
}
}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) throw Error(ErrorCode::kInternal, "openssl: EVP_MD_CTX_new failed");
  check(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr), "EVP_DigestInit_ex");
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::update(const void* data, size_t size) {
  check(EVP_DigestUpdate(ctx_, data, size), "EVP_DigestUpdate");
}

std::string Sha256::hex_digest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  check(EVP_DigestFinal_ex(ctx_, md, &len), "EVP_DigestFinal_ex");
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

std::string sha256_hex(const std::string& data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.hex_digest();
}

}  // namespace basin
