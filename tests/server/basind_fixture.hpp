// Test harness: a real basind process on a loopback port, talked to through the generated stubs.
//
// Each test starts its own server (port 0 -> the kernel picks a free port, reported through
// --port-file), so tests are independent and can run in parallel under ctest -j.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "basin/analysis.hpp"
#include "basin/v1/basin.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace basin::test {

// A fresh directory under $TMPDIR, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class Basind {
 public:
  // Starts basind with `args` (plus --listen 127.0.0.1:0 --port-file ...), waits until it
  // listens. Fails the test (ASSERT) when it does not come up within 20 s.
  explicit Basind(std::vector<std::string> args = {});
  ~Basind();  // SIGTERM, then SIGKILL if it does not exit
  Basind(const Basind&) = delete;
  Basind& operator=(const Basind&) = delete;

  bool started() const { return pid_ > 0 && port_ > 0; }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return pid_; }

  std::shared_ptr<grpc::Channel> channel() const;
  std::unique_ptr<v1::Basin::Stub> stub() const { return v1::Basin::NewStub(channel()); }
  std::unique_ptr<grpc::health::v1::Health::Stub> health() const {
    return grpc::health::v1::Health::NewStub(channel());
  }

  // SIGTERM and wait; returns the exit status (or -1).
  int terminate(std::chrono::seconds wait = std::chrono::seconds(60));
  // SIGKILL and reap: the crash case.
  void kill9();
  // Everything the server wrote to stderr so far.
  std::string log() const;

 private:
  void start(std::vector<std::string> args);  // ASSERTs need a void function
  pid_t pid_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  std::unique_ptr<TempDir> run_dir_;
  std::string log_path_;
};

// A client context with an optional bearer token and deadline.
std::unique_ptr<grpc::ClientContext> context(const std::string& token = "",
                                             double deadline_s = 60);

// A random MLP problem: input `in`, one tanh hidden layer of `hidden`, `k` outputs.
AnalysisRequest make_problem(int64_t n, int64_t in, int64_t hidden, int64_t k, Loss loss,
                             uint64_t seed);
v1::AnalyzeRequest to_proto(const AnalysisRequest& request);

// A request that takes seconds but stops within milliseconds of a cancel: a batch of
// `checkpoints` small analyses (the server checks the cancel flag between them).
v1::AnalyzeRequest slow_request(int checkpoints = 4000, uint64_t seed = 7);

// Expects the two results to agree to ~1e-10 relative (same engine, same inputs).
void expect_same_result(const AnalysisResult& expected, const AnalysisResult& got);

// Bytes of a float64 .npy file with the given shape.
std::string npy_f64(const std::vector<int64_t>& shape, const std::vector<double>& values);

// Writes a tokens file into `dir` ("tok-alice alice", "tok-bob bob"); returns its path.
std::string write_tokens(const TempDir& dir);

// One GET of basind's --metrics-listen endpoint on 127.0.0.1:`port`: the whole HTTP response
// (status line, headers, Prometheus text); empty when nothing answers.
std::string http_get_metrics(int port);
// The value of the sample line that starts with `series` + " " (e.g. "basin_jobs_in_memory" or
// "basin_jobs{state=\"succeeded\"}") in a metrics text; -1 when there is none.
double metric_value(const std::string& text, const std::string& series);

// Every update WatchJob streams for the job until it ends (the stream's status asserted OK).
std::vector<v1::Job> watch_all(v1::Basin::Stub* stub, const std::string& id);

// Polls GetJob until the job is in a final state or `timeout` passes.
v1::Job wait_final(v1::Basin::Stub* stub, const std::string& id, const std::string& token = "",
                   std::chrono::seconds timeout = std::chrono::seconds(120));

}  // namespace basin::test
