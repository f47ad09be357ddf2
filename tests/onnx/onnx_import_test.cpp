// The ONNX importer on graphs built in C++, part 1: dense chains (their graph, parameter order and
// chain form), activations and patterns, and malformed / unsupported files failing with the right
// code and a message naming the node and op. Part 2 (onnx_graph_test.cpp): the graph ops,
// parameter choice and the bad inputs of issue 11. The PyTorch round trip is in
// test_onnx_import.py.
#include <cmath>
#include <functional>
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
using onnx_test::kDouble;
using onnx_test::kFloat;
using onnx_test::ModelBuilder;

// W [out, in] = 1..out*in / 8 (distinct, exact in float32), bias = -(1..out) / 4.
std::vector<double> weight_values(int64_t out, int64_t in) {
  std::vector<double> w(static_cast<size_t>(out * in));
  for (size_t i = 0; i < w.size(); ++i) w[i] = (static_cast<double>(i) + 1) / 8;
  return w;
}
std::vector<double> bias_values(int64_t out) {
  std::vector<double> b(static_cast<size_t>(out));
  for (size_t i = 0; i < b.size(); ++i) b[i] = -(static_cast<double>(i) + 1) / 4;
  return b;
}
std::vector<double> transpose(const std::vector<double>& w, int64_t rows, int64_t cols) {
  std::vector<double> t(w.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[static_cast<size_t>(c * rows + r)] = w[static_cast<size_t>(r * cols + c)];
  return t;
}
std::vector<double> concat(std::vector<double> a, const std::vector<double>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Gemm(transB=1) layer "name": x [*, in] -> y [*, out], weight/bias initialisers like torch writes.
void add_gemm(ModelBuilder& m, const std::string& x, const std::string& y, int64_t in, int64_t out, bool bias,
              const std::string& name, int elem = kDouble, bool raw = true) {
  m.init(name + ".weight", {out, in}, weight_values(out, in), elem, raw);
  std::vector<std::string> inputs = {x, name + ".weight"};
  if (bias) {
    m.init(name + ".bias", {out}, bias_values(out), elem, raw);
    inputs.push_back(name + ".bias");
  }
  onnx::NodeProto* n = m.node("Gemm", inputs, {y}, name);
  onnx_test::set_float(n, "alpha", 1.0f);
  onnx_test::set_float(n, "beta", 1.0f);
  onnx_test::set_int(n, "transB", 1);
}

// Input x [batch, 3] -> Gemm(4) -> <activation built by `act`> -> Gemm(2) -> y.
ModelBuilder sandwich(const std::function<void(ModelBuilder&, const std::string&, const std::string&)>& act,
                      int64_t opset = 17) {
  ModelBuilder m(opset);
  m.input("x", {kBatch, 3});
  add_gemm(m, "x", "h", 3, 4, true, "fc1");
  act(m, "h", "a");
  add_gemm(m, "a", "y", 4, 2, true, "fc2");
  m.output("y", {kBatch, 2});
  return m;
}

void expect_sandwich(const ImportedModel& r, Activation a, double alpha = 0.01) {
  EXPECT_EQ(ops_of(r.graph), (std::vector<std::string>{"matmul", "unary", "matmul"}));
  EXPECT_EQ(attr_string(r.graph.nodes()[1].attrs, "fn"), activation_name(a));
  EXPECT_EQ(r.graph.parameter_names(), (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  ASSERT_EQ(r.model.input_dim, 3);
  ASSERT_EQ(r.model.layers.size(), 3u);
  EXPECT_EQ(r.model.layers[0].kind, Layer::Kind::kDense);
  EXPECT_EQ(r.model.layers[0].out, 4);
  EXPECT_EQ(r.model.layers[1].kind, Layer::Kind::kActivation);
  EXPECT_EQ(r.model.layers[1].activation, a);
  if (a == Activation::kLeakyRelu) {
    EXPECT_EQ(r.model.layers[1].alpha, alpha);
  }
  EXPECT_EQ(r.model.layers[2].out, 2);
  const std::vector<double> expected =
      concat(concat(concat(weight_values(4, 3), bias_values(4)), weight_values(2, 4)), bias_values(2));
  EXPECT_EQ(r.params, expected);
}

// ---- dense layers ----

TEST(OnnxImport, GemmTransBOneIsTorchLinear) {
  ModelBuilder m(13);
  m.input("x", {kBatch, 3});
  add_gemm(m, "x", "y", 3, 2, true, "fc");
  m.output("y", {kBatch, 2});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(r.opset, 13);
  EXPECT_EQ(r.graph.input_shape(), Shape{3});
  ASSERT_EQ(r.graph.nodes().size(), 1u);
  const GraphNode& n = r.graph.nodes()[0];
  EXPECT_EQ(n.name, "fc");
  EXPECT_EQ(n.op, "matmul");
  EXPECT_EQ(attr_int(n.attrs, "trans_b", 0), 1);
  ASSERT_EQ(n.inputs.size(), 3u);  // x, W, b
  EXPECT_EQ(r.graph.value(n.inputs[1]).name, "fc.weight");
  EXPECT_EQ(r.graph.value(n.inputs[2]).param_offset, 6);
  EXPECT_EQ(r.graph.value(r.graph.output()).shape, Shape{2});
  EXPECT_EQ(r.params, concat(weight_values(2, 3), bias_values(2)));
  ASSERT_EQ(r.model.layers.size(), 1u);  // the chain form
  EXPECT_TRUE(r.model.layers[0].bias);
}

// alpha/beta never change a parameter: B and C stay as stored, the scalings are mul nodes; with
// B and C constants (--constants) they fold into the constants instead.
TEST(OnnxImport, GemmTransBZeroAlphaBetaScaleWithoutTouchingParameters) {
  ModelBuilder m(11);
  m.input("x", {kBatch, 3});
  const std::vector<double> w = weight_values(2, 3);
  m.init("B", {3, 2}, transpose(w, 2, 3));  // [in, out]
  m.init("C", {2}, bias_values(2));
  onnx::NodeProto* n = m.node("Gemm", {"x", "B", "C"}, {"y"}, "g");
  onnx_test::set_float(n, "alpha", 2.0f);
  onnx_test::set_float(n, "beta", 0.5f);
  m.output("y", {kBatch, 2});
  {
    REQUIRE_OPS("mul", "add");
    const ImportedModel r = import_onnx(m.bytes(), "t");
    EXPECT_EQ(r.params, concat(transpose(w, 2, 3), bias_values(2)));
    EXPECT_EQ(ops_of(r.graph), (std::vector<std::string>{"matmul", "mul", "mul", "add"}));
    EXPECT_EQ(attr_int(r.graph.nodes()[0].attrs, "trans_b", 1), 0);
    EXPECT_EQ(r.graph.nodes().back().name, "g");
    EXPECT_TRUE(r.model.layers.empty());  // no chain form: W is [in, out]
  }
  REQUIRE_OPS("mul", "add");
  ImportBounds constants;  // B a constant: alpha folds into it; C stays a parameter, scaled by a node
  constants.constant_names = {"B"};
  const ImportedModel c = import_onnx(m.bytes(), "t", constants);
  EXPECT_EQ(c.graph.parameter_names(), std::vector<std::string>{"C"});
  ASSERT_EQ(ops_of(c.graph), (std::vector<std::string>{"matmul", "mul", "add"}));
  const GraphValue& folded_b = c.graph.value(c.graph.nodes()[0].inputs[1]);
  EXPECT_EQ(folded_b.kind, ValueKind::kConstant);
  EXPECT_EQ(folded_b.data[0], 2 * transpose(w, 2, 3)[0]);
  EXPECT_EQ(c.params, bias_values(2));
}

TEST(OnnxImport, GemmWithoutBias) {
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  add_gemm(m, "x", "y", 3, 2, false, "fc");
  m.output("y", {kBatch, 2});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(r.graph.nodes()[0].inputs.size(), 2u);
  EXPECT_FALSE(r.model.layers[0].bias);
  EXPECT_EQ(r.params, weight_values(2, 3));
}

TEST(OnnxImport, MatMulPlusAddIsOneMatmulWithBiasEitherOrder) {
  for (bool bias_first : {false, true}) {
    ModelBuilder m;
    m.input("x", {kBatch, 3});
    m.init("W", {3, 2}, transpose(weight_values(2, 3), 2, 3));
    m.init("b", {2}, bias_values(2));
    m.node("MatMul", {"x", "W"}, {"xw"}, "mm");
    if (bias_first) m.node("Add", {"b", "xw"}, {"y"}, "add");
    else m.node("Add", {"xw", "b"}, {"y"}, "add");
    m.output("y", {kBatch, 2});
    const ImportedModel r = import_onnx(m.bytes(), "t");
    ASSERT_EQ(ops_of(r.graph), std::vector<std::string>{"matmul"});
    EXPECT_EQ(r.graph.nodes()[0].inputs.size(), 3u);
    EXPECT_EQ(attr_int(r.graph.nodes()[0].attrs, "trans_b", 0), 1);
    EXPECT_EQ(r.graph.parameter_names(), (std::vector<std::string>{"W", "b"}));
    // W [in, out] is θ as [out, in] (torch's layout of the Linear that exports as Wᵀ).
    EXPECT_EQ(r.graph.value(r.graph.nodes()[0].inputs[1]).shape, (Shape{2, 3}));
    EXPECT_EQ(r.params, concat(weight_values(2, 3), bias_values(2)));
    EXPECT_EQ(r.model.layers.size(), 1u);
  }
}

TEST(OnnxImport, GemmWithoutCThenAddIsAnAddNode) {
  REQUIRE_OPS("add");
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  m.init("W", {2, 3}, weight_values(2, 3));
  m.init("b", {1, 2}, bias_values(2));
  onnx_test::set_int(m.node("Gemm", {"x", "W"}, {"xw"}, "g"), "transB", 1);
  m.node("Add", {"xw", "b"}, {"y"}, "add");
  m.output("y", {kBatch, 2});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(ops_of(r.graph), (std::vector<std::string>{"matmul", "add"}));
  EXPECT_EQ(r.params, concat(weight_values(2, 3), bias_values(2)));
}

TEST(OnnxImport, MatMulWithoutAddHasNoBias) {
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  m.init("W", {3, 2}, transpose(weight_values(2, 3), 2, 3));
  m.node("MatMul", {"x", "W"}, {"y"}, "mm");
  m.output("y", {kBatch, 2});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(r.graph.nodes()[0].inputs.size(), 2u);
  EXPECT_EQ(r.params, weight_values(2, 3));
}

TEST(OnnxImport, InitialisersRawOrTypedFloatOrDouble) {
  for (int elem : {kFloat, kDouble}) {
    for (bool raw : {true, false}) {
      ModelBuilder m;
      m.input("x", {kBatch, 3}, elem);
      add_gemm(m, "x", "h", 3, 4, true, "fc1", elem, raw);
      m.node("Tanh", {"h"}, {"a"});
      add_gemm(m, "a", "y", 4, 2, true, "fc2", elem, raw);
      m.output("y", {kBatch, 2}, elem);
      expect_sandwich(import_onnx(m.bytes(), "t"), Activation::kTanh);
    }
  }
}

TEST(OnnxImport, Float32WeightsWidenExactly) {
  ModelBuilder m;
  m.input("x", {kBatch, 1}, kFloat);
  m.init("w", {1, 1}, {0.1}, kFloat);
  onnx::NodeProto* n = m.node("Gemm", {"x", "w"}, {"y"});
  onnx_test::set_int(n, "transB", 1);
  m.output("y", {kBatch, 1}, kFloat);
  EXPECT_EQ(import_onnx(m.bytes(), "t").params, std::vector<double>{static_cast<double>(0.1f)});
}

TEST(OnnxImport, InputShapeFromTheDataWhenTheFileHasNone) {
  ModelBuilder m;
  auto* in = m.graph()->add_input();
  in->set_name("x");  // no type, no shape
  add_gemm(m, "x", "y", 5, 2, true, "fc");
  m.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kInvalidArgument, "'x'", "no shape");
  ImportBounds b;
  b.input_shape = {5};
  EXPECT_EQ(import_onnx(m.bytes(), "t", b).graph.input_shape(), Shape{5});
}

TEST(OnnxImport, InitialisersListedAsInputsAreNotGraphInputs) {  // IR version < 4 style
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  m.input("fc.weight", {2, 3});
  m.input("fc.bias", {2});
  add_gemm(m, "x", "y", 3, 2, true, "fc");
  m.output("y", {kBatch, 2});
  EXPECT_EQ(import_onnx(m.bytes(), "t").graph.num_params(), 8);
}

// ---- activations ----

TEST(OnnxImport, SingleOpActivations) {
  const std::pair<const char*, Activation> ops[] = {{"Relu", Activation::kRelu},
                                                    {"Tanh", Activation::kTanh},
                                                    {"Sigmoid", Activation::kSigmoid},
                                                    {"Softplus", Activation::kSoftplus}};
  for (const auto& [op, act] : ops) {
    SCOPED_TRACE(op);
    ModelBuilder m = sandwich([&, op = op](ModelBuilder& b, const std::string& x, const std::string& y) {
      b.node(op, {x}, {y}, "act");
    });
    expect_sandwich(import_onnx(m.bytes(), "t"), act);
  }
}

TEST(OnnxImport, LeakyReluAlphaIsTheDecimalNotTheFloat) {
  ModelBuilder m = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) {
    onnx_test::set_float(b.node("LeakyRelu", {x}, {y}), "alpha", 0.2f);
  });
  const ImportedModel r = import_onnx(m.bytes(), "t");
  expect_sandwich(r, Activation::kLeakyRelu, 0.2);
  EXPECT_EQ(attr_float(r.graph.nodes()[1].attrs, "alpha", 0), 0.2);
  ModelBuilder d = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) {
    b.node("LeakyRelu", {x}, {y});
  });
  expect_sandwich(import_onnx(d.bytes(), "t"), Activation::kLeakyRelu, 0.01);  // ONNX default
}

