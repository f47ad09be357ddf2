// The reduced cross-entropy factor (k − 1 columns, no structural null direction for auto to
// "refine") and the rank bounds: every bound holds against the measured rank and against
// LAPACK's rank of the explicitly assembled matrices; deep linear networks attain theirs.
#include <gtest/gtest.h>
#include <lapacke.h>

#include <cmath>

#include "loss.hpp"
#include "rank_bounds.hpp"
#include "test_util.hpp"

namespace basin {
namespace {

// NumPy's matrix_rank (σ_max·max(m, n)·ε) of a row-major rows × cols matrix, by LAPACK.
int64_t matrix_rank(std::vector<double> a, int64_t rows, int64_t cols) {
  std::vector<double> s(static_cast<size_t>(std::min(rows, cols)));
  EXPECT_EQ(LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', cols, rows, a.data(), cols, s.data(), nullptr, 1, nullptr, 1), 0);
  const double tol = s.front() * double(std::max(rows, cols)) * 2.220446049250313e-16;
  return std::count_if(s.begin(), s.end(), [&](double v) { return v > tol; });
}

// Gᵀ M G with M_i = (diag p_i − p_i p_iᵀ)/n from the softmax, independent of the engine's factor.
std::vector<double> explicit_ce_ggn(const AnalysisRequest& r) {
  const int64_t n = r.num_examples, k = r.model.output_dim(), N = r.model.num_params();
  const std::vector<double> g = test::materialised_jacobian(r), f = test::forward(r.model, r.params, r.inputs, n);
  std::vector<double> ggn(static_cast<size_t>(N * N), 0.0), mg(static_cast<size_t>(k * N));
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<double> p = test::softmax_row(f, i, k);
    std::fill(mg.begin(), mg.end(), 0.0);
    for (int64_t a = 0; a < k; ++a)
      for (int64_t b = 0; b < k; ++b) {
        const double mab = ((a == b ? p[a] : 0.0) - p[a] * p[b]) / double(n);
        for (int64_t t = 0; t < N; ++t) mg[a * N + t] += mab * g[(i * k + b) * N + t];
      }
    for (int64_t a = 0; a < k; ++a)
      for (int64_t s = 0; s < N; ++s) {
        const double gs = g[(i * k + a) * N + s];
        if (gs != 0)
          for (int64_t t = 0; t < N; ++t) ggn[s * N + t] += gs * mg[a * N + t];
      }
  }
  return ggn;
}

TEST(CrossEntropyFactor, ReducedFactorReproducesTheSoftmaxHessianExactly) {
  std::mt19937_64 rng(3);
  for (const int64_t k : {1, 2, 3, 10}) {
    const int64_t n = 4;
    std::vector<double> f = test::random_vector(static_cast<size_t>(n * k), rng, 3.0);
    f[0] = 800;  // one example with probabilities that underflow to exactly 0
    std::vector<int64_t> labels(static_cast<size_t>(n), 0);
    const LossTerms t = loss_terms(Loss::kCrossEntropy, Reduction::kMean, f, n, k, {}, labels);
    ASSERT_EQ(t.factor_cols, k - 1);
    ASSERT_EQ(t.factor_seeds.size(), static_cast<size_t>(n * (k - 1) * k));
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<double> p = test::softmax_row(f, i, k);
      for (int64_t a = 0; a < k; ++a)
        for (int64_t b = 0; b < k; ++b) {
          double ss = 0;  // (S_i S_iᵀ)_ab
          for (int64_t c = 0; c < k - 1; ++c)
            ss += t.factor_seeds[(i * (k - 1) + c) * k + a] * t.factor_seeds[(i * (k - 1) + c) * k + b];
          EXPECT_NEAR(ss, ((a == b ? p[a] : 0.0) - p[a] * p[b]) / double(n), 1e-16) << "k=" << k << " i=" << i;
        }
      const int64_t positive = std::count_if(p.begin(), p.end(), [](double q) { return q > 0; });
      EXPECT_EQ(t.factor_ranks[i], positive - 1);
    }
  }
}

TEST(CrossEntropyGgn, AutoKeepsTheGramWhenTheOnlyDeficiencyIsStructural) {
  // n·(k−1) = 24 ≤ N: the Gram side. The old k-column factor had n zero eigenvalues here.
  const Model model = test::mlp(3, {7}, 4, Activation::kTanh);
  AnalysisRequest r = test::random_request(model, 8, Loss::kCrossEntropy, 41);
  r.want = Want{true, true, true};
  const AnalysisResult res = analyze(r);
  ASSERT_TRUE(res.ggn);
  EXPECT_EQ(res.ggn->method, "gram");
  EXPECT_EQ(res.ggn->refined_from, "");
  const int64_t n = 8, k = 4, N = model.num_params();
  EXPECT_EQ(res.ggn->rank, n * (k - 1));
  EXPECT_EQ(res.ggn->rank, matrix_rank(explicit_ce_ggn(r), N, N));
  ASSERT_EQ(res.ggn->eigenvalues.size(), static_cast<size_t>(std::min(n * k, N)));  // padded with exact zeros
  for (size_t j = static_cast<size_t>(n * (k - 1)); j < res.ggn->eigenvalues.size(); ++j)
    EXPECT_EQ(res.ggn->eigenvalues[j], 0.0);
  EXPECT_EQ(res.ggn->bound.rank_at_most, n * (k - 1));
  EXPECT_NE(res.ggn->bound.why.find("n·(k−1)"), std::string::npos) << res.ggn->bound.why;
  ASSERT_TRUE(res.ggn->gap.has_value() == false);  // λ_{rank+1} is an exact 0: no finite gap
  EXPECT_EQ(res.hessian->method, "dense");
  EXPECT_TRUE(res.hessian->gap.has_value());
  // The same values as the SVD of G̃ itself.
  r.method = Method::kSvd;
  const AnalysisResult svd = analyze(r);
  EXPECT_EQ(svd.ggn->method, "svd");
  for (size_t j = 0; j < svd.ggn->eigenvalues.size(); ++j)
    EXPECT_NEAR(res.ggn->eigenvalues[j], svd.ggn->eigenvalues[j], 1e-12 * svd.ggn->eigenvalues[0]);
}

// 3 → dense(20) → relu → dense(4) with every hidden unit but one dead on all examples.
AnalysisRequest mostly_dead_relu(int64_t n, Loss loss) {
  const Model model = test::mlp(3, {20}, 4, Activation::kRelu);
  AnalysisRequest r = test::random_request(model, n, loss, 9);
  for (int64_t u = 1; u < 20; ++u) r.params[60 + u] = -100;  // biases of units 1..19
  r.params[60] = 5;  // unit 0 active on every example (|w·x| < 5 here), logits moderate
  return r;
}

TEST(CrossEntropyGgn, AutoStillRefinesAGenuineDeficiency) {
  AnalysisRequest r = mostly_dead_relu(10, Loss::kCrossEntropy);
  r.want = Want{true, true, false};
  const AnalysisResult res = analyze(r);
  const int64_t N = r.model.num_params();
  EXPECT_EQ(res.ggn->method, "svd");
  EXPECT_EQ(res.ggn->refined_from, "gram");
  EXPECT_EQ(res.ggn->rank, matrix_rank(explicit_ce_ggn(r), N, N));
  EXPECT_LT(res.ggn->rank, 10 * 3);
  // Bound: the live unit's 4 incoming columns + the last layer's 4·(1 + bias) = 12.
  EXPECT_EQ(res.ggn->bound.rank_at_most, 12);
  EXPECT_LE(res.ggn->rank, res.ggn->bound.rank_at_most);
  EXPECT_EQ(res.jacobian->bound.rank_at_most, 12);
  EXPECT_NE(res.jacobian->bound.why.find("19 units inactive on all 10 examples"), std::string::npos)
      << res.jacobian->bound.why;
  EXPECT_EQ(res.jacobian->rank, matrix_rank(test::materialised_jacobian(r), 40, N));
  EXPECT_LE(res.jacobian->rank, 12);
}

TEST(CrossEntropyGgn, OneOutputIsAZeroGgnAndHessian) {
  const Model model = test::mlp(3, {4}, 1, Activation::kTanh);
  AnalysisRequest r = test::random_request(model, 5, Loss::kCrossEntropy, 2);
  r.want = Want{true, true, true};
  const AnalysisResult res = analyze(r);
  const int64_t N = model.num_params();
  ASSERT_EQ(res.ggn->eigenvalues.size(), static_cast<size_t>(std::min<int64_t>(5, N)));
  for (double v : res.ggn->eigenvalues) EXPECT_EQ(v, 0.0);
  EXPECT_EQ(res.ggn->rank, 0);
  EXPECT_EQ(res.ggn->method, "zero");
  EXPECT_EQ(res.ggn->bound.rank_at_most, 0);
  EXPECT_TRUE(res.ggn->bound.exact);
  EXPECT_EQ(res.hessian->rank, 0);
  EXPECT_EQ(res.hessian->bound.rank_at_most, 0);
  EXPECT_TRUE(res.hessian->bound.exact);
  EXPECT_EQ(res.jacobian->rank, 5);  // G itself is not affected
}

TEST(CrossEntropyGgn, TwoOutputsMatchTheExplicitMatrixOnBothSides) {
  const Model model = test::mlp(3, {5}, 2, Activation::kSilu);  // N = 32
  for (const int64_t n : {6, 40}) {  // n·(k−1) = 6 (gram) and 40 > N (normal)
    AnalysisRequest r = test::random_request(model, n, Loss::kCrossEntropy, 77);
    r.want = Want{false, true, false};
    const AnalysisResult res = analyze(r);
    const int64_t N = model.num_params();
    const std::vector<double> ggn = explicit_ce_ggn(r);
    std::vector<double> w(static_cast<size_t>(N)), a = ggn;
    ASSERT_EQ(LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'L', N, a.data(), N, w.data()), 0);
    std::reverse(w.begin(), w.end());
    ASSERT_EQ(res.ggn->eigenvalues.size(), static_cast<size_t>(std::min(2 * n, N)));
    for (size_t j = 0; j < res.ggn->eigenvalues.size(); ++j)
      EXPECT_NEAR(res.ggn->eigenvalues[j], w[j], 1e-12 * w[0]) << "n=" << n << " j=" << j;
    EXPECT_EQ(res.ggn->rank, matrix_rank(ggn, N, N)) << "n=" << n;
    EXPECT_LE(res.ggn->rank, res.ggn->bound.rank_at_most);
    EXPECT_EQ(res.ggn->bound.rank_at_most, std::min(n, N));
  }
}

