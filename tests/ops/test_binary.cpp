// add, sub, mul against finite differences (op_check.hpp), and the broadcast kernels' fast paths
// against their element bodies.
#include <functional>

#include "ops/kernels/broadcast.hpp"
#include "ops/op_check.hpp"

namespace basin {
namespace test {
namespace {

const char* const kBinaryOps[] = {"add", "sub", "mul"};

OpInput batched(Shape s) { return OpInput{s, true, true}; }
OpInput parameter(Shape s) { return OpInput{s, false, true}; }
OpInput constant(Shape s) { return OpInput{s, false, false}; }

// check_op for every binary op; returns the output shape (the same for all three).
Shape check_all(std::vector<OpInput> inputs, int64_t n = 3, int64_t R = 2) {
  Shape out;
  for (const char* op : kBinaryOps) {
    SCOPED_TRACE(op);
    OpCase c;
    c.op = op;
    c.inputs = inputs;
    c.n = n;
    c.R = R;
    out = check_op(c);
  }
  return out;
}

// The values of one forward pass (host), for exact forward checks.
std::vector<double> forward_of(const OpCase& c) {
  detail::Harness h(c);
  return h.forward(h.x);
}

TEST(BinaryOp, BatchedTimesBatchedSameShape) {
  EXPECT_EQ(check_all({batched({2, 3}), batched({2, 3})}), (Shape{2, 3}));
  EXPECT_EQ(check_all({batched({4}), batched({4})}, 1, 1), (Shape{4}));
}

TEST(BinaryOp, BatchedTimesBatchedBroadcast) {
  EXPECT_EQ(check_all({batched({2, 3}), batched({3})}), (Shape{2, 3}));
  EXPECT_EQ(check_all({batched({2, 1}), batched({1, 3})}), (Shape{2, 3}));
  EXPECT_EQ(check_all({batched({}), batched({2, 3})}), (Shape{2, 3}));
  EXPECT_EQ(check_all({batched({4, 1, 3}), batched({2, 1})}), (Shape{4, 2, 3}));
}

TEST(BinaryOp, ChannelBiasOnImage) {  // bias [C, 1, 1] on per-example [C, H, W]
  EXPECT_EQ(check_all({batched({3, 4, 5}), parameter({3, 1, 1})}), (Shape{3, 4, 5}));
  EXPECT_EQ(check_all({parameter({3, 1, 1}), batched({3, 4, 5})}), (Shape{3, 4, 5}));
  EXPECT_EQ(check_all({batched({3, 4, 5}), parameter({1, 3, 1, 1})}), (Shape{3, 4, 5}));  // NCHW-style [1, C, 1, 1]
}

TEST(BinaryOp, PositionalEmbeddingOnSequence) {  // [1, T, d] parameter on per-example [T, d]
  EXPECT_EQ(check_all({batched({5, 4}), parameter({1, 5, 4})}), (Shape{5, 4}));
  EXPECT_EQ(check_all({parameter({5, 4}), batched({5, 4})}), (Shape{5, 4}));
  EXPECT_EQ(check_all({batched({5, 4}), parameter({4})}), (Shape{5, 4}));  // a bias over the last axis
}

TEST(BinaryOp, BatchedWithConstant) {
  EXPECT_EQ(check_all({batched({2, 3}), constant({3})}), (Shape{2, 3}));
  EXPECT_EQ(check_all({constant({2, 1}), batched({2, 3})}), (Shape{2, 3}));
  EXPECT_EQ(check_all({batched({3, 4, 5}), constant({3, 1, 1})}), (Shape{3, 4, 5}));
}

TEST(BinaryOp, ParameterTimesParameter) {  // unbatched output
  EXPECT_EQ(check_all({parameter({3, 1}), parameter({1, 4})}), (Shape{3, 4}));
  EXPECT_EQ(check_all({parameter({2, 3}), parameter({2, 3})}), (Shape{2, 3}));
  EXPECT_EQ(check_all({parameter({2, 3}), constant({3})}), (Shape{2, 3}));
}

TEST(BinaryOp, ScalarBroadcast) {
  EXPECT_EQ(check_all({batched({2, 3}), parameter({})}), (Shape{2, 3}));
  EXPECT_EQ(check_all({constant({}), batched({2, 3})}), (Shape{2, 3}));
  EXPECT_EQ(check_all({constant({1}), batched({2, 3})}), (Shape{2, 3}));
  EXPECT_EQ(check_all({batched({}), parameter({})}), (Shape{}));
  EXPECT_EQ(check_all({batched({}), constant({1, 1})}), (Shape{}));  // leading 1s face the example axis
}

TEST(BinaryOp, ManyDimsFoldIntoTheKernelRank) {  // 6 per-example dims + E + R = kMaxRank
  EXPECT_EQ(check_all({batched({2, 1, 2, 1, 2, 1}), parameter({1, 2, 1, 2, 1, 2})}, 2, 1), (Shape{2, 2, 2, 2, 2, 2}));
}

TEST(BinaryOp, ForwardValuesAreExact) {
  for (const char* op : kBinaryOps) {
    OpCase c;
    c.op = op;
    c.n = 2;
    c.inputs = {batched({2, 3}), parameter({3})};
    c.inputs[0].values = {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6};
    c.inputs[1].values = {10, 20, 30};
    const std::vector<double> y = forward_of(c);
    ASSERT_EQ(y.size(), 12u);
    for (int64_t e = 0; e < 2; ++e)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 3; ++j) {
          const double a = c.inputs[0].values[(e * 2 + i) * 3 + j], b = c.inputs[1].values[j];
          const double want = std::string(op) == "add" ? a + b : std::string(op) == "sub" ? a - b : a * b;
          EXPECT_EQ(y[(e * 2 + i) * 3 + j], want) << op;
        }
  }
}

TEST(BinaryOp, FloatForwardAndBiasCotangent) {  // the float instantiation (check_op runs float64)
  auto be = make_cpu_backend<float>();
  GraphValue x, b;
  x.shape = {3, 2, 40};  // [C, H, W]
  x.batched = x.differentiable = true;
  b.shape = {3, 1, 1};
  b.kind = ValueKind::kParameter;
  b.differentiable = true;
  GraphNode node;
  node.name = "bias";
  node.op = "add";
  const std::vector<const GraphValue*> in{&x, &b};
  std::unique_ptr<Op<float>> op = make_op<float>(*find_op("add"), node, in);
  const int64_t E = 5, size = 3 * 2 * 40;
  std::vector<float> xh(static_cast<size_t>(E * size)), bh = {0.5f, -1.25f, 2.0f};
  for (size_t i = 0; i < xh.size(); ++i) xh[i] = float(std::sin(0.37 * double(i)));
  Buffer<float> xd(*be, xh.size()), bd(*be, 3), yd(*be, xh.size()), gd(*be, 3);
  be->upload(xd.get(), xh.data(), xh.size());
  be->upload(bd.get(), bh.data(), 3);
  Tensor<float> xt{xd.get(), E, 1, x.shape}, bt{bd.get(), 1, 1, b.shape}, yt{yd.get(), E, 1, x.shape};
  OpCall<float> c{*be, be->op_kernels(), node, {xt, bt}, yt};
  op->forward(c, yt);
  std::vector<float> y(xh.size());
  be->download(y.data(), yd.get(), y.size());
  for (int64_t i = 0; i < E * size; ++i) EXPECT_EQ(y[i], xh[i] + bh[(i % size) / 80]) << i;
  // The bias cotangent of g = y, summed over examples and positions.
  op->vjp(c, yt, {Tensor<float>{}, Tensor<float>{gd.get(), 1, 1, b.shape}});
  std::vector<float> g(3);
  be->download(g.data(), gd.get(), 3);
  for (int64_t ch = 0; ch < 3; ++ch) {
    double want = 0;
    for (int64_t e = 0; e < E; ++e)
      for (int64_t k = 0; k < 80; ++k) want += y[e * size + ch * 80 + k];
    EXPECT_NEAR(g[ch], want, 1e-4 * (1 + std::fabs(want))) << ch;
  }
}

void expect_error(const OpCase& c, ErrorCode code, const std::vector<std::string>& parts) {
  try {
    infer_shape(c);
    FAIL() << "no error for " << c.op;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(BinaryOp, RefusesIncompatibleShapes) {
  for (const char* op : kBinaryOps) {
    OpCase c;
    c.op = op;
    c.inputs = {batched({2, 3}), batched({4})};
    expect_error(c, ErrorCode::kInvalidArgument, {"under_test", op, "[2, 3]", "[4]"});
    c.inputs = {batched({3, 4, 5}), parameter({4, 1, 1})};
    expect_error(c, ErrorCode::kInvalidArgument, {"under_test", "[3, 4, 5]", "[4, 1, 1]"});
    c.inputs = {parameter({2, 3}), parameter({3, 2})};
    expect_error(c, ErrorCode::kInvalidArgument, {"under_test", "[2, 3]", "[3, 2]"});
  }
}

TEST(BinaryOp, RefusesAnUnbatchedOperandAcrossTheExampleAxis) {
  OpCase c;
  c.op = "add";
  c.inputs = {batched({5, 4}), parameter({2, 5, 4})};  // 2 faces the example axis
  expect_error(c, ErrorCode::kInvalidArgument, {"under_test", "[5, 4]", "[2, 5, 4]", "example axis"});
  c.inputs = {parameter({3, 4}), batched({4})};
  expect_error(c, ErrorCode::kInvalidArgument, {"under_test", "[3, 4]", "[4]", "example axis"});
}

TEST(BinaryOp, RefusesWrongInputCount) {
  OpCase c;
  c.op = "mul";
  c.inputs = {batched({2})};
  expect_error(c, ErrorCode::kInvalidArgument, {"under_test", "2 inputs"});
}

TEST(BinaryOp, RefusesBroadcastsBeyondTheKernelRank) {
  OpCase c;
  c.op = "add";
  c.inputs = {batched({2, 1, 2, 1, 2, 1, 2}), parameter({1, 2, 1, 2, 1, 2, 1})};
  expect_error(c, ErrorCode::kUnimplemented, {"under_test", "strided dims"});
}

// ---- the CPU kernels' fast paths agree with the element bodies ----

struct MapCase {
  std::vector<int64_t> dims;
  std::vector<std::vector<int64_t>> strides;  // per map
};

StridedMap make_map(const std::vector<int64_t>& dims, const std::vector<int64_t>& strides, int64_t offset) {
  StridedMap m;
  m.rank = static_cast<int>(dims.size());
  for (int d = 0; d < m.rank; ++d) m.dims[d] = dims[d], m.strides[d] = strides[d];
  m.offset = offset;
  return m;
}

int64_t extent(const StridedMap& m) {  // one past the largest offset
  int64_t e = m.offset;
  for (int d = 0; d < m.rank; ++d) e += (m.dims[d] - 1) * m.strides[d];
  return e + 1;
}

std::vector<double> random_values(int64_t count, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  std::vector<double> v(static_cast<size_t>(count));
  for (double& x : v) x = nd(rng);
  return v;
}

TEST(BinaryKernel, FastPathsMatchTheElementBody) {
  auto be = make_cpu_backend<double>();
  OpKernels<double>& k = be->op_kernels();
  // dims, then strides of out, a, b.
  const std::vector<MapCase> cases = {
      {{24}, {{1}, {1}, {1}}},                        // flat residual add
      {{6, 4}, {{4, 1}, {4, 1}, {0, 1}}},             // bias over the last axis
      {{6, 4}, {{4, 1}, {0, 1}, {4, 1}}},             // a broadcast
      {{3, 2, 5}, {{10, 5, 1}, {10, 5, 1}, {1, 0, 0}}},  // channel bias
      {{4, 3}, {{3, 1}, {1, 4}, {3, 1}}},             // a transposed (general strides)
      {{2, 3, 4}, {{1, 8, 2}, {12, 4, 1}, {0, 0, 1}}},  // permuted output
      {{}, {{}, {}, {}}},                             // a scalar
  };
  for (const MapCase& mc : cases) {
    const StridedMap o = make_map(mc.dims, mc.strides[0], 1), a = make_map(mc.dims, mc.strides[1], 2),
                     b = make_map(mc.dims, mc.strides[2], 0);
    const std::vector<double> av = random_values(extent(a), 1), bv = random_values(extent(b), 2);
    for (BinaryKind kind : {BinaryKind::kAdd, BinaryKind::kMul})
      for (double beta : {0.0, 0.5}) {
        std::vector<double> want = random_values(extent(o), 3), got = want;
        std::vector<int64_t> written;
        for (int64_t i = 0; i < o.count(); ++i) {
          int64_t off = o.offset, rest = i;
          for (int d = o.rank - 1; d >= 0; --d) off += (rest % o.dims[d]) * o.strides[d], rest /= o.dims[d];
          written.push_back(off);
        }
        if (beta == 0.0)
          for (int64_t off : written) got[off] = std::nan("");  // beta = 0 must not read dst
        for (int64_t i = 0; i < o.count(); ++i)
          kernels::binary_element(i, kind, o, a, b, 1.5, beta, av.data(), bv.data(), want.data());
        k.binary(kind, o, a, b, 1.5, beta, av.data(), bv.data(), got.data());
        for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want[i]) << "case rank " << o.rank << " at " << i;
      }
  }
}

TEST(ReduceKernel, FastPathsMatchTheElementBody) {
  auto be = make_cpu_backend<double>();
  OpKernels<double>& k = be->op_kernels();
  struct RCase {
    std::vector<int64_t> dims, in_strides, out_strides;
    int reduce_rank;
  };
  const std::vector<RCase> cases = {
      {{6, 4}, {4, 1}, {1}, 1},                 // sum over the last axis (contiguous run)
      {{4, 6}, {1, 4}, {1}, 1},                 // sum over examples (row path)
      {{2, 3, 5, 4}, {12, 4, 24, 1}, {3, 1}, 2},  // bias cotangent: kept [R, C] over [E, HW]
      {{3, 7}, {7, 1}, {1}, 0},                 // plain strided copy
      {{3, 7}, {0, 1}, {7, 1}, 0},              // broadcast copy
      {{3, 4, 5}, {1, 15, 3}, {1}, 2},          // rows of a transposed input
      {{4, 3, 5}, {15, 1, 3}, {1}, 2},          // general strides (the element body)
      {{5, 3}, {3, 1}, {}, 2},                  // everything summed
      {{300, 2}, {1, 300}, {1}, 1},             // row path with more than one chunk
      {{3, 4, 77}, {77, 231, 1}, {1}, 2},       // long contiguous runs (partial sums)
      {{2, 3}, {3, 1}, {}, 2},
  };
  for (const RCase& rc : cases) {
    StridedMap in = make_map(rc.dims, rc.in_strides, 1);
    std::vector<int64_t> kept(rc.dims.begin(), rc.dims.end() - rc.reduce_rank);
    StridedMap out = make_map(kept, rc.out_strides, 2);
    const std::vector<double> src = random_values(extent(in), 4);
    for (double beta : {0.0, 1.0}) {
      std::vector<double> want = random_values(extent(out), 5), got = want;
      for (int64_t i = 0; i < out.count(); ++i)
        kernels::reduce_sum_element(i, out, in, rc.reduce_rank, 0.5, beta, src.data(), want.data());
      k.reduce_sum(out, in, rc.reduce_rank, 0.5, beta, src.data(), got.data());
      // Long contiguous runs are summed in partial sums: equal up to rounding.
      for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-13) << "rank " << in.rank << " at " << i;
    }
  }
}

}  // namespace
}  // namespace test
}  // namespace basin
