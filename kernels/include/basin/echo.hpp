// Quoting user input in error messages, bounded.
//
// Error messages travel to the client in gRPC's status trailer, which is limited (8 KiB by
// default; bigger and the client sees "received initial metadata size exceeds limit" instead
// of the error). So input echoed into a message -- a layer type, a blob id, a job id -- is cut
// to a short prefix with its full size: "abcd… (1048576 bytes)".
#pragma once

#include <cstddef>
#include <string>

namespace basin {

// Bytes of echoed input kept in a message.
constexpr size_t kEchoBytes = 200;

// `s` when it has at most `max_bytes` bytes; else its first max_bytes bytes (cut back to a
// UTF-8 character boundary) + "… (N bytes)". Control characters become '?', so the echo
// stays one printable line.
inline std::string echo(const std::string& s, size_t max_bytes = kEchoBytes) {
  size_t keep = s.size();
  if (keep > max_bytes) {
    keep = max_bytes;
    // Back off continuation bytes (10xxxxxx) so no multi-byte character is split.
    while (keep > 0 && (static_cast<unsigned char>(s[keep]) & 0xC0) == 0x80) --keep;
  }
  std::string out = s.substr(0, keep);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  if (keep < s.size()) out += "… (" + std::to_string(s.size()) + " bytes)";
  return out;
}

}  // namespace basin