TEST(OnnxImport, GeluOpset20) {
  ModelBuilder m = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) {
    b.node("Gelu", {x}, {y});
  }, 20);
  expect_sandwich(import_onnx(m.bytes(), "t"), Activation::kGelu);
  ModelBuilder none = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) {
    onnx_test::set_string(b.node("Gelu", {x}, {y}), "approximate", "none");
  }, 20);
  expect_sandwich(import_onnx(none.bytes(), "t"), Activation::kGelu);
}

TEST(OnnxImport, GeluTanhApproximationAndUnknownValues) {
  ModelBuilder m = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) {
    onnx_test::set_string(b.node("Gelu", {x}, {y}, "gelu_tanh"), "approximate", "tanh");
  }, 20);
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(attr_string(r.graph.nodes()[1].attrs, "fn"), "gelu_tanh");
  ModelBuilder bogus = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) {
    onnx_test::set_string(b.node("Gelu", {x}, {y}, "gelu_x"), "approximate", "bogus");
  }, 20);
  EXPECT_IMPORT_ERROR(bogus.bytes(), ErrorCode::kInvalidArgument, "gelu_x", "approximate", "bogus");
}

// torch.onnx.export (opsets 11-17): Div(x, √2) -> Erf -> Add(·, 1) -> Mul(x, ·) -> Mul(·, 0.5).
TEST(OnnxImport, GeluErfPatternAsTorchWritesIt) {
  ModelBuilder m = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) {
    b.constant("c_sqrt2", 1.4142135381698608);
    b.node("Div", {x, "c_sqrt2"}, {"d"});
    b.node("Erf", {"d"}, {"e"});
    b.constant("c_one", 1.0);
    b.node("Add", {"e", "c_one"}, {"s"});
    b.node("Mul", {x, "s"}, {"p"});
    b.constant("c_half", 0.5);
    b.node("Mul", {"p", "c_half"}, {y}, "gelu_last");
  });
  const ImportedModel r = import_onnx(m.bytes(), "t");
  expect_sandwich(r, Activation::kGelu);
  EXPECT_EQ(r.graph.nodes()[1].name, "gelu_last");
}

