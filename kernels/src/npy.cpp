// .npy reader/writer. Format: magic "\x93NUMPY", major, minor, header length (2 bytes for
// v1, 4 bytes for v2/v3, little-endian), an ASCII Python dict literal
// {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), } padded to 64 bytes, then data.
#include "basin/npy.hpp"

#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "basin/echo.hpp"
#include "basin/error.hpp"

namespace basin {
namespace {

size_t itemsize(NpyDType d) {
  return (d == NpyDType::kFloat32 || d == NpyDType::kInt32) ? 4 : 8;
}

const char* descr_of(NpyDType d) {
  switch (d) {
    case NpyDType::kFloat32: return "<f4";
    case NpyDType::kFloat64: return "<f8";
    case NpyDType::kInt32: return "<i4";
    case NpyDType::kInt64: return "<i8";
  }
  return "?";
}

// Finds the value that follows 'key': in the header dict; returns it as raw text.
std::string header_value(const std::string& header, const std::string& key, const std::string& what) {
  const std::string quoted[] = {"'" + key + "'", "\"" + key + "\""};
  for (const std::string& q : quoted) {
    size_t pos = header.find(q);
    if (pos == std::string::npos) continue;
    pos = header.find(':', pos + q.size());
    if (pos == std::string::npos) break;
    ++pos;
    while (pos < header.size() && header[pos] == ' ') ++pos;
    size_t end = pos;
    if (pos < header.size() && header[pos] == '(') {
      end = header.find(')', pos);
      if (end == std::string::npos) break;
      return header.substr(pos, end - pos + 1);
    }
    if (pos < header.size() && (header[pos] == '\'' || header[pos] == '"')) {
      end = header.find(header[pos], pos + 1);
      if (end == std::string::npos) break;
      return header.substr(pos + 1, end - pos - 1);
    }
    while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
    return header.substr(pos, end - pos);
  }
  invalid_argument(what + ": .npy header has no valid '" + key + "' entry");
}

}  // namespace

const char* npy_dtype_name(NpyDType d) {
  switch (d) {
    case NpyDType::kFloat32: return "float32";
    case NpyDType::kFloat64: return "float64";
    case NpyDType::kInt32: return "int32";
    case NpyDType::kInt64: return "int64";
  }
  return "?";
}

int64_t NpyArray::size() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::string NpyArray::shape_string() const {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) os << ",";
  os << ")";
  return os.str();
}

std::vector<double> NpyArray::to_double() const {
  const int64_t n = size();
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = bytes.data() + i * itemsize(dtype);
    switch (dtype) {
      case NpyDType::kFloat32: { float v; std::memcpy(&v, p, 4); out[i] = v; break; }
      case NpyDType::kFloat64: { double v; std::memcpy(&v, p, 8); out[i] = v; break; }
      case NpyDType::kInt32: { int32_t v; std::memcpy(&v, p, 4); out[i] = v; break; }
      case NpyDType::kInt64: { int64_t v; std::memcpy(&v, p, 8); out[i] = static_cast<double>(v); break; }
    }
  }
  return out;
}

std::vector<int64_t> NpyArray::to_int64() const {
  const int64_t n = size();
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = bytes.data() + i * itemsize(dtype);
    switch (dtype) {
      case NpyDType::kInt32: { int32_t v; std::memcpy(&v, p, 4); out[i] = v; break; }
      case NpyDType::kInt64: { std::memcpy(&out[i], p, 8); break; }
      default: invalid_argument("expected an integer array");
    }
  }
  return out;
}

