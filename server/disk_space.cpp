#include "disk_space.hpp"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <sstream>

namespace basin::server {
namespace {

std::string human(double b) {
  std::ostringstream os;
  os.precision(3);
  if (b >= double(1ull << 30)) os << b / double(1ull << 30) << " GiB";
  else if (b >= double(1ull << 20)) os << b / double(1ull << 20) << " MiB";
  else if (b >= 1024) os << b / 1024 << " KiB";
  else os << b << " bytes";
  return os.str();
}

}  // namespace

std::string disk_space_note(const std::string& dir) {
  struct statvfs st {};
  if (statvfs(dir.c_str(), &st) != 0) {
    return "data dir " + dir + " (free space unknown: " + std::strerror(errno) + ")";
  }
  // f_bavail: blocks available to an unprivileged writer, what SQLite and the uploads get.
  const double unit = static_cast<double>(st.f_frsize);
  return "data dir " + dir + " has " + human(double(st.f_bavail) * unit) + " free of " +
         human(double(st.f_blocks) * unit);
}

std::string storage_full_message(const std::string& data_dir) {
  return "the server's storage is full: " + disk_space_note(data_dir) +
         "; nothing was stored. Try again once the operator has freed space";
}

}  // namespace basin::server