// Other arrangements: Mul by 1/√2, 0.5·x first, constants as initialisers (not parameters), Add(1, ·).
TEST(OnnxImport, GeluErfPatternOtherArrangements) {
  ModelBuilder m = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) {
    b.init("inv_sqrt2", {}, {0.7071067811865476}, kFloat);
    b.init("one", {1}, {1.0}, kFloat);
    b.init("half", {}, {0.5}, kFloat);
    b.node("Mul", {"half", x}, {"hx"});
    b.node("Mul", {x, "inv_sqrt2"}, {"d"});
    b.node("Erf", {"d"}, {"e"});
    b.node("Add", {"one", "e"}, {"s"});
    b.node("Mul", {"s", "hx"}, {y});
  });
  expect_sandwich(import_onnx(m.bytes(), "t"), Activation::kGelu);
}

TEST(OnnxImport, SiluAsXTimesSigmoid) {
  for (bool x_first : {true, false}) {
    ModelBuilder m = sandwich([&](ModelBuilder& b, const std::string& x, const std::string& y) {
      b.node("Sigmoid", {x}, {"s"});
      if (x_first) b.node("Mul", {x, "s"}, {y});
      else b.node("Mul", {"s", x}, {y});
    });
    expect_sandwich(import_onnx(m.bytes(), "t"), Activation::kSilu);
  }
}

