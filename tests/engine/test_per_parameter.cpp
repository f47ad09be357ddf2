// Per-parameter-tensor spectra (want per_parameter): σ of each column block G_t against LAPACK's
// SVD of the block sliced from the materialised G, trace shares against ‖G_t‖²_F / ‖G‖²_F, the
// Hessian's diagonal blocks against central differences of the gradient, names, checkpoints.
#include <gtest/gtest.h>
#include <lapacke.h>

#include <cmath>
#include <limits>

#include "loss.hpp"
#include "test_util.hpp"

namespace basin {
namespace {

// Singular values of columns [c0, c0 + count) of G [m × N], descending (LAPACK dgesdd).
std::vector<double> block_sigma(const std::vector<double>& g, int64_t m, int64_t N, int64_t c0, int64_t count) {
  std::vector<double> a(static_cast<size_t>(m * count));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < count; ++j) a[i * count + j] = g[i * N + c0 + j];
  std::vector<double> s(static_cast<size_t>(std::min(m, count)));
  EXPECT_EQ(LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'N', m, count, a.data(), count, s.data(), nullptr, m, nullptr, count), 0);
  return s;
}

// NumPy's matrix_rank: σ > σ_max · max(m, n) · ε.
int64_t matrix_rank(const std::vector<double>& s, int64_t m, int64_t n) {
  const double tol = (s.empty() ? 0.0 : s.front()) * double(std::max(m, n)) * std::numeric_limits<double>::epsilon();
  return std::count_if(s.begin(), s.end(), [&](double v) { return v > tol; });
}

void expect_blocks_match_svd(const AnalysisRequest& r, bool compare_small_values) {
  AnalysisRequest req = r;
  req.want = parse_want("jacobian,per_parameter");
  req.return_jacobian = true;
  const AnalysisResult res = analyze(req);
  const int64_t m = res.num_examples * res.num_outputs, N = res.num_params;
  ASSERT_FALSE(res.per_parameter.empty());
  double g_norm_sq = 0;
  for (double v : res.jacobian_matrix) g_norm_sq += v * v;
  double fraction_sum = 0;
  int64_t next_offset = 0;
  for (const ParameterSpectrum& p : res.per_parameter) {
    SCOPED_TRACE(p.name + " method " + p.jacobian.method);
    EXPECT_EQ(p.offset, next_offset);
    next_offset += p.count;
    const std::vector<double> ref = block_sigma(res.jacobian_matrix, m, N, p.offset, p.count);
    ASSERT_EQ(p.jacobian.singular_values.size(), ref.size());
    const double smax = ref.front();
    for (size_t j = 0; j < ref.size(); ++j) {
      if (!compare_small_values && ref[j] < 1e-6 * smax) continue;  // a Gram's σ below √ε·σ_max
      EXPECT_NEAR(p.jacobian.singular_values[j], ref[j], 1e-9 * smax) << "sigma " << j;
    }
    if (compare_small_values) EXPECT_EQ(p.jacobian.rank, matrix_rank(ref, m, p.count));
    EXPECT_EQ(p.jacobian.level_set_dim, p.count - p.jacobian.rank);
    double own = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < p.count; ++j) own += std::pow(res.jacobian_matrix[i * N + p.offset + j], 2);
    EXPECT_NEAR(p.gram_trace_fraction, own / g_norm_sq, 1e-12);
    fraction_sum += p.gram_trace_fraction;
    EXPECT_FALSE(p.hessian_block.has_value());
  }
  EXPECT_EQ(next_offset, N);
  EXPECT_NEAR(fraction_sum, 1.0, 1e-12);
}

