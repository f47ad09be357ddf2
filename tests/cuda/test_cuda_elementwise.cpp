// The CUDA backend's element-wise kernel bodies (kernels/cuda/elementwise.hpp) and its row-major →
// column-major argument mapping (kernels/cuda/blas_mapping.hpp), run on the host and held against
// the CPU backend on random data. No GPU needed: each body is called for every index exactly as
// the grid-stride loop in cuda_backend.cu calls it, in a shuffled order to show that the result
// does not depend on which thread runs first.
//
// The CPU backend's memory space is the host, so host vectors are passed to it directly.
#include <gtest/gtest.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "basin/activation.hpp"
#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "basin/model.hpp"
#include "blas_mapping.hpp"
#include "column_major_reference.hpp"
#include "elementwise.hpp"

namespace basin {
namespace {

using cuda::ColumnMajorGemm;

std::vector<double> random_vector(size_t count, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(count);
  for (double& x : v) x = dist(rng);
  return v;
}

// Runs body(idx) for idx in [0, count) in a fixed pseudo-random order (threads have no order).
template <class Body>
void for_each_index_shuffled(int64_t count, Body body) {
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::shuffle(order.begin(), order.end(), std::mt19937_64(12345));
  for (int64_t idx : order) body(idx);
}

// Element-by-element comparison with a readable first mismatch. The host run of a body uses the
// same expressions in the same order as the CPU backend, so equality is to a few ulps.
void expect_same(const std::vector<double>& expected, const std::vector<double>& actual, const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::isnan(expected[i]) && std::isnan(actual[i])) continue;
    ASSERT_DOUBLE_EQ(expected[i], actual[i]) << what << ": first mismatch at flat index " << i;
  }
}

const Activation kAllActivations[] = {Activation::kIdentity, Activation::kRelu,    Activation::kLeakyRelu,
                                      Activation::kTanh,     Activation::kSigmoid, Activation::kGelu,
                                      Activation::kSoftplus, Activation::kSilu};

// Pre-activations spread over the interesting ranges: both tails, 0 exactly (relu'(0) = 0),
// and past softplus's threshold of 20.
std::vector<double> pre_activations(size_t count, uint64_t seed) {
  std::vector<double> z = random_vector(count, seed, -6.0, 6.0);
  const double specials[] = {0.0, -0.0, 20.0, 20.5, -30.0, 35.0, 1e-9, -1e-9};
  for (size_t i = 0; i < count && i < std::size(specials); ++i) z[i * 3 % count] = specials[i];
  return z;
}

class CudaElementwise : public ::testing::Test {
 protected:
  std::unique_ptr<Backend<double>> cpu = make_cpu_backend<double>();
};

TEST_F(CudaElementwise, FillAndAxpyMatchCpu) {
  const int64_t count = 37;
  std::vector<double> expected(count, -1.0), actual(count, -1.0);
  cpu->fill(expected.data(), count, 2.5);
  for_each_index_shuffled(count, [&](int64_t i) { cuda::fill_element(i, 2.5, actual.data()); });
  expect_same(expected, actual, "fill");

  const std::vector<double> x = random_vector(count, 1);
  expected = random_vector(count, 2);
  actual = expected;
  cpu->axpy(count, -0.75, x.data(), expected.data());
  for_each_index_shuffled(count, [&](int64_t i) { cuda::axpy_element(i, -0.75, x.data(), actual.data()); });
  expect_same(expected, actual, "axpy");
}

TEST_F(CudaElementwise, ScaleMatrixIsGemmWithEmptyInnerDimension) {
  // gemm with k = 0 is C = beta·C (and exactly 0 for beta = 0, even over NaN): the CUDA backend
  // runs scale_matrix instead of cuBLAS for it.
  const int64_t m = 4, n = 3, ldc = 5;
  for (double beta : {0.0, 2.0}) {
    std::vector<double> expected = random_vector(m * ldc, 3);
    expected[1] = std::numeric_limits<double>::quiet_NaN();
    std::vector<double> actual = expected;
    cpu->gemm(false, false, m, n, 0, 1.0, nullptr, 1, nullptr, n, beta, expected.data(), ldc);
    for_each_index_shuffled(m * n, [&](int64_t i) { cuda::scale_matrix_element(i, n, beta, actual.data(), ldc); });
    expect_same(expected, actual, "scale_matrix beta=" + std::to_string(beta));
  }
}