TEST(OnnxImport, ConsecutiveSiluBlocks) {
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  add_gemm(m, "x", "h", 3, 2, true, "fc");
  m.node("Sigmoid", {"h"}, {"s1"});
  m.node("Mul", {"h", "s1"}, {"a1"});
  m.node("Sigmoid", {"a1"}, {"s2"});
  m.node("Mul", {"a1", "s2"}, {"y"});
  m.output("y", {kBatch, 2});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  ASSERT_EQ(ops_of(r.graph), (std::vector<std::string>{"matmul", "unary", "unary"}));
  EXPECT_EQ(attr_string(r.graph.nodes()[1].attrs, "fn"), "silu");
  EXPECT_EQ(attr_string(r.graph.nodes()[2].attrs, "fn"), "silu");
}

// A sigmoid used elsewhere too is not absorbed into a SiLU: the block must be closed.
TEST(OnnxImport, OpenSiluBlockStaysPrimitive) {
  REQUIRE_OPS("mul", "add");
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  add_gemm(m, "x", "h", 3, 2, true, "fc");
  m.node("Sigmoid", {"h"}, {"s"}, "sig");
  m.node("Mul", {"h", "s"}, {"a"}, "mul");
  m.node("Add", {"a", "s"}, {"y"}, "add");
  m.output("y", {kBatch, 2});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(ops_of(r.graph), (std::vector<std::string>{"matmul", "unary", "mul", "add"}));
}

