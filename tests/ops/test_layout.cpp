// The layout family (reshape, transpose, concat, slice, expand, pad) and its kernel strided_copy:
// derivatives against finite differences (op_check.hpp), forward against naive loops written
// here, the CPU loop against the element body, and bad input.
#include <numeric>

#include "ops/broadcast_check.hpp"
#include "ops/kernels/layout.hpp"
#include "ops/op_check.hpp"

namespace basin {
namespace test {
namespace {

using Ints = std::vector<int64_t>;

Ints strides_of(const Shape& s) {
  Ints st(s.size(), 1);
  for (size_t d = s.size(); d-- > 1;) st[d - 1] = st[d] * s[d];
  return st;
}

// Multi-index of flat index i in shape s.
Ints unravel(int64_t i, const Shape& s) {
  Ints idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = i % s[d];
    i /= s[d];
  }
  return idx;
}

int64_t ravel(const Ints& idx, const Shape& s) {
  int64_t i = 0;
  for (size_t d = 0; d < s.size(); ++d) i = i * s[d] + idx[d];
  return i;
}

// The op's forward output (all examples) and its inputs, as the harness made them.
struct Forward {
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  Shape shape;
  int64_t E = 1;
};
Forward run_forward(const OpCase& c) {
  detail::Harness h(c);
  return Forward{h.x, h.forward(h.x), h.out_shape, h.E_out()};
}

// Expects y[e, i] == want(e, multi-index of i in the output shape) exactly (layout ops move values).
template <class F>
void expect_forward(const OpCase& c, const Shape& out_shape, F want) {
  const Forward f = run_forward(c);
  ASSERT_EQ(f.shape, out_shape);
  const int64_t size = shape_numel(out_shape);
  ASSERT_EQ(static_cast<int64_t>(f.y.size()), f.E * size);
  for (int64_t e = 0; e < f.E; ++e)
    for (int64_t i = 0; i < size; ++i) {
      const double w = want(f.x, e, unravel(i, out_shape));
      ASSERT_EQ(f.y[e * size + i], w) << c.op << " forward at example " << e << ", element " << i;
    }
}

// Value of input j at example e (0 for an unbatched one) and multi-index idx of its shape.
double at(const OpCase& c, const std::vector<std::vector<double>>& x, size_t j, int64_t e, const Ints& idx) {
  const Shape& s = c.inputs[j].shape;
  const int64_t size = shape_numel(s);
  return x[j][(c.inputs[j].batched ? e : 0) * size + ravel(idx, s)];
}

void expect_error(const OpCase& c, ErrorCode code, const std::string& fragment) {
  try {
    infer_shape(c);
    ADD_FAILURE() << c.op << ": no error (expected '" << fragment << "')";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find("under_test"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

OpCase make(const std::string& op, std::vector<OpInput> inputs) {
  OpCase c;
  c.op = op;
  c.inputs = std::move(inputs);
  return c;
}

// ---- strided_copy: the CPU loop against the element body ----

StridedMap map_of(const Ints& dims, const Ints& strides, int64_t offset) {
  StridedMap m;
  m.rank = static_cast<int>(dims.size());
  for (int d = 0; d < m.rank; ++d) m.dims[d] = dims[d], m.strides[d] = strides[d];
  m.offset = offset;
  return m;
}

void check_strided_copy(const StridedMap& o, const StridedMap& i, double alpha, double beta, size_t src_n,
                        size_t dst_n) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd;
  std::vector<double> src(src_n), dst(dst_n);
  for (double& v : src) v = nd(rng);
  for (double& v : dst) v = nd(rng);
  if (beta == 0)
    for (size_t k = 0; k < dst.size(); k += 3) dst[k] = std::nan("");  // never read when beta == 0
  std::vector<double> want = dst, got = dst;
  for (int64_t k = 0; k < o.count(); ++k) kernels::strided_copy_element(k, o, i, alpha, beta, src.data(), want.data());
  std::unique_ptr<Backend<double>> be = make_cpu_backend<double>();
  be->op_kernels().strided_copy(o, i, alpha, beta, src.data(), got.data());
  for (size_t k = 0; k < got.size(); ++k) {
    if (std::isnan(want[k])) {
      EXPECT_TRUE(std::isnan(got[k])) << k;
    } else {
      EXPECT_EQ(got[k], want[k]) << "element " << k << " alpha " << alpha << " beta " << beta;
    }
  }
  // The element body itself against the definition.
  for (int64_t k = 0; k < o.count(); ++k) {
    int64_t oo = o.offset, ss = i.offset;
    const Ints idx = unravel(k, Ints(o.dims, o.dims + o.rank));
    for (int d = 0; d < o.rank; ++d) oo += idx[d] * o.strides[d], ss += idx[d] * i.strides[d];
    int64_t a = 0, b = 0;
    kernels::strided_offsets(k, o, i, &a, &b);
    ASSERT_EQ(a, oo);
    ASSERT_EQ(b, ss);
  }
}

TEST(LayoutStridedCopy, CpuLoopMatchesElementBody) {
  for (double alpha : {1.0, -0.5})
    for (double beta : {0.0, 1.0, 2.0}) {
      // contiguous → contiguous (memcpy / axpy path), with offsets
      check_strided_copy(map_of({4, 5, 6}, {30, 6, 1}, 3), map_of({4, 5, 6}, {30, 6, 1}, 2), alpha, beta, 130, 130);
      // permute [4,5,6] → [6,4,5] (inner run strided on the source)
      check_strided_copy(map_of({6, 4, 5}, {20, 5, 1}, 0), map_of({6, 4, 5}, {1, 30, 6}, 0), alpha, beta, 120, 120);
      // inner run contiguous, outer permuted: [3,4,5] with axes 0,1 swapped
      check_strided_copy(map_of({4, 3, 5}, {15, 5, 1}, 0), map_of({4, 3, 5}, {5, 20, 1}, 0), alpha, beta, 60, 60);
      // broadcast (stride 0) inner and outer, strided destination
      check_strided_copy(map_of({3, 7}, {16, 2}, 1), map_of({3, 7}, {1, 0}, 0), alpha, beta, 3, 50);
      check_strided_copy(map_of({3, 7}, {7, 1}, 0), map_of({3, 7}, {0, 1}, 4), alpha, beta, 11, 21);
      // size-1 dims, a rank-0-like map, full rank
      check_strided_copy(map_of({1, 5, 1, 2}, {10, 2, 10, 1}, 0), map_of({1, 5, 1, 2}, {0, 1, 0, 5}, 0), alpha, beta,
                         10, 10);
      check_strided_copy(map_of({}, {}, 2), map_of({}, {}, 1), alpha, beta, 3, 3);
      check_strided_copy(map_of({2, 2, 2, 2, 2, 2, 2, 2}, {128, 64, 32, 16, 8, 4, 2, 1}, 0),
                         map_of({2, 2, 2, 2, 2, 2, 2, 2}, {1, 2, 4, 8, 16, 32, 64, 128}, 0), alpha, beta, 256, 256);
    }
}

TEST(LayoutStridedCopy, CoalesceKeepsOffsets) {
  // [2, 3, 4] contiguous on both sides folds to one dimension; a permuted one does not.
  StridedMap o = map_of({2, 3, 4}, {12, 4, 1}, 0), i = map_of({2, 3, 4}, {12, 4, 1}, 5);
  kernels::coalesce(&o, &i);
  EXPECT_EQ(o.rank, 1);
  EXPECT_EQ(o.dims[0], 24);
  EXPECT_EQ(i.offset, 5);
  StridedMap p = map_of({3, 2, 4}, {8, 4, 1}, 0), q = map_of({3, 2, 4}, {4, 12, 1}, 0);
  kernels::coalesce(&p, &q);
  EXPECT_EQ(p.rank, 3);
}

// ---- reshape ----

TEST(LayoutReshape, BatchedAndUnbatched) {
  for (const Shape& to : {Shape{6, 4}, Shape{24}, Shape{2, 12}, Shape{4, 3, 2}}) {
    OpCase c = make("reshape", {{{2, 3, 4}}});
    c.attrs["shape"] = attr_of(Ints(to));
    EXPECT_EQ(check_op(c), to);
    expect_forward(c, to, [&](const auto& x, int64_t e, const Ints& idx) { return x[0][e * 24 + ravel(idx, to)]; });
  }
  OpCase c = make("reshape", {{{3, 4}, false}});  // a parameter reshaped
  c.attrs["shape"] = attr_of(Ints{2, 6});
  EXPECT_EQ(check_op(c), (Shape{2, 6}));
}

// ---- transpose ----

TEST(LayoutTranspose, EveryPermutationOfRankThree) {
  Ints perm{0, 1, 2};
  const Shape s{2, 3, 4};
  do {
    OpCase c = make("transpose", {{s}});
    c.attrs["perm"] = attr_of(perm);
    const Shape out{s[perm[0]], s[perm[1]], s[perm[2]]};
    EXPECT_EQ(check_op(c), out);
    expect_forward(c, out, [&](const auto& x, int64_t e, const Ints& idx) {
      Ints src(3);
      for (size_t d = 0; d < 3; ++d) src[perm[d]] = idx[d];
      return at(c, x, 0, e, src);
    });
  } while (std::next_permutation(perm.begin(), perm.end()));
}

TEST(LayoutTranspose, DefaultReversesAndUnbatched) {
  OpCase c = make("transpose", {{{2, 3, 5}}});
  EXPECT_EQ(check_op(c), (Shape{5, 3, 2}));
  expect_forward(c, {5, 3, 2}, [&](const auto& x, int64_t e, const Ints& i) {
    return at(c, x, 0, e, {i[2], i[1], i[0]});
  });
  OpCase w = make("transpose", {{{3, 5}, false}});  // a weight transposed
  EXPECT_EQ(check_op(w), (Shape{5, 3}));
  OpCase k = make("transpose", {{{2, 3, 4, 5}}});  // NCHW-like [C, H, W, X] → [W, C, X, H]
  k.attrs["perm"] = attr_of(Ints{2, 0, 3, 1});
  EXPECT_EQ(check_op(k), (Shape{4, 2, 5, 3}));
  expect_forward(k, {4, 2, 5, 3}, [&](const auto& x, int64_t e, const Ints& i) {
    return at(k, x, 0, e, {i[1], i[3], i[0], i[2]});
  });
}

// ---- concat ----

// Naive concat: the input holding output index idx along axis, at its local index.
template <class X>
double concat_want(const OpCase& c, const X& x, int64_t e, Ints idx, size_t axis) {
  for (size_t j = 0; j < c.inputs.size(); ++j) {
    Shape s = c.inputs[j].shape;
    const bool lead = s.size() > idx.size();  // an unbatched input's leading 1
    const int64_t n = s[axis + (lead ? 1 : 0)];
    if (idx[axis] < n) {
      if (lead) idx.insert(idx.begin(), 0);
      return at(c, x, j, e, idx);
    }
    idx[axis] -= n;
  }
  return std::nan("");
}

TEST(LayoutConcat, BatchedInputsEveryAxis) {
  for (int64_t axis : {0, 1, 2, -1, -3}) {
    const size_t a = static_cast<size_t>(axis < 0 ? axis + 3 : axis);
    Shape s0{2, 3, 4}, s1{2, 3, 4};
    s1[a] = 1;
    OpCase c = make("concat", {{s0}, {s1}, {s0}});
    c.attrs["axis"] = attr_of(axis);
    Shape out = s0;
    out[a] = 2 * s0[a] + 1;
    EXPECT_EQ(check_op(c), out) << axis;
    expect_forward(c, out, [&](const auto& x, int64_t e, const Ints& i) { return concat_want(c, x, e, i, a); });
  }
}

TEST(LayoutConcat, ConstantsParametersAndUnbatched) {
  // batched input beside a constant (per-example rank) and a parameter with a leading 1
  OpCase c = make("concat", {{{2, 3}}, {{2, 2}, false, false}, {{1, 2, 1}, false, true}});
  c.attrs["axis"] = attr_of(int64_t{1});
  EXPECT_EQ(check_op(c), (Shape{2, 6}));
  expect_forward(c, {2, 6}, [&](const auto& x, int64_t e, const Ints& i) { return concat_want(c, x, e, i, 1); });
  // the constant first, along axis 0
  OpCase d = make("concat", {{{1, 4}, false, false}, {{3, 4}}});
  d.attrs["axis"] = attr_of(int64_t{0});
  EXPECT_EQ(check_op(d), (Shape{4, 4}));
  expect_forward(d, {4, 4}, [&](const auto& x, int64_t e, const Ints& i) { return concat_want(d, x, e, i, 0); });
  // all unbatched (parameters and a constant): the output is unbatched
  OpCase u = make("concat", {{{2, 3}, false}, {{2, 3}, false, false}, {{2, 1}, false}});
  u.attrs["axis"] = attr_of(int64_t{1});
  EXPECT_EQ(check_op(u), (Shape{2, 7}));
  expect_forward(u, {2, 7}, [&](const auto& x, int64_t e, const Ints& i) { return concat_want(u, x, e, i, 1); });
  // one input
  OpCase one = make("concat", {{{3, 2}}});
  one.attrs["axis"] = attr_of(int64_t{1});
  EXPECT_EQ(check_op(one), (Shape{3, 2}));
}

// ---- slice ----

TEST(LayoutSlice, StartsEndsAxesSteps) {
  struct Case {
    Ints starts, ends, axes, steps;
  };
  const Shape s{4, 5, 6};
  for (const Case& k : {Case{{1}, {3}, {}, {}}, Case{{0, 1, 2}, {4, 5, 6}, {}, {}}, Case{{1, 0}, {5, 3}, {1, 0}, {}},
                        Case{{0}, {6}, {2}, {2}}, Case{{1, 2}, {4, 6}, {0, 2}, {2, 3}}, Case{{3}, {4}, {1}, {5}},
                        Case{{0, 1, 1}, {4, 4, 5}, {2, 0, 1}, {4, 1, 3}}}) {
    OpCase c = make("slice", {{s}});
    c.attrs["starts"] = attr_of(k.starts);
    c.attrs["ends"] = attr_of(k.ends);
    if (!k.axes.empty()) c.attrs["axes"] = attr_of(k.axes);
    if (!k.steps.empty()) c.attrs["steps"] = attr_of(k.steps);
    Ints start(3, 0), step(3, 1);
    Shape out = s;
    for (size_t q = 0; q < k.starts.size(); ++q) {
      const size_t a = k.axes.empty() ? q : static_cast<size_t>(k.axes[q]);
      start[a] = k.starts[q];
      step[a] = k.steps.empty() ? 1 : k.steps[q];
      out[a] = (k.ends[q] - k.starts[q] + step[a] - 1) / step[a];
    }
    EXPECT_EQ(check_op(c), out);
    expect_forward(c, out, [&](const auto& x, int64_t e, const Ints& i) {
      Ints src(3);
      for (size_t d = 0; d < 3; ++d) src[d] = start[d] + i[d] * step[d];
      return at(c, x, 0, e, src);
    });
  }
  OpCase p = make("slice", {{{6, 4}, false}});  // a parameter sliced
  p.attrs["starts"] = attr_of(Ints{1});
  p.attrs["ends"] = attr_of(Ints{6});
  p.attrs["steps"] = attr_of(Ints{2});
  EXPECT_EQ(check_op(p), (Shape{3, 4}));
}

// ---- expand ----

TEST(LayoutExpand, Broadcasts) {
  struct Case {
    Shape in, to, out;
  };
  for (const Case& k : {Case{{3, 1}, {3, 4}, {3, 4}}, Case{{1, 4}, {2, 3, 4}, {2, 3, 4}},
                        Case{{2, 1, 3}, {4, 1}, {2, 4, 3}}, Case{{3}, {2, 3}, {2, 3}}, Case{{2, 3}, {2, 3}, {2, 3}},
                        Case{{1, 1}, {2, 2, 3}, {2, 2, 3}}, Case{{2, 1, 1}, {2, 3, 5}, {2, 3, 5}}}) {
    for (bool batched : {true, false}) {
      OpCase c = make("expand", {{k.in, batched}});
      c.attrs["shape"] = attr_of(Ints(k.to));
      EXPECT_EQ(check_op(c), k.out);
      expect_forward(c, k.out, [&](const auto& x, int64_t e, const Ints& i) {
        Ints src(k.in.size());
        for (size_t d = 0; d < k.in.size(); ++d) {
          const size_t od = d + k.out.size() - k.in.size();
          src[d] = k.in[d] == 1 ? 0 : i[od];
        }
        return at(c, x, 0, e, src);
      });
    }
  }
}

// ---- pad ----

TEST(LayoutPad, BeginsEndsAndCrops) {
  struct Case {
    Shape in;
    Ints pads;
  };
  for (const Case& k : {Case{{5}, {2, 1}}, Case{{3, 4}, {0, 1, 2, 0}}, Case{{2, 3, 4}, {0, 1, 1, 0, 1, 1}},
                        Case{{2, 3, 4}, {0, 0, 0, 0, 0, 0}}, Case{{3, 4}, {-1, 2, 1, -2}}, Case{{4}, {-1, -2}},
                        Case{{2, 5}, {1, 3, 0, -4}}}) {
    for (bool batched : {true, false}) {
      OpCase c = make("pad", {{k.in, batched}});
      c.attrs["pads"] = attr_of(k.pads);
      const size_t r = k.in.size();
      Shape out(r);
      for (size_t d = 0; d < r; ++d) out[d] = k.in[d] + k.pads[d] + k.pads[r + d];
      EXPECT_EQ(check_op(c), out);
      expect_forward(c, out, [&](const auto& x, int64_t e, const Ints& i) {
        Ints src(r);
        for (size_t d = 0; d < r; ++d) {
          src[d] = i[d] - k.pads[d];
          if (src[d] < 0 || src[d] >= k.in[d]) return 0.0;
        }
        return at(c, x, 0, e, src);
      });
    }
  }
}

// ---- tangents and cotangents shared across examples or directions ----

TEST(LayoutBroadcast, SharedTangentsAndSummedCotangents) {
  OpCase r = make("reshape", {{{2, 3}}});
  r.attrs["shape"] = attr_of(Ints{3, 2});
  check_broadcast_paths(r);
  OpCase t = make("transpose", {{{2, 3, 4}}});
  t.attrs["perm"] = attr_of(Ints{1, 2, 0});
  check_broadcast_paths(t);
  OpCase c = make("concat", {{{2, 3}}, {{2, 2}, false, false}, {{2, 1}}});
  c.attrs["axis"] = attr_of(int64_t{1});
  check_broadcast_paths(c);
  OpCase s = make("slice", {{{4, 5}}});
  s.attrs["starts"] = attr_of(Ints{1, 0});
  s.attrs["ends"] = attr_of(Ints{4, 5});
  s.attrs["steps"] = attr_of(Ints{2, 2});
  check_broadcast_paths(s);
  OpCase e = make("expand", {{{3, 1}}});
  e.attrs["shape"] = attr_of(Ints{2, 3, 4});
  check_broadcast_paths(e);
  OpCase p = make("pad", {{{3, 4}}});
  p.attrs["pads"] = attr_of(Ints{1, -1, 0, 2});
  check_broadcast_paths(p);
}

// ---- float ----

TEST(LayoutFloat, TransposeForwardMatchesDouble) {
  GraphValue v;
  v.name = "x";
  v.shape = {2, 3};
  v.batched = true;
  GraphNode node;
  node.name = "under_test";
  node.op = "transpose";
  const OpDef* def = find_op("transpose");
  ASSERT_NE(def, nullptr);
  auto op = make_op<float>(*def, node, {&v});
  std::unique_ptr<Backend<float>> be = make_cpu_backend<float>();
  const std::vector<float> host{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};  // two examples
  Buffer<float> x(*be, 12), y(*be, 12);
  be->upload(x.get(), host.data(), 12);
  Tensor<float> tx{x.get(), 2, 1, {2, 3}}, ty{y.get(), 2, 1, {3, 2}};
  OpCall<float> c{*be, be->op_kernels(), node, {tx}, ty};
  op->forward(c, ty);
  std::vector<float> got(12);
  be->download(got.data(), y.get(), 12);
  EXPECT_EQ(got, (std::vector<float>{1, 4, 2, 5, 3, 6, 7, 10, 8, 11, 9, 12}));
}

// ---- bad input ----

TEST(LayoutBadInput, ShapesAndAttributes) {
  OpCase r = make("reshape", {{{2, 3}}});
  r.attrs["shape"] = attr_of(Ints{4, 2});
  expect_error(r, ErrorCode::kInvalidArgument, "cannot reshape [2, 3]");
  r.attrs["shape"] = attr_of(Ints{-1, 2});
  expect_error(r, ErrorCode::kInvalidArgument, "dimension ≤ 0");
  r.attrs.clear();
  expect_error(r, ErrorCode::kInvalidArgument, "'shape' is missing");

  OpCase t = make("transpose", {{{2, 3, 4}}});
  t.attrs["perm"] = attr_of(Ints{0, 0, 1});
  expect_error(t, ErrorCode::kInvalidArgument, "not a permutation");
  t.attrs["perm"] = attr_of(Ints{1, 0});
  expect_error(t, ErrorCode::kInvalidArgument, "perm [1, 0] has 2 entries");
  OpCase big = make("transpose", {{{1, 1, 1, 1, 1, 1, 2}}});
  expect_error(big, ErrorCode::kUnimplemented, "at most 6 axes");

  OpCase c = make("concat", {{{2, 3}}, {{3, 3}}});
  c.attrs["axis"] = attr_of(int64_t{1});
  expect_error(c, ErrorCode::kInvalidArgument, "agree on every axis but 1");
  c.attrs["axis"] = attr_of(int64_t{2});
  expect_error(c, ErrorCode::kInvalidArgument, "axis 2 is out of range");
  c.attrs.clear();
  expect_error(c, ErrorCode::kInvalidArgument, "'axis' is missing");
  OpCase c2 = make("concat", {{{2, 3}}, {{2, 3, 1}, false}});
  c2.attrs["axis"] = attr_of(int64_t{0});
  expect_error(c2, ErrorCode::kInvalidArgument, "expected rank 2");

  OpCase s = make("slice", {{{4, 5}}});
  s.attrs["starts"] = attr_of(Ints{1});
  s.attrs["ends"] = attr_of(Ints{6});
  expect_error(s, ErrorCode::kInvalidArgument, "0 ≤ start < end ≤ size");
  s.attrs["ends"] = attr_of(Ints{3});
  s.attrs["steps"] = attr_of(Ints{-1});
  expect_error(s, ErrorCode::kUnimplemented, "negative step");
  s.attrs["steps"] = attr_of(Ints{1, 1});
  expect_error(s, ErrorCode::kInvalidArgument, "same length");
  s.attrs.erase("steps");
  s.attrs["axes"] = attr_of(Ints{2});
  expect_error(s, ErrorCode::kInvalidArgument, "axis 2 is out of range");

  OpCase e = make("expand", {{{3, 2}}});
  e.attrs["shape"] = attr_of(Ints{3, 4});
  expect_error(e, ErrorCode::kInvalidArgument, "cannot broadcast [3, 2] (per example) to [3, 4]");

  OpCase p = make("pad", {{{3, 4}}});
  p.attrs["pads"] = attr_of(Ints{1, 1});
  expect_error(p, ErrorCode::kInvalidArgument, "2 × rank = 4 entries");
  p.attrs["pads"] = attr_of(Ints{-3, 0, 0, 0});
  expect_error(p, ErrorCode::kInvalidArgument, "leave axis 0");
  p.attrs["pads"] = attr_of(Ints{1, 1, 1, 1});
  p.attrs["mode"] = attr_of(std::string("reflect"));
  expect_error(p, ErrorCode::kUnimplemented, "mode 'reflect'");
}

}  // namespace
}  // namespace test
}  // namespace basin
