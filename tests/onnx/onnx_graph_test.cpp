// The ONNX importer on graphs built in C++, part 2: each op's mapping onto primitive nodes
// (shapes, per-example axes, names), parameter choice (named, detected, constants, tied), shape
// arithmetic folded for the actual input, and the bad inputs of issue 11 (BatchNorm in training
// mode, dynamic dimensions, ops that would mix examples, unknown attribute values).
// Tests whose primitive ops are not registered yet skip, naming the missing ops.
#include <limits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "basin/error.hpp"
#include "basin/onnx_import.hpp"
#include "onnx_builder.hpp"
#include "onnx_test_util.hpp"

namespace basin {
namespace {

using onnx_test::kBatch;
using onnx_test::kFloat;
using onnx_test::ModelBuilder;

std::vector<double> ramp(int64_t count, double scale = 0.125, double offset = 0) {
  std::vector<double> v(static_cast<size_t>(count));
  for (size_t i = 0; i < v.size(); ++i) v[i] = offset + scale * static_cast<double>(i + 1);
  return v;
}

const Shape& shape_of(const ImportedModel& r, const std::string& node) {
  const GraphNode* n = node_named(r.graph, node);
  if (n == nullptr) {
    ADD_FAILURE() << "no node '" << node << "'";
    static const Shape none;
    return none;
  }
  return r.graph.value(n->output).shape;
}

// x [batch, 3, 8, 8] → Conv(4, 3x3, pad 1) → BatchNormalization → Relu → MaxPool 2 → Flatten → Gemm(3):
// torch's Conv2d + BatchNorm2d + ReLU + MaxPool2d + Flatten + Linear.
ModelBuilder conv_bn_net(int64_t training_mode = -1) {
  ModelBuilder m(13);
  m.input("x", {kBatch, 3, 8, 8});
  m.init("conv.weight", {4, 3, 3, 3}, ramp(108, 0.01));
  m.init("conv.bias", {4}, ramp(4));
  onnx::NodeProto* c = m.node("Conv", {"x", "conv.weight", "conv.bias"}, {"c"}, "/conv/Conv");
  onnx_test::set_ints(c, "kernel_shape", {3, 3});
  onnx_test::set_ints(c, "pads", {1, 1, 1, 1});
  onnx_test::set_ints(c, "strides", {1, 1});
  m.init("bn.weight", {4}, ramp(4, 0.5));
  m.init("bn.bias", {4}, ramp(4, -0.25));
  m.init("bn.running_mean", {4}, ramp(4, 0.1));
  m.init("bn.running_var", {4}, ramp(4, 0.3));
  onnx::NodeProto* bn =
      m.node("BatchNormalization", {"c", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}, {"b"}, "/bn/BN");
  onnx_test::set_float(bn, "epsilon", 1e-5f);
  if (training_mode >= 0) onnx_test::set_int(bn, "training_mode", training_mode);
  m.node("Relu", {"b"}, {"r"}, "/relu/Relu");
  onnx::NodeProto* p = m.node("MaxPool", {"r"}, {"p"}, "/pool/MaxPool");
  onnx_test::set_ints(p, "kernel_shape", {2, 2});
  onnx_test::set_ints(p, "strides", {2, 2});
  m.node("Flatten", {"p"}, {"f"}, "/flatten/Flatten");
  m.init("fc.weight", {3, 64}, ramp(192, 0.001));
  m.init("fc.bias", {3}, ramp(3));
  onnx_test::set_int(m.node("Gemm", {"f", "fc.weight", "fc.bias"}, {"y"}, "/fc/Gemm"), "transB", 1);
  m.output("y", {kBatch, 3});
  return m;
}

TEST(OnnxGraph, ConvBatchNormReluPoolLinear) {
  REQUIRE_OPS("conv", "max_pool", "sub", "mul", "add", "reshape");
  const ImportedModel r = import_onnx(conv_bn_net().bytes(), "t");
  EXPECT_EQ(r.graph.input_shape(), (Shape{3, 8, 8}));
  // Parameters: the module's parameters(), not the running statistics.
  EXPECT_EQ(r.graph.parameter_names(),
            (std::vector<std::string>{"conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight", "fc.bias"}));
  EXPECT_EQ(r.graph.num_params(), 108 + 4 + 4 + 4 + 192 + 3);
  EXPECT_EQ(static_cast<int64_t>(r.params.size()), r.graph.num_params());
  EXPECT_EQ(shape_of(r, "/conv/Conv"), (Shape{4, 8, 8}));
  EXPECT_EQ(shape_of(r, "/bn/BN"), (Shape{4, 8, 8}));
  EXPECT_EQ(shape_of(r, "/pool/MaxPool"), (Shape{4, 4, 4}));
  EXPECT_EQ(shape_of(r, "/flatten/Flatten"), Shape{64});
  EXPECT_EQ(shape_of(r, "/fc/Gemm"), Shape{3});
  const GraphNode* conv = node_named(r.graph, "/conv/Conv");
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(attr_ints(conv->attrs, "pads"), (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(attr_int(conv->attrs, "group", 0), 1);
  // BatchNorm: (x − mean)·inv_std·γ + β with the statistics as constants.
  EXPECT_NE(node_named(r.graph, "/bn/BN:sub"), nullptr);
  for (const GraphValue& v : r.graph.values())
    if (v.name == "bn.running_mean") EXPECT_EQ(v.kind, ValueKind::kConstant);
  EXPECT_TRUE(r.model.layers.empty());  // not a dense chain
}

TEST(OnnxGraph, BatchNormTrainingModeIsRefusedNamingTheNode) {
  ModelBuilder m(15);
  m.input("x", {kBatch, 4});
  for (const char* n : {"s", "b", "mean", "var"}) m.init(n, {4}, ramp(4, 0.5));
  onnx_test::set_int(m.node("BatchNormalization", {"x", "s", "b", "mean", "var"}, {"y"}, "my_bn"), "training_mode", 1);
  m.output("y", {kBatch, 4});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kInvalidArgument, "'my_bn' (BatchNormalization)", "training_mode=1",
                      "inference");
  ModelBuilder outs(13);  // training-mode outputs in use
  outs.input("x", {kBatch, 4});
  for (const char* n : {"s", "b", "mean", "var"}) outs.init(n, {4}, ramp(4, 0.5));
  outs.node("BatchNormalization", {"x", "s", "b", "mean", "var"}, {"y0", "rm"}, "bn2");
  outs.node("Add", {"y0", "rm"}, {"y"}, "add");
  outs.output("y", {kBatch, 4});
  EXPECT_IMPORT_ERROR(outs.bytes(), ErrorCode::kInvalidArgument, "'bn2' (BatchNormalization)", "'rm'");
}

// BatchNorm1d on [batch, C]: all constants but γ, β; with them as constants too it folds into
// one scale and one shift.
TEST(OnnxGraph, BatchNormOnVectorsAndFolding) {
  REQUIRE_OPS("sub", "mul", "add");
  ModelBuilder m(13);
  m.input("x", {kBatch, 4});
  m.init("s", {4}, ramp(4, 0.5));
  m.init("b", {4}, ramp(4, 0.25));
  m.init("mean", {4}, ramp(4, 0.1));
  m.init("var", {4}, ramp(4, 0.3));
  m.node("BatchNormalization", {"x", "s", "b", "mean", "var"}, {"h"}, "bn");
  m.init("W", {2, 4}, ramp(8));
  onnx_test::set_int(m.node("Gemm", {"h", "W"}, {"y"}, "fc"), "transB", 1);
  m.output("y", {kBatch, 2});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(r.graph.parameter_names(), (std::vector<std::string>{"s", "b", "W"}));
  EXPECT_EQ(ops_of(r.graph), (std::vector<std::string>{"sub", "mul", "mul", "add", "matmul"}));
  EXPECT_EQ(r.graph.nodes()[3].name, "bn");
  ImportBounds c;
  c.constant_names = {"s", "b"};
  const ImportedModel f = import_onnx(m.bytes(), "t", c);
  ASSERT_EQ(ops_of(f.graph), (std::vector<std::string>{"mul", "add", "matmul"}));
  const GraphValue& scale = f.graph.value(f.graph.nodes()[0].inputs[1]);
  EXPECT_DOUBLE_EQ(scale.data[1], 1.0 / std::sqrt(0.6 + 1e-5));  // γ₁/√(var₁ + ε), γ₁ = 1
}

// torch 1.13 in PRESERVE mode writes freshly initialised running statistics as an Identity of the
// identical γ / β initialiser: they stay constants (no gradient flows into γ through var).
TEST(OnnxGraph, BatchNormStatisticsThroughIdentityOfAParameterAreConstants) {
  REQUIRE_OPS("sub", "mul", "add");
  ModelBuilder m(13);
  m.input("x", {kBatch, 2});
  m.init("bn.weight", {2}, {1, 1});
  m.init("bn.bias", {2}, {0, 0});
  m.node("Identity", {"bn.weight"}, {"bn.running_var"}, "Identity_0");
  m.node("Identity", {"bn.bias"}, {"bn.running_mean"}, "Identity_1");
  m.node("BatchNormalization", {"x", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}, {"y"}, "bn");
  m.output("y", {kBatch, 2});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(r.graph.parameter_names(), (std::vector<std::string>{"bn.weight", "bn.bias"}));
  const GraphNode* sub = node_named(r.graph, "bn:sub");
  ASSERT_NE(sub, nullptr);
  EXPECT_EQ(r.graph.value(sub->inputs[1]).kind, ValueKind::kConstant);
}

TEST(OnnxGraph, LayerNormalizationOpset17) {
  REQUIRE_OPS("reduce_mean", "sub", "mul", "add");
  ModelBuilder m(17);
  m.input("x", {kBatch, 2, 6});
  m.init("ln.weight", {6}, ramp(6));
  m.init("ln.bias", {6}, ramp(6, -0.1));
  onnx::NodeProto* ln = m.node("LayerNormalization", {"x", "ln.weight", "ln.bias"}, {"y"}, "/ln/LayerNormalization");
  onnx_test::set_int(ln, "axis", -1);
  onnx_test::set_float(ln, "epsilon", 1e-5f);
  m.output("y", {kBatch, 2, 6});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(r.graph.parameter_names(), (std::vector<std::string>{"ln.weight", "ln.bias"}));
  const GraphNode* mean = node_named(r.graph, "/ln/LayerNormalization:mean");
  ASSERT_NE(mean, nullptr);
  EXPECT_EQ(mean->op, "reduce_mean");
  EXPECT_EQ(attr_ints(mean->attrs, "axes"), std::vector<int64_t>{1});  // ONNX axis 2 → per-example 1
  EXPECT_EQ(r.graph.value(mean->output).shape, (Shape{2, 1}));
  EXPECT_EQ(shape_of(r, "/ln/LayerNormalization"), (Shape{2, 6}));
  EXPECT_EQ(r.graph.nodes().back().name, "/ln/LayerNormalization");
}

TEST(OnnxGraph, LayerNormalizationOverTheBatchAxisMixesExamples) {
  ModelBuilder m(17);
  m.input("x", {kBatch, 6});
  m.init("g", {6}, ramp(6));
  onnx_test::set_int(m.node("LayerNormalization", {"x", "g"}, {"y"}, "ln0"), "axis", 0);
  m.output("y", {kBatch, 6});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kInvalidArgument, "'ln0'", "examples cannot be mixed");
}

// LayerNorm as older exporters write it: ReduceMean, Sub, Pow 2, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β.
TEST(OnnxGraph, DecomposedLayerNormOfOlderOpsets) {
  REQUIRE_OPS("reduce_mean", "sub", "mul", "add");
  ModelBuilder m(13);
  m.input("x", {kBatch, 6});
  onnx_test::set_ints(m.node("ReduceMean", {"x"}, {"mu"}, "/ln/ReduceMean"), "axes", {-1});
  m.node("Sub", {"x", "mu"}, {"d"}, "/ln/Sub");
  m.constant("two", 2.0);
  m.node("Pow", {"d", "two"}, {"d2"}, "/ln/Pow");
  onnx_test::set_ints(m.node("ReduceMean", {"d2"}, {"var"}, "/ln/ReduceMean_1"), "axes", {-1});
  m.constant("eps", 1e-5);
  m.node("Add", {"var", "eps"}, {"ve"}, "/ln/Add");
  m.node("Sqrt", {"ve"}, {"sd"}, "/ln/Sqrt");
  m.node("Div", {"d", "sd"}, {"n"}, "/ln/Div");
  m.init("ln.weight", {6}, ramp(6));
  m.init("ln.bias", {6}, ramp(6));
  m.node("Mul", {"n", "ln.weight"}, {"g"}, "/ln/Mul");
  m.node("Add", {"g", "ln.bias"}, {"y"}, "/ln/Add_1");
  m.output("y", {kBatch, 6});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(r.graph.parameter_names(), (std::vector<std::string>{"ln.weight", "ln.bias"}));
  EXPECT_EQ(shape_of(r, "/ln/ReduceMean"), Shape{1});
  EXPECT_EQ(attr_string(node_named(r.graph, "/ln/Div:reciprocal")->attrs, "fn"), "reciprocal");
  EXPECT_EQ(node_named(r.graph, "/ln/Pow")->op, "mul");  // x² as x·x
}

TEST(OnnxGraph, GroupAndInstanceNormalization) {
  REQUIRE_OPS("reshape", "reduce_mean", "sub", "mul", "add");
  ModelBuilder m(18);
  m.input("x", {kBatch, 4, 3, 3});
  m.init("gn.weight", {4}, ramp(4));
  m.init("gn.bias", {4}, ramp(4));
  onnx::NodeProto* gn = m.node("GroupNormalization", {"x", "gn.weight", "gn.bias"}, {"g"}, "/gn/GroupNorm");
  onnx_test::set_int(gn, "num_groups", 2);
  m.init("in.weight", {4}, ramp(4));
  m.init("in.bias", {4}, ramp(4));
  m.node("InstanceNormalization", {"g", "in.weight", "in.bias"}, {"y"}, "/in/InstanceNorm");
  m.output("y", {kBatch, 4, 3, 3});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(shape_of(r, "/gn/GroupNorm:grouped"), (Shape{2, 18}));
  EXPECT_EQ(shape_of(r, "/gn/GroupNorm"), (Shape{4, 3, 3}));
  EXPECT_EQ(shape_of(r, "/in/InstanceNorm:grouped"), (Shape{4, 9}));
  EXPECT_EQ(shape_of(r, "/in/InstanceNorm"), (Shape{4, 3, 3}));
  EXPECT_EQ(r.graph.num_params(), 16);
}

TEST(OnnxGraph, SoftmaxAndLogSoftmax) {
  REQUIRE_OPS("reduce_max", "reduce_sum", "sub", "mul");
  for (const char* op : {"Softmax", "LogSoftmax"}) {
    SCOPED_TRACE(op);
    ModelBuilder m(13);
    m.input("x", {kBatch, 3});
    m.init("W", {4, 3}, ramp(12));
    onnx_test::set_int(m.node("Gemm", {"x", "W"}, {"h"}, "fc"), "transB", 1);
    onnx_test::set_int(m.node(op, {"h"}, {"y"}, "sm"), "axis", 1);
    m.output("y", {kBatch, 4});
    const ImportedModel r = import_onnx(m.bytes(), "t");
    const GraphNode* mx = node_named(r.graph, "sm:max");
    ASSERT_NE(mx, nullptr);
    EXPECT_EQ(mx->op, "reduce_max");
    EXPECT_EQ(attr_ints(mx->attrs, "axes"), std::vector<int64_t>{0});
    EXPECT_FALSE(r.graph.value(mx->output).differentiable);  // the stop-gradient
    EXPECT_EQ(shape_of(r, "sm"), Shape{4});
  }
}

TEST(OnnxGraph, ResidualBlockIsNotBranchingAnymore) {
  REQUIRE_OPS("add");
  ModelBuilder m;  // y = fc2(relu(fc1(x))) + x
  m.input("x", {kBatch, 3});
  for (const char* fc : {"fc1", "fc2"}) m.init(std::string(fc) + ".weight", {3, 3}, ramp(9));
  onnx_test::set_int(m.node("Gemm", {"x", "fc1.weight"}, {"h"}, "fc1"), "transB", 1);
  m.node("Relu", {"h"}, {"r"}, "relu");
  onnx_test::set_int(m.node("Gemm", {"r", "fc2.weight"}, {"z"}, "fc2"), "transB", 1);
  m.node("Add", {"z", "x"}, {"y"}, "residual");
  m.output("y", {kBatch, 3});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(ops_of(r.graph), (std::vector<std::string>{"matmul", "unary", "matmul", "add"}));
  const GraphNode* add = node_named(r.graph, "residual");
  ASSERT_NE(add, nullptr);
  EXPECT_EQ(add->inputs[1], r.graph.input());
}

TEST(OnnxGraph, TiedWeightsAreOneParameter) {
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  m.init("W", {3, 3}, ramp(9));
  onnx_test::set_int(m.node("Gemm", {"x", "W"}, {"h"}, "fc1"), "transB", 1);
  m.node("Tanh", {"h"}, {"t"}, "tanh");
  onnx_test::set_int(m.node("Gemm", {"t", "W"}, {"y"}, "fc2"), "transB", 1);
  m.output("y", {kBatch, 3});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(r.graph.parameter_names(), std::vector<std::string>{"W"});
  EXPECT_EQ(r.graph.num_params(), 9);
  EXPECT_EQ(r.graph.nodes()[0].inputs[1], r.graph.nodes()[2].inputs[1]);
  EXPECT_TRUE(r.model.layers.empty());  // no chain form for shared weights
}

// ---- parameters ----

ModelBuilder two_layer() {
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  m.init("a.weight", {4, 3}, ramp(12));
  m.init("a.bias", {4}, ramp(4));
  m.init("b.weight", {2, 4}, ramp(8, 0.5));
  onnx_test::set_int(m.node("Gemm", {"x", "a.weight", "a.bias"}, {"h"}, "a"), "transB", 1);
  m.node("Relu", {"h"}, {"r"}, "relu");
  onnx_test::set_int(m.node("Gemm", {"r", "b.weight"}, {"y"}, "b"), "transB", 1);
  m.output("y", {kBatch, 2});
  return m;
}

TEST(OnnxGraph, ParameterNamesGiveThetaAndItsOrder) {
  ImportBounds b;
  b.parameter_names = {"b.weight", "a.weight"};  // a.bias: a constant
  const ImportedModel r = import_onnx(two_layer().bytes(), "t", b);
  EXPECT_EQ(r.graph.parameter_names(), (std::vector<std::string>{"b.weight", "a.weight"}));
  EXPECT_EQ(r.graph.num_params(), 20);
  std::vector<double> expected = ramp(8, 0.5);
  for (double v : ramp(12)) expected.push_back(v);
  EXPECT_EQ(r.params, expected);
  // Offsets follow the given order: a.weight starts after b.weight's 8 values.
  for (int id : r.graph.parameters())
    if (r.graph.value(id).name == "a.weight") EXPECT_EQ(r.graph.value(id).param_offset, 8);
  const GraphValue& bias = r.graph.value(r.graph.nodes()[0].inputs[2]);
  EXPECT_EQ(bias.kind, ValueKind::kConstant);
}

TEST(OnnxGraph, UnknownParameterOrConstantNameListsTheInitialisers) {
  ImportBounds b;
  b.parameter_names = {"a.weight", "c.weight"};
  EXPECT_IMPORT_ERROR_B(two_layer().bytes(), b, ErrorCode::kInvalidArgument, "'c.weight'", "not an initialiser",
                        "'a.weight', 'a.bias', 'b.weight'");
  ImportBounds c;
  c.constant_names = {"nope"};
  EXPECT_IMPORT_ERROR_B(two_layer().bytes(), c, ErrorCode::kInvalidArgument, "'nope'", "'a.bias'");
  ImportBounds twice;
  twice.parameter_names = {"a.weight", "a.weight"};
  EXPECT_IMPORT_ERROR_B(two_layer().bytes(), twice, ErrorCode::kInvalidArgument, "named twice");
}

TEST(OnnxGraph, ConstantNamesRemoveDetectedParameters) {
  ImportBounds c;
  c.constant_names = {"a.bias"};
  const ImportedModel r = import_onnx(two_layer().bytes(), "t", c);
  EXPECT_EQ(r.graph.parameter_names(), (std::vector<std::string>{"a.weight", "b.weight"}));
  EXPECT_EQ(r.graph.num_params(), 20);
}

// ---- shapes: dynamic dimensions, folded shape arithmetic ----

TEST(OnnxGraph, DynamicNonBatchDimensionNeedsTheData) {
  ModelBuilder m;
  m.input("x", {kBatch, kBatch});  // [batch, d] with d symbolic
  m.init("W", {2, 3}, ramp(6));
  onnx_test::set_int(m.node("Gemm", {"x", "W"}, {"y"}, "fc"), "transB", 1);
  m.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kInvalidArgument, "graph input 'x'", "dynamic dimension 1");
  ImportBounds b;
  b.input_shape = {3};
  EXPECT_EQ(import_onnx(m.bytes(), "t", b).graph.input_shape(), Shape{3});
  b.input_shape = {5};  // data that does not fit the weights: the node is named
  EXPECT_IMPORT_ERROR_B(m.bytes(), b, ErrorCode::kInvalidArgument, "'fc'");
  // An example shape with an empty or negative axis (the request fuzzer's INT64_MIN overflowed).
  b.input_shape = {std::numeric_limits<int64_t>::min()};
  EXPECT_IMPORT_ERROR_B(m.bytes(), b, ErrorCode::kInvalidArgument, "every axis must be at least 1");
  b.input_shape = {0};
  EXPECT_IMPORT_ERROR_B(m.bytes(), b, ErrorCode::kInvalidArgument, "every axis must be at least 1");
}

// x.view(x.size(0), -1) as torch writes it: Shape → Gather(0) → Unsqueeze → Concat([b, -1]) → Reshape.
TEST(OnnxGraph, ShapeArithmeticIsFoldedForTheInput) {
  REQUIRE_OPS("reshape");
  ModelBuilder m(13);
  m.input("x", {kBatch, 3, 4});
  m.node("Shape", {"x"}, {"s"}, "/Shape");
  m.init_ints("zero", {}, {0});
  m.node("Gather", {"s", "zero"}, {"n"}, "/Gather");
  m.init_ints("ax0", {1}, {0});
  m.node("Unsqueeze", {"n", "ax0"}, {"n1"}, "/Unsqueeze");
  m.init_ints("minus1", {1}, {-1});
  onnx_test::set_int(m.node("Concat", {"n1", "minus1"}, {"shape"}, "/Concat"), "axis", 0);
  m.node("Reshape", {"x", "shape"}, {"f"}, "/Reshape");
  m.init("W", {2, 12}, ramp(24));
  onnx_test::set_int(m.node("Gemm", {"f", "W"}, {"y"}, "fc"), "transB", 1);
  m.output("y", {kBatch, 2});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(ops_of(r.graph), (std::vector<std::string>{"reshape", "matmul"}));
  EXPECT_EQ(shape_of(r, "/Reshape"), Shape{12});
  EXPECT_EQ(r.graph.parameter_names(), std::vector<std::string>{"W"});  // int64 initialisers are constants
}

TEST(OnnxGraph, ReshapeMustKeepTheBatchFirst) {
  ModelBuilder m(13);
  m.input("x", {kBatch, 3, 4});
  m.init_ints("shape", {2}, {3, -1});
  m.node("Reshape", {"x", "shape"}, {"y"}, "bad_reshape");
  m.output("y", {3, kBatch});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kInvalidArgument, "'bad_reshape'", "batch", "examples cannot be mixed");
}

