#include "save_dir.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "basin/error.hpp"
#include "basin/npy.hpp"

namespace basin::cli {

void prepare_save_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    invalid_argument("--save-dir " + dir + ": exists and is not a directory; expected a writable directory");
  fs::create_directories(dir, ec);
  if (ec) invalid_argument("--save-dir " + dir + ": cannot create the directory (" + ec.message() + ")");
  // Permissions alone do not say (root, read-only mounts): try to write.
  const std::string probe = dir + "/.basin-write-test";
  {
    std::ofstream out(probe);
    if (!out) invalid_argument("--save-dir " + dir + ": cannot write files there (" + std::strerror(errno) +
                               "); expected a writable directory");
  }
  fs::remove(probe, ec);
}

void write_save_dir(const std::string& dir, const AnalysisResult& result, const std::string& json) {
  for (const VectorArray& v : result.vectors) {
    if (static_cast<int64_t>(v.data.size()) != v.shape.at(0) * v.shape.at(1))
      throw Error(ErrorCode::kInternal, v.name + ": " + std::to_string(v.data.size()) + " values for shape [" +
                                            std::to_string(v.shape[0]) + ", " + std::to_string(v.shape[1]) + "]");
    write_npy(dir + "/" + v.name + ".npy", make_npy_f64(v.shape, v.data));
  }
  std::ofstream out(dir + "/result.json");
  out << json << "\n";
  if (!out) throw Error(ErrorCode::kInternal, "--save-dir " + dir + ": cannot write result.json");
}

}  // namespace basin::cli
