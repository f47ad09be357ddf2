// Prometheus text exposition over plain HTTP/1.0 (--metrics-listen HOST:PORT).
//
// A scrape is one short GET; a single thread with a blocking accept loop is all it needs, and it
// keeps basind free of an HTTP library. Every request gets the current text regardless of path.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "basin/backend.hpp"
#include "scheduler.hpp"

namespace basin::server {

class MetricsServer {
 public:
  explicit MetricsServer(std::function<std::string()> render) : render_(std::move(render)) {}
  ~MetricsServer() { stop(); }
  // Binds HOST:PORT (port 0 picks one); returns the bound port. Throws basin::Error.
  int start(const std::string& host_port);
  void stop();

 private:
  void loop();
  std::function<std::string()> render_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// "host:port" / "[v6]:port" -> (host, port); throws kInvalidArgument naming `flag`.
void split_host_port(const std::string& flag, const std::string& s, std::string* host, int* port);

// The exposition text: basin_queue_depth, basin_jobs{state} (every job known, in memory or
// only in the database), basin_jobs_in_memory, basin_job_stage_seconds (sum/count by stage),
// basin_device_memory_bytes{kind="total"|"used"}.
std::string render_prometheus(const QueueMetrics& m, const BackendInfo& device);
}  // namespace basin::server