TEST(OnnxImport, NoOpsIdentityFlattenDropout) {
  ModelBuilder m = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) {
    b.node("Identity", {x}, {"i"});
    b.node("Flatten", {"i"}, {"f"});
    b.node("Dropout", {"f"}, {"r"});
    b.node("Relu", {"r"}, {y});
  });
  expect_sandwich(import_onnx(m.bytes(), "t"), Activation::kRelu);
}

TEST(OnnxImport, FlattenOfImageInputIsAReshape) {
  REQUIRE_OPS("reshape");
  ModelBuilder m;
  m.input("x", {kBatch, 1, 2, 3});
  m.node("Flatten", {"x"}, {"f"}, "flat");
  add_gemm(m, "f", "y", 6, 2, true, "fc");
  m.output("y", {kBatch, 2});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(r.graph.input_shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(ops_of(r.graph), (std::vector<std::string>{"reshape", "matmul"}));
  EXPECT_EQ(r.graph.value(r.graph.nodes()[0].output).shape, Shape{6});
  EXPECT_EQ(r.model.input_dim, 6);  // the chain form flattens the input
}

// ---- errors: unsupported ----

TEST(OnnxImportErrors, UnsupportedOpNamesNodeOpAndTheSupportedList) {
  ModelBuilder m = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) {
    b.node("LpNormalization", {x}, {y}, "my_lp");
  });
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kUnimplemented, "test.onnx", "my_lp", "LpNormalization", "not supported",
                      "supported: ", "Conv", "BatchNormalization", "Gemm");
}

