// Small helpers to build ONNX models in C++ for the importer tests (what onnx.helper does in
// Python): inputs, outputs, initialisers (raw or typed, float or double), nodes, attributes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

namespace basin::onnx_test {

constexpr int kFloat = onnx::TensorProto_DataType_FLOAT;
constexpr int kDouble = onnx::TensorProto_DataType_DOUBLE;
constexpr int64_t kBatch = -1;  // a symbolic ("batch") dimension

class ModelBuilder {
 public:
  explicit ModelBuilder(int64_t opset = 17);

  onnx::GraphProto* graph() { return model_.mutable_graph(); }
  onnx::ModelProto& model() { return model_; }

  void input(const std::string& name, const std::vector<int64_t>& dims, int elem_type = kDouble);
  void output(const std::string& name, const std::vector<int64_t>& dims, int elem_type = kDouble);
  // values row-major; raw = raw_data (little-endian), else float_data/double_data.
  onnx::TensorProto* init(const std::string& name, const std::vector<int64_t>& dims, const std::vector<double>& values,
                          int elem_type = kDouble, bool raw = true);
  // An INT64 initialiser (shapes, axes, pads, indices).
  onnx::TensorProto* init_ints(const std::string& name, const std::vector<int64_t>& dims,
                               const std::vector<int64_t>& values);
  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs, const std::string& name = "");
  // A Constant node holding a scalar tensor (float32, as torch.onnx.export writes them).
  onnx::NodeProto* constant(const std::string& output, double value, int elem_type = kFloat);

  std::string bytes() const;

 private:
  onnx::ModelProto model_;
};

void set_int(onnx::NodeProto* n, const std::string& name, int64_t v);
void set_ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v);
void set_float(onnx::NodeProto* n, const std::string& name, float v);
void set_string(onnx::NodeProto* n, const std::string& name, const std::string& v);

}  // namespace basin::onnx_test
