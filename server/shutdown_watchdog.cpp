#include "shutdown_watchdog.hpp"

#include <unistd.h>

#include <cstdio>

namespace basin::server {

void exit_abandoning(JobManager& jobs, const std::string& why) {
  std::fprintf(stderr, "basind: %s\n", why.c_str());
  const std::vector<std::string> running = jobs.requeue_running_for_exit();
  for (const std::string& j : running) {
    std::fprintf(stderr, "basind: abandoned running job %s; a submitted job is queued again and "
                         "runs at the next start\n", j.c_str());
  }
  std::fprintf(stderr, "basind: exiting with status %d without waiting for %zu running job(s)\n",
               kShutdownAbandonedExit, running.size());
  std::fflush(stderr);
  // _exit, not exit: static destructors would join the threads that are stuck.
  _exit(kShutdownAbandonedExit);
}

ShutdownWatchdog::ShutdownWatchdog(JobManager& jobs, std::chrono::milliseconds limit) {
  thread_ = std::thread([this, &jobs, limit] {
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, limit, [this] { return disarmed_; })) return;
    lock.unlock();
    exit_abandoning(jobs, "shutdown watchdog: the shutdown did not finish within " +
                              std::to_string(limit.count() / 1000.0) +
                              " s (--shutdown-timeout + " +
                              std::to_string(kShutdownGrace.count()) + " s grace)");
  });
}

ShutdownWatchdog::~ShutdownWatchdog() {
  disarm();
  if (thread_.joinable()) thread_.join();
}

void ShutdownWatchdog::disarm() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    disarmed_ = true;
  }
  cv_.notify_all();
}

}  // namespace basin::server