TEST(OnnxImportErrors, OpsetOutsideRange) {
  ModelBuilder m = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) { b.node("Relu", {x}, {y}); }, 9);
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kUnimplemented, "opset 9");
}

TEST(OnnxImportErrors, CustomDomainOp) {
  ModelBuilder m = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) {
    b.node("Gelu", {x}, {y}, "ms_gelu")->set_domain("com.microsoft");
  });
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kUnimplemented, "ms_gelu", "com.microsoft::Gelu");
}

TEST(OnnxImportErrors, UnsupportedAttributesAndTypes) {
  ModelBuilder ta;
  ta.input("x", {kBatch, 3});
  ta.init("B", {3, 2}, weight_values(3, 2));
  onnx_test::set_int(ta.node("Gemm", {"x", "B"}, {"y"}, "g"), "transA", 1);
  ta.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(ta.bytes(), ErrorCode::kInvalidArgument, "'g' (Gemm)", "transA", "examples cannot be mixed");

  ModelBuilder f16;
  f16.input("x", {kBatch, 3});
  f16.init("W", {3, 2}, weight_values(3, 2))->set_data_type(onnx::TensorProto_DataType_FLOAT16);
  f16.node("MatMul", {"x", "W"}, {"y"}, "mm");
  f16.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(f16.bytes(), ErrorCode::kUnimplemented, "FLOAT16");

  ModelBuilder ext;
  ext.input("x", {kBatch, 3});
  ext.init("W", {3, 2}, weight_values(3, 2))->set_data_location(onnx::TensorProto_DataLocation_EXTERNAL);
  ext.node("MatMul", {"x", "W"}, {"y"}, "mm");
  ext.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(ext.bytes(), ErrorCode::kUnimplemented, "external data");

  ModelBuilder flat;
  flat.input("x", {kBatch, 3});
  onnx_test::set_int(flat.node("Flatten", {"x"}, {"f"}, "flat0"), "axis", 0);
  add_gemm(flat, "f", "y", 3, 2, true, "fc");
  flat.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(flat.bytes(), ErrorCode::kInvalidArgument, "flat0", "examples cannot be mixed");

  ModelBuilder unknown;  // an attribute the op does not have
  unknown.input("x", {kBatch, 3});
  add_gemm(unknown, "x", "y", 3, 2, true, "fc");
  onnx_test::set_int(unknown.graph()->mutable_node(0), "transC", 1);
  unknown.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(unknown.bytes(), ErrorCode::kInvalidArgument, "'fc' (Gemm)", "unknown attribute 'transC'",
                      "alpha, beta, transA, transB");
}

// ---- errors: malformed ----

