// A full disk as the client should see it: RESOURCE_EXHAUSTED naming the data dir and the
// space left, not INTERNAL with SQLite's words and a source location.
#pragma once

#include <string>

#include "basin/error.hpp"

namespace basin::server {

// Thrown where a write fails with ENOSPC / EDQUOT / SQLITE_FULL. what() has the details for
// the server log; the client gets storage_full_message().
class StorageFull : public Error {
 public:
  explicit StorageFull(const std::string& details) : Error(ErrorCode::kResourceExhausted, details) {}
};

// "data dir /srv/basin has 12.0 KiB free of 1.00 MiB" (statvfs), or "... (free space unknown: why)".
std::string disk_space_note(const std::string& dir);

// The client's message for a StorageFull: what could not be stored and the data dir's space.
std::string storage_full_message(const std::string& data_dir);

}  // namespace basin::server