TEST_F(CudaElementwise, AddRowVectorMatchesCpuAndLeavesPaddingAlone) {
  const int64_t rows = 5, cols = 7, ldc = 9;
  const std::vector<double> v = random_vector(cols, 4);
  std::vector<double> expected = random_vector(rows * ldc, 5), actual = expected;
  cpu->add_row_vector(rows, cols, v.data(), expected.data(), ldc);
  for_each_index_shuffled(rows * cols,
                          [&](int64_t i) { cuda::add_row_vector_element(i, cols, v.data(), actual.data(), ldc); });
  expect_same(expected, actual, "add_row_vector");
}

TEST_F(CudaElementwise, ActivationForwardMatchesCpuForEveryActivation) {
  const int64_t count = 64;
  const std::vector<double> z = pre_activations(count, 6);
  for (Activation act : kAllActivations) {
    const ActivationFn<double> fn{act, 0.1};
    std::vector<double> expected(count), actual(count);
    cpu->activation_forward(fn, count, z.data(), expected.data());
    for_each_index_shuffled(count, [&](int64_t i) { cuda::activation_forward_element(i, fn, z.data(), actual.data()); });
    expect_same(expected, actual, std::string("activation_forward ") + activation_name(act));
  }
}

TEST_F(CudaElementwise, ScaleByActivationDerivativeMatchesCpuForEveryActivation) {
  const int64_t n = 3, rpe = 4, d = 6;
  const std::vector<double> z = pre_activations(n * d, 7);
  for (Activation act : kAllActivations) {
    const ActivationFn<double> fn{act, 0.2};
    std::vector<double> expected = random_vector(n * rpe * d, 8), actual = expected;
    cpu->scale_by_activation_derivative(fn, n, rpe, d, z.data(), expected.data());
    for_each_index_shuffled(n * rpe * d, [&](int64_t i) {
      cuda::scale_by_activation_derivative_element(i, fn, rpe, d, z.data(), actual.data());
    });
    expect_same(expected, actual, std::string("scale_by_activation_derivative ") + activation_name(act));
  }
}

TEST_F(CudaElementwise, RopActivationBackwardMatchesCpuForEveryActivation) {
  const int64_t n = 4, rpe = 3, d = 5;
  const std::vector<double> z = pre_activations(n * d, 9);
  const std::vector<double> g = random_vector(n * d, 10);
  const std::vector<double> rz = random_vector(n * rpe * d, 11);
  for (Activation act : kAllActivations) {
    const ActivationFn<double> fn{act, 0.05};
    std::vector<double> expected = random_vector(n * rpe * d, 12), actual = expected;
    cpu->rop_activation_backward(fn, n, rpe, d, z.data(), rz.data(), g.data(), expected.data());
    for_each_index_shuffled(n * rpe * d, [&](int64_t i) {
      cuda::rop_activation_backward_element(i, fn, rpe, d, z.data(), rz.data(), g.data(), actual.data());
    });
    expect_same(expected, actual, std::string("rop_activation_backward ") + activation_name(act));
  }
}

TEST_F(CudaElementwise, HadamardExpandAccumulatesLowerTriangleOnly) {
  for (int64_t r : {1, 3}) {
    for (double kappa : {0.0, 1.0}) {
      const int64_t n = 5, m = n * r;
      const std::vector<double> k = random_vector(n * n, 13);
      // The whole square, then row tiles of every size (D padded: ldd > tile width).
      for (int64_t tile : {m, int64_t(1), int64_t(2), int64_t(4)}) {
        std::vector<double> expected = random_vector(m * m, 15), actual = expected;
        for (int64_t row0 = 0; row0 < m; row0 += tile) {
          const int64_t rows = std::min(tile, m - row0), ldd = row0 + rows + (tile == m ? 0 : 2);
          const std::vector<double> d = random_vector(rows * ldd, 14 + row0);
          cpu->hadamard_expand_accumulate(n, r, k.data(), kappa, row0, rows, d.data(), ldd, expected.data());
          for_each_index_shuffled(rows * (row0 + rows), [&](int64_t i) {
            cuda::hadamard_expand_element(i, n, r, k.data(), kappa, row0, rows, d.data(), ldd, actual.data());
          });
        }
        expect_same(expected, actual, "hadamard_expand r=" + std::to_string(r) + " kappa=" + std::to_string(kappa) +
                                          " tile=" + std::to_string(tile));
      }
    }
  }
}

