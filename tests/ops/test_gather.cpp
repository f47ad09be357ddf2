// The gather op (an embedding lookup): derivatives against finite differences (op_check.hpp)
// for tables of rank 2 and 3, batched and constant indices, repeated ids; the forward against
// a naive lookup; bad input (ids out of range, float or differentiable indices, batched tables).
#include "ops/gather.hpp"
#include "ops/op_check.hpp"

namespace basin {
namespace test {
namespace {

// Token ids for n examples of `positions` ids each, with repeats (vocab < positions·n).
std::vector<double> ids(int64_t n, int64_t positions, int64_t vocab, int64_t mult = 5) {
  std::vector<double> v;
  for (int64_t i = 0; i < n * positions; ++i) v.push_back(static_cast<double>((i * mult + 1) % vocab));
  return v;
}

OpCase gather_case(const Shape& table, const Shape& idx_shape, bool batched_idx = true, int64_t n = 3) {
  OpCase c;
  c.op = "gather";
  c.n = n;
  OpInput t{table, /*batched=*/false, /*differentiable=*/true};
  OpInput ix{idx_shape, batched_idx, /*differentiable=*/false};
  ix.values = ids(batched_idx ? n : 1, shape_numel(idx_shape), table[0]);
  c.inputs = {t, ix};
  return c;
}

TEST(Gather, EmbeddingAgainstFiniteDifferences) {
  EXPECT_EQ(check_op(gather_case({7, 4}, {6})), (Shape{6, 4}));
  EXPECT_EQ(check_op(gather_case({5, 3}, {2, 3})), (Shape{2, 3, 3}));
  EXPECT_EQ(check_op(gather_case({4, 2, 3}, {5})), (Shape{5, 2, 3}));
  EXPECT_EQ(check_op(gather_case({11}, {6})), (Shape{6}));
  OpCase many = gather_case({3, 2}, {9}, true, 4);  // every row picked several times
  many.R = 3;
  EXPECT_EQ(check_op(many), (Shape{9, 2}));
}

TEST(Gather, ConstantIndices) {
  EXPECT_EQ(check_op(gather_case({6, 3}, {4}, /*batched_idx=*/false)), (Shape{4, 3}));
}

TEST(Gather, ForwardIsTheLookup) {
  OpCase c = gather_case({5, 3}, {4});
  detail::Harness h(c);
  const std::vector<double> y = h.forward(h.x);
  const std::vector<double>& table = h.x[0];
  const std::vector<double>& idx = h.x[1];
  ASSERT_EQ(y.size(), static_cast<size_t>(c.n * 4 * 3));
  for (int64_t e = 0; e < c.n; ++e)
    for (int64_t s = 0; s < 4; ++s)
      for (int64_t d = 0; d < 3; ++d) {
        const int64_t row = static_cast<int64_t>(idx[e * 4 + s]);
        EXPECT_EQ(y[(e * 4 + s) * 3 + d], table[row * 3 + d]);
      }
}

void expect_error(const OpCase& c, ErrorCode code, const std::string& fragment) {
  try {
    infer_shape(c);
    ADD_FAILURE() << "no error (expected '" << fragment << "')";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find("under_test"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(GatherBadInput, Refused) {
  for (const auto& [ids, fragment] : std::vector<std::pair<std::vector<double>, std::string>>{
           {{0, 4, 1}, "token id 4 (position 1)"}, {{0, 1, -1}, "token id -1 (position 2)"}, {{1.5, 0, 1}, "out of range"}}) {
    Graph g;
    const int x = g.add_input("x", {2});
    const int w = g.add_parameter("wte", {4, 2});
    const int ix = g.add_constant("ids", {3}, ids);
    try {
      g.add_node("gather", {w, ix}, {}, "under_test");
      ADD_FAILURE() << "no error (expected '" << fragment << "')";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find("'under_test'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
    (void)x;
  }
  OpCase diff = gather_case({4, 2}, {3});
  diff.inputs[1].differentiable = true;
  expect_error(diff, ErrorCode::kInvalidArgument, "depend on a parameter");
  OpCase batched_table = gather_case({4, 2}, {3});
  batched_table.inputs[0].batched = true;
  expect_error(batched_table, ErrorCode::kUnimplemented, "unbatched table");
  OpCase axis = gather_case({4, 2}, {3});
  axis.attrs["axis"] = attr_of(int64_t{1});
  expect_error(axis, ErrorCode::kUnimplemented, "only axis 0");
}

TEST(GatherBadInput, TokenIdsOfTheData) {
  Graph g;
  const int x = g.add_input("tokens", {3}, /*integer=*/true);
  const int w = g.add_parameter("wte", {5, 2});
  g.set_output(g.add_node("gather", {w, x}, {}, "embed"));
  check_gather_indices(g, {0, 1, 4, 2, 3, 1}, 2);  // fine
  try {
    check_gather_indices(g, {0, 1, 4, 2, 5, 1}, 2);
    ADD_FAILURE() << "no error for id 5";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    const std::string m = e.what();
    EXPECT_NE(m.find("'embed'"), std::string::npos) << m;
    EXPECT_NE(m.find("token id 5 (example 1, position 1)"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace test
}  // namespace basin
