#include "metrics.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "basin/error.hpp"

namespace basin::server {

void split_host_port(const std::string& flag, const std::string& s, std::string* host,
                     int* port) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos) invalid_argument(flag + ": '" + s + "'; expected HOST:PORT");
  std::string h = s.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  char* end = nullptr;
  const long p = std::strtol(s.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || colon + 1 == s.size() || p < 0 || p > 65535) {
    invalid_argument(flag + ": '" + s + "'; expected a port number 0..65535");
  }
  *host = h.empty() ? "0.0.0.0" : h;
  *port = static_cast<int>(p);
}

int MetricsServer::start(const std::string& host_port) {
  std::string host;
  int port = 0;
  split_host_port("--metrics-listen", host_port, &host, &port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const int gai = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (gai != 0) {
    invalid_argument("--metrics-listen: cannot resolve '" + host + "': " + gai_strerror(gai));
  }
  fd_ = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
  int one = 1;
  const bool ok = fd_ >= 0 &&
                  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
                  bind(fd_, res->ai_addr, res->ai_addrlen) == 0 && listen(fd_, 16) == 0;
  freeaddrinfo(res);
  if (!ok) {
    const std::string why = strerror(errno);
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    throw Error(ErrorCode::kUnavailable, "--metrics-listen " + host_port + ": " + why);
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  int bound_port = port;
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
    bound_port = bound.ss_family == AF_INET6
                     ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                     : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }
  thread_ = std::thread([this] { loop(); });
  return bound_port;
}

void MetricsServer::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void MetricsServer::loop() {
  while (!stop_) {
    // poll with a timeout so stop() is noticed without closing the socket under accept().
    pollfd p{fd_, POLLIN, 0};
    const int r = poll(&p, 1, 200);
    if (r <= 0) continue;
    const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    // Read (and ignore) the request head; a slow client gets 1 s.
    timeval tv{1, 0};
    (void)setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char buf[2048];
    (void)recv(c, buf, sizeof(buf), 0);
    std::string body;
    try {
      body = render_();
    } catch (const std::exception& e) {
      body = std::string("# error rendering metrics: ") + e.what() + "\n";
    }
    const std::string resp = "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                             "Content-Length: " + std::to_string(body.size()) +
                             "\r\nConnection: close\r\n\r\n" + body;
    size_t off = 0;
    while (off < resp.size()) {
      const ssize_t w = send(c, resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    close(c);
  }
}

std::string render_prometheus(const QueueMetrics& m, const BackendInfo& device) {
  std::string out;
  auto line = [&](const std::string& s) { out += s + "\n"; };
  line("# HELP basin_queue_depth Jobs waiting for a worker.");
  line("# TYPE basin_queue_depth gauge");
  line("basin_queue_depth " + std::to_string(m.queue_depth));
  line("# HELP basin_jobs Jobs known to the server, by state.");
  line("# TYPE basin_jobs gauge");
  for (const auto& kv : m.jobs_by_state) {
    line("basin_jobs{state=\"" + kv.first + "\"} " + std::to_string(kv.second));
  }
  line("# HELP basin_jobs_in_memory Jobs held in memory: queued, running, Analyze calls and the "
       "most recently finished (--keep-finished-in-memory); older ones are read from SQLite.");
  line("# TYPE basin_jobs_in_memory gauge");
  line("basin_jobs_in_memory " + std::to_string(m.jobs_in_memory));
  line("# HELP basin_job_stage_seconds Wall time of job stages (forward, jacobian, gram, solve...).");
  line("# TYPE basin_job_stage_seconds summary");
  for (const auto& kv : m.stage_seconds_sum) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.6f", kv.second);
    line("basin_job_stage_seconds_sum{stage=\"" + kv.first + "\"} " + buf);
    auto c = m.stage_seconds_count.find(kv.first);
    line("basin_job_stage_seconds_count{stage=\"" + kv.first + "\"} " +
         std::to_string(c == m.stage_seconds_count.end() ? 0 : c->second));
  }
  line("# HELP basin_device_memory_bytes Memory of the default device.");
  line("# TYPE basin_device_memory_bytes gauge");
  const uint64_t used = device.memory_total_bytes >= device.memory_free_bytes
                            ? device.memory_total_bytes - device.memory_free_bytes
                            : 0;
  line("basin_device_memory_bytes{kind=\"total\",backend=\"" + device.name + "\"} " +
       std::to_string(device.memory_total_bytes));
  line("basin_device_memory_bytes{kind=\"used\",backend=\"" + device.name + "\"} " +
       std::to_string(used));
  return out;
}

}  // namespace basin::server
