// --vectors: G's singular bases and the GGN / Hessian eigenvectors, checked against the
// definitions: orthonormality to 1e-12, ‖G·v‖ ≤ tolerance on the null basis, G = G·V_row·V_rowᵀ,
// G·v_j = σ_j·u_j, GGN·v = λ·v with the GGN assembled here as JᵀMJ from softmax, and H·v = λ·v
// with H·v by central differences of the engine-independent gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "loss.hpp"
#include "test_util.hpp"

namespace basin {
namespace {

const VectorArray& find(const AnalysisResult& r, const std::string& name) {
  for (const VectorArray& v : r.vectors)
    if (v.name == name) return v;
  throw std::runtime_error("no vectors named " + name);
}

// Column j of a row-major [rows×cols] matrix.
std::vector<double> column(const VectorArray& a, int64_t j) {
  std::vector<double> c(static_cast<size_t>(a.shape[0]));
  for (int64_t i = 0; i < a.shape[0]; ++i) c[i] = a.data[i * a.shape[1] + j];
  return c;
}

// A·x for A [rows×cols] row-major.
std::vector<double> times(const std::vector<double>& a, int64_t rows, int64_t cols, const std::vector<double>& x) {
  std::vector<double> y(static_cast<size_t>(rows), 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < cols; ++c) y[i] += a[i * cols + c] * x[c];
  return y;
}

double norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

// max |QᵀQ − I| over the columns given.
double orthonormality_error(const std::vector<std::vector<double>>& cols) {
  double worst = 0;
  for (size_t a = 0; a < cols.size(); ++a)
    for (size_t b = 0; b <= a; ++b) {
      const double dot = std::inner_product(cols[a].begin(), cols[a].end(), cols[b].begin(), 0.0);
      worst = std::max(worst, std::fabs(dot - (a == b ? 1.0 : 0.0)));
    }
  return worst;
}

// A deep linear network (identity activation): G is rank deficient by structure when tall.
AnalysisRequest linear_request(int64_t n, uint64_t seed) {
  AnalysisRequest r = test::random_request(test::mlp(3, {4}, 2, Activation::kIdentity), n, Loss::kMse, seed);
  // The last example repeats the first: two rows of G per output repeat, so G is deficient
  // also when n·k < N.
  std::copy(r.inputs.begin(), r.inputs.begin() + 3, r.inputs.end() - 3);
  r.want = Want{true, false, false};
  r.return_jacobian = true;
  r.vectors.jacobian_row = r.vectors.jacobian_null = r.vectors.jacobian_left = true;
  return r;
}

TEST(Vectors, JacobianBasesAreOrthonormalAndSplitRowAndNullSpace) {
  for (const int64_t n : {4, 30}) {  // n·k = 8 < N = 26 (wide G) and 60 > N (tall G)
    const AnalysisRequest r = linear_request(n, 5 + n);
    const AnalysisResult res = analyze(r);
    const int64_t N = res.num_params, m = n * res.num_outputs, rank = res.jacobian->rank;
    const std::vector<double>& g = res.jacobian_matrix;
    ASSERT_LT(rank, std::min(m, N)) << "the deep linear net should be rank deficient";
    const VectorArray& row = find(res, "jacobian_row_basis");
    const VectorArray& null = find(res, "jacobian_null_basis");
    const VectorArray& left = find(res, "jacobian_left_basis");
    ASSERT_EQ(row.shape, (std::vector<int64_t>{rank, N}));
    ASSERT_EQ(null.shape, (std::vector<int64_t>{N, N - rank}));
    ASSERT_EQ(left.shape, (std::vector<int64_t>{m, rank}));
    // [V_row; V_nullᵀ] is one orthonormal basis of ℝᴺ.
    std::vector<std::vector<double>> v;
    for (int64_t j = 0; j < rank; ++j) v.emplace_back(row.data.begin() + j * N, row.data.begin() + (j + 1) * N);
    for (int64_t j = 0; j < N - rank; ++j) v.push_back(column(null, j));
    EXPECT_LE(orthonormality_error(v), 1e-12) << "n=" << n;
    // G·v ≈ 0 on the null basis: every ‖G·v‖ at most the rank tolerance.
    for (int64_t j = 0; j < N - rank; ++j)
      EXPECT_LE(norm(times(g, m, N, column(null, j))), res.jacobian->tolerance) << "n=" << n << " null column " << j;
    // G = G·V_row·V_rowᵀ: the row basis spans the row space (up to the dropped σ ≤ tolerance).
    double err = 0;
    for (int64_t i = 0; i < m; ++i) {
      std::vector<double> gi(g.begin() + i * N, g.begin() + (i + 1) * N), proj(static_cast<size_t>(N), 0.0);
      for (int64_t j = 0; j < rank; ++j) {
        const double c = std::inner_product(gi.begin(), gi.end(), v[j].begin(), 0.0);
        for (int64_t t = 0; t < N; ++t) proj[t] += c * v[j][t];
      }
      for (int64_t t = 0; t < N; ++t) err = std::max(err, std::fabs(gi[t] - proj[t]));
    }
    EXPECT_LE(err, res.jacobian->tolerance + 1e-12 * res.jacobian->singular_values[0]) << "n=" << n;
    // G·v_j = σ_j·u_j and U orthonormal.
    std::vector<std::vector<double>> u;
    for (int64_t j = 0; j < rank; ++j) {
      u.push_back(column(left, j));
      const std::vector<double> gv = times(g, m, N, v[j]);
      for (int64_t i = 0; i < m; ++i)
        EXPECT_NEAR(gv[i], res.jacobian->singular_values[j] * u[j][i], 1e-12 * res.jacobian->singular_values[0]);
    }
    EXPECT_LE(orthonormality_error(u), 1e-12) << "n=" << n;
    EXPECT_EQ(row.indices, [&] { std::vector<int64_t> i(rank); std::iota(i.begin(), i.end(), 0); return i; }());
  }
}

TEST(Vectors, KKeepsTheLargestSingularDirectionsAndTheWholeNullBasis) {
  AnalysisRequest r = linear_request(4, 9);
  r.vectors.k = 2;
  const AnalysisResult res = analyze(r);
  const int64_t N = res.num_params, rank = res.jacobian->rank;
  EXPECT_EQ(find(res, "jacobian_row_basis").shape, (std::vector<int64_t>{2, N}));
  EXPECT_EQ(find(res, "jacobian_left_basis").shape, (std::vector<int64_t>{8, 2}));
  EXPECT_EQ(find(res, "jacobian_null_basis").shape, (std::vector<int64_t>{N, N - rank}));
  // The same first two rows as without K.
  AnalysisRequest all = linear_request(4, 9);
  const AnalysisResult full = analyze(all);
  const std::vector<double>& a = find(res, "jacobian_row_basis").data;
  const std::vector<double>& b = find(full, "jacobian_row_basis").data;
  for (int64_t i = 0; i < 2 * N; ++i) EXPECT_DOUBLE_EQ(a[i], b[i]);
}

TEST(Vectors, GgnEigenvectorsMatchExplicitJtMJ) {
  const Model model = test::mlp(3, {6}, 4, Activation::kSilu);
  for (const int64_t n : {3, 30}) {  // n·k = 12 < N = 52, and 120 > N
    AnalysisRequest r = test::random_request(model, n, Loss::kCrossEntropy, 41);
    r.want = Want{false, true, false};
    r.vectors.ggn = true;
    const AnalysisResult res = analyze(r);
    const int64_t k = 4, N = model.num_params();
    // GGN = Σ_i J_iᵀ M_i J_i, M_i = (diag p_i − p_i p_iᵀ)/n from the softmax of G materialised.
    const std::vector<double> ggn = test::explicit_cross_entropy_ggn(r);
    const VectorArray& vec = find(res, "ggn_eigenvectors");
    const std::vector<double>& lambda = res.ggn->eigenvalues;
    ASSERT_EQ(vec.shape, (std::vector<int64_t>{N, static_cast<int64_t>(lambda.size())}));
    std::vector<std::vector<double>> cols;
    for (size_t j = 0; j < lambda.size(); ++j) {
      cols.push_back(column(vec, static_cast<int64_t>(j)));
      const std::vector<double> gv = times(ggn, N, N, cols.back());
      double err = 0;
      for (int64_t t = 0; t < N; ++t) err = std::max(err, std::fabs(gv[t] - lambda[j] * cols.back()[t]));
      EXPECT_LE(err, 1e-12 * lambda[0]) << "n=" << n << " eigenvector " << j;
    }
    EXPECT_LE(orthonormality_error(cols), 1e-12) << "n=" << n;
  }
}

// ∇L at θ, by the Network directly (the engine's Hessian assembly is not involved).
std::vector<double> gradient_at(const AnalysisRequest& r, const std::vector<double>& params) {
  auto be = make_cpu_backend<double>();
  Network<double> net(*be, r.model, params, r.inputs, r.num_examples, nullptr);
  net.forward();
  const LossTerms t = loss_terms(r.loss, r.reduction, net.outputs(), r.num_examples, r.model.output_dim(), r.targets, r.labels);
  return net.gradient(t.dloss_df, false);
}

TEST(Vectors, HessianEigenvectorsSatisfyHvEqualsLambdaV) {
  const Model model = test::mlp(3, {5}, 2, Activation::kTanh);
  AnalysisRequest r = test::random_request(model, 7, Loss::kCrossEntropy, 12);
  r.want = Want{false, false, true};
  r.vectors.hessian = true;
  const AnalysisResult res = analyze(r);
  const int64_t N = model.num_params();
  const VectorArray& vec = find(res, "hessian_eigenvectors");
  const std::vector<double>& lambda = res.hessian->eigenvalues;
  ASSERT_EQ(vec.shape, (std::vector<int64_t>{N, N}));
  const double lmax = std::max(std::fabs(lambda.front()), std::fabs(lambda.back()));
  std::vector<std::vector<double>> cols;
  const double h = 1e-4;
  for (int64_t j = 0; j < N; ++j) {
    cols.push_back(column(vec, j));
    // H·v by central differences of the gradient along v: error O(h²·|∇³L|) ≈ 1e-8.
    std::vector<double> plus = r.params, minus = r.params;
    for (int64_t t = 0; t < N; ++t) {
      plus[t] += h * cols.back()[t];
      minus[t] -= h * cols.back()[t];
    }
    const std::vector<double> gp = gradient_at(r, plus), gm = gradient_at(r, minus);
    double err = 0;
    for (int64_t t = 0; t < N; ++t) err = std::max(err, std::fabs((gp[t] - gm[t]) / (2 * h) - lambda[j] * cols.back()[t]));
    EXPECT_LE(err, 1e-6 * lmax) << "eigenvector " << j << " (λ = " << lambda[j] << ")";
  }
  EXPECT_LE(orthonormality_error(cols), 1e-12);

  // K = 2: the two largest and the two smallest, in the order of the eigenvalue list.
  r.vectors.k = 2;
  const AnalysisResult two = analyze(r);
  const VectorArray& ext = find(two, "hessian_eigenvectors");
  EXPECT_EQ(ext.shape, (std::vector<int64_t>{N, 4}));
  EXPECT_EQ(ext.indices, (std::vector<int64_t>{0, 1, N - 2, N - 1}));
  for (int64_t c = 0; c < 4; ++c) {
    const std::vector<double> a = column(ext, c), b = column(vec, ext.indices[c]);
    for (int64_t t = 0; t < N; ++t) EXPECT_NEAR(a[t], b[t], 1e-12);
  }
}

void expect_error(const AnalysisRequest& r, ErrorCode code, const std::string& fragment, size_t checkpoints = 1) {
  try {
    if (checkpoints > 1) analyze_checkpoints(r, std::vector<std::vector<double>>(checkpoints, r.params));
    else analyze(r);
    ADD_FAILURE() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Vectors, BadRequestsAreRefusedWithWhatWasWrong) {
  EXPECT_THROW(parse_vectors("jacobian_row,eigen"), Error);
  try {
    parse_vectors("jacobian_row,eigen");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown word 'eigen'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("jacobian_null"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_vectors(","), Error);
  const VectorsWant parsed = parse_vectors("jacobian_null,hessian");
  EXPECT_TRUE(parsed.jacobian_null && parsed.hessian && !parsed.jacobian_row && !parsed.ggn);

  AnalysisRequest r = test::random_request(test::mlp(3, {4}, 2, Activation::kTanh), 5, Loss::kMse, 3);
  r.want = Want{true, false, false};
  r.vectors.hessian = true;
  expect_error(r, ErrorCode::kInvalidArgument, "needs hessian in want");
  r.vectors = VectorsWant{};
  r.vectors.ggn = true;
  expect_error(r, ErrorCode::kInvalidArgument, "needs ggn in want");
  r.want = Want{false, true, false};
  r.vectors = VectorsWant{};
  r.vectors.jacobian_row = true;
  expect_error(r, ErrorCode::kInvalidArgument, "needs jacobian in want");
  r.want = Want{true, false, false};
  expect_error(r, ErrorCode::kInvalidArgument, "one parameter vector at a time", 3);
  // The null basis over the limit says what does fit.
  r.vectors.jacobian_null = true;
  r.limits.max_dense_dim = 20;  // N = 26
  expect_error(r, ErrorCode::kResourceExhausted, "jacobian_row (rank × N, the thin SVD");
  r.limits.max_dense_dim = 30000;
  r.limits.max_memory_bytes = 1000;
  expect_error(r, ErrorCode::kResourceExhausted, "memory");
}

}  // namespace
}  // namespace basin
