#include "basin/wire/grpc_status.hpp"

#include <cctype>
#include <cstdio>
#include <new>
#include <random>

#include "basin/echo.hpp"

namespace basin::wire {

grpc::StatusCode to_grpc_code(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return grpc::StatusCode::INVALID_ARGUMENT;
    case ErrorCode::kResourceExhausted: return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case ErrorCode::kUnimplemented: return grpc::StatusCode::UNIMPLEMENTED;
    case ErrorCode::kNotFound: return grpc::StatusCode::NOT_FOUND;
    case ErrorCode::kCancelled: return grpc::StatusCode::CANCELLED;
    case ErrorCode::kDeadlineExceeded: return grpc::StatusCode::DEADLINE_EXCEEDED;
    case ErrorCode::kUnavailable: return grpc::StatusCode::UNAVAILABLE;
    case ErrorCode::kInternal: return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::INTERNAL;
}

ErrorCode from_grpc_code(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT: return ErrorCode::kInvalidArgument;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return ErrorCode::kResourceExhausted;
    case grpc::StatusCode::UNIMPLEMENTED: return ErrorCode::kUnimplemented;
    case grpc::StatusCode::NOT_FOUND: return ErrorCode::kNotFound;
    case grpc::StatusCode::CANCELLED: return ErrorCode::kCancelled;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return ErrorCode::kDeadlineExceeded;
    case grpc::StatusCode::UNAVAILABLE: return ErrorCode::kUnavailable;
    default: return ErrorCode::kInternal;
  }
}

const char* grpc_code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    default: return "UNKNOWN";
  }
}

grpc::Status to_grpc_status(const Error& error) {
  return grpc::Status(to_grpc_code(error.code()), error.what());
}

namespace {

constexpr const char* kRequestIdTag = "(request id req-";

bool is_path_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '_' || c == '-' ||
         c == '.' || c == '+';
}

// Removes every "<path>.<ext>:<line>" (ext: cpp, cc, hpp, h, cu) and a preceding " at ".
// Returns whether one was found.
bool strip_source_locations(std::string* s) {
  bool found = false;
  for (const char* ext : {".cpp:", ".cc:", ".hpp:", ".cu:", ".h:"}) {
    size_t pos;
    while ((pos = s->find(ext)) != std::string::npos) {
      size_t end = pos + std::char_traits<char>::length(ext);
      if (end >= s->size() || !std::isdigit(static_cast<unsigned char>((*s)[end]))) {
        // Not a location ("see the .h: file"): blank the dot so the search moves on.
        (*s)[pos] = ' ';
        continue;
      }
      while (end < s->size() && std::isdigit(static_cast<unsigned char>((*s)[end]))) ++end;
      size_t begin = pos;
      while (begin > 0 && is_path_char((*s)[begin - 1])) --begin;
      if (begin >= 4 && s->compare(begin - 4, 4, " at ") == 0) begin -= 4;
      s->erase(begin, end - begin);
      found = true;
    }
  }
  return found;
}

std::string new_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id = "req-";
  uint64_t x = rng();
  for (int i = 0; i < 12; ++i) id.push_back(hex[(x >> (4 * i)) & 15]);
  return id;
}

}  // namespace

grpc::Status client_status(const grpc::Status& status, const std::string& log_details) {
  if (status.ok()) return status;
  const std::string& original = status.error_message();
  // Work on a bounded copy: a hostile echo can be megabytes.
  std::string msg = original.size() > 4 * kMaxStatusMessageBytes
                        ? original.substr(0, 4 * kMaxStatusMessageBytes)
                        : original;
  const bool had_location = strip_source_locations(&msg);
  const bool internal = status.error_code() == grpc::StatusCode::INTERNAL ||
                        status.error_code() == grpc::StatusCode::UNKNOWN;
  std::string suffix;
  if ((had_location || internal || !log_details.empty()) &&
      original.find(kRequestIdTag) == std::string::npos) {
    const std::string id = new_request_id();
    std::fprintf(stderr, "basind: request %s: %s: %s%s%s\n", id.c_str(),
                 grpc_code_name(status.error_code()), echo(original, 8 * kMaxStatusMessageBytes).c_str(),
                 log_details.empty() ? "" : " -- ", echo(log_details, 8 * kMaxStatusMessageBytes).c_str());
    suffix = " (request id " + id + "; details in the server log)";
  }
  const size_t room = kMaxStatusMessageBytes - suffix.size();
  if (msg.size() > room) {
    const std::string tail = "… (message cut from " + std::to_string(original.size()) + " bytes)";
    msg = echo(msg, room - tail.size());
    // echo() appends its own size note for the copy; replace it with the original's size.
    const size_t note = msg.rfind("… (");
    if (note != std::string::npos) msg.erase(note);
    msg += tail;
  }
  return grpc::Status(status.error_code(), msg + suffix, status.error_details());
}

grpc::Status status_from_exception(const std::exception_ptr& ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const Error& e) {
    return client_status(to_grpc_status(e));
  } catch (const std::bad_alloc&) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "out of host memory while serving the request");
  } catch (const std::exception& e) {
    return client_status(grpc::Status(grpc::StatusCode::INTERNAL, std::string("internal error: ") + e.what()));
  } catch (...) {
    return client_status(grpc::Status(grpc::StatusCode::INTERNAL, "internal error: unknown exception"));
  }
}

void throw_if_error(const grpc::Status& status, const char* what) {
  if (status.ok()) return;
  throw Error(from_grpc_code(status.error_code()),
              std::string(what) + ": " + grpc_code_name(status.error_code()) + ": " +
                  status.error_message());
}

}  // namespace basin::wire
