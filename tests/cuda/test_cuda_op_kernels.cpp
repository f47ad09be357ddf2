// The CUDA backend's op kernels without a GPU: the launch plans (kernels/cuda/ops/
// op_launch_plan.hpp) with the element bodies (kernels/src/ops/kernels/) looped in a shuffled
// order, exactly as the grid-stride kernels of kernels/cuda/ops/*.cu run them
// (tests/cuda/emulated_op_kernels.hpp), held against
//   * naive references written here from the contract in basin/op_kernels.hpp (no shared code
//     with the bodies: they walk the UNFOLDED maps with plain nested index arithmetic), and
//   * the CPU backend's op kernels (kernels/cpu/ops/), which have their own fast paths.
// Plus the adjoint identity of im2col / col2im, bad launches, and the plans' folding.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "basin/op_kernels.hpp"
#include "emulated_op_kernels.hpp"
#include "op_kernel_cases.hpp"

namespace basin {
namespace {

template <class T>
std::vector<T> random_values(size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(count);
  for (T& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// Offset of row-major index `idx` over m.dims in m (the contract's definition, no folding).
int64_t offset_of(const StridedMap& m, int64_t idx) {
  int64_t off = m.offset;
  for (int d = m.rank - 1; d >= 0; --d) {
    off += (idx % m.dims[d]) * m.strides[d];
    idx /= m.dims[d];
  }
  return off;
}

template <class T>
void expect_near_all(const std::vector<T>& expected, const std::vector<T>& actual, double tol, const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::isnan(static_cast<double>(expected[i]))) {
      EXPECT_TRUE(std::isnan(static_cast<double>(actual[i]))) << what << " at " << i;
      continue;
    }
    ASSERT_NEAR(static_cast<double>(expected[i]), static_cast<double>(actual[i]), tol) << what << " at " << i;
  }
}

// (alpha, beta) pairs: overwrite, scaled overwrite, accumulate, general.
const std::pair<double, double> kScales[] = {{1.0, 0.0}, {-2.0, 0.0}, {1.0, 1.0}, {0.5, -1.5}};

template <class T>
class CudaOpKernels : public ::testing::Test {
 protected:
  // const_cast: the tables are stateless; Backend hands them out const (as the ops do).
  std::unique_ptr<Backend<T>> cpu_backend = make_cpu_backend<T>();
  OpKernels<T>& cpu = const_cast<OpKernels<T>&>(cpu_backend->op_kernels());
  test::EmulatedOpKernels<T> emulated;
  static constexpr double tol = sizeof(T) == 8 ? 1e-12 : 2e-5;
};
template <class T>
constexpr double CudaOpKernels<T>::tol;

using Precisions = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CudaOpKernels, Precisions);

TYPED_TEST(CudaOpKernels, StridedCopyMatchesReferenceAndCpu) {
  using T = TypeParam;
  for (const test::CopyCase& k : test::strided_copy_cases(11)) {
    for (auto [alpha, beta] : kScales) {
      const std::vector<T> src = random_values<T>(k.src_size, 1);
      std::vector<T> init = random_values<T>(k.dst_size, 2);
      // beta == 0 must not read the destination: NaNs there must not survive.
      if (beta == 0) init[static_cast<size_t>(offset_of(k.out, 0))] = std::numeric_limits<T>::quiet_NaN();
      std::vector<T> ref = init, emu = init, cpu = init;
      for (int64_t i = 0; i < k.out.count(); ++i) {
        const int64_t o = offset_of(k.out, i), s = offset_of(k.in, i);
        ref[o] = beta == 0 ? T(alpha) * src[s] : T(beta) * ref[o] + T(alpha) * src[s];
      }
      this->emulated.strided_copy(k.out, k.in, T(alpha), T(beta), src.data(), emu.data());
      this->cpu.strided_copy(k.out, k.in, T(alpha), T(beta), src.data(), cpu.data());
      const std::string what = k.name + " alpha " + std::to_string(alpha) + " beta " + std::to_string(beta);
      expect_near_all(ref, emu, this->tol, "emulated vs reference, " + what);
      expect_near_all(cpu, emu, this->tol, "emulated vs cpu, " + what);
    }
  }
}

TYPED_TEST(CudaOpKernels, BinaryMatchesReferenceAndCpu) {
  using T = TypeParam;
  for (const test::BinaryCase& k : test::binary_cases(12)) {
    for (auto [alpha, beta] : kScales) {
      const std::vector<T> a = random_values<T>(k.a_size, 3), b = random_values<T>(k.b_size, 4);
      const std::vector<T> init = random_values<T>(k.dst_size, 5);
      std::vector<T> ref = init, emu = init, cpu = init;
      for (int64_t i = 0; i < k.out.count(); ++i) {
        const int64_t o = offset_of(k.out, i);
        const T av = a[offset_of(k.a, i)], bv = b[offset_of(k.b, i)];
        const T v = k.kind == BinaryKind::kAdd ? av + bv : av * bv;
        ref[o] = beta == 0 ? T(alpha) * v : T(beta) * ref[o] + T(alpha) * v;
      }
      this->emulated.binary(k.kind, k.out, k.a, k.b, T(alpha), T(beta), a.data(), b.data(), emu.data());
      this->cpu.binary(k.kind, k.out, k.a, k.b, T(alpha), T(beta), a.data(), b.data(), cpu.data());
      const std::string what = k.name + " alpha " + std::to_string(alpha) + " beta " + std::to_string(beta);
      expect_near_all(ref, emu, this->tol, "emulated vs reference, " + what);
      expect_near_all(cpu, emu, this->tol, "emulated vs cpu, " + what);
    }
  }
}

TYPED_TEST(CudaOpKernels, ReduceSumMatchesReferenceAndCpu) {
  using T = TypeParam;
  for (const test::ReduceCase& k : test::reduce_sum_cases(13)) {
    for (auto [alpha, beta] : kScales) {
      const std::vector<T> src = random_values<T>(k.src_size, 6);
      const std::vector<T> init = random_values<T>(k.dst_size, 7);
      std::vector<T> ref = init, emu = init, cpu = init;
      int64_t inner = 1;
      for (int d = k.in.rank - k.reduce_rank; d < k.in.rank; ++d) inner *= k.in.dims[d];
      for (int64_t o = 0; o < k.out.count(); ++o) {
        double sum = 0;  // in_map index = o·inner + j (the kept dims lead)
        for (int64_t j = 0; j < inner; ++j) sum += static_cast<double>(src[offset_of(k.in, o * inner + j)]);
        const int64_t off = offset_of(k.out, o);
        ref[off] = beta == 0 ? T(alpha * sum) : T(beta * static_cast<double>(ref[off]) + alpha * sum);
      }
      this->emulated.reduce_sum(k.out, k.in, k.reduce_rank, T(alpha), T(beta), src.data(), emu.data());
      this->cpu.reduce_sum(k.out, k.in, k.reduce_rank, T(alpha), T(beta), src.data(), cpu.data());
      const std::string what = k.name + " alpha " + std::to_string(alpha) + " beta " + std::to_string(beta);
      // The reference sums in double: float32 sums of up to 300 terms differ by round-off.
      expect_near_all(ref, emu, this->tol * 20, "emulated vs reference, " + what);
      expect_near_all(cpu, emu, this->tol * 20, "emulated vs cpu, " + what);
    }
  }
}

TYPED_TEST(CudaOpKernels, Im2colCol2imMatchReferenceCpuAndAreAdjoint) {
  using T = TypeParam;
  for (const test::WindowCase& k : test::window_cases()) {
    const WindowGeometry& g = k.g;
    ASSERT_GT(g.out_h, 0) << k.name;
    ASSERT_GT(g.out_w, 0) << k.name;
    const int64_t P = g.out_h * g.out_w, rows = g.channels * g.kernel_h * g.kernel_w;
    const size_t x_size = static_cast<size_t>(k.batch * g.channels * g.height * g.width);
    const size_t c_size = static_cast<size_t>(k.batch * rows * P);
    const std::vector<T> x = random_values<T>(x_size, 8), c = random_values<T>(c_size, 9);
    // Reference im2col and its transpose as a scatter (x_t += each cols entry where it was read).
    std::vector<T> cols_ref(c_size, T(0)), xt_ref = random_values<T>(x_size, 10);
    const std::vector<T> xt_init = xt_ref;
    for (int64_t b = 0; b < k.batch; ++b)
      for (int64_t ch = 0; ch < g.channels; ++ch)
        for (int64_t i = 0; i < g.kernel_h; ++i)
          for (int64_t j = 0; j < g.kernel_w; ++j)
            for (int64_t oy = 0; oy < g.out_h; ++oy)
              for (int64_t ox = 0; ox < g.out_w; ++ox) {
                const int64_t y = oy * g.stride_h - g.pad_top + i * g.dilation_h;
                const int64_t xx = ox * g.stride_w - g.pad_left + j * g.dilation_w;
                const size_t ci =
                    static_cast<size_t>(((b * g.channels + ch) * g.kernel_h * g.kernel_w + i * g.kernel_w + j) * P +
                                        oy * g.out_w + ox);
                if (y < 0 || y >= g.height || xx < 0 || xx >= g.width) continue;
                const size_t xi = static_cast<size_t>(((b * g.channels + ch) * g.height + y) * g.width + xx);
                cols_ref[ci] = x[xi];
                xt_ref[xi] += c[ci];
              }
    std::vector<T> cols_emu(c_size, T(7)), cols_cpu(c_size, T(7));  // im2col overwrites
    this->emulated.im2col(g, k.batch, x.data(), cols_emu.data());
    this->cpu.im2col(g, k.batch, x.data(), cols_cpu.data());
    expect_near_all(cols_ref, cols_emu, 0.0, "im2col emulated vs reference, " + k.name);
    expect_near_all(cols_cpu, cols_emu, 0.0, "im2col emulated vs cpu, " + k.name);

    std::vector<T> xt_emu = xt_init, xt_cpu = xt_init;  // col2im accumulates
    this->emulated.col2im(g, k.batch, c.data(), xt_emu.data());
    this->cpu.col2im(g, k.batch, c.data(), xt_cpu.data());
    expect_near_all(xt_ref, xt_emu, this->tol * 10, "col2im emulated vs reference, " + k.name);
    expect_near_all(xt_cpu, xt_emu, this->tol * 10, "col2im emulated vs cpu, " + k.name);

    // <im2col(x), c> = <x, col2im(c)>
    std::vector<T> xt0(x_size, T(0));
    this->emulated.col2im(g, k.batch, c.data(), xt0.data());
    double lhs = 0, rhs = 0;
    for (size_t i = 0; i < c_size; ++i) lhs += double(cols_emu[i]) * double(c[i]);
    for (size_t i = 0; i < x_size; ++i) rhs += double(x[i]) * double(xt0[i]);
    EXPECT_NEAR(lhs, rhs, this->tol * 100 * (1 + std::fabs(lhs))) << "adjoint identity, " << k.name;
  }
}

// ---- the launch plans ----

TEST(CudaOpLaunchPlan, ContiguousCopyFoldsToOneDimensionAndKeepsEveryOffset) {
  size_t n_out = 0, n_in = 0;
  const StridedMap out = test::strided_view({2, 3, 4, 5}, {0, 1, 2, 3}, std::vector<bool>(4, false), 0, 3, &n_out);
  const StridedMap in = test::strided_view({2, 3, 4, 5}, {0, 1, 2, 3}, std::vector<bool>(4, false), 0, 1, &n_in);
  const cuda::ops::StridedCopyPlan p = cuda::ops::plan_strided_copy(out, in);
  EXPECT_EQ(p.count, 120);
  EXPECT_EQ(p.out.rank, 1);
  EXPECT_EQ(p.out.dims[0], 120);
  for (int64_t i = 0; i < p.count; ++i) {
    ASSERT_EQ(offset_of(p.out, i), offset_of(out, i));
    ASSERT_EQ(offset_of(p.in, i), offset_of(in, i));
  }
}

TEST(CudaOpLaunchPlan, BinaryFoldKeepsEveryOffsetOfAllThreeMaps) {
  for (const test::BinaryCase& k : test::binary_cases(21)) {
    const cuda::ops::BinaryPlan p = cuda::ops::plan_binary(k.out, k.a, k.b);
    ASSERT_EQ(p.count, k.out.count()) << k.name;
    EXPECT_LE(p.out.rank, std::max(k.out.rank, 1)) << k.name;
    for (int64_t i = 0; i < p.count; ++i) {
      ASSERT_EQ(offset_of(p.out, i), offset_of(k.out, i)) << k.name;
      ASSERT_EQ(offset_of(p.a, i), offset_of(k.a, i)) << k.name;
      ASSERT_EQ(offset_of(p.b, i), offset_of(k.b, i)) << k.name;
    }
  }
}

void expect_internal(const std::function<void()>& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected kInternal mentioning '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(CudaOpLaunchPlan, BadLaunchesAreInternalErrorsNamingTheKernel) {
  size_t n = 0;
  const StridedMap a = test::strided_view({2, 3}, {0, 1}, {false, false}, 0, 0, &n);
  const StridedMap b = test::strided_view({3, 2}, {0, 1}, {false, false}, 0, 0, &n);
  const StridedMap r1 = test::strided_view({2}, {0}, {false}, 0, 0, &n);
  StridedMap bad_rank = a;
  bad_rank.rank = kMaxRank + 1;
  expect_internal([&] { cuda::ops::plan_strided_copy(a, b); }, "strided_copy");
  expect_internal([&] { cuda::ops::plan_strided_copy(a, bad_rank); }, "rank");
  expect_internal([&] { cuda::ops::plan_binary(a, a, b); }, "binary");
  expect_internal([&] { cuda::ops::reduce_sum_count(a, a, 1); }, "reduce_sum");   // out rank must be 1
  expect_internal([&] { cuda::ops::reduce_sum_count(r1, b, 1); }, "kept dims");   // 2 ≠ 3
  expect_internal([&] { cuda::ops::reduce_sum_count(r1, a, 3); }, "reduce_rank");
  EXPECT_EQ(cuda::ops::reduce_sum_count(r1, a, 1), 2);
  WindowGeometry g = test::window(1, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
  g.stride_w = 0;
  expect_internal([&] { cuda::ops::check_geometry("im2col", g, 1); }, "im2col");
  // And through the emulated kernels (the same plan the device launch runs first).
  test::EmulatedOpKernels<double> emu;
  std::vector<double> buf(64);
  expect_internal([&] { emu.strided_copy(a, b, 1.0, 0.0, buf.data(), buf.data()); }, "strided_copy");
  expect_internal([&] { emu.im2col(g, 1, buf.data(), buf.data()); }, "strides");
}

}  // namespace
}  // namespace basin
