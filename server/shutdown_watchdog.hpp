// The bound on basind's exit after SIGTERM.
//
// The shutdown sequence (main.cpp) drains the job queue for --shutdown-timeout, cancels what
// still runs, and stops the gRPC server with a deadline. Cancellation is cooperative: the engine
// checks its flag between layers and steps, but one BLAS/LAPACK call (a large SVD) cannot be
// interrupted, and a handler thread could be stuck too. So the exit is bounded twice:
//   - drain_and_stop reports runs that outlived the grace: exit_abandoning() at once;
//   - a watchdog thread, armed when the signal arrives, calls exit_abandoning() when the whole
//     sequence has not finished within --shutdown-timeout + kShutdownGrace.
// exit_abandoning logs every job it abandons, writes the running submitted jobs back to the
// database as queued (re-run at the next start; the data dir is consistent: SQLite commits are
// atomic, blobs are renamed into place) and calls _exit(kShutdownAbandonedExit).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "scheduler.hpp"

namespace basin::server {

// Exit status of a shutdown that had to abandon running work (0: a clean shutdown).
constexpr int kShutdownAbandonedExit = 3;
// Beyond --shutdown-timeout: the engine's grace to notice a cancel (drain_and_stop) plus the
// gRPC server's deadline to finish in-flight calls, with a margin.
constexpr std::chrono::seconds kShutdownGrace{8};

// Logs `why` and the running jobs, requeues them in the database, and _exits.
[[noreturn]] void exit_abandoning(JobManager& jobs, const std::string& why);

class ShutdownWatchdog {
 public:
  // Calls exit_abandoning(jobs, ...) unless disarm() comes within `limit` from now.
  ShutdownWatchdog(JobManager& jobs, std::chrono::milliseconds limit);
  ~ShutdownWatchdog();  // disarms
  void disarm();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  std::thread thread_;
};

}  // namespace basin::server
