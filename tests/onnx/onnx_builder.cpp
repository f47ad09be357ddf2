#include "onnx_builder.hpp"

#include <cstring>

namespace basin::onnx_test {
namespace {

void set_shape(onnx::ValueInfoProto* v, const std::vector<int64_t>& dims, int elem_type) {
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type);
  auto* shape = tt->mutable_shape();
  for (int64_t d : dims) {
    auto* dim = shape->add_dim();
    if (d == kBatch) dim->set_dim_param("batch");
    else dim->set_dim_value(d);
  }
}

void fill_tensor(onnx::TensorProto* t, const std::vector<int64_t>& dims, const std::vector<double>& values,
                 int elem_type, bool raw) {
  for (int64_t d : dims) t->add_dims(d);
  t->set_data_type(elem_type);
  if (elem_type == kFloat) {
    if (raw) {
      std::string bytes(values.size() * 4, '\0');
      for (size_t i = 0; i < values.size(); ++i) {
        const float f = static_cast<float>(values[i]);
        std::memcpy(&bytes[i * 4], &f, 4);
      }
      t->set_raw_data(bytes);
    } else {
      for (double v : values) t->add_float_data(static_cast<float>(v));
    }
  } else {
    if (raw) {
      std::string bytes(values.size() * 8, '\0');
      std::memcpy(bytes.data(), values.data(), bytes.size());
      t->set_raw_data(bytes);
    } else {
      for (double v : values) t->add_double_data(v);
    }
  }
}

}  // namespace

ModelBuilder::ModelBuilder(int64_t opset) {
  model_.set_ir_version(8);
  model_.set_producer_name("basin-onnx-test");
  auto* op = model_.add_opset_import();
  op->set_domain("");
  op->set_version(opset);
  model_.mutable_graph()->set_name("test");
}

void ModelBuilder::input(const std::string& name, const std::vector<int64_t>& dims, int elem_type) {
  auto* v = graph()->add_input();
  v->set_name(name);
  set_shape(v, dims, elem_type);
}

void ModelBuilder::output(const std::string& name, const std::vector<int64_t>& dims, int elem_type) {
  auto* v = graph()->add_output();
  v->set_name(name);
  set_shape(v, dims, elem_type);
}

onnx::TensorProto* ModelBuilder::init(const std::string& name, const std::vector<int64_t>& dims,
                                      const std::vector<double>& values, int elem_type, bool raw) {
  auto* t = graph()->add_initializer();
  t->set_name(name);
  fill_tensor(t, dims, values, elem_type, raw);
  return t;
}

onnx::TensorProto* ModelBuilder::init_ints(const std::string& name, const std::vector<int64_t>& dims,
                                           const std::vector<int64_t>& values) {
  auto* t = graph()->add_initializer();
  t->set_name(name);
  for (int64_t d : dims) t->add_dims(d);
  t->set_data_type(onnx::TensorProto_DataType_INT64);
  for (int64_t v : values) t->add_int64_data(v);
  return t;
}

onnx::NodeProto* ModelBuilder::node(const std::string& op, const std::vector<std::string>& inputs,
                                    const std::vector<std::string>& outputs, const std::string& name) {
  auto* n = graph()->add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (const auto& s : inputs) n->add_input(s);
  for (const auto& s : outputs) n->add_output(s);
  return n;
}

onnx::NodeProto* ModelBuilder::constant(const std::string& output, double value, int elem_type) {
  auto* n = node("Constant", {}, {output}, output + "_node");
  auto* a = n->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto_AttributeType_TENSOR);
  fill_tensor(a->mutable_t(), {}, {value}, elem_type, true);
  return n;
}

std::string ModelBuilder::bytes() const { return model_.SerializeAsString(); }

void set_int(onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INT);
  a->set_i(v);
}

void set_ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INTS);
  for (int64_t x : v) a->add_ints(x);
}

void set_float(onnx::NodeProto* n, const std::string& name, float v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_FLOAT);
  a->set_f(v);
}

void set_string(onnx::NodeProto* n, const std::string& name, const std::string& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_STRING);
  a->set_s(v);
}

}  // namespace basin::onnx_test
