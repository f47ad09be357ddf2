// Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0 headers).
//
// Supported: C order, little-endian '<f4', '<f8', '<i4', '<i8' (and '|u1'/'|b1' are rejected
// with a message). Anything else (Fortran order, big-endian, object arrays, truncated data)
// is a basin::Error(kInvalidArgument) that names the file and what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace basin {

enum class NpyDType { kFloat32, kFloat64, kInt32, kInt64 };
const char* npy_dtype_name(NpyDType d);  // "float32", ...

struct NpyArray {
  NpyDType dtype = NpyDType::kFloat64;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // raw little-endian, row-major

  int64_t size() const;  // product of shape (1 for a 0-d array)
  bool is_float() const { return dtype == NpyDType::kFloat32 || dtype == NpyDType::kFloat64; }
  // Values converted to double (exact for all four dtypes within ±2^53) / to int64.
  std::vector<double> to_double() const;
  std::vector<int64_t> to_int64() const;
  std::string shape_string() const;  // "(3, 4)"
};

// `what` names the array in error messages (e.g. "--inputs X.npy").
NpyArray parse_npy(const std::vector<uint8_t>& file_bytes, const std::string& what);
NpyArray read_npy(const std::string& path, const std::string& what);
std::vector<uint8_t> serialize_npy(const NpyArray& array);
void write_npy(const std::string& path, const NpyArray& array);
NpyArray make_npy_f64(std::vector<int64_t> shape, const std::vector<double>& values);

}  // namespace basin