NpyArray parse_npy(const std::vector<uint8_t>& file, const std::string& what) {
  static const uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (file.size() < 10 || std::memcmp(file.data(), kMagic, 6) != 0)
    invalid_argument(what + ": not a .npy file (missing the \\x93NUMPY magic); save arrays with numpy.save");
  const int major = file[6];
  size_t header_len, header_start;
  if (major == 1) {
    header_len = file[8] | (size_t(file[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (file.size() < 12) invalid_argument(what + ": truncated .npy header");
    header_len = file[8] | (size_t(file[9]) << 8) | (size_t(file[10]) << 16) | (size_t(file[11]) << 24);
    header_start = 12;
  } else {
    invalid_argument(what + ": unsupported .npy format version " + std::to_string(major) + "; expected 1, 2 or 3");
  }
  if (header_start + header_len > file.size()) invalid_argument(what + ": truncated .npy header");
  const std::string header(reinterpret_cast<const char*>(file.data() + header_start), header_len);

  NpyArray array;
  const std::string descr = header_value(header, "descr", what);
  if (descr == "<f4") array.dtype = NpyDType::kFloat32;
  else if (descr == "<f8") array.dtype = NpyDType::kFloat64;
  else if (descr == "<i4") array.dtype = NpyDType::kInt32;
  else if (descr == "<i8") array.dtype = NpyDType::kInt64;
  else
    invalid_argument(what + ": dtype '" + echo(descr) +
                     "' is not supported; expected little-endian float32, float64, int32 or int64 "
                     "('<f4', '<f8', '<i4', '<i8')");
  const std::string fortran = header_value(header, "fortran_order", what);
  if (fortran.find("True") != std::string::npos)
    invalid_argument(what + ": Fortran-ordered array; expected C order (use numpy.ascontiguousarray)");
  const std::string shape = header_value(header, "shape", what);
  // shape text: "(3, 4)" / "(5,)" / "()"
  std::string inner = shape.substr(1, shape.size() - 2);
  std::stringstream ss(inner);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    item = item.substr(b, item.find_last_not_of(" \tL") - b + 1);
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || item.size() > 15)
      invalid_argument(what + ": bad shape entry '" + echo(item) + "' in .npy header");
    array.shape.push_back(std::stoll(item));
  }
  const size_t data_start = header_start + header_len;
  // Element count with overflow checking: a hostile header must not wrap around.
  uint64_t count = 1;
  for (int64_t dim : array.shape) {
    if (dim != 0 && count > (uint64_t(1) << 60) / static_cast<uint64_t>(dim))
      invalid_argument(what + ": shape " + array.shape_string() + " is too large");
    count *= static_cast<uint64_t>(dim);
  }
  const uint64_t need = count * itemsize(array.dtype);
  if (file.size() - data_start < need)
    invalid_argument(what + ": truncated data: shape " + array.shape_string() + " of " +
                     npy_dtype_name(array.dtype) + " needs " + std::to_string(need) + " bytes, file has " +
                     std::to_string(file.size() - data_start));
  array.bytes.assign(file.begin() + data_start, file.begin() + data_start + need);
  return array;
}

NpyArray read_npy(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) invalid_argument(what + ": cannot open '" + path + "'");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_npy(bytes, what + " (" + path + ")");
}

std::vector<uint8_t> serialize_npy(const NpyArray& array) {
  std::ostringstream dict;
  dict << "{'descr': '" << descr_of(array.dtype) << "', 'fortran_order': False, 'shape': "
       << array.shape_string() << ", }";
  std::string header = dict.str();
  // Pad with spaces so that magic(6)+version(2)+len(2)+header+'\n' is a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.push_back(static_cast<uint8_t>(header.size() & 0xff));
  out.push_back(static_cast<uint8_t>(header.size() >> 8));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), array.bytes.begin(), array.bytes.end());
  return out;
}

void write_npy(const std::string& path, const NpyArray& array) {
  const std::vector<uint8_t> bytes = serialize_npy(array);
  std::ofstream out(path, std::ios::binary);
  if (!out) invalid_argument("cannot write '" + path + "'");
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) invalid_argument("failed writing '" + path + "'");
}

NpyArray make_npy_f64(std::vector<int64_t> shape, const std::vector<double>& values) {
  NpyArray a;
  a.dtype = NpyDType::kFloat64;
  a.shape = std::move(shape);
  a.bytes.resize(values.size() * 8);
  std::memcpy(a.bytes.data(), values.data(), a.bytes.size());
  return a;
}

}  // namespace basin