TEST(RankBounds, HoldOnRandomNetworks) {
  int64_t cases = 0;
  for (Activation act : {Activation::kRelu, Activation::kTanh, Activation::kIdentity, Activation::kGelu})
    for (Loss loss : {Loss::kMse, Loss::kCrossEntropy})
      for (bool bias : {true, false})
        for (const std::vector<int64_t>& hidden : std::vector<std::vector<int64_t>>{{6}, {8, 2, 8}, {3, 9}}) {
          const Model model = test::mlp(4, hidden, 3, act, bias);
          for (const int64_t n : {2, 7, 30}) {
            AnalysisRequest r = test::random_request(model, n, loss, 100 + cases);
            r.want = Want{true, true, true};
            r.method = Method::kSvd;
            const AnalysisResult res = analyze(r);
            const std::string what = std::string(activation_name(act)) + " " + loss_name(loss) + " n=" +
                                     std::to_string(n) + " bias=" + std::to_string(bias);
            EXPECT_LE(res.jacobian->rank, res.jacobian->bound.rank_at_most) << what << ": " << res.jacobian->bound.why;
            EXPECT_LE(res.ggn->rank, res.ggn->bound.rank_at_most) << what << ": " << res.ggn->bound.why;
            EXPECT_LE(res.hessian->rank, res.hessian->bound.rank_at_most) << what << ": " << res.hessian->bound.why;
            EXPECT_LE(res.jacobian->bound.rank_at_most, std::min(n * 3, model.num_params())) << what;
            if (res.jacobian->bound.exact)
              EXPECT_EQ(res.jacobian->rank, res.jacobian->bound.rank_at_most) << what << ": " << res.jacobian->bound.why;
            if (res.ggn->bound.exact) EXPECT_EQ(res.ggn->rank, res.ggn->bound.rank_at_most) << what;
            ++cases;
          }
        }
  EXPECT_EQ(cases, 4 * 2 * 2 * 3 * 3);
}