TEST(OnnxImportErrors, EmptyGarbageAndTruncatedFiles) {
  EXPECT_IMPORT_ERROR("", ErrorCode::kInvalidArgument, "empty");
  EXPECT_IMPORT_ERROR("this is not a protobuf at all \xff\xff\xff", ErrorCode::kInvalidArgument, "test.onnx");
  ModelBuilder m = sandwich([](ModelBuilder& b, const std::string& x, const std::string& y) { b.node("Relu", {x}, {y}); });
  const std::string bytes = m.bytes();
  for (size_t len = 1; len < bytes.size(); ++len) {
    try {
      import_onnx(bytes.substr(0, len), "t");
      ADD_FAILURE() << "prefix of " << len << " bytes imported";
    } catch (const Error& e) {
      EXPECT_TRUE(e.code() == ErrorCode::kInvalidArgument || e.code() == ErrorCode::kUnimplemented)
          << len << ": " << e.what();
    }
  }
}

TEST(OnnxImportErrors, MissingInitialiser) {
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  onnx_test::set_int(m.node("Gemm", {"x", "nowhere"}, {"y"}, "fc"), "transB", 1);
  m.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kInvalidArgument, "'fc' (Gemm)", "nowhere", "missing initialiser");
}

TEST(OnnxImportErrors, WrongShapesNameTheNode) {
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  add_gemm(m, "x", "h", 3, 4, true, "fc1");
  add_gemm(m, "h", "y", 5, 2, true, "fc2");  // expects 5 inputs, gets 4
  m.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kInvalidArgument, "test.onnx", "'fc2'", "inner dimensions differ");

  ModelBuilder t;  // raw_data shorter than the dims say
  t.input("x", {kBatch, 3});
  t.init("W", {3, 2}, weight_values(3, 2))->mutable_raw_data()->resize(20);
  t.node("MatMul", {"x", "W"}, {"y"}, "mm");
  t.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(t.bytes(), ErrorCode::kInvalidArgument, "'W'", "raw_data");

  ModelBuilder o;  // declared output width disagrees
  o.input("x", {kBatch, 3});
  add_gemm(o, "x", "y", 3, 2, true, "fc");
  o.output("y", {kBatch, 7});
  EXPECT_IMPORT_ERROR(o.bytes(), ErrorCode::kInvalidArgument, "declares dimension 1 = 7");

  ModelBuilder s;  // data of another shape than the file's static one
  s.input("x", {kBatch, 3});
  add_gemm(s, "x", "y", 3, 2, true, "fc");
  s.output("y", {kBatch, 2});
  ImportBounds b;
  b.input_shape = {4};
  EXPECT_IMPORT_ERROR_B(s.bytes(), b, ErrorCode::kInvalidArgument, "'x'", "dimension 1 = 3", "[4]");
}

TEST(OnnxImportErrors, InputsOutputsAndDisconnectedNodes) {
  ModelBuilder two_in;
  two_in.input("x", {kBatch, 3});
  two_in.input("x2", {kBatch, 3});
  add_gemm(two_in, "x", "y", 3, 2, true, "fc");
  two_in.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(two_in.bytes(), ErrorCode::kInvalidArgument, "2 inputs", "'x2'");

  ModelBuilder two_out;
  two_out.input("x", {kBatch, 3});
  add_gemm(two_out, "x", "y", 3, 2, true, "fc");
  two_out.output("y", {kBatch, 2});
  two_out.output("x", {kBatch, 3});
  EXPECT_IMPORT_ERROR(two_out.bytes(), ErrorCode::kInvalidArgument, "2 outputs");

  ModelBuilder dangling;  // a node off the path to the output
  dangling.input("x", {kBatch, 3});
  add_gemm(dangling, "x", "y", 3, 2, true, "fc");
  dangling.node("Relu", {"fc.bias"}, {"unused"}, "stray");
  dangling.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(dangling.bytes(), ErrorCode::kInvalidArgument, "'stray' (Relu)", "disconnected");

  ModelBuilder two_heads;  // a second head nobody reads
  two_heads.input("x", {kBatch, 3});
  add_gemm(two_heads, "x", "h", 3, 4, true, "fc1");
  add_gemm(two_heads, "h", "y", 4, 2, true, "head_a");
  add_gemm(two_heads, "h", "z", 4, 2, true, "head_b");
  two_heads.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(two_heads.bytes(), ErrorCode::kInvalidArgument, "'head_b'", "disconnected");

  ModelBuilder dead_end;  // nothing computes the output
  dead_end.input("x", {kBatch, 3});
  add_gemm(dead_end, "x", "h", 3, 2, true, "fc");
  dead_end.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(dead_end.bytes(), ErrorCode::kInvalidArgument, "'y'", "not produced by any node");
}

