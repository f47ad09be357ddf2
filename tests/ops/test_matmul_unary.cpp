// matmul and unary against finite differences (op_check.hpp).
#include "ops/op_check.hpp"

namespace basin {
namespace test {
namespace {

Attributes trans(int64_t a, int64_t b) {
  Attributes at;
  at["trans_a"] = attr_of(a);
  at["trans_b"] = attr_of(b);
  return at;
}

TEST(MatMulOp, DenseLayerWithBias) {
  OpCase c;
  c.op = "matmul";
  c.attrs = trans(0, 1);
  c.inputs = {{{4}}, {{3, 4}, false}, {{3}, false}};
  EXPECT_EQ(check_op(c), (Shape{3}));
  c.R = 5;  // more directions than outputs
  c.n = 7;
  check_op(c);
}

TEST(MatMulOp, VectorTimesUntransposedWeight) {  // x @ W with W [in, out]
  OpCase c;
  c.op = "matmul";
  c.inputs = {{{4}}, {{4, 3}, false}};
  EXPECT_EQ(check_op(c), (Shape{3}));
  c.R = 5;
  check_op(c);
}

TEST(MatMulOp, SequenceTimesWeight) {
  OpCase c;
  c.op = "matmul";
  c.inputs = {{{5, 4}}, {{4, 3}, false}};
  EXPECT_EQ(check_op(c), (Shape{5, 3}));
  c.attrs = trans(0, 1);
  c.inputs = {{{5, 4}}, {{3, 4}, false}, {{3}, false}};
  EXPECT_EQ(check_op(c), (Shape{5, 3}));
}

TEST(MatMulOp, ActivationTimesActivation) {
  OpCase c;
  c.op = "matmul";
  c.inputs = {{{2, 5, 4}}, {{2, 4, 5}}};
  EXPECT_EQ(check_op(c), (Shape{2, 5, 5}));
  c.attrs = trans(1, 0);
  c.inputs = {{{2, 4, 5}}, {{2, 4, 3}}};
  EXPECT_EQ(check_op(c), (Shape{2, 5, 3}));
}

TEST(MatMulOp, TwoParameters) {  // unbatched bilinear (a weight product)
  OpCase c;
  c.op = "matmul";
  c.inputs = {{{3, 4}, false}, {{4, 2}, false}};
  check_op(c);
}

TEST(MatMulOp, RefusesMismatchedInnerDimensions) {
  OpCase c;
  c.op = "matmul";
  c.attrs = trans(0, 1);
  c.inputs = {{{4}}, {{3, 5}, false}};
  try {
    infer_shape(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("under_test"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("inner dimensions"), std::string::npos) << e.what();
  }
}

TEST(UnaryOp, EveryActivation) {
  for (const char* fn : {"identity", "tanh", "sigmoid", "gelu", "softplus", "silu", "relu", "leaky_relu"}) {
    OpCase c;
    c.op = "unary";
    c.attrs["fn"] = attr_of(std::string(fn));
    c.inputs = {{{2, 3}}};
    check_op(c);
    c.inputs = {{{5}, false}};  // a function of a parameter alone
    check_op(c);
  }
}

}  // namespace
}  // namespace test
}  // namespace basin
