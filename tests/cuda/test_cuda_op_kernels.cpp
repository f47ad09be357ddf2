// The CUDA backend's op kernels without a GPU: the launch plans (kernels/cuda/ops/
// op_launch_plan.hpp) with the element bodies (kernels/src/ops/kernels/) looped in a shuffled
// order, exactly as the grid-stride kernels of kernels/cuda/ops/*.cu run them
// (tests/cuda/emulated_op_kernels.hpp), held against
//   * naive references written here from the contract in basin/op_kernels.hpp (no shared code
//     with the bodies: they walk the UNFOLDED maps with plain nested index arithmetic), and
//   * the CPU backend's op kernels (kernels/cpu/ops/), which have their own fast paths.
// Plus the adjoint identity of im2col / col2im, bad launches, and the plans' folding.
#include <gtest/gtest.h>

#include <algorithm>
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
  std::unique_ptr<Backend<T>> cpu_backend = make_cpu_backend<T>();
  OpKernels<T>& cpu = cpu_backend->op_kernels();
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

TYPED_TEST(CudaOpKernels, ReduceMaxMatchesReferenceAndCpu) {
  using T = TypeParam;
  for (const test::ReduceCase& k : test::reduce_sum_cases(14)) {
    std::vector<T> src = random_values<T>(k.src_size, 15);
    for (T& v : src) v = std::round(v * T(4)) / T(4);  // ties: any maximum is the same value
    const bool with_nan = k.name.find("case 3 ") != std::string::npos;
    if (with_nan) src[static_cast<size_t>(offset_of(k.in, 0))] = std::numeric_limits<T>::quiet_NaN();
    const std::vector<T> init = random_values<T>(k.dst_size, 16);
    std::vector<T> ref = init, emu = init, cpu = init;
    int64_t inner = 1;
    for (int d = k.in.rank - k.reduce_rank; d < k.in.rank; ++d) inner *= k.in.dims[d];
    for (int64_t o = 0; o < k.out.count(); ++o) {
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < inner; ++j) {
        const T v = src[offset_of(k.in, o * inner + j)];
        if (std::isnan(v) || v > m) m = std::isnan(m) ? m : v;
      }
      ref[offset_of(k.out, o)] = m;
    }
    this->emulated.reduce_max(k.out, k.in, k.reduce_rank, src.data(), emu.data());
    this->cpu.reduce_max(k.out, k.in, k.reduce_rank, src.data(), cpu.data());
    expect_near_all(ref, emu, 0.0, "reduce_max emulated vs reference, " + k.name);
    expect_near_all(cpu, emu, 0.0, "reduce_max emulated vs cpu, " + k.name);
  }
}

bool inside(int64_t p, int64_t n) { return p >= 0 && p < n; }

