// Typed errors shared by the engine, the server and the clients.
//
// Every failure Basin reports carries a code that maps one-to-one onto a gRPC status
// (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...) and a message that names the field that was
// wrong and what was expected. The engine never calls exit() or abort(); it throws basin::Error.
#pragma once

#include <stdexcept>
#include <string>

namespace basin {

enum class ErrorCode {
  kInvalidArgument,    // bad shapes, dtypes, values, unknown layers ...
  kResourceExhausted,  // over a configured limit, out of (device) memory
  kUnimplemented,      // a valid request Basin does not support (e.g. an ONNX op)
  kNotFound,           // unknown blob / job id
  kCancelled,          // the caller cancelled the work
  kDeadlineExceeded,   // the caller's deadline passed
  kUnavailable,        // a backend that is not usable here (no GPU, no driver)
  kInternal,           // a library call failed (BLAS, LAPACK, CUDA ...)
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void invalid_argument(const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, message);
}
[[noreturn]] inline void resource_exhausted(const std::string& message) {
  throw Error(ErrorCode::kResourceExhausted, message);
}

}  // namespace basin
