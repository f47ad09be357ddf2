#include "host_memory.hpp"

#include <fstream>
#include <sstream>

namespace basin::server {

HostMemory parse_meminfo(const std::string& text) {
  HostMemory m;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string key, unit;
    uint64_t value = 0;
    if (!(fields >> key >> value)) continue;
    fields >> unit;
    const uint64_t scale = unit == "kB" ? 1024 : 1;
    if (key == "MemTotal:") m.total_bytes = value * scale;
    else if (key == "MemAvailable:") m.available_bytes = value * scale;
  }
  return m;
}

HostMemory host_memory() {
  std::ifstream in("/proc/meminfo");
  if (!in) return {};
  std::ostringstream text;
  text << in.rdbuf();
  return parse_meminfo(text.str());
}

}  // namespace basin::server