TEST(PerParameter, WideBlocksUseTheGramAndMatchTheSvdOfTheSlice) {
  // n·k = 12 < every weight's count: Gram side; biases (4, 3, 3 values) take G_bᵀG_b.
  const Model model = test::mlp(5, {4, 3}, 3, Activation::kTanh);
  AnalysisRequest r = test::random_request(model, 4, Loss::kMse, 3);
  r.method = Method::kGram;
  expect_blocks_match_svd(r, false);
  const AnalysisResult res = analyze([&] { AnalysisRequest q = r; q.want = parse_want("per_parameter"); return q; }());
  EXPECT_EQ(res.per_parameter[0].jacobian.method, "gram");    // 0.weight: 20 > 12
  EXPECT_EQ(res.per_parameter[1].jacobian.method, "normal");  // 0.bias: 4 <= 12
  EXPECT_FALSE(res.jacobian.has_value());
}

TEST(PerParameter, TallBlocksUseTheNormalSideOverBlocks) {
  const Model model = test::mlp(3, {5}, 2, Activation::kGelu);
  AnalysisRequest r = test::random_request(model, 40, Loss::kNone, 5);  // n·k = 80 > every count
  r.method = Method::kNormal;
  expect_blocks_match_svd(r, false);
}

TEST(PerParameter, AutoRefinesDeficientBlocksBySvd) {
  // ReLU with many examples: the first bias and the last layer's blocks are tall; a dead unit
  // zeroes its columns. Width-2 input: the first weight block has rank ≤ 2·(units) and its Gram
  // cannot resolve the zeros; auto recomputes them by the SVD of G_t.
  Model model = test::mlp(2, {6}, 4, Activation::kRelu);
  AnalysisRequest r = test::random_request(model, 3, Loss::kNone, 11);  // n·k = 12 = weight 0 count
  for (int64_t q = 0; q < 2; ++q) r.params[q] = 0;  // unit 0 of layer 0: zero weights ...
  r.params[12] = -1;                                 // ... and negative bias: dead on every input
  expect_blocks_match_svd(r, true);
  AnalysisRequest q = r;
  q.want = parse_want("per_parameter");
  const AnalysisResult res = analyze(q);
  bool refined = false;
  for (const ParameterSpectrum& p : res.per_parameter) refined = refined || !p.jacobian.refined_from.empty();
  EXPECT_TRUE(refined);
  // Method svd: every block by the SVD of G_t.
  r.method = Method::kSvd;
  expect_blocks_match_svd(r, true);
}

TEST(PerParameter, NamesFollowNnSequentialOrTheGivenNames) {
  Model model = test::mlp(3, {4, 4}, 2, Activation::kSigmoid);
  model.layers[2].bias = false;
  AnalysisRequest r = test::random_request(model, 3, Loss::kNone, 7);
  r.want = parse_want("per_parameter");
  const AnalysisResult res = analyze(r);
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  for (const ParameterSpectrum& p : res.per_parameter) {
    names.push_back(p.name);
    shapes.push_back(p.shape);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "4.weight", "4.bias"}));
  EXPECT_EQ(shapes, (std::vector<std::vector<int64_t>>{{4, 3}, {4}, {4, 4}, {2, 4}, {2}}));
  r.model.param_names = {"a.w", "a.b", "b.w", "c.w", "c.b"};
  EXPECT_EQ(analyze(r).per_parameter[2].name, "b.w");
}

TEST(PerParameter, BadNamesAndWantWordsAreRefused) {
  AnalysisRequest r = test::random_request(test::mlp(3, {4}, 2, Activation::kTanh), 3, Loss::kNone, 7);
  r.want = parse_want("per_parameter");
  r.model.param_names = {"a", "b"};
  try {
    analyze(r);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("param_names: got 2 names, expected 4"), std::string::npos) << e.what();
  }
  r.model.param_names = {"a", "b", "", "d"};
  try {
    analyze(r);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("param_names[2]: empty"), std::string::npos) << e.what();
  }
  try {
    parse_want("jacobian,per_layer");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("per_parameter"), std::string::npos) << e.what();
  }
  // A tensor whose dense problem is over the limit.
  r.model.param_names.clear();
  r.limits.max_dense_dim = 5;
  try {
    analyze(r);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
    EXPECT_NE(std::string(e.what()).find("tensor '0.weight'"), std::string::npos) << e.what();
  }
}