TYPED_TEST(CudaOpKernels, MaxPoolForwardApplyTransposeMatchReferenceAndCpu) {
  using T = TypeParam;
  for (const test::PoolCase& k : test::max_pool_cases()) {
    const WindowGeometry& g = k.g;
    const int64_t E = k.examples, R = k.rows_per_example, C = g.channels, P = g.out_h * g.out_w;
    const size_t x_size = static_cast<size_t>(E * C * g.height * g.width), y_size = static_cast<size_t>(E * C * P);
    std::vector<T> x = random_values<T>(x_size, 17);
    for (T& v : x) v = std::round(v * T(3)) / T(3);  // many ties: the FIRST maximum must win
    // Reference forward: first maximum in (kh, kw) order.
    std::vector<T> y_ref(y_size), a_ref(y_size);
    for (int64_t b = 0; b < E * C; ++b)
      for (int64_t oh = 0; oh < g.out_h; ++oh)
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          T best = T(0);
          int64_t arg = -1;
          for (int64_t i = 0; i < g.kernel_h; ++i)
            for (int64_t j = 0; j < g.kernel_w; ++j) {
              const int64_t ih = oh * g.stride_h - g.pad_top + i * g.dilation_h;
              const int64_t iw = ow * g.stride_w - g.pad_left + j * g.dilation_w;
              if (!inside(ih, g.height) || !inside(iw, g.width)) continue;
              const T v = x[static_cast<size_t>((b * g.height + ih) * g.width + iw)];
              if (arg < 0 || v > best) best = v, arg = i * g.kernel_w + j;
            }
          ASSERT_GE(arg, 0) << k.name << ": a window without input";
          y_ref[static_cast<size_t>(b * P + oh * g.out_w + ow)] = best;
          a_ref[static_cast<size_t>(b * P + oh * g.out_w + ow)] = T(arg);
        }
    std::vector<T> y_emu(y_size, T(5)), a_emu(y_size, T(5)), y_cpu(y_size, T(5)), a_cpu(y_size, T(5));
    this->emulated.max_pool_forward(g, E, x.data(), y_emu.data(), a_emu.data());
    this->cpu.max_pool_forward(g, E, x.data(), y_cpu.data(), a_cpu.data());
    expect_near_all(y_ref, y_emu, 0.0, "max_pool_forward y emulated vs reference, " + k.name);
    expect_near_all(a_ref, a_emu, 0.0, "max_pool_forward argmax emulated vs reference, " + k.name);
    expect_near_all(y_cpu, y_emu, 0.0, "max_pool_forward y emulated vs cpu, " + k.name);
    expect_near_all(a_cpu, a_emu, 0.0, "max_pool_forward argmax emulated vs cpu, " + k.name);

    // apply: rows [(E·R), C, H, W] → [(E·R), C, oh, ow] at each row's example's arg-max;
    // transpose: the scatter back (reference), gather-form in the bodies.
    const size_t xr_size = static_cast<size_t>(E * R * C * g.height * g.width);
    const size_t yr_size = static_cast<size_t>(E * R * C * P);
    const std::vector<T> xr = random_values<T>(xr_size, 18), gy = random_values<T>(yr_size, 19);
    std::vector<T> apply_ref = random_values<T>(yr_size, 20), gx_ref = random_values<T>(xr_size, 21);
    const std::vector<T> apply_init = apply_ref, gx_init = gx_ref;
    for (int64_t row = 0; row < E * R; ++row)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t oh = 0; oh < g.out_h; ++oh)
          for (int64_t ow = 0; ow < g.out_w; ++ow) {
            const int64_t e = row / R;
            const int64_t a = static_cast<int64_t>(a_ref[static_cast<size_t>((e * C + c) * P + oh * g.out_w + ow)]);
            const int64_t ih = oh * g.stride_h - g.pad_top + (a / g.kernel_w) * g.dilation_h;
            const int64_t iw = ow * g.stride_w - g.pad_left + (a % g.kernel_w) * g.dilation_w;
            const size_t xi = static_cast<size_t>(((row * C + c) * g.height + ih) * g.width + iw);
            const size_t yi = static_cast<size_t>((row * C + c) * P + oh * g.out_w + ow);
            apply_ref[yi] += xr[xi];
            gx_ref[xi] += gy[yi];
          }
    std::vector<T> apply_emu = apply_init, apply_cpu = apply_init, gx_emu = gx_init, gx_cpu = gx_init;
    this->emulated.max_pool_apply(g, E, R, a_ref.data(), xr.data(), apply_emu.data());
    this->cpu.max_pool_apply(g, E, R, a_ref.data(), xr.data(), apply_cpu.data());
    this->emulated.max_pool_transpose(g, E, R, a_ref.data(), gy.data(), gx_emu.data());
    this->cpu.max_pool_transpose(g, E, R, a_ref.data(), gy.data(), gx_cpu.data());
    expect_near_all(apply_ref, apply_emu, this->tol, "max_pool_apply emulated vs reference, " + k.name);
    expect_near_all(apply_cpu, apply_emu, this->tol, "max_pool_apply emulated vs cpu, " + k.name);
    expect_near_all(gx_ref, gx_emu, this->tol * 10, "max_pool_transpose emulated vs reference, " + k.name);
    expect_near_all(gx_cpu, gx_emu, this->tol * 10, "max_pool_transpose emulated vs cpu, " + k.name);
  }
}