Model deep_linear(int64_t d, std::vector<int64_t> hidden, int64_t k, bool bias) {
  return test::mlp(d, hidden, k, Activation::kIdentity, bias);
}

TEST(RankBounds, DeepLinearNetworksAttainSinghBachmannHofmann) {
  struct Case {
    int64_t d;
    std::vector<int64_t> hidden;
    int64_t k, n, rank_x;
    bool bias;
  };
  // q = min(r, K, M_i); rank(G) = q(r + K − q) (+ K with a last-layer bias when 1 ∉ rowspace X).
  const Case cases[] = {{5, {3, 4}, 6, 10, 5, false},  // q = 3: 3·(5 + 6 − 3) = 24
                        {6, {5}, 4, 12, 2, false},     // rank(X) = 2: q = 2, 2·(2 + 4 − 2) = 8
                        {4, {2, 2, 3}, 3, 9, 4, false},  // q = 2: 2·(4 + 3 − 2) = 10
                        {5, {3, 4}, 6, 10, 5, true},   // 24 + 6 = 30
                        {3, {6}, 5, 20, 3, true}};     // q = 3: 3·(3 + 5 − 3) + 5 = 20
  for (const Case& c : cases) {
    const Model model = deep_linear(c.d, c.hidden, c.k, c.bias);
    AnalysisRequest r = test::random_request(model, c.n, Loss::kMse, 5);
    if (c.rank_x < c.d) {  // X = A·B of rank rank_x
      std::mt19937_64 rng(8);
      const std::vector<double> a = test::random_vector(static_cast<size_t>(c.n * c.rank_x), rng);
      const std::vector<double> b = test::random_vector(static_cast<size_t>(c.rank_x * c.d), rng);
      for (int64_t i = 0; i < c.n; ++i)
        for (int64_t j = 0; j < c.d; ++j) {
          double s = 0;
          for (int64_t t = 0; t < c.rank_x; ++t) s += a[i * c.rank_x + t] * b[t * c.d + j];
          r.inputs[i * c.d + j] = s;
        }
    }
    r.want = Want{true, true, false};
    r.method = Method::kSvd;
    const AnalysisResult res = analyze(r);
    int64_t q = std::min(c.rank_x, c.k);
    for (int64_t w : c.hidden) q = std::min(q, w);
    const int64_t formula = q * (c.rank_x + c.k - q) + (c.bias ? c.k : 0);
    const std::string what = "d=" + std::to_string(c.d) + " n=" + std::to_string(c.n) + " bias=" + std::to_string(c.bias);
    EXPECT_EQ(res.jacobian->bound.rank_at_most, formula) << what << ": " << res.jacobian->bound.why;
    EXPECT_TRUE(res.jacobian->bound.exact) << what << ": " << res.jacobian->bound.why;
    EXPECT_EQ(res.jacobian->rank, formula) << what;
    EXPECT_EQ(matrix_rank(test::materialised_jacobian(r), c.n * c.k, model.num_params()), formula) << what;
    EXPECT_EQ(res.ggn->rank, formula) << what;  // MSE: GGN ∝ GᵀG
    EXPECT_TRUE(res.ggn->bound.exact) << what;
  }
}