TEST_F(CudaElementwise, CombineHessianSymmetrisesTheResidualAndAddsIt) {
  for (int64_t n : {1, 7, 130}) {  // 130: more than two of the CPU's 64-wide tiles
    const std::vector<double> g0 = random_vector(n * n, 30), r0 = random_vector(n * n, 31);
    std::vector<double> g_cpu = g0, r_cpu = r0, g_dev = g0, r_dev = r0;
    const std::array<double, 2> norms = cpu->combine_hessian(n, g_cpu.data(), r_cpu.data());
    for_each_index_shuffled(n * n, [&](int64_t i) { cuda::combine_hessian_element(i, n, g_dev.data(), r_dev.data()); });
    double h_sq = 0, r_sq = 0;
    for (int64_t i = 0; i < n * n; ++i) {
      h_sq += cuda::symmetric_square_term(i, n, g_dev.data());
      r_sq += cuda::symmetric_square_term(i, n, r_dev.data());
    }
    // Lower triangles agree bit for bit (same expression); upper triangles are untouched.
    expect_same(g_cpu, g_dev, "combine_hessian H n=" + std::to_string(n));
    expect_same(r_cpu, r_dev, "combine_hessian R n=" + std::to_string(n));
    EXPECT_NEAR(norms[0], h_sq, 1e-12 * h_sq);
    EXPECT_NEAR(norms[1], r_sq, 1e-12 * r_sq);
    // And the formula itself, against the untouched inputs.
    double h_ref = 0, r_ref = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const int64_t lo = std::max(i, j) * n + std::min(i, j), up = std::min(i, j) * n + std::max(i, j);
        const double rij = 0.5 * (r0[lo] + r0[up]);
        h_ref += (g0[lo] + rij) * (g0[lo] + rij);
        r_ref += rij * rij;
        if (j <= i) EXPECT_NEAR(g_cpu[i * n + j], g0[i * n + j] + rij, 1e-15);
      }
    EXPECT_NEAR(norms[0], h_ref, 1e-12 * h_ref);
    EXPECT_NEAR(norms[1], r_ref, 1e-12 * r_ref);
  }
}

TEST_F(CudaElementwise, AssembleJacobianBlockWritesOnlyItsColumns) {
  // A block of rows starting at row0 (as in the blockwise GᵀG), written into a wider G at col0.
  for (bool bias : {true, false}) {
    const int64_t n = 6, rpe = 3, d_out = 4, d_in = 5, row0 = 5, rows = 8, col0 = 7;
    const int64_t width = cuda::jacobian_block_width(d_out, d_in, bias);
    const int64_t ldo = col0 + width + 3;
    const std::vector<double> delta = random_vector(rows * d_out, 16);
    const std::vector<double> a = random_vector(n * d_in, 17);
    std::vector<double> expected(rows * ldo, -7.0), actual = expected;  // sentinel outside the block
    cpu->assemble_jacobian_block(rows, row0, rpe, d_out, d_in, bias, delta.data(), a.data(), expected.data(), ldo,
                                 col0);
    for_each_index_shuffled(rows * width, [&](int64_t i) {
      cuda::assemble_jacobian_element(i, row0, rpe, d_out, d_in, bias, delta.data(), a.data(), actual.data(), ldo,
                                      col0);
    });
    expect_same(expected, actual, std::string("assemble_jacobian_block bias=") + (bias ? "true" : "false"));
  }
}

TEST_F(CudaElementwise, ColumnSumsMatchCpu) {
  const int64_t rows = 9, cols = 6, ldx = 8;
  const std::vector<double> x = random_vector(rows * ldx, 18);
  std::vector<double> expected(cols, 3.0), actual(cols, 3.0);  // overwritten, not accumulated
  cpu->column_sums(rows, cols, x.data(), ldx, expected.data());
  for_each_index_shuffled(cols, [&](int64_t j) { cuda::column_sum_element(j, rows, x.data(), ldx, actual.data()); });
  expect_same(expected, actual, "column_sums");
}

TEST_F(CudaElementwise, SymmetrizeLowerMatchesCpu) {
  const int64_t n = 7, ldc = 9;
  std::vector<double> expected = random_vector(n * ldc, 19), actual = expected;
  cpu->symmetrize_lower(n, expected.data(), ldc);
  for_each_index_shuffled(n * n, [&](int64_t i) { cuda::symmetrize_lower_element(i, n, actual.data(), ldc); });
  expect_same(expected, actual, "symmetrize_lower");
}