TEST(OnnxGraph, OpsAlongTheBatchAxisAreRefused) {
  ModelBuilder t(13);
  t.input("x", {kBatch, 3});
  onnx_test::set_ints(t.node("Transpose", {"x"}, {"y"}, "tr"), "perm", {1, 0});
  t.output("y", {3, kBatch});
  EXPECT_IMPORT_ERROR(t.bytes(), ErrorCode::kInvalidArgument, "'tr' (Transpose)", "examples cannot be mixed");
  ModelBuilder s(13);
  s.input("x", {kBatch, 3});
  s.init_ints("axes", {1}, {0});
  s.node("ReduceSum", {"x", "axes"}, {"y"}, "sum0");
  s.output("y", {1, 3});
  EXPECT_IMPORT_ERROR(s.bytes(), ErrorCode::kInvalidArgument, "'sum0' (ReduceSum)", "examples cannot be mixed");
  ModelBuilder c(13);
  c.input("x", {kBatch, 3});
  onnx_test::set_int(c.node("Concat", {"x", "x"}, {"y"}, "cat0"), "axis", 0);
  c.output("y", {kBatch, 3});
  EXPECT_IMPORT_ERROR(c.bytes(), ErrorCode::kInvalidArgument, "'cat0' (Concat)", "examples cannot be mixed");
}