TEST(OnnxImportErrors, CycleNamesANodeOnIt) {
  ModelBuilder cyc;
  cyc.input("x", {kBatch, 3});
  cyc.node("Relu", {"x"}, {"a"}, "r1");
  cyc.node("Add", {"a", "c"}, {"b"}, "on_cycle_1");
  cyc.node("Tanh", {"b"}, {"c"}, "on_cycle_2");
  cyc.node("Sigmoid", {"c"}, {"y"}, "after");
  cyc.output("y", {kBatch, 3});
  const Error e = import_error(cyc.bytes());
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
  EXPECT_NE(std::string(e.what()).find("cycle"), std::string::npos) << e.what();
  EXPECT_TRUE(std::string(e.what()).find("on_cycle_1") != std::string::npos ||
              std::string(e.what()).find("on_cycle_2") != std::string::npos)
      << e.what();

  ModelBuilder self;
  self.input("x", {kBatch, 3});
  self.node("Mul", {"x", "m"}, {"m"}, "loop");  // reads its own output
  self.output("m", {kBatch, 3});
  EXPECT_IMPORT_ERROR(self.bytes(), ErrorCode::kInvalidArgument, "'loop' (Mul)", "cycle");

  ModelBuilder dup;
  dup.input("x", {kBatch, 3});
  dup.node("Relu", {"x"}, {"a"}, "r1");
  dup.node("Tanh", {"x"}, {"a"}, "r2");
  dup.output("a", {kBatch, 3});
  EXPECT_IMPORT_ERROR(dup.bytes(), ErrorCode::kInvalidArgument, "'r2' (Tanh)", "produced twice");
}

TEST(OnnxImport, NodesNeedNotBeSorted) {
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  m.init("fc2.weight", {2, 4}, weight_values(2, 4));
  onnx_test::set_int(m.node("Gemm", {"a", "fc2.weight"}, {"y"}, "fc2"), "transB", 1);
  m.node("Relu", {"h"}, {"a"}, "relu");
  m.init("fc1.weight", {4, 3}, weight_values(4, 3));
  onnx_test::set_int(m.node("Gemm", {"x", "fc1.weight"}, {"h"}, "fc1"), "transB", 1);
  m.output("y", {kBatch, 2});
  const ImportedModel r = import_onnx(m.bytes(), "t");
  EXPECT_EQ(ops_of(r.graph), (std::vector<std::string>{"matmul", "unary", "matmul"}));
  EXPECT_EQ(r.graph.nodes()[0].name, "fc1");
  // θ follows the initialiser list (torch writes it in parameters() order), not the node order.
  EXPECT_EQ(r.graph.parameter_names(), (std::vector<std::string>{"fc2.weight", "fc1.weight"}));
}

TEST(OnnxImportErrors, OutputIndependentOfTheInput) {
  ModelBuilder m;
  m.input("x", {kBatch, 3});
  m.init("w", {2}, {1.0, 2.0});
  m.node("Relu", {"w"}, {"y"}, "const_relu");
  m.output("y", {2});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kInvalidArgument, "'y'", "does not depend on the input 'x'");
}

TEST(OnnxImportErrors, MissingFile) {
  try {
    import_onnx_file("/nonexistent/model.onnx");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.onnx"), std::string::npos);
  }
}

}  // namespace
}  // namespace basin
