// reduce_sum, reduce_mean against finite differences (op_check.hpp) over every axis combination,
// with and without keepdims; reduce_max (a stop-gradient) forward against a host loop.
#include <limits>

#include "ops/op_check.hpp"

namespace basin {
namespace test {
namespace {

// Every subset of {0, …, rank−1} (as axis lists), the empty one meaning "all axes" to the op.
std::vector<std::vector<int64_t>> subsets(int64_t rank) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t mask = 0; mask < (int64_t(1) << rank); ++mask) {
    std::vector<int64_t> axes;
    for (int64_t d = 0; d < rank; ++d)
      if (mask & (int64_t(1) << d)) axes.push_back(d);
    out.push_back(axes);
  }
  return out;
}

Shape expected_shape(const Shape& s, const std::vector<int64_t>& axes, bool keepdims) {
  Shape out;
  for (size_t d = 0; d < s.size(); ++d) {
    const bool r = axes.empty() || std::find(axes.begin(), axes.end(), int64_t(d)) != axes.end();
    if (!r) out.push_back(s[d]);
    else if (keepdims) out.push_back(1);
  }
  return out;
}

// Host reference: per example, the sum / mean / max over the axes.
std::vector<double> reference(const std::string& op, const Shape& s, const std::vector<int64_t>& axes, int64_t n,
                              const std::vector<double>& x) {
  const int64_t size = shape_numel(s);
  std::vector<bool> red(s.size(), axes.empty());
  for (int64_t a : axes) red[static_cast<size_t>(a < 0 ? a + int64_t(s.size()) : a)] = true;
  int64_t osize = 1, count = 1;
  for (size_t d = 0; d < s.size(); ++d) (red[d] ? count : osize) *= s[d];
  const double init = op == "reduce_max" ? -std::numeric_limits<double>::infinity() : 0.0;
  std::vector<double> y(static_cast<size_t>(n * osize), init);
  for (int64_t e = 0; e < n; ++e)
    for (int64_t i = 0; i < size; ++i) {
      int64_t rest = i, o = 0, mul = 1;
      for (size_t d = s.size(); d-- > 0;) {
        const int64_t k = rest % s[d];
        rest /= s[d];
        if (!red[d]) o += k * mul, mul *= s[d];
      }
      double& t = y[static_cast<size_t>(e * osize + o)];
      const double v = x[static_cast<size_t>(e * size + i)];
      t = op == "reduce_max" ? std::max(t, v) : t + v;
    }
  if (op == "reduce_mean")
    for (double& v : y) v /= double(count);
  return y;
}

std::vector<double> forward_of(const OpCase& c) {
  detail::Harness h(c);
  return h.forward(h.x);
}

OpCase reduce_case(const std::string& op, OpInput in, const std::vector<int64_t>& axes, int64_t keepdims) {
  OpCase c;
  c.op = op;
  c.inputs = {in};
  if (!axes.empty()) c.attrs["axes"] = attr_of(axes);
  c.attrs["keepdims"] = attr_of(keepdims);
  return c;
}

TEST(ReduceOp, EveryAxisCombinationBatched) {
  const Shape s{2, 3, 4};
  for (const char* op : {"reduce_sum", "reduce_mean"})
    for (const auto& axes : subsets(3))
      for (int64_t keep : {0, 1}) {
        SCOPED_TRACE(std::string(op) + " axes " + shape_string(axes) + " keepdims " + std::to_string(keep));
        OpCase c = reduce_case(op, OpInput{s}, axes, keep);
        EXPECT_EQ(check_op(c), expected_shape(s, axes, keep));
        detail::Harness h(c);
        const std::vector<double> got = h.forward(h.x), want = reference(op, s, axes, c.n, h.x[0]);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-13);
      }
}

TEST(ReduceOp, EveryAxisCombinationOfAParameter) {  // unbatched: full axes, output unbatched
  const Shape s{3, 1, 5};
  for (const char* op : {"reduce_sum", "reduce_mean"})
    for (const auto& axes : subsets(3))
      for (int64_t keep : {0, 1}) {
        SCOPED_TRACE(std::string(op) + " axes " + shape_string(axes) + " keepdims " + std::to_string(keep));
        EXPECT_EQ(check_op(reduce_case(op, OpInput{s, false}, axes, keep)), expected_shape(s, axes, keep));
      }
}

