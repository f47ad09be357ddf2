// The one place where Basin's error codes become gRPC statuses (and back, for the CLI).
//
// basin::ErrorCode was designed to map one-to-one onto gRPC codes, so a validation failure deep
// in the engine reaches the client as INVALID_ARGUMENT with the engine's message (which names
// the field) unchanged.
#pragma once

#include <grpcpp/support/status.h>

#include <exception>
#include <string>

#include "basin/error.hpp"

namespace basin::wire {

grpc::StatusCode to_grpc_code(ErrorCode code);
ErrorCode from_grpc_code(grpc::StatusCode code);
// "INVALID_ARGUMENT", ...
const char* grpc_code_name(grpc::StatusCode code);

grpc::Status to_grpc_status(const Error& error);
// Any exception escaping a handler: basin::Error keeps its code, std::bad_alloc becomes
// RESOURCE_EXHAUSTED (the server keeps serving), anything else INTERNAL. Never rethrows.
// The result has been through client_status.
grpc::Status status_from_exception(const std::exception_ptr& ep);

// Longest status message a client is sent, in bytes. gRPC carries it percent-encoded in the
// trailers (up to 3 bytes per byte), whose limit is 8 KiB by default: 1,500 stays under it.
constexpr size_t kMaxStatusMessageBytes = 1500;

// The last step of every status that leaves the server (handlers, and a job's stored error):
//   - source locations ("... at /src/server/sqlite_db.cpp:54") are removed;
//   - INTERNAL / UNKNOWN statuses, statuses that carried a source location, and ones with
//     `log_details` get a request id: the full text (and log_details) is logged to stderr as
//     "basind: request req-…: …" and the client's message ends "(request id req-…)";
//   - the message is cut to kMaxStatusMessageBytes ("… (message cut from N bytes)").
// Idempotent: a status that already names a request id is not logged again.
grpc::Status client_status(const grpc::Status& status, const std::string& log_details = "");

// Client side: a non-OK status becomes basin::Error with the matching code and a message that
// says which call failed. Used through GRPC_CHECK so every call site is checked the same way.
void throw_if_error(const grpc::Status& status, const char* what);

}  // namespace basin::wire

#define GRPC_CHECK(status_expr, what) ::basin::wire::throw_if_error((status_expr), (what))