TEST(OnnxGraph, LayoutOpsOnPerExampleAxes) {
  REQUIRE_OPS("transpose", "reshape", "concat", "slice", "pad");
  ModelBuilder m(13);
  m.input("x", {kBatch, 2, 3});
  onnx_test::set_ints(m.node("Transpose", {"x"}, {"t"}, "tr"), "perm", {0, 2, 1});  // [b, 3, 2]
  onnx_test::set_int(m.node("Concat", {"t", "t"}, {"c"}, "cat"), "axis", -1);      // [b, 3, 4]
  m.init_ints("st", {1}, {1});
  m.init_ints("en", {1}, {INT64_MAX});  // to the end, as torch writes x[..., 1:]
  m.init_ints("ax", {1}, {2});
  m.node("Slice", {"c", "st", "en", "ax"}, {"s0"}, "sl0");  // [b, 3, 3]
  m.init_ints("en2", {1}, {2});
  m.node("Slice", {"s0", "zero_st", "en2", "ax"}, {"s"}, "sl");  // [b, 3, 2]
  m.init_ints("zero_st", {1}, {0});
  m.init_ints("pads", {6}, {0, 0, 1, 0, 0, 2});
  m.node("Pad", {"s", "pads"}, {"p"}, "pad");  // [b, 3, 5]
  m.init_ints("uaxes", {1}, {1});
  m.node("Unsqueeze", {"p", "uaxes"}, {"u"}, "unsq");  // [b, 1, 3, 5]
  m.node("Squeeze", {"u", "uaxes"}, {"q"}, "sq");      // [b, 3, 5]
  m.init("scale", {5}, ramp(5));
  m.node("Mul", {"q", "scale"}, {"y"}, "scale");
  m.output("y", {kBatch, 3, 5});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(attr_ints(node_named(r.graph, "tr")->attrs, "perm"), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(attr_int(node_named(r.graph, "cat")->attrs, "axis", -9), 1);
  EXPECT_EQ(shape_of(r, "cat"), (Shape{3, 4}));
  EXPECT_EQ(shape_of(r, "sl0"), (Shape{3, 3}));
  EXPECT_EQ(shape_of(r, "sl"), (Shape{3, 2}));
  EXPECT_EQ(attr_ints(node_named(r.graph, "pad")->attrs, "pads"), (std::vector<int64_t>{0, 1, 0, 2}));
  EXPECT_EQ(shape_of(r, "pad"), (Shape{3, 5}));
  EXPECT_EQ(shape_of(r, "unsq"), (Shape{1, 3, 5}));
  EXPECT_EQ(shape_of(r, "sq"), (Shape{3, 5}));
}

TEST(OnnxGraph, ElementwiseFunctionsAndConstants) {
  REQUIRE_OPS("mul", "add", "sub");
  ModelBuilder m(13);
  m.input("x", {kBatch, 3});
  onnx_test::set_float(m.node("Elu", {"x"}, {"a"}, "elu"), "alpha", 0.5f);
  m.node("HardSwish", {"a"}, {"b"}, "hswish");
  m.node("HardSigmoid", {"b"}, {"c"}, "hsig");
  m.constant("lo", -1.0);
  m.constant("hi", 1.0);
  m.node("Clip", {"c", "lo", "hi"}, {"d"}, "clip");
  m.node("Exp", {"d"}, {"e"}, "exp");
  m.node("Log", {"e"}, {"f"}, "log");
  m.node("Neg", {"f"}, {"g"}, "neg");
  m.constant("three", 3.0);
  m.node("Div", {"g", "three"}, {"h"}, "div");
  m.node("Sub", {"h", "x"}, {"z"}, "sub");
  m.init("scale", {3}, ramp(3));
  m.node("Mul", {"z", "scale"}, {"y"}, "scale");
  m.output("y", {kBatch, 3});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(attr_string(node_named(r.graph, "elu")->attrs, "fn"), "elu");
  EXPECT_EQ(attr_float(node_named(r.graph, "elu")->attrs, "alpha", 0), 0.5);
  EXPECT_EQ(attr_float(node_named(r.graph, "hsig")->attrs, "alpha", 0), 0.2);  // ONNX default
  EXPECT_EQ(attr_string(node_named(r.graph, "clip")->attrs, "fn"), "hardtanh");
  EXPECT_EQ(attr_float(node_named(r.graph, "clip")->attrs, "beta", 0), 1.0);
  const GraphNode* div = node_named(r.graph, "div");
  EXPECT_EQ(div->op, "mul");
  EXPECT_DOUBLE_EQ(r.graph.value(div->inputs[1]).data[0], 1.0 / 3.0);
  EXPECT_EQ(node_named(r.graph, "neg")->op, "mul");
}

TEST(OnnxGraph, UnknownAttributeValues) {
  ModelBuilder m(13);
  m.input("x", {kBatch, 1, 4, 4});
  m.init("w", {1, 1, 3, 3}, ramp(9));
  onnx_test::set_string(m.node("Conv", {"x", "w"}, {"y"}, "conv_ap"), "auto_pad", "SOMETIMES");
  m.output("y", {kBatch, 1, 4, 4});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kInvalidArgument, "'conv_ap' (Conv)", "auto_pad", "SOMETIMES");
  ModelBuilder p(13);
  p.input("x", {kBatch, 1, 4, 4});
  onnx::NodeProto* mp = p.node("MaxPool", {"x"}, {"y"}, "pool_so");
  onnx_test::set_ints(mp, "kernel_shape", {2, 2});
  onnx_test::set_int(mp, "storage_order", 1);
  p.output("y", {kBatch, 1, 2, 2});
  EXPECT_IMPORT_ERROR(p.bytes(), ErrorCode::kUnimplemented, "'pool_so' (MaxPool)", "storage_order");
  ModelBuilder pad(13);
  pad.input("x", {kBatch, 3});
  pad.init_ints("pads", {4}, {0, 1, 0, 1});
  onnx_test::set_string(pad.node("Pad", {"x", "pads"}, {"y"}, "pad_r"), "mode", "reflect");
  pad.output("y", {kBatch, 5});
  EXPECT_IMPORT_ERROR(pad.bytes(), ErrorCode::kUnimplemented, "'pad_r' (Pad)", "reflect");
}