TEST(ReduceOp, FourDimensionalAndNegativeAxes) {
  const Shape s{2, 3, 2, 3};
  for (const char* op : {"reduce_sum", "reduce_mean"}) {
    EXPECT_EQ(check_op(reduce_case(op, OpInput{s}, {-1, -2}, 1)), (Shape{2, 3, 1, 1}));  // GlobalAveragePool-like
    EXPECT_EQ(check_op(reduce_case(op, OpInput{s}, {-4, 2}, 0)), (Shape{3, 3}));
    EXPECT_EQ(check_op(reduce_case(op, OpInput{s}, {1, 3}, 0)), (Shape{2, 2}));
  }
  OpCase a = reduce_case("reduce_sum", OpInput{s}, {-1}, 1), b = reduce_case("reduce_sum", OpInput{s}, {3}, 1);
  EXPECT_EQ(forward_of(a), forward_of(b));
}

TEST(ReduceOp, DefaultsKeepDimsAndReduceEverything) {
  OpCase c;
  c.op = "reduce_sum";
  c.inputs = {OpInput{{2, 3}}};
  EXPECT_EQ(check_op(c), (Shape{1, 1}));
  c.attrs["keepdims"] = attr_of(int64_t(0));
  EXPECT_EQ(check_op(c), (Shape{}));
}

TEST(ReduceOp, SingleExampleSingleDirection) {
  OpCase c = reduce_case("reduce_mean", OpInput{{4, 5}}, {0}, 0);
  c.n = 1;
  c.R = 1;
  EXPECT_EQ(check_op(c), (Shape{5}));
}

TEST(ReduceMaxOp, ForwardMatchesAHostLoopOnEveryAxisCombination) {
  const Shape s{2, 3, 4};
  for (const auto& axes : subsets(3))
    for (int64_t keep : {0, 1}) {
      SCOPED_TRACE("axes " + shape_string(axes) + " keepdims " + std::to_string(keep));
      OpCase c = reduce_case("reduce_max", OpInput{s}, axes, keep);
      detail::Harness h(c);
      EXPECT_EQ(h.out_shape, expected_shape(s, axes, keep));
      EXPECT_FALSE(h.op->differentiable());
      EXPECT_EQ(h.forward(h.x), reference("reduce_max", s, axes, c.n, h.x[0]));
    }
}

TEST(ReduceMaxOp, IsAStopGradient) {
  const OpDef* def = find_op("reduce_max");
  ASSERT_NE(def, nullptr);
  EXPECT_FALSE(def->differentiable);
  EXPECT_TRUE(find_op("reduce_sum")->differentiable);
  OpCase c = reduce_case("reduce_max", OpInput{{3}}, {0}, 1);
  detail::Harness h(c);
  OpCall<double> oc = h.call(h.x);
  try {
    h.op->jvp(oc, {Tensor<double>{}}, oc.out);
    FAIL() << "jvp of a stop-gradient ran";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("under_test"), std::string::npos) << e.what();
  }
}

TEST(ReduceMaxOp, PropagatesNaNAndHandlesNegativeValues) {
  OpCase c = reduce_case("reduce_max", OpInput{{2, 3}}, {1}, 0);
  c.n = 1;
  c.inputs[0].values = {-5, -2, -7, 1, std::nan(""), 3};
  const std::vector<double> y = forward_of(c);
  ASSERT_EQ(y.size(), 2u);
  EXPECT_EQ(y[0], -2);
  EXPECT_TRUE(std::isnan(y[1]));
}

void expect_error(const OpCase& c, ErrorCode code, const std::vector<std::string>& parts) {
  try {
    infer_shape(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(ReduceOp, RefusesBadAxes) {
  for (const char* op : {"reduce_sum", "reduce_mean", "reduce_max"}) {
    expect_error(reduce_case(op, OpInput{{2, 3}}, {2}, 1), ErrorCode::kInvalidArgument,
                 {"under_test", op, "axis 2", "[2, 3]", "per example"});
    expect_error(reduce_case(op, OpInput{{2, 3}}, {-3}, 1), ErrorCode::kInvalidArgument, {"under_test", "axis -3"});
    expect_error(reduce_case(op, OpInput{{2, 3}}, {1, -1}, 1), ErrorCode::kInvalidArgument,
                 {"under_test", "listed twice"});
    expect_error(reduce_case(op, OpInput{{2, 3}}, {0}, 2), ErrorCode::kInvalidArgument, {"under_test", "keepdims"});
    OpCase two = reduce_case(op, OpInput{{2}}, {0}, 1);
    two.inputs.push_back(OpInput{{2}});
    expect_error(two, ErrorCode::kInvalidArgument, {"under_test", "1 input"});
  }
}

}  // namespace
}  // namespace test
}  // namespace basin
