// The batch axis inside an ONNX value's shape (kernels/onnx/src/batch_layout.hpp): the layout's
// pure functions, and the importer on graphs that move the batch axis and merge it with other axes
// as torch's nn.MultiheadAttention export does ([n, T, D] → [T, n, D] → [T, n·h, d] → [n·h, T, d]).
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "basin/error.hpp"
#include "basin/onnx_import.hpp"
#include "batch_layout.hpp"
#include "onnx_builder.hpp"
#include "onnx_test_util.hpp"

namespace basin {
namespace {

using onnx_import_detail::BatchLayout;
using onnx_import_detail::TargetDim;
using onnx_test::kBatch;
using onnx_test::ModelBuilder;

std::vector<double> ramp(int64_t count) {
  std::vector<double> v;
  for (int64_t i = 0; i < count; ++i) v.push_back(0.1 * static_cast<double>(i % 7) - 0.3);
  return v;
}

TEST(BatchLayout, AxesAndTheirText) {
  const Shape g = {5, 2, 4};  // [T, h, d] per example, as [T, n·h, d]
  const BatchLayout l{1, 0, 1};
  EXPECT_EQ(onnx_import_detail::layout_string(g, l), "[5, n·2, 4]");
  EXPECT_EQ(onnx_import_detail::onnx_rank(g, l), 3);
  EXPECT_EQ(onnx_import_detail::batch_factor(g, l), 2);
  const auto axes = onnx_import_detail::onnx_axes(g, l);
  ASSERT_EQ(axes.size(), 3u);
  EXPECT_TRUE(axes[1].batch);
  EXPECT_EQ(axes[1].first, 1);
  EXPECT_EQ(axes[1].count, 1);
  EXPECT_EQ(axes[2].first, 2);
  EXPECT_EQ(onnx_import_detail::layout_string({5, 8}, BatchLayout{1, 1, 0}), "[5·n, 8]");
  EXPECT_EQ(onnx_import_detail::layout_string({3, 4}, BatchLayout{}), "[n, 3, 4]");
}

TEST(BatchLayout, TransposeMovesTheBatchWithItsMergedAxes) {
  // [T, n·h, d] → perm [1, 0, 2] → [n·h, T, d]: per example [h, T, d].
  const auto p = onnx_import_detail::permute_layout({5, 2, 4}, BatchLayout{1, 0, 1}, {1, 0, 2});
  EXPECT_EQ(p.graph_perm, (std::vector<int64_t>{1, 0, 2}));
  EXPECT_EQ(p.layout, (BatchLayout{0, 0, 1}));
  // [n, T, D] → [T, n, D]: the per-example value is unchanged, the batch moves to axis 1.
  const auto q = onnx_import_detail::permute_layout({5, 8}, BatchLayout{}, {1, 0, 2});
  EXPECT_EQ(q.graph_perm, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(q.layout, (BatchLayout{1, 0, 0}));
  // [n·h, T, d] → perm [1, 2, 0] → [T, d, n·h]: keys transposed for the scores.
  const auto k = onnx_import_detail::permute_layout({2, 5, 4}, BatchLayout{0, 0, 1}, {1, 2, 0});
  EXPECT_EQ(k.graph_perm, (std::vector<int64_t>{1, 2, 0}));
  EXPECT_EQ(k.layout, (BatchLayout{2, 0, 1}));
}

TEST(BatchLayout, ReshapeSplitsAndMergesTheBatch) {
  std::string why;
  // [T, n, D] → [T, n·2, 4]: the heads merge after the batch.
  auto r = onnx_import_detail::reshape_layout({5, 8}, BatchLayout{1, 0, 0}, {{5, 0}, {1, 2}, {4, 0}}, &why);
  ASSERT_TRUE(r) << why;
  EXPECT_EQ(r->first, (Shape{5, 2, 4}));
  EXPECT_EQ(r->second, (BatchLayout{1, 0, 1}));
  // [T, n·2, 4] → [T·n, 8]: the positions merge before the batch.
  r = onnx_import_detail::reshape_layout({5, 2, 4}, BatchLayout{1, 0, 1}, {{1, 5}, {8, 0}}, &why);
  ASSERT_TRUE(r) << why;
  EXPECT_EQ(r->first, (Shape{5, 8}));
  EXPECT_EQ(r->second, (BatchLayout{1, 1, 0}));
  // [T·n, 8] → [T, n, 8]
  r = onnx_import_detail::reshape_layout({5, 8}, BatchLayout{1, 1, 0}, {{5, 0}, {1, 1}, {8, 0}}, &why);
  ASSERT_TRUE(r) << why;
  EXPECT_EQ(r->first, (Shape{5, 8}));
  EXPECT_EQ(r->second, (BatchLayout{1, 0, 0}));
  // [n, 3, 4] → [3, n·4] would interleave examples.
  EXPECT_FALSE(onnx_import_detail::reshape_layout({3, 4}, BatchLayout{}, {{3, 0}, {1, 4}}, &why));
  EXPECT_NE(why.find("interleave"), std::string::npos) << why;
  // [n·2, 3] → [n·3, 2]: each example's 6 entries stay contiguous, regrouped per example.
  r = onnx_import_detail::reshape_layout({2, 3}, BatchLayout{0, 0, 1}, {{1, 3}, {2, 0}}, &why);
  ASSERT_TRUE(r) << why;
  EXPECT_EQ(r->first, (Shape{3, 2}));
  EXPECT_EQ(r->second, (BatchLayout{0, 0, 1}));
  // [3, n·2] → [3·n·2] flat: still exact, the layout keeps the 3 outside the batch.
  r = onnx_import_detail::reshape_layout({3, 2}, BatchLayout{1, 0, 1}, {{1, 6}}, &why);
  ASSERT_TRUE(r) << why;
  EXPECT_EQ(r->first, (Shape{3, 2}));
  EXPECT_EQ(r->second, (BatchLayout{1, 1, 1}));
  // [3, n·2] → [2, n·3]: the 2 leading rows would each take half of the 3 rows of every example.
  EXPECT_FALSE(onnx_import_detail::reshape_layout({3, 2}, BatchLayout{1, 0, 1}, {{2, 0}, {1, 3}}, &why));
  EXPECT_FALSE(onnx_import_detail::reshape_layout({2, 3}, BatchLayout{}, {{1, 1}, {1, 1}, {6, 0}}, &why));
  EXPECT_NE(why.find("two"), std::string::npos) << why;
}

TEST(BatchLayout, OperandsBroadcastAgainstAMovedBatch) {
  std::string why;
  // An additive mask [1, T, T] against scores [n·h, T, T]: 1 along the merged heads.
  auto s = onnx_import_detail::broadcast_operand({1, 5, 5}, {2, 5, 5}, BatchLayout{0, 0, 1}, &why);
  ASSERT_TRUE(s) << why;
  EXPECT_EQ(*s, (Shape{1, 5, 5}));
  // A bias [D] against [T, n, D].
  s = onnx_import_detail::broadcast_operand({8}, {5, 8}, BatchLayout{1, 0, 0}, &why);
  ASSERT_TRUE(s) << why;
  EXPECT_EQ(*s, (Shape{1, 8}));
  EXPECT_FALSE(onnx_import_detail::broadcast_operand({3, 5, 5}, {2, 5, 5}, BatchLayout{0, 0, 1}, &why));
  EXPECT_NE(why.find("batch axis"), std::string::npos) << why;
  EXPECT_FALSE(onnx_import_detail::broadcast_operand({1, 1, 5, 8}, {5, 8}, BatchLayout{1, 0, 0}, &why));
}

// x [n, T, D] → Transpose [T, n, D] → MatMul W → Reshape [T, n·2, 2] (heads, from shape arithmetic
// on the batch) → Transpose [n·2, T, 2] → scores MatMul with its transpose → Softmax → MatMul →
// Transpose [T, n·2, 2] → Reshape [T, n, 4] → Transpose [n, T, 4].
ModelBuilder attention_like(int64_t T = 3) {
  ModelBuilder m(17);
  m.input("x", {kBatch, T, 4});
  onnx_test::set_ints(m.node("Transpose", {"x"}, {"xt"}, "to_tnd"), "perm", {1, 0, 2});
  m.init("W", {4, 4}, ramp(16));
  m.node("MatMul", {"xt", "W"}, {"q"}, "proj");
  m.node("Shape", {"xt"}, {"s"}, "shape");
  m.init_ints("i0", {}, {0});
  m.init_ints("i1", {}, {1});
  m.node("Gather", {"s", "i0"}, {"t"}, "g0");
  m.node("Gather", {"s", "i1"}, {"nb"}, "g1");
  m.init_ints("two", {}, {2});
  m.node("Mul", {"nb", "two"}, {"nh"}, "heads");
  m.init_ints("ax0", {1}, {0});
  m.node("Unsqueeze", {"t", "ax0"}, {"t1"}, "u0");
  m.node("Unsqueeze", {"nh", "ax0"}, {"nh1"}, "u1");
  m.node("Unsqueeze", {"nb", "ax0"}, {"nb1"}, "u2");
  m.init_ints("d", {1}, {2});
  m.init_ints("D", {1}, {4});
  onnx_test::set_int(m.node("Concat", {"t1", "nh1", "d"}, {"shape_h"}, "cat_h"), "axis", 0);
  onnx_test::set_int(m.node("Concat", {"t1", "nb1", "D"}, {"shape_b"}, "cat_b"), "axis", 0);
  m.node("Reshape", {"q", "shape_h"}, {"qh"}, "split_heads");
  onnx_test::set_ints(m.node("Transpose", {"qh"}, {"q3"}, "heads_first"), "perm", {1, 0, 2});
  onnx_test::set_ints(m.node("Transpose", {"qh"}, {"k3"}, "keys"), "perm", {1, 2, 0});
  m.node("MatMul", {"q3", "k3"}, {"sc"}, "scores");
  m.init("mask", {1, T, T}, std::vector<double>(static_cast<size_t>(T * T), 0.0));
  m.node("Add", {"sc", "mask"}, {"scm"}, "masked");
  onnx_test::set_int(m.node("Softmax", {"scm"}, {"p"}, "softmax"), "axis", -1);
  m.node("MatMul", {"p", "q3"}, {"o"}, "mix");
  onnx_test::set_ints(m.node("Transpose", {"o"}, {"ot"}, "back"), "perm", {1, 0, 2});
  m.node("Reshape", {"ot", "shape_b"}, {"ob"}, "merge_heads");
  onnx_test::set_ints(m.node("Transpose", {"ob"}, {"y"}, "to_ntd"), "perm", {1, 0, 2});
  m.output("y", {kBatch, T, 4});
  return m;
}

TEST(OnnxBatchLayout, AttentionWithTheBatchMovedAndMergedImports) {
  ImportBounds b;
  b.constant_names = {"mask"};
  const ImportedModel r = import_onnx(attention_like().bytes(), "t", b);
  EXPECT_EQ(r.graph.value(r.graph.output()).shape, (Shape{3, 4}));
  const GraphNode* heads = node_named(r.graph, "split_heads");
  ASSERT_NE(heads, nullptr);
  EXPECT_EQ(r.graph.value(heads->output).shape, (Shape{3, 2, 2}));  // [T, h, d] of [T, n·h, d]
  const GraphNode* scores = node_named(r.graph, "scores");
  ASSERT_NE(scores, nullptr);
  EXPECT_EQ(r.graph.value(scores->output).shape, (Shape{2, 3, 3}));  // [h, T, T] of [n·h, T, T]
  const GraphNode* sm = node_named(r.graph, "softmax");
  ASSERT_NE(sm, nullptr);
  EXPECT_EQ(r.graph.parameter_names(), std::vector<std::string>{"W"});
}

TEST(OnnxBatchLayout, OutputWithTheBatchOnAxis1IsRefusedNamingItsNode) {
  ModelBuilder m = attention_like();
  // Return [T, n, 4] itself.
  m.graph()->mutable_node()->RemoveLast();
  m.graph()->mutable_output()->Clear();
  m.output("ob", {3, kBatch, 4});
  ImportBounds b;
  b.constant_names = {"mask"};
  EXPECT_IMPORT_ERROR_B(m.bytes(), b, ErrorCode::kInvalidArgument, "'merge_heads' (Reshape)", "[3, n, 4]",
                        "batch as axis 0");
}

TEST(OnnxBatchLayout, SoftmaxOverTheMergedBatchAxisIsRefused) {
  ModelBuilder m = attention_like();
  for (auto& n : *m.graph()->mutable_node())
    if (n.name() == "softmax") n.mutable_attribute(0)->set_i(0);
  ImportBounds b;
  b.constant_names = {"mask"};
  EXPECT_IMPORT_ERROR_B(m.bytes(), b, ErrorCode::kInvalidArgument, "'softmax' (Softmax)", "[n·2, 3, 3]",
                        "holds the batch", "examples cannot be mixed");
}

TEST(OnnxBatchLayout, AMaskWithEntriesAlongTheMergedBatchIsRefused) {
  ModelBuilder m = attention_like();
  for (auto& t : *m.graph()->mutable_initializer())
    if (t.name() == "mask") {
      t.set_dims(0, 2);
      t.set_raw_data(std::string(2 * 9 * sizeof(double), '\0'));
    }
  ImportBounds b;
  b.constant_names = {"mask"};
  EXPECT_IMPORT_ERROR_B(m.bytes(), b, ErrorCode::kInvalidArgument, "'masked' (Add)", "2 entries along the batch axis");
}

TEST(OnnxBatchLayout, ScoresAcrossExamplesAreRefused) {
  // [T, n, D] · [T, D, n]: a product over the batch.
  ModelBuilder m(17);
  m.input("x", {kBatch, 3, 4});
  onnx_test::set_ints(m.node("Transpose", {"x"}, {"xt"}, "a"), "perm", {1, 0, 2});
  onnx_test::set_ints(m.node("Transpose", {"x"}, {"xk"}, "b"), "perm", {1, 2, 0});
  m.node("MatMul", {"xt", "xk"}, {"s"}, "across");
  m.init("W", {3, 3}, ramp(9));
  m.node("MatMul", {"s", "W"}, {"y"}, "out");
  m.output("y", {3, kBatch, 3});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kInvalidArgument, "'across' (MatMul)", "examples cannot be mixed");
}

// MultiheadAttention(add_bias_kv=True): a learned key [1, 1, D] repeated to the batch
// (Tile by [1, n, 1]) and concatenated to the keys [T, n, D] along the sequence; the causal mask
// padded by a column (Pad of a constant holding −inf, folded) and added to the scores.
TEST(OnnxBatchLayout, BiasKeyRepeatedToTheBatchAndAPaddedMask) {
  ModelBuilder m(17);
  m.input("x", {kBatch, 3, 4});
  onnx_test::set_ints(m.node("Transpose", {"x"}, {"xt"}, "tnd"), "perm", {1, 0, 2});
  m.init("bias_k", {1, 1, 4}, ramp(4));
  m.node("Shape", {"xt"}, {"s"}, "shape");
  m.init_ints("i1", {1}, {1});
  m.node("Gather", {"s", "i1"}, {"nb"}, "g1");
  m.init_ints("one", {1}, {1});
  onnx_test::set_int(m.node("Concat", {"one", "nb", "one"}, {"reps"}, "cat_reps"), "axis", 0);
  m.node("Tile", {"bias_k", "reps"}, {"bk"}, "repeat");
  onnx_test::set_int(m.node("Concat", {"xt", "bk"}, {"k"}, "keys"), "axis", 0);  // [T + 1, n, D]
  onnx_test::set_ints(m.node("Transpose", {"xt"}, {"q"}, "q_first"), "perm", {1, 0, 2});   // [n, T, D]
  onnx_test::set_ints(m.node("Transpose", {"k"}, {"kt"}, "k_last"), "perm", {1, 2, 0});    // [n, D, T + 1]
  m.node("MatMul", {"q", "kt"}, {"sc"}, "scores");                                         // [n, T, T + 1]
  const double inf = std::numeric_limits<double>::infinity();
  m.init("mask", {3, 3}, {0, -inf, -inf, 0, 0, -inf, 0, 0, 0});
  m.init_ints("pads", {4}, {0, 0, 0, 1});
  m.node("Pad", {"mask", "pads"}, {"padded"}, "pad_mask");
  m.node("Add", {"sc", "padded"}, {"y0"}, "masked");
  onnx_test::set_int(m.node("Softmax", {"y0"}, {"y"}, "softmax"), "axis", -1);
  m.output("y", {kBatch, 3, 4});
  ImportBounds b;
  b.constant_names = {"mask"};
  const ImportedModel r = import_onnx(m.bytes(), "t", b);
  EXPECT_EQ(r.graph.parameter_names(), std::vector<std::string>{"bias_k"});
  const GraphNode* keys = node_named(r.graph, "keys");
  ASSERT_NE(keys, nullptr);
  EXPECT_EQ(r.graph.value(keys->output).shape, (Shape{4, 4}));  // [T + 1, D] of [T + 1, n, D]
  EXPECT_EQ(r.graph.value(r.graph.output()).shape, (Shape{3, 4}));
  // The padded mask is one folded constant: its last column 0, −inf kept above the diagonal.
  const GraphNode* add = node_named(r.graph, "masked");
  ASSERT_NE(add, nullptr);
  const GraphValue& pm = r.graph.value(add->inputs[1]);
  ASSERT_EQ(pm.kind, ValueKind::kConstant);
  ASSERT_EQ(pm.data.size(), 12u);
  EXPECT_EQ(pm.data[1], -inf);
  EXPECT_EQ(pm.data[3], 0.0);
  EXPECT_EQ(pm.data[11], 0.0);
}

TEST(OnnxBatchLayout, TileOfTheDataIsRefused) {
  ModelBuilder m(17);
  m.input("x", {kBatch, 3});
  m.init_ints("reps", {2}, {1, 2});
  m.node("Tile", {"x", "reps"}, {"t"}, "tile0");
  m.init("W", {6, 2}, ramp(12));
  m.node("MatMul", {"t", "W"}, {"y"}, "mm");
  m.output("y", {kBatch, 2});
  EXPECT_IMPORT_ERROR(m.bytes(), ErrorCode::kUnimplemented, "'tile0' (Tile)", "repeated 2 times");
}

}  // namespace
}  // namespace basin