TEST(RankBounds, BottleneckBoundsTheLayersBeforeIt) {
  // 20 → 50 → tanh → 2 → tanh → 10, n = 20: every example's Jacobian of the first two layers
  // factors through the width-2 layer (≤ 2 per example, 40 in all); the last layer has 30
  // columns: rank(G) ≤ 70 < min(n·k, N) = 200.
  const Model model = test::mlp(20, {50, 2}, 10, Activation::kTanh);
  AnalysisRequest r = test::random_request(model, 20, Loss::kNone, 4);
  r.want = Want{true, false, false};
  r.method = Method::kSvd;
  const AnalysisResult res = analyze(r);
  EXPECT_EQ(res.jacobian->bound.rank_at_most, 70) << res.jacobian->bound.why;
  EXPECT_NE(res.jacobian->bound.why.find("narrowest"), std::string::npos) << res.jacobian->bound.why;
  EXPECT_LE(res.jacobian->rank, 70);
  EXPECT_EQ(res.jacobian->rank, matrix_rank(test::materialised_jacobian(r), 200, model.num_params()));
}

TEST(RankBounds, RankOfTheInputsBoundsTheFirstLayer) {
  // 8 → tanh(30) → 2, X of rank 2 (n = 40): the first layer's block has rank ≤ 30·rank([X 1]) = 90,
  // below its 270 columns.
  const Model model = test::mlp(8, {30}, 2, Activation::kTanh);
  AnalysisRequest r = test::random_request(model, 40, Loss::kNone, 6);
  for (int64_t i = 0; i < 40; ++i)
    for (int64_t j = 2; j < 8; ++j) r.inputs[i * 8 + j] = r.inputs[i * 8 + j % 2] * double(j);
  r.want = Want{true, false, false};
  r.method = Method::kSvd;
  const AnalysisResult res = analyze(r);
  EXPECT_EQ(res.jacobian->bound.rank_at_most, 80) << res.jacobian->bound.why;  // = n·k: the first layer's 90 + 62 > 80
  EXPECT_LE(res.jacobian->rank, 80);
  // With more outputs the input rank binds: 8 → tanh(30) → 12, n = 40: 90 + 31·12 = 462 < n·k = 480.
  const Model wide = test::mlp(8, {30}, 12, Activation::kTanh);
  AnalysisRequest w = test::random_request(wide, 40, Loss::kNone, 6);
  w.inputs = r.inputs;
  w.want = r.want;
  w.method = Method::kSvd;
  const AnalysisResult rw = analyze(w);
  EXPECT_EQ(rw.jacobian->bound.rank_at_most, 462) << rw.jacobian->bound.why;
  EXPECT_NE(rw.jacobian->bound.why.find("rank([X 1])"), std::string::npos) << rw.jacobian->bound.why;
  EXPECT_LE(rw.jacobian->rank, 462);
  EXPECT_EQ(rw.jacobian->rank, matrix_rank(test::materialised_jacobian(w), 480, wide.num_params()));
}

}  // namespace
}  // namespace basin
