#include "onnx_tensor.hpp"

#include <cstring>
#include <limits>

#include "basin/error.hpp"

namespace basin::onnx_import_detail {
namespace {

// Largest element count we accept for one tensor. The data must be in the file anyway, so this
// only guards the size arithmetic; 2^31 elements is beyond protobuf's 2 GiB message limit.
constexpr int64_t kMaxElements = int64_t{1} << 31;

template <class T>
void copy_raw(const std::string& raw, int64_t count, std::vector<double>* out) {
  // ONNX raw_data is little-endian; every platform Basin builds on (x86-64, aarch64) is too.
  static_assert(std::numeric_limits<T>::is_specialized, "numeric type");
  out->resize(static_cast<size_t>(count));
  const char* p = raw.data();
  for (int64_t i = 0; i < count; ++i) {
    T v;
    std::memcpy(&v, p + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
    (*out)[static_cast<size_t>(i)] = static_cast<double>(v);
  }
}

template <class Field>
void copy_typed(const Field& field, std::vector<double>* out) {
  out->resize(static_cast<size_t>(field.size()));
  for (int i = 0; i < field.size(); ++i) (*out)[static_cast<size_t>(i)] = static_cast<double>(field.Get(i));
}

}  // namespace

std::string data_type_name(int32_t data_type) {
  if (onnx::TensorProto_DataType_IsValid(data_type)) {
    return onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(data_type));
  }
  return "data type " + std::to_string(data_type);
}

ConstTensor decode_tensor(const onnx::TensorProto& t, const std::string& where) {
  if (t.data_location() == onnx::TensorProto_DataLocation_EXTERNAL || t.external_data_size() > 0) {
    throw Error(ErrorCode::kUnimplemented,
                where + ": tensor data stored outside the file (external data) is not supported; "
                        "save the model with all tensors inside the .onnx file");
  }
  if (t.has_segment()) {
    throw Error(ErrorCode::kUnimplemented, where + ": segmented tensors are not supported");
  }
  ConstTensor out;
  int64_t count = 1;
  for (int i = 0; i < t.dims_size(); ++i) {
    const int64_t d = t.dims(i);
    if (d < 0) invalid_argument(where + ": negative dimension " + std::to_string(d));
    if (d != 0 && count > kMaxElements / d) invalid_argument(where + ": tensor size overflows");
    count *= d;
    out.dims.push_back(d);
  }

  const std::string& raw = t.raw_data();
  const bool use_raw = t.has_raw_data();
  auto check_raw = [&](size_t elem) {
    if (raw.size() != static_cast<size_t>(count) * elem) {
      invalid_argument(where + ": raw_data holds " + std::to_string(raw.size()) + " bytes, dims need " +
                       std::to_string(count) + " × " + std::to_string(elem) + " (truncated or malformed)");
    }
  };
  auto check_typed = [&](int n, const char* field) {
    if (static_cast<int64_t>(n) != count) {
      invalid_argument(where + ": " + field + " holds " + std::to_string(n) + " values, dims need " +
                       std::to_string(count) + " (truncated or malformed)");
    }
  };

  switch (t.data_type()) {
    case onnx::TensorProto_DataType_FLOAT:
      if (use_raw) { check_raw(4); copy_raw<float>(raw, count, &out.values); }
      else { check_typed(t.float_data_size(), "float_data"); copy_typed(t.float_data(), &out.values); }
      break;
    case onnx::TensorProto_DataType_DOUBLE:
      if (use_raw) { check_raw(8); copy_raw<double>(raw, count, &out.values); }
      else { check_typed(t.double_data_size(), "double_data"); copy_typed(t.double_data(), &out.values); }
      break;
    case onnx::TensorProto_DataType_INT64:
      if (use_raw) { check_raw(8); copy_raw<int64_t>(raw, count, &out.values); }
      else { check_typed(t.int64_data_size(), "int64_data"); copy_typed(t.int64_data(), &out.values); }
      break;
    case onnx::TensorProto_DataType_INT32:
      if (use_raw) { check_raw(4); copy_raw<int32_t>(raw, count, &out.values); }
      else { check_typed(t.int32_data_size(), "int32_data"); copy_typed(t.int32_data(), &out.values); }
      break;
    case onnx::TensorProto_DataType_BOOL:  // typed BOOL values live in int32_data
      if (use_raw) { check_raw(1); copy_raw<uint8_t>(raw, count, &out.values); }
      else { check_typed(t.int32_data_size(), "int32_data"); copy_typed(t.int32_data(), &out.values); }
      break;
    default:
      throw Error(ErrorCode::kUnimplemented,
                  where + ": tensors of type " + data_type_name(t.data_type()) +
                      " are not supported (FLOAT or DOUBLE weights; INT32/INT64/BOOL constants)");
  }
  return out;
}

}  // namespace basin::onnx_import_detail
