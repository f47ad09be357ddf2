// basind as a command that runs to completion (start-up refusals, --check), and a one-message
// blob upload: helpers for the data-dir and crash-loop tests.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "basind_fixture.hpp"

namespace basin::test {

struct ProcessResult {
  int status = -1;     // exit status; 128 + signal when killed; -1 when it ran past the timeout
  std::string output;  // stdout and stderr together
};

// Runs basind with `args` (nothing added) and waits for it to exit; kills it after `timeout`.
ProcessResult run_basind(const std::vector<std::string>& args,
                         std::chrono::seconds timeout = std::chrono::seconds(60));

// Uploads `content` in one message; returns its blob id ("sha256:<hex>"), or "" on failure
// (with the status in *status when given).
std::string upload_blob(v1::Basin::Stub* stub, const std::string& content,
                        grpc::Status* status = nullptr, double deadline_s = 60,
                        const std::string& token = "");

std::string read_file_bytes(const std::string& path);
void write_file_bytes(const std::string& path, const std::string& bytes);

}  // namespace basin::test