TEST(PerParameter, HessianBlocksMatchDifferencesOfTheGradient) {
  for (const Loss loss : {Loss::kMse, Loss::kCrossEntropy}) {
    SCOPED_TRACE(loss_name(loss));
    const Model model = test::mlp(3, {4}, 3, Activation::kSoftplus);
    AnalysisRequest r = test::random_request(model, 5, loss, 23);
    r.want = parse_want("hessian,per_parameter");
    const AnalysisResult res = analyze(r);
    ASSERT_TRUE(res.hessian.has_value());
    for (const ParameterSpectrum& p : res.per_parameter) {
      SCOPED_TRACE(p.name);
      ASSERT_TRUE(p.hessian_block.has_value());
      // H_tt by central differences of the gradient (O(h²) ≈ 1e-10 relative), symmetrised.
      const double h = 1e-5;
      std::vector<double> block(static_cast<size_t>(p.count * p.count));
      for (int64_t a = 0; a < p.count; ++a) {
        std::vector<double> plus = r.params, minus = r.params;
        plus[p.offset + a] += h;
        minus[p.offset + a] -= h;
        const std::vector<double> gp = test::gradient_at(r, plus), gm = test::gradient_at(r, minus);
        for (int64_t b = 0; b < p.count; ++b) block[a * p.count + b] = (gp[p.offset + b] - gm[p.offset + b]) / (2 * h);
      }
      for (int64_t a = 0; a < p.count; ++a)
        for (int64_t b = 0; b < a; ++b) block[a * p.count + b] = block[b * p.count + a] =
            0.5 * (block[a * p.count + b] + block[b * p.count + a]);
      std::vector<double> w(static_cast<size_t>(p.count));
      ASSERT_EQ(LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'L', p.count, block.data(), p.count, w.data()), 0);
      std::reverse(w.begin(), w.end());
      const std::vector<double>& got = p.hessian_block->eigenvalues;
      ASSERT_EQ(got.size(), w.size());
      const double scale = std::max(test::max_abs(w), 1e-12);
      for (size_t j = 0; j < w.size(); ++j) EXPECT_NEAR(got[j], w[j], 1e-6 * scale) << j;
      EXPECT_LE(p.hessian_block->rank, p.count);
    }
  }
}

TEST(PerParameter, EveryCheckpointGetsItsOwn) {
  const Model model = test::mlp(3, {4}, 2, Activation::kTanh);
  AnalysisRequest r = test::random_request(model, 4, Loss::kMse, 31);
  r.want = parse_want("jacobian,hessian,per_parameter");
  std::mt19937_64 rng(5);
  const std::vector<std::vector<double>> checkpoints = {r.params, test::random_vector(r.params.size(), rng, 0.5)};
  const std::vector<AnalysisResult> batch = analyze_checkpoints(r, checkpoints);
  ASSERT_EQ(batch.size(), 2u);
  for (size_t b = 0; b < 2; ++b) {
    AnalysisRequest one = r;
    one.params = checkpoints[b];
    const AnalysisResult single = analyze(one);
    ASSERT_EQ(batch[b].per_parameter.size(), single.per_parameter.size());
    for (size_t t = 0; t < single.per_parameter.size(); ++t) {
      const auto& x = batch[b].per_parameter[t].jacobian.singular_values;
      const auto& y = single.per_parameter[t].jacobian.singular_values;
      ASSERT_EQ(x.size(), y.size());
      for (size_t j = 0; j < x.size(); ++j) EXPECT_NEAR(x[j], y[j], 1e-12 * y.front());
      EXPECT_EQ(batch[b].per_parameter[t].hessian_block->eigenvalues.size(), single.per_parameter[t].hessian_block->eigenvalues.size());
      EXPECT_NEAR(batch[b].per_parameter[t].hessian_block->eigenvalues.front(),
                  single.per_parameter[t].hessian_block->eigenvalues.front(), 1e-12);
    }
  }
  EXPECT_NE(batch[0].per_parameter[0].jacobian.singular_values.front(),
            batch[1].per_parameter[0].jacobian.singular_values.front());
}

}  // namespace
}  // namespace basin