TEST_F(CudaElementwise, TransposeKeepsSingularValues) {
  // transpose_element feeds gesvd when the row-major matrix has more rows than columns.
  const int64_t m = 9, n = 4;
  const std::vector<double> a = random_vector(m * n, 20);
  std::vector<double> t(m * n, 0.0);
  for_each_index_shuffled(m * n, [&](int64_t i) { cuda::transpose_element(i, m, n, a.data(), t.data()); });
  // Against the CPU backend: Aᵀ = Aᵀ·I.
  std::vector<double> eye(m * m, 0.0), expected(n * m, 0.0);
  for (int64_t i = 0; i < m; ++i) eye[i * m + i] = 1.0;
  cpu->gemm(true, false, n, m, m, 1.0, a.data(), n, eye.data(), m, 0.0, expected.data(), m);
  expect_same(expected, t, "transpose");
  std::vector<double> a_copy = a, t_copy = t;
  expect_same(cpu->singular_values(m, n, a_copy.data()), cpu->singular_values(n, m, t_copy.data()),
              "singular values of A and Aᵀ");
}

TEST_F(CudaElementwise, QrRWriteBackIsTheCpuRUpToRowSigns) {
  // The CUDA qr_r: transpose_element into a column-major copy, geqrf (LAPACK here, cuSOLVER on
  // the device), then qr_r_row_major_element writes R row-major with zeros below the diagonal.
  // The CPU gets R by an LQ of the column-major view instead; R is unique up to row signs.
  const int64_t m = 11, n = 6;
  const std::vector<double> a = random_vector(m * n, 21);
  std::vector<double> qr(m * n, 0.0), tau(n), actual(a.size(), 7.0), expected = a;
  for_each_index_shuffled(m * n, [&](int64_t i) { cuda::transpose_element(i, m, n, a.data(), qr.data()); });
  ASSERT_EQ(LAPACKE_dgeqrf(LAPACK_COL_MAJOR, m, n, qr.data(), m, tau.data()), 0);
  for_each_index_shuffled(n * n, [&](int64_t i) { cuda::qr_r_row_major_element(i, m, n, qr.data(), actual.data()); });
  cpu->qr_r(m, n, expected.data());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      if (j < i) EXPECT_EQ(actual[i * n + j], 0.0) << "R[" << i << ", " << j << "] below the diagonal";
      EXPECT_NEAR(std::fabs(actual[i * n + j]), std::fabs(expected[i * n + j]), 1e-14) << "R[" << i << ", " << j << "]";
    }
  EXPECT_EQ(actual[n * n], 7.0) << "rows n.. of A are not R's to write";
}

TEST_F(CudaElementwise, NonFiniteFlagAgreesWithTheCpuSolversCheck) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const double huge = std::numeric_limits<double>::max(), tiny = std::numeric_limits<double>::denorm_min();
  for (double bad : {0.0, inf, -inf, nan, huge, -huge, tiny}) {
    const int64_t n = 4;
    std::vector<double> a = random_vector(n * n, 26);
    a[6] = bad;
    int flag = 0;
    for_each_index_shuffled(n * n, [&](int64_t i) { cuda::nonfinite_flag_element(i, a.data(), &flag); });
    EXPECT_EQ(flag != 0, !std::isfinite(bad)) << bad;
    // The CUDA backend throws exactly when the flag is set, with the CPU backend's error.
    bool cpu_threw = false;
    try {
      (void)cpu->symmetric_eigenvalues(n, a.data());
    } catch (const Error& e) {
      cpu_threw = e.code() == ErrorCode::kInvalidArgument;
    }
    EXPECT_EQ(cpu_threw, flag != 0) << bad;
  }
}

// ---- the row-major → column-major mapping, checked against a naive column-major BLAS ----

