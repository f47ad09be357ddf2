// The server names SHA-256 as basin::server::Sha256; it lives in the compute library
// (kernels/include/basin/sha256.hpp), which also digests the data of a result's provenance.
#pragma once

#include "basin/sha256.hpp"

namespace basin::server {
using basin::Sha256;
using basin::sha256_hex;
}  // namespace basin::server