TYPED_TEST(CudaOpKernels, AvgPoolAndTransposeMatchReferenceAndCpu) {
  using T = TypeParam;
  for (const test::PoolCase& base : test::pool_cases())
    for (bool include_pad : {false, true}) {
      test::PoolCase k = base;
      k.g.count_include_pad = include_pad;
      const WindowGeometry& g = k.g;
      const int64_t B = k.examples * k.rows_per_example, C = g.channels, P = g.out_h * g.out_w;
      const size_t x_size = static_cast<size_t>(B * C * g.height * g.width), y_size = static_cast<size_t>(B * C * P);
      const std::vector<T> x = random_values<T>(x_size, 22), gy = random_values<T>(y_size, 23);
      std::vector<T> y_ref = random_values<T>(y_size, 24), gx_ref = random_values<T>(x_size, 25);
      const std::vector<T> y_init = y_ref, gx_init = gx_ref;
      for (int64_t b = 0; b < B * C; ++b)
        for (int64_t oh = 0; oh < g.out_h; ++oh)
          for (int64_t ow = 0; ow < g.out_w; ++ow) {
            // The window clipped to the padded extent, then to the input (PyTorch's avg_pool).
            const int64_t hs = oh * g.stride_h - g.pad_top, ws = ow * g.stride_w - g.pad_left;
            const int64_t he = std::min(hs + g.kernel_h, g.height + g.pad_bottom);
            const int64_t we = std::min(ws + g.kernel_w, g.width + g.pad_right);
            const int64_t h0 = std::max<int64_t>(hs, 0), w0 = std::max<int64_t>(ws, 0);
            const int64_t h1 = std::min(he, g.height), w1 = std::min(we, g.width);
            const int64_t div = include_pad ? (he - hs) * (we - ws) : (h1 - h0) * (w1 - w0);
            ASSERT_GT((h1 - h0) * (w1 - w0), 0) << k.name;
            double sum = 0;
            const size_t yi = static_cast<size_t>(b * P + oh * g.out_w + ow);
            for (int64_t ih = h0; ih < h1; ++ih)
              for (int64_t iw = w0; iw < w1; ++iw) {
                const size_t xi = static_cast<size_t>((b * g.height + ih) * g.width + iw);
                sum += static_cast<double>(x[xi]);
                gx_ref[xi] += gy[yi] / T(div);
              }
            y_ref[yi] += T(sum / double(div));
          }
      std::vector<T> y_emu = y_init, y_cpu = y_init, gx_emu = gx_init, gx_cpu = gx_init;
      this->emulated.avg_pool(g, B, x.data(), y_emu.data());
      this->cpu.avg_pool(g, B, x.data(), y_cpu.data());
      this->emulated.avg_pool_transpose(g, B, gy.data(), gx_emu.data());
      this->cpu.avg_pool_transpose(g, B, gy.data(), gx_cpu.data());
      const std::string what = k.name + (include_pad ? " count_include_pad" : "");
      expect_near_all(y_ref, y_emu, this->tol * 10, "avg_pool emulated vs reference, " + what);
      expect_near_all(y_cpu, y_emu, this->tol, "avg_pool emulated vs cpu, " + what);
      expect_near_all(gx_ref, gx_emu, this->tol * 10, "avg_pool_transpose emulated vs reference, " + what);
      expect_near_all(gx_cpu, gx_emu, this->tol, "avg_pool_transpose emulated vs cpu, " + what);
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
  expect_internal([&] { cuda::ops::reduction_count("reduce_sum", a, a, 1); }, "reduce_sum");   // out rank must be 1
  expect_internal([&] { cuda::ops::reduction_count("reduce_max", r1, b, 1); }, "kept dims");   // 2 ≠ 3
  expect_internal([&] { cuda::ops::reduction_count("reduce_sum", r1, a, 3); }, "reduce_rank");
  EXPECT_EQ(cuda::ops::reduction_count("reduce_sum", r1, a, 1), 2);
  WindowGeometry g = test::window(1, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
  g.stride_w = 0;
  expect_internal([&] { cuda::ops::check_geometry("im2col", g, 1); }, "im2col");
  // And through the emulated kernels (the same plan the device launch runs first).
  test::EmulatedOpKernels<double> emu;
  std::vector<double> buf(64);
  expect_internal([&] { emu.strided_copy(a, b, 1.0, 0.0, buf.data(), buf.data()); }, "strided_copy");
  expect_internal([&] { emu.im2col(g, 1, buf.data(), buf.data()); }, "strides");
  const WindowGeometry ok = test::window(1, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1);
  expect_internal([&] { emu.max_pool_apply(ok, 1, 0, buf.data(), buf.data(), buf.data()); }, "rows_per_example");
  expect_internal([&] { emu.reduce_max(a, a, 1, buf.data(), buf.data()); }, "reduce_max");
}

}  // namespace
}  // namespace basin
