// The host's memory (Linux /proc/meminfo), which is the CPU backend's device memory: basind
// reports it in GetServerInfo where the backend itself reports none.
#pragma once

#include <cstdint>
#include <string>

namespace basin::server {

struct HostMemory {
  uint64_t total_bytes = 0;      // MemTotal
  uint64_t available_bytes = 0;  // MemAvailable (what can be allocated without swapping)
};

// Parses the text of /proc/meminfo ("MemTotal:  24576000 kB" lines); zeros when absent.
HostMemory parse_meminfo(const std::string& text);
// This machine's (zeros where /proc/meminfo cannot be read).
HostMemory host_memory();

}  // namespace basin::server