TEST_F(CudaElementwise, GemmMappingToColumnMajorMatchesCpuForAllTransposes) {
  const int64_t m = 5, n = 4, k = 3;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      // Row-major storage with padding in every leading dimension.
      const int64_t lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
      const std::vector<double> a = random_vector((ta ? k : m) * lda, 21);
      const std::vector<double> b = random_vector((tb ? n : k) * ldb, 22);
      std::vector<double> expected = random_vector(m * ldc, 23), actual = expected;
      cpu->gemm(ta, tb, m, n, k, 0.5, a.data(), lda, b.data(), ldb, -1.5, expected.data(), ldc);
      const ColumnMajorGemm<double> g = cuda::row_major_gemm_as_column_major(ta, tb, m, n, k, a.data(), lda, b.data(), ldb);
      test::gemm_col_major(g, 0.5, -1.5, actual.data(), ldc);
      for (size_t i = 0; i < expected.size(); ++i)
        ASSERT_NEAR(expected[i], actual[i], 1e-13) << "ta=" << ta << " tb=" << tb << " at " << i;
    }
  }
}

TEST_F(CudaElementwise, SyrkMappingToColumnMajorWritesTheRowMajorLowerTriangle) {
  const int64_t n = 6, k = 4;
  for (bool trans : {false, true}) {
    const int64_t lda = (trans ? n : k) + 2, ldc = n + 1;
    const std::vector<double> a = random_vector((trans ? k : n) * lda, 24);
    std::vector<double> expected = random_vector(n * ldc, 25), actual = expected;
    cpu->syrk_lower(trans, n, k, 2.0, a.data(), lda, 0.5, expected.data(), ldc);
    const cuda::ColumnMajorSyrk sy = cuda::row_major_lower_syrk_as_column_major(trans);
    ASSERT_TRUE(sy.upper);
    test::syrk_col_major(sy, n, k, 2.0, a.data(), lda, 0.5, actual.data(), ldc);
    for (size_t i = 0; i < expected.size(); ++i) ASSERT_NEAR(expected[i], actual[i], 1e-13) << "trans=" << trans << " at " << i;
  }
}

TEST_F(CudaElementwise, GesvdShapeAlwaysHasAtLeastAsManyRowsAsColumns) {
  for (auto [m, n] : {std::pair<int64_t, int64_t>{3, 8}, {8, 3}, {5, 5}, {1, 9}, {9, 1}}) {
    const cuda::GesvdShape s = cuda::gesvd_shape_for_row_major(m, n);
    EXPECT_GE(s.rows, s.cols) << m << "x" << n;
    EXPECT_EQ(s.rows * s.cols, m * n);
    EXPECT_EQ(s.ld, s.rows);
    EXPECT_EQ(s.transpose, n < m);
  }
}

// ---- device selection without a device ----

TEST(CudaAvailability, NoDeviceMeansUnavailableWithTheReason) {
  std::string why;
  if (cuda_available(&why)) {
    EXPECT_TRUE(why.empty());
    EXPECT_NO_THROW(make_cuda_backend<double>(0));
    try {
      (void)make_cuda_backend<double>(1 << 20);
      FAIL() << "a device index past the device count must throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnavailable) << e.what();
    }
    return;
  }
  EXPECT_FALSE(why.empty());
#ifdef BASIN_TEST_HAVE_CUDA
  // The loader stops at the missing driver library before loading the module at all.
  EXPECT_TRUE(why.find("no NVIDIA driver") != std::string::npos ||
              why.find("no CUDA device: cudaGetDeviceCount") != std::string::npos)
      << why;
#endif
  for (int repeat = 0; repeat < 2; ++repeat) {  // and it stays a clean error, not a sticky crash
    try {
      (void)make_cuda_backend<float>(0);
      FAIL() << "make_cuda_backend must throw without a device";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  }
}

#ifdef BASIN_TEST_HAVE_CUDA
// The module's C entry points (what the loader dlsyms), called directly: without a device they
// report the CUDA runtime's reason and return no backend, with the error code preserved.
extern "C" int basin_cuda_module_available(char* why, size_t size);
extern "C" void* basin_cuda_module_create_f64(int device, int* code, char* message, size_t size);

TEST(CudaModule, EntryPointsReportTheDeviceState) {
  char why[512] = {0};
  if (basin_cuda_module_available(why, sizeof why) != 0) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_NE(std::string(why).find("cudaGetDeviceCount"), std::string::npos) << why;
  int code = -1;
  char message[512] = {0};
  EXPECT_EQ(basin_cuda_module_create_f64(0, &code, message, sizeof message), nullptr);
  EXPECT_EQ(code, static_cast<int>(ErrorCode::kUnavailable));
  EXPECT_NE(std::string(message).find("device cuda"), std::string::npos) << message;
}
#endif

}  // namespace
}  // namespace basin
