// Decoding ONNX TensorProto initialisers / Constant values into host doubles.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

namespace basin::onnx_import_detail {

// A constant tensor widened to double (float32 widens exactly). Row-major, dims as in the file.
struct ConstTensor {
  std::vector<int64_t> dims;
  std::vector<double> values;
};

// Decodes FLOAT, DOUBLE, INT32, INT64 and BOOL tensors from raw_data (little-endian) or from the
// typed repeated fields. `where` prefixes error messages (e.g. "model.onnx: initialiser 'w'").
// Throws kInvalidArgument when the data does not match the dims (truncated, negative dims,
// overflowing sizes) and kUnimplemented for external data and other data types.
ConstTensor decode_tensor(const onnx::TensorProto& t, const std::string& where);

// Name of a TensorProto::DataType value for messages ("FLOAT16", "INT8", ...).
std::string data_type_name(int32_t data_type);

}  // namespace basin::onnx_import_detail