TEST(OnnxGraph, ShapesThatDoNotFitNameTheNode) {
  REQUIRE_OPS("conv");
  ModelBuilder m(13);
  m.input("x", {kBatch, 3, 8, 8});
  m.init("w", {4, 2, 3, 3}, ramp(72));  // expects 2 input channels
  m.node("Conv", {"x", "w"}, {"y"}, "conv_bad");
  m.output("y", {kBatch, 4, 6, 6});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kInvalidArgument, "test.onnx", "'conv_bad'");
}

TEST(OnnxGraph, PoolingReductionsAndPowers) {
  REQUIRE_OPS("avg_pool", "max_pool", "reduce_mean", "reduce_sum", "mul", "reshape");
  ModelBuilder m(13);
  m.input("x", {kBatch, 2, 6, 6});
  m.init("w", {2, 1, 3, 3}, ramp(18));
  onnx::NodeProto* c = m.node("Conv", {"x", "w"}, {"c"}, "dw");  // depthwise, SAME_UPPER
  onnx_test::set_int(c, "group", 2);
  onnx_test::set_string(c, "auto_pad", "SAME_UPPER");
  onnx::NodeProto* ap = m.node("AveragePool", {"c"}, {"a"}, "avg");
  onnx_test::set_ints(ap, "kernel_shape", {3, 3});
  onnx_test::set_ints(ap, "strides", {3, 3});
  onnx_test::set_int(ap, "count_include_pad", 1);
  m.node("GlobalAveragePool", {"a"}, {"g"}, "gap");  // [b, 2, 1, 1]
  m.node("Sqrt", {"g"}, {"s"}, "sqrt");
  m.node("Reciprocal", {"s"}, {"r"}, "recip");
  m.node("Erf", {"r"}, {"e"}, "erf");
  m.constant("three", 3.0);
  m.node("Pow", {"e", "three"}, {"p"}, "cube");
  m.init_ints("axes", {2}, {2, 3});
  onnx_test::set_int(m.node("ReduceSum", {"p", "axes"}, {"q"}, "rsum"), "keepdims", 0);  // [b, 2]
  onnx_test::set_ints(m.node("ReduceMean", {"q"}, {"y"}, "rmean"), "axes", {-1});         // [b, 1]
  m.output("y", {kBatch, 1});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(attr_int(node_named(r.graph, "dw")->attrs, "group", 0), 2);
  EXPECT_EQ(attr_ints(node_named(r.graph, "dw")->attrs, "pads"), (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(shape_of(r, "dw"), (Shape{2, 6, 6}));
  EXPECT_EQ(node_named(r.graph, "avg")->op, "avg_pool");
  EXPECT_EQ(attr_int(node_named(r.graph, "avg")->attrs, "count_include_pad", 0), 1);
  EXPECT_EQ(shape_of(r, "avg"), (Shape{2, 2, 2}));
  EXPECT_EQ(shape_of(r, "gap"), (Shape{2, 1, 1}));
  EXPECT_EQ(attr_string(node_named(r.graph, "erf")->attrs, "fn"), "erf");
  EXPECT_EQ(node_named(r.graph, "cube")->op, "mul");
  EXPECT_EQ(attr_ints(node_named(r.graph, "rsum")->attrs, "axes"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(shape_of(r, "rsum"), Shape{2});
  EXPECT_EQ(shape_of(r, "rmean"), Shape{1});
}

// torch's F.pad at opset 13 reverses its pads with Slice(step -1) on constants: folded.
TEST(OnnxGraph, NegativeStepsFoldOnConstants) {
  REQUIRE_OPS("pad", "mul");
  ModelBuilder m(13);
  m.input("x", {kBatch, 2, 3});
  m.init_ints("p", {6}, {0, 1, 0, 0, 2, 0});  // reversed: [0, 2, 0, 0, 1, 0]
  m.init_ints("st", {1}, {-1});
  m.init_ints("en", {1}, {INT64_MIN + 1});
  m.init_ints("ax", {1}, {0});
  m.init_ints("sp", {1}, {-1});
  m.node("Slice", {"p", "st", "en", "ax", "sp"}, {"rev"}, "rev");
  m.node("Pad", {"x", "rev"}, {"q"}, "pad");
  m.init("s", {3}, ramp(3));
  m.node("Mul", {"q", "s"}, {"y"}, "scale");
  m.output("y", {kBatch, 5, 3});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(attr_ints(node_named(r.graph, "pad")->attrs, "pads"), (std::vector<int64_t>{2, 0, 1, 0}));
  EXPECT_EQ(shape_of(r, "pad"), (Shape{5, 3}));
}

}  // namespace
}  // namespace basin
