// GPU parity: the CUDA backend against the CPU backend, first primitive by primitive (so a
// mismatch points at one operation), then whole requests through basin::analyze (several
// architectures, both losses, gram / normal / svd, the exact Hessian, float64 and float32).
//
// Built everywhere; every test skips with the reason when no CUDA device is usable, so the skip
// is visible in the output ("[  SKIPPED ] ... no CUDA device: cudaGetDeviceCount returned ...").
// BASIN_PARITY_VERBOSE=1 prints the worst difference of every comparison (for the run's note).
// The same file is also linked against a host emulation of the CUDA backend
// (basin_gpu_parity_emulated), which checks the suite itself where no GPU exists.
//
// Tolerances: 1e-10 (float64) and 1e-4 (float32), relative to the largest magnitude of the
// compared spectrum: |cpu_i − gpu_i| ≤ tol · max_j |cpu_j|. Relative to each value itself would be
// meaningless for the small singular values of a rank-deficient G, which are round-off on both
// backends. For the Gram-based methods the decomposed matrix holds σ², so σ² is compared (an
// error of ε·σ_max² in the Gram moves a tiny σ by √ε·σ_max, and both backends see that).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "basin/analysis.hpp"
#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "basin/model.hpp"
#include "basin/op_kernels.hpp"
#include "op_kernel_cases.hpp"
#include "residual_cnn_graph.hpp"

namespace basin {
namespace {

#define BASIN_SKIP_WITHOUT_CUDA()                                                         \
  do {                                                                                    \
    std::string why_;                                                                     \
    if (!cuda_available(&why_)) GTEST_SKIP() << "CUDA parity not run here: " << why_;     \
  } while (0)

template <class T>
constexpr double tolerance() {
  return sizeof(T) == 8 ? 1e-10 : 1e-4;
}

// |expected_i − actual_i| ≤ tol · max(max_j |expected_j|, floor).
void expect_close(const std::vector<double>& expected, const std::vector<double>& actual, double tol,
                  const std::string& what, double floor = 1e-300) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  double scale = floor;
  for (double v : expected) scale = std::max(scale, std::fabs(v));
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double err = std::fabs(expected[i] - actual[i]);
    if (!(err <= worst) || std::isnan(err)) {
      worst = std::isnan(err) ? INFINITY : err;
      worst_i = i;
    }
  }
  static const bool verbose = std::getenv("BASIN_PARITY_VERBOSE") != nullptr;
  if (verbose) std::printf("    %-60s max |cpu-cuda| / scale = %.2e (bound %.0e)\n", what.c_str(), worst / scale, tol);
  EXPECT_LE(worst, tol * scale) << what << ": worst element " << worst_i << " cpu=" << expected[worst_i]
                                << " cuda=" << actual[worst_i] << " (scale " << scale << ", "
                                << expected.size() << " values)";
}

template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

template <class T>
std::vector<T> random_values(size_t count, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(count);
  for (T& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// ---------------------------------------------------------------------------------------------
// Primitives: the same inputs through both backends, outputs compared.
// ---------------------------------------------------------------------------------------------

template <class T>
class CudaPrimitives : public ::testing::Test {
 protected:
  void SetUp() override {
    BASIN_SKIP_WITHOUT_CUDA();
    cpu = make_cpu_backend<T>();
    gpu = make_cuda_backend<T>(0);
  }

  // Runs op on each backend with the host inputs uploaded; `outputs` lists which input indices
  // are read back afterwards (in the order given), and they are compared.
  using Op = std::function<void(Backend<T>& be, std::vector<T*>& args)>;
  void compare(const std::vector<std::vector<T>>& inputs, const std::vector<size_t>& outputs, const Op& op,
               const std::string& what, double tol = tolerance<T>()) {
    std::vector<std::vector<double>> results[2];
    Backend<T>* backends[2] = {cpu.get(), gpu.get()};
    for (int b = 0; b < 2; ++b) {
      Backend<T>& be = *backends[b];
      std::vector<Buffer<T>> bufs;
      std::vector<T*> args;
      for (const auto& in : inputs) {
        bufs.emplace_back(be, in.size());
        be.upload(bufs.back().get(), in.data(), in.size());
        args.push_back(bufs.back().get());
      }
      op(be, args);
      for (size_t o : outputs) {
        std::vector<T> host(inputs[o].size());
        be.download(host.data(), bufs[o].get(), host.size());
        results[b].push_back(widen(host));
      }
    }
    for (size_t i = 0; i < outputs.size(); ++i)
      expect_close(results[0][i], results[1][i], tol, what + " (output " + std::to_string(i) + ")");
  }

  std::unique_ptr<Backend<T>> cpu, gpu;
};

using Precisions = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CudaPrimitives, Precisions);

TYPED_TEST(CudaPrimitives, InfoNamesTheDevice) {
  const BackendInfo info = this->gpu->info();
  EXPECT_EQ(info.name, "cuda");
  EXPECT_FALSE(info.device_name.empty());
  EXPECT_GT(info.memory_total_bytes, 0u);
  EXPECT_LE(info.memory_free_bytes, info.memory_total_bytes);
  std::printf("[ device   ] %s: %.1f GiB free of %.1f GiB\n", info.device_name.c_str(),
              info.memory_free_bytes / double(1ull << 30), info.memory_total_bytes / double(1ull << 30));
}

TYPED_TEST(CudaPrimitives, AllocateZeroFills) {
  using T = TypeParam;
  Backend<T>& be = *this->gpu;
  for (size_t count : {size_t(1), size_t(1000), size_t(1) << 20}) {
    Buffer<T> buf(be, count);
    std::vector<T> host(count, T(7));
    be.download(host.data(), buf.get(), count);
    EXPECT_TRUE(std::all_of(host.begin(), host.end(), [](T v) { return v == T(0); })) << count;
  }
}

TYPED_TEST(CudaPrimitives, FillCopyAxpy) {
  using T = TypeParam;
  this->compare({random_values<T>(1001, 1), random_values<T>(1001, 2), random_values<T>(1001, 3)}, {0, 1, 2},
                [](Backend<T>& be, std::vector<T*>& x) {
                  be.fill(x[0], 500, T(1.25));
                  be.copy(x[1] + 10, x[2], 300);
                  be.axpy(1001, T(-0.5), x[1], x[2]);
                },
                "fill/copy/axpy");
}

TYPED_TEST(CudaPrimitives, GemmAllTransposesAndPaddedLeadingDimensions) {
  using T = TypeParam;
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{7, 5, 3}, {33, 65, 17}, {1, 40, 9}, {64, 1, 1}}) {
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const int64_t lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
        this->compare({random_values<T>((ta ? k : m) * lda, 4), random_values<T>((tb ? n : k) * ldb, 5),
                       random_values<T>(m * ldc, 6)},
                      {2},
                      [&](Backend<T>& be, std::vector<T*>& x) {
                        be.gemm(ta, tb, m, n, k, T(0.5), x[0], lda, x[1], ldb, T(-1.5), x[2], ldc);
                      },
                      "gemm " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) +
                          " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
      }
  }
  this->compare({random_values<T>(6 * 4, 7)}, {0},
                [](Backend<T>& be, std::vector<T*>& x) {
                  be.gemm(false, false, 6, 3, 0, T(1), nullptr, 1, nullptr, 3, T(2), x[0], 4);
                },
                "gemm k=0");
}

TYPED_TEST(CudaPrimitives, SyrkLowerBothTransposes) {
  using T = TypeParam;
  for (bool trans : {false, true}) {
    const int64_t n = 37, k = 19, lda = (trans ? n : k) + 2, ldc = n + 1;
    // The upper triangle is garbage on both and must stay identical (not referenced).
    this->compare({random_values<T>((trans ? k : n) * lda, 8), random_values<T>(n * ldc, 9)}, {1},
                  [&](Backend<T>& be, std::vector<T*>& x) {
                    be.syrk_lower(trans, n, k, T(2), x[0], lda, T(0.5), x[1], ldc);
                  },
                  std::string("syrk_lower trans=") + (trans ? "true" : "false"));
  }
}

TYPED_TEST(CudaPrimitives, ElementwiseOperations) {
  using T = TypeParam;
  const Activation acts[] = {Activation::kIdentity, Activation::kRelu, Activation::kLeakyRelu, Activation::kTanh,
                             Activation::kSigmoid,  Activation::kGelu, Activation::kSoftplus,  Activation::kSilu};
  const int64_t n = 9, r = 4, d = 13;
  for (Activation act : acts) {
    const ActivationFn<T> fn{act, T(0.1)};
    const std::string name = activation_name(act);
    std::vector<T> z = random_values<T>(n * d, 10, -25, 25);
    z[0] = T(0);
    this->compare({z, std::vector<T>(n * d)}, {1},
                  [&](Backend<T>& be, std::vector<T*>& x) { be.activation_forward(fn, n * d, x[0], x[1]); },
                  "activation_forward " + name);
    this->compare({z, random_values<T>(n * r * d, 11)}, {1},
                  [&](Backend<T>& be, std::vector<T*>& x) {
                    be.scale_by_activation_derivative(fn, n, r, d, x[0], x[1]);
                  },
                  "scale_by_activation_derivative " + name);
    this->compare({z, random_values<T>(n * r * d, 12), random_values<T>(n * d, 13), random_values<T>(n * r * d, 14)},
                  {3},
                  [&](Backend<T>& be, std::vector<T*>& x) {
                    be.rop_activation_backward(fn, n, r, d, x[0], x[1], x[2], x[3]);
                  },
                  "rop_activation_backward " + name);
  }
  this->compare({random_values<T>(d, 15), random_values<T>(n * (d + 2), 16)}, {1},
                [&](Backend<T>& be, std::vector<T*>& x) { be.add_row_vector(n, d, x[0], x[1], d + 2); },
                "add_row_vector");
  for (T kappa : {T(0), T(1)}) {
    const int64_t m = n * r;
    this->compare({random_values<T>(n * n, 17), random_values<T>(m * m, 18), random_values<T>(m * m, 19)}, {2},
                  [&](Backend<T>& be, std::vector<T*>& x) {
                    be.hadamard_expand_accumulate(n, r, x[0], kappa, 0, m, x[1], m, x[2]);
                  },
                  "hadamard_expand_accumulate");
    // A row tile in the middle: rows [row0, row0 + rows), D [rows × (row0 + rows)] padded.
    const int64_t row0 = 7, rows = 10, ldd = row0 + rows + 3;
    this->compare({random_values<T>(n * n, 17), random_values<T>(rows * ldd, 18), random_values<T>(m * m, 19)}, {2},
                  [&](Backend<T>& be, std::vector<T*>& x) {
                    be.hadamard_expand_accumulate(n, r, x[0], kappa, row0, rows, x[1], ldd, x[2]);
                  },
                  "hadamard_expand_accumulate tile");
  }
  {
    // H = GGN + (R + Rᵀ)/2 in place, and both Frobenius norms (a Thrust reduction on the GPU).
    const int64_t dim = 23;
    std::vector<std::array<double, 2>> norms;  // cpu's, then gpu's
    this->compare({random_values<T>(dim * dim, 40), random_values<T>(dim * dim, 41)}, {0, 1},
                  [&](Backend<T>& be, std::vector<T*>& x) { norms.push_back(be.combine_hessian(dim, x[0], x[1])); },
                  "combine_hessian");
    ASSERT_EQ(norms.size(), 2u);
    for (int j = 0; j < 2; ++j)
      EXPECT_NEAR(norms[1][j], norms[0][j], tolerance<T>() * norms[0][j]) << "combine_hessian norm " << j;
  }
  for (bool bias : {true, false}) {
    const int64_t d_out = 6, d_in = 7, row0 = 5, rows = 20, col0 = 11, ldo = col0 + d_out * d_in + d_out + 4;
    this->compare({random_values<T>(rows * d_out, 20), random_values<T>(n * d_in, 21), random_values<T>(rows * ldo, 22)},
                  {2},
                  [&](Backend<T>& be, std::vector<T*>& x) {
                    be.assemble_jacobian_block(rows, row0, r, d_out, d_in, bias, x[0], x[1], x[2], ldo, col0);
                  },
                  "assemble_jacobian_block");
  }
  this->compare({random_values<T>(300 * 17, 23), std::vector<T>(15)}, {1},
                [](Backend<T>& be, std::vector<T*>& x) { be.column_sums(300, 15, x[0], 17, x[1]); }, "column_sums");
  this->compare({random_values<T>(40 * 43, 24)}, {0},
                [](Backend<T>& be, std::vector<T*>& x) { be.symmetrize_lower(40, x[0], 43); }, "symmetrize_lower");
}

TYPED_TEST(CudaPrimitives, SymmetricEigenvaluesDescending) {
  using T = TypeParam;
  for (int64_t n : {1, 2, 57, 300}) {
    // Lower triangle holds the matrix; the upper triangle is garbage that must not be read.
    std::vector<T> a = random_values<T>(n * n, 25 + n);
    std::vector<T> a_gpu = a;
    const std::vector<T> cpu = this->cpu->symmetric_eigenvalues(n, a.data());
    Buffer<T> buf(*this->gpu, a_gpu.size());
    this->gpu->upload(buf.get(), a_gpu.data(), a_gpu.size());
    const std::vector<T> gpu = this->gpu->symmetric_eigenvalues(n, buf.get());
    EXPECT_TRUE(std::is_sorted(gpu.rbegin(), gpu.rend())) << "descending, n=" << n;
    expect_close(widen(cpu), widen(gpu), tolerance<T>(), "symmetric_eigenvalues n=" + std::to_string(n));
  }
}

// Checkpoint batches: syevjBatched for n ≤ 32, cusolverDnXsyevBatched above, syevd for one.
TYPED_TEST(CudaPrimitives, BatchedSymmetricEigenvaluesMatchOneAtATime) {
  using T = TypeParam;
  for (int64_t n : {1, 5, 32, 33, 100}) {
    for (int64_t batch : {1, 3, 40}) {
      std::vector<T> a = random_values<T>(batch * n * n, 70 + n + batch);
      std::vector<T> a_gpu = a;
      std::vector<T> expected;
      for (int64_t b = 0; b < batch; ++b) {
        const std::vector<T> one = this->cpu->symmetric_eigenvalues(n, a.data() + b * n * n);
        expected.insert(expected.end(), one.begin(), one.end());
      }
      Buffer<T> buf(*this->gpu, a_gpu.size());
      this->gpu->upload(buf.get(), a_gpu.data(), a_gpu.size());
      const std::vector<T> gpu = this->gpu->symmetric_eigenvalues_batched(batch, n, buf.get());
      ASSERT_EQ(gpu.size(), expected.size());
      for (int64_t b = 0; b < batch; ++b)
        EXPECT_TRUE(std::is_sorted(gpu.rbegin() + (batch - 1 - b) * n, gpu.rbegin() + (batch - b) * n))
            << "matrix " << b << " not descending, n=" << n;
      expect_close(widen(expected), widen(gpu), tolerance<T>(),
                   "symmetric_eigenvalues_batched n=" + std::to_string(n) + " batch=" + std::to_string(batch));
    }
  }
}

TYPED_TEST(CudaPrimitives, SingularValuesBothOrientations) {
  using T = TypeParam;
  for (auto [m, n] : {std::pair<int64_t, int64_t>{12, 80}, {80, 12}, {33, 33}, {1, 7}, {7, 1}}) {
    std::vector<T> a = random_values<T>(m * n, 40 + m * n);
    std::vector<T> a_gpu = a;
    const std::vector<T> cpu = this->cpu->singular_values(m, n, a.data());
    Buffer<T> buf(*this->gpu, a_gpu.size());
    this->gpu->upload(buf.get(), a_gpu.data(), a_gpu.size());
    const std::vector<T> gpu = this->gpu->singular_values(m, n, buf.get());
    EXPECT_TRUE(std::is_sorted(gpu.rbegin(), gpu.rend())) << "descending";
    expect_close(widen(cpu), widen(gpu), tolerance<T>(),
                 "singular_values " + std::to_string(m) + "x" + std::to_string(n));
  }
}

// Rows of `b` flipped to match the sign of the same rows of `a` (eigen/singular vectors are
// unique only up to sign when the values are distinct), both [rows×cols] row-major.
template <class T>
std::vector<double> align_row_signs(const std::vector<T>& a, std::vector<T> b, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    double dot = 0;
    for (int64_t j = 0; j < cols; ++j) dot += double(a[i * cols + j]) * double(b[i * cols + j]);
    if (dot < 0)
      for (int64_t j = 0; j < cols; ++j) b[i * cols + j] = -b[i * cols + j];
  }
  return widen(b);
}

// --vectors hessian: eigenvectors as rows, descending, matching the CPU's up to sign; on the
// GPU's own result also ‖A·v − λ·v‖ small.
TYPED_TEST(CudaPrimitives, SymmetricEigensystemMatchesUpToSigns) {
  using T = TypeParam;
  for (int64_t n : {1, 2, 57, 200}) {
    const std::string what = "symmetric_eigensystem n=" + std::to_string(n);
    std::vector<T> a = random_values<T>(n * n, 120 + n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) a[i * n + j] = a[j * n + i];  // the full symmetric matrix, for A·v
    std::vector<T> v_cpu = a, v_gpu = a;
    const std::vector<T> w_cpu = this->cpu->symmetric_eigensystem(n, v_cpu.data());
    Buffer<T> buf(*this->gpu, v_gpu.size());
    this->gpu->upload(buf.get(), v_gpu.data(), v_gpu.size());
    const std::vector<T> w_gpu = this->gpu->symmetric_eigensystem(n, buf.get());
    this->gpu->download(v_gpu.data(), buf.get(), v_gpu.size());
    EXPECT_TRUE(std::is_sorted(w_gpu.rbegin(), w_gpu.rend())) << what << ": descending";
    expect_close(widen(w_cpu), widen(w_gpu), tolerance<T>(), what + " values");
    expect_close(widen(v_cpu), align_row_signs(v_cpu, v_gpu, n, n), 10 * tolerance<T>(), what + " vectors");
    double lmax = 0, worst = 0;
    for (T w : w_gpu) lmax = std::max(lmax, std::fabs(double(w)));
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < n; ++i) {
        double av = 0;
        for (int64_t c = 0; c < n; ++c) av += double(a[i * n + c]) * double(v_gpu[j * n + c]);
        worst = std::max(worst, std::fabs(av - double(w_gpu[j]) * double(v_gpu[j * n + i])));
      }
    EXPECT_LE(worst, 10 * tolerance<T>() * std::max(lmax, 1.0)) << what << ": ‖A·v − λ·v‖";
  }
}

// --vectors jacobian_*: U and Vᵀ (thin, and full V for the null space of a wide A) in both
// orientations of gesvd, matching the CPU's up to the sign of each singular pair; on the GPU's
// own result A = U·Σ·Vᵀ and A·v = 0 for the rows of Vᵀ beyond min(m, n).
TYPED_TEST(CudaPrimitives, SingularValueDecompositionBothOrientations) {
  using T = TypeParam;
  for (auto [m, n] : {std::pair<int64_t, int64_t>{12, 80}, {80, 12}, {33, 33}, {1, 7}, {7, 1}}) {
    for (bool full : {false, true}) {
      const std::string what = "singular_value_decomposition " + std::to_string(m) + "x" + std::to_string(n) +
                               (full ? " full" : " thin");
      const int64_t p = std::min(m, n), v_rows = full ? n : p;
      const std::vector<T> a = random_values<T>(m * n, 140 + m * n);
      std::vector<T> out[2][2];  // [backend][u, vt]
      std::vector<T> sigma[2];
      Backend<T>* backends[2] = {this->cpu.get(), this->gpu.get()};
      for (int b = 0; b < 2; ++b) {
        Buffer<T> a_dev(*backends[b], a.size()), u(*backends[b], static_cast<size_t>(m * p)),
            vt(*backends[b], static_cast<size_t>(v_rows * n));
        backends[b]->upload(a_dev.get(), a.data(), a.size());
        sigma[b] = backends[b]->singular_value_decomposition(m, n, a_dev.get(), u.get(), vt.get(), full);
        out[b][0].resize(u.size());
        out[b][1].resize(vt.size());
        backends[b]->download(out[b][0].data(), u.get(), u.size());
        backends[b]->download(out[b][1].data(), vt.get(), vt.size());
      }
      expect_close(widen(sigma[0]), widen(sigma[1]), tolerance<T>(), what + " values");
      // Align the GPU's pairs (u_j, v_j) with the CPU's by the sign of v_j·v_j(cpu).
      std::vector<T>& u_gpu = out[1][0];
      std::vector<T>& vt_gpu = out[1][1];
      for (int64_t j = 0; j < p; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < n; ++c) dot += double(out[0][1][j * n + c]) * double(vt_gpu[j * n + c]);
        if (dot >= 0) continue;
        for (int64_t c = 0; c < n; ++c) vt_gpu[j * n + c] = -vt_gpu[j * n + c];
        for (int64_t i = 0; i < m; ++i) u_gpu[i * p + j] = -u_gpu[i * p + j];
      }
      expect_close(widen(out[0][0]), widen(u_gpu), 10 * tolerance<T>(), what + " U");
      std::vector<double> vt_cpu_p = widen(out[0][1]), vt_gpu_p = widen(vt_gpu);
      vt_cpu_p.resize(static_cast<size_t>(p * n));
      vt_gpu_p.resize(static_cast<size_t>(p * n));
      expect_close(vt_cpu_p, vt_gpu_p, 10 * tolerance<T>(), what + " Vᵀ (first min(m, n) rows)");
      std::vector<double> rebuilt(static_cast<size_t>(m * n), 0.0), zero;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t c = 0; c < n; ++c)
          for (int64_t j = 0; j < p; ++j)
            rebuilt[i * n + c] += double(u_gpu[i * p + j]) * double(sigma[1][j]) * double(vt_gpu[j * n + c]);
      expect_close(widen(a), rebuilt, 10 * tolerance<T>(), what + " A = U·Σ·Vᵀ");
      for (int64_t j = p; j < v_rows; ++j)  // the null space of a wide A
        for (int64_t i = 0; i < m; ++i) {
          double av = 0;
          for (int64_t c = 0; c < n; ++c) av += double(a[i * n + c]) * double(vt_gpu[j * n + c]);
          zero.push_back(av);
        }
      expect_close(std::vector<double>(zero.size(), 0.0), zero, 10 * tolerance<T>(), what + " A·V_null", 1.0);
    }
  }
}

// R of A = QR (TSQR's step), A row-major [m×n], m ≥ n. R is unique only up to the signs of its
// rows (the CPU takes an LQ of the column-major view, the GPU a geqrf of a transposed copy), so
// |R| is compared element by element; on the GPU's R also RᵀR = AᵀA and the exact zeros below
// the diagonal.
TYPED_TEST(CudaPrimitives, QrRMatchesUpToRowSigns) {
  using T = TypeParam;
  for (auto [m, n] : {std::pair<int64_t, int64_t>{80, 12}, {33, 33}, {150, 100}, {7, 1}, {1, 1}}) {
    const std::string what = "qr_r " + std::to_string(m) + "x" + std::to_string(n);
    const std::vector<T> a = random_values<T>(m * n, 90 + m * n);
    std::vector<T> a_cpu = a, a_gpu = a;
    this->cpu->qr_r(m, n, a_cpu.data());
    Buffer<T> buf(*this->gpu, a_gpu.size());
    this->gpu->upload(buf.get(), a_gpu.data(), a_gpu.size());
    this->gpu->qr_r(m, n, buf.get());
    this->gpu->download(a_gpu.data(), buf.get(), a_gpu.size());
    std::vector<double> r_cpu(static_cast<size_t>(n * n)), r_gpu(r_cpu.size());
    for (int64_t i = 0; i < n * n; ++i) {
      r_cpu[i] = std::fabs(double(a_cpu[i]));
      r_gpu[i] = std::fabs(double(a_gpu[i]));
      if (i % n < i / n) {
        EXPECT_EQ(a_cpu[i], T(0)) << what << ": cpu R[" << i / n << ", " << i % n << "] below the diagonal";
        EXPECT_EQ(a_gpu[i], T(0)) << what << ": cuda R[" << i / n << ", " << i % n << "] below the diagonal";
      }
    }
    expect_close(r_cpu, r_gpu, tolerance<T>(), what + " |R|");
    std::vector<double> ata, rtr;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = 0; q <= p; ++q) {
        double x = 0, y = 0;
        for (int64_t i = 0; i < m; ++i) x += double(a[i * n + p]) * double(a[i * n + q]);
        for (int64_t i = 0; i < n; ++i) y += double(a_gpu[i * n + p]) * double(a_gpu[i * n + q]);
        ata.push_back(x);
        rtr.push_back(y);
      }
    expect_close(ata, rtr, tolerance<T>(), what + " cuda RᵀR vs AᵀA");
  }
}

TYPED_TEST(CudaPrimitives, NonFiniteInputToTheSolversIsTheSameErrorOnBoth) {
  using T = TypeParam;
  for (bool eig : {true, false}) {
    const int64_t n = 6;
    std::vector<T> a = random_values<T>(n * n, 60);
    a[7] = std::numeric_limits<T>::infinity();
    std::string messages[2];
    Backend<T>* backends[2] = {this->cpu.get(), this->gpu.get()};
    for (int b = 0; b < 2; ++b) {
      Buffer<T> buf(*backends[b], a.size());
      backends[b]->upload(buf.get(), a.data(), a.size());
      try {
        if (eig) (void)backends[b]->symmetric_eigenvalues(n, buf.get());
        else (void)backends[b]->singular_values(n, n, buf.get());
        ADD_FAILURE() << (b == 0 ? "cpu" : "cuda") << " accepted a non-finite matrix";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
        messages[b] = e.what();
      }
    }
    EXPECT_EQ(messages[0], messages[1]);
  }
}

// ---------------------------------------------------------------------------------------------
// Op kernels (basin/op_kernels.hpp): kernels/cuda/ops/*.cu against kernels/cpu/ops/*.cpp on the
// cases of op_kernel_cases.hpp (permuted, padded, offset and broadcast maps; window geometries
// with strides, pads, dilations, 1-D and 2-D), every (alpha, beta) kind.
// ---------------------------------------------------------------------------------------------

template <class T>
OpKernels<T>& kernels_of(Backend<T>& be) {
  return be.op_kernels();
}

const std::pair<double, double> kOpScales[] = {{1.0, 0.0}, {-2.0, 0.0}, {1.0, 1.0}, {0.5, -1.5}};

TYPED_TEST(CudaPrimitives, OpKernelStridedCopy) {
  using T = TypeParam;
  for (const test::CopyCase& k : test::strided_copy_cases(31))
    for (auto [alpha, beta] : kOpScales)
      this->compare({random_values<T>(k.src_size, 70), random_values<T>(k.dst_size, 71)}, {1},
                    [&](Backend<T>& be, std::vector<T*>& x) {
                      kernels_of(be).strided_copy(k.out, k.in, T(alpha), T(beta), x[0], x[1]);
                    },
                    "strided_copy " + k.name + " alpha " + std::to_string(alpha) + " beta " + std::to_string(beta));
}

TYPED_TEST(CudaPrimitives, OpKernelBinary) {
  using T = TypeParam;
  for (const test::BinaryCase& k : test::binary_cases(32))
    for (auto [alpha, beta] : kOpScales)
      this->compare({random_values<T>(k.a_size, 72), random_values<T>(k.b_size, 73), random_values<T>(k.dst_size, 74)},
                    {2},
                    [&](Backend<T>& be, std::vector<T*>& x) {
                      kernels_of(be).binary(k.kind, k.out, k.a, k.b, T(alpha), T(beta), x[0], x[1], x[2]);
                    },
                    "binary " + k.name + " alpha " + std::to_string(alpha) + " beta " + std::to_string(beta));
}

TYPED_TEST(CudaPrimitives, OpKernelReduceSum) {
  using T = TypeParam;
  for (const test::ReduceCase& k : test::reduce_sum_cases(33))
    for (auto [alpha, beta] : kOpScales)
      this->compare({random_values<T>(k.src_size, 75), random_values<T>(k.dst_size, 76)}, {1},
                    [&](Backend<T>& be, std::vector<T*>& x) {
                      kernels_of(be).reduce_sum(k.out, k.in, k.reduce_rank, T(alpha), T(beta), x[0], x[1]);
                    },
                    "reduce_sum " + k.name + " alpha " + std::to_string(alpha) + " beta " + std::to_string(beta));
}

TYPED_TEST(CudaPrimitives, OpKernelIm2colCol2im) {
  using T = TypeParam;
  for (const test::WindowCase& k : test::window_cases()) {
    const WindowGeometry& g = k.g;
    const size_t x_size = static_cast<size_t>(k.batch * g.channels * g.height * g.width);
    const size_t c_size = static_cast<size_t>(k.batch * g.channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w);
    // im2col overwrites cols (prefilled with garbage); col2im accumulates into x.
    this->compare({random_values<T>(x_size, 77), random_values<T>(c_size, 78)}, {1},
                  [&](Backend<T>& be, std::vector<T*>& x) { kernels_of(be).im2col(g, k.batch, x[0], x[1]); },
                  "im2col " + k.name);
    this->compare({random_values<T>(c_size, 79), random_values<T>(x_size, 80)}, {1},
                  [&](Backend<T>& be, std::vector<T*>& x) { kernels_of(be).col2im(g, k.batch, x[0], x[1]); },
                  "col2im " + k.name);
  }
}

TYPED_TEST(CudaPrimitives, OpKernelReduceMax) {
  using T = TypeParam;
  for (const test::ReduceCase& k : test::reduce_sum_cases(34)) {
    std::vector<T> src = random_values<T>(k.src_size, 81);
    for (T& v : src) v = std::round(v * T(4)) / T(4);  // ties
    this->compare({src, random_values<T>(k.dst_size, 82)}, {1},
                  [&](Backend<T>& be, std::vector<T*>& x) {
                    kernels_of(be).reduce_max(k.out, k.in, k.reduce_rank, x[0], x[1]);
                  },
                  "reduce_max " + k.name);
  }
}

TYPED_TEST(CudaPrimitives, OpKernelMaxPool) {
  using T = TypeParam;
  for (const test::PoolCase& k : test::max_pool_cases()) {
    const WindowGeometry& g = k.g;
    const int64_t E = k.examples, R = k.rows_per_example, C = g.channels, P = g.out_h * g.out_w;
    const size_t x_size = static_cast<size_t>(E * C * g.height * g.width), y_size = static_cast<size_t>(E * C * P);
    std::vector<T> x = random_values<T>(x_size, 83);
    for (T& v : x) v = std::round(v * T(3)) / T(3);  // ties: the first maximum wins on both
    // Forward: y and the arg-max (both outputs compared).
    this->compare({x, random_values<T>(y_size, 84), random_values<T>(y_size, 85)}, {1, 2},
                  [&](Backend<T>& be, std::vector<T*>& a) { kernels_of(be).max_pool_forward(g, E, a[0], a[1], a[2]); },
                  "max_pool_forward " + k.name);
    // apply / transpose with the CPU's arg-max (the same on both backends, as checked above).
    std::vector<T> y(y_size), argmax(y_size);
    kernels_of(*this->cpu).max_pool_forward(g, E, x.data(), y.data(), argmax.data());
    const size_t xr_size = static_cast<size_t>(E * R * C * g.height * g.width);
    const size_t yr_size = static_cast<size_t>(E * R * C * P);
    this->compare({argmax, random_values<T>(xr_size, 86), random_values<T>(yr_size, 87)}, {2},
                  [&](Backend<T>& be, std::vector<T*>& a) { kernels_of(be).max_pool_apply(g, E, R, a[0], a[1], a[2]); },
                  "max_pool_apply " + k.name);
    this->compare({argmax, random_values<T>(yr_size, 88), random_values<T>(xr_size, 89)}, {2},
                  [&](Backend<T>& be, std::vector<T*>& a) {
                    kernels_of(be).max_pool_transpose(g, E, R, a[0], a[1], a[2]);
                  },
                  "max_pool_transpose " + k.name);
  }
}

TYPED_TEST(CudaPrimitives, OpKernelAvgPool) {
  using T = TypeParam;
  for (const test::PoolCase& base : test::pool_cases())
    for (bool include_pad : {false, true}) {
      WindowGeometry g = base.g;
      g.count_include_pad = include_pad;
      const int64_t B = base.examples * base.rows_per_example;
      const size_t x_size = static_cast<size_t>(B * g.channels * g.height * g.width);
      const size_t y_size = static_cast<size_t>(B * g.channels * g.out_h * g.out_w);
      const std::string what = base.name + (include_pad ? " count_include_pad" : "");
      this->compare({random_values<T>(x_size, 90), random_values<T>(y_size, 91)}, {1},
                    [&](Backend<T>& be, std::vector<T*>& a) { kernels_of(be).avg_pool(g, B, a[0], a[1]); },
                    "avg_pool " + what);
      this->compare({random_values<T>(y_size, 92), random_values<T>(x_size, 93)}, {1},
                    [&](Backend<T>& be, std::vector<T*>& a) { kernels_of(be).avg_pool_transpose(g, B, a[0], a[1]); },
                    "avg_pool_transpose " + what);
    }
}

TYPED_TEST(CudaPrimitives, OpKernelGather) {
  using T = TypeParam;
  // Shared and per-example tables and indices, several rows per example, repeated ids.
  struct Case { int64_t E, R, V, D, S, table_E, table_R, idx_E; };
  for (const Case& k : {Case{3, 2, 5, 4, 7, 1, 1, 3}, Case{3, 2, 5, 4, 7, 3, 2, 3}, Case{4, 1, 11, 8, 6, 1, 1, 1},
                        Case{2, 3, 3, 1, 9, 2, 3, 2}}) {
    GatherGeometry g;
    g.vocab = k.V, g.width = k.D, g.positions = k.S, g.rows = k.R;
    g.table_row_stride = k.table_R == 1 ? 0 : k.V * k.D;
    g.table_example_stride = k.table_E == 1 ? 0 : k.table_R * k.V * k.D;
    g.index_example_stride = k.idx_E == 1 ? 0 : k.S;
    std::vector<T> idx(static_cast<size_t>(k.idx_E * k.S));
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = T(static_cast<int64_t>(i * 7 + 3) % k.V);
    const size_t table = static_cast<size_t>(k.table_E * k.table_R * k.V * k.D);
    const size_t out = static_cast<size_t>(k.E * k.R * k.S * k.D);
    const std::string what = "gather E" + std::to_string(k.E) + " table_E" + std::to_string(k.table_E);
    this->compare({idx, random_values<T>(table, 94), random_values<T>(out, 95)}, {2},
                  [&](Backend<T>& be, std::vector<T*>& a) {
                    kernels_of(be).gather_rows(g, k.E, T(1), T(0.5), a[0], a[1], a[2]);
                  },
                  "gather_rows " + what);
    if (k.idx_E != k.E) continue;
    for (int64_t out_E : {k.E, int64_t{1}}) {
      const size_t gt = static_cast<size_t>(out_E * k.R * k.V * k.D);
      this->compare({idx, random_values<T>(out, 96), random_values<T>(gt, 97)}, {2},
                    [&](Backend<T>& be, std::vector<T*>& a) {
                      kernels_of(be).gather_rows_transpose(g, out_E, out_E == 1 ? k.E : 1, T(1), a[0], a[1], a[2]);
                    },
                    "gather_rows_transpose " + what + " out_E" + std::to_string(out_E));
    }
  }
}

TYPED_TEST(CudaPrimitives, OpKernelBadLaunchIsTheSameErrorKindOnBoth) {
  using T = TypeParam;
  size_t n = 0;
  const StridedMap a = test::strided_view({2, 3}, {0, 1}, {false, false}, 0, 0, &n);
  const StridedMap b = test::strided_view({3, 2}, {0, 1}, {false, false}, 0, 0, &n);
  Backend<T>* backends[2] = {this->cpu.get(), this->gpu.get()};
  for (int i = 0; i < 2; ++i) {
    Buffer<T> buf(*backends[i], 16);
    try {
      kernels_of(*backends[i]).strided_copy(a, b, T(1), T(0), buf.get(), buf.get());
      ADD_FAILURE() << (i == 0 ? "cpu" : "cuda") << " accepted maps of different dims";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInternal) << e.what();
    }
  }
}

// One device context per GPU, shared by concurrent jobs (kernels/cuda/device_context.hpp): jobs
// on several threads at once, each with its own backend (its own leased stream and handles),
// get the CPU's results; and backends made one after another keep working (a stream returned
// by one job is reused by the next).
TEST(GpuParityDeviceContext, ConcurrentBackendsOnOneDeviceMatchCpu) {
  BASIN_SKIP_WITHOUT_CUDA();
  constexpr int kJobs = 4;
  const int64_t m = 96, n = 80, k = 64;
  const std::vector<double> a = random_values<double>(m * k, 90), b = random_values<double>(k * n, 91);
  std::vector<double> expected(m * n);
  {
    auto cpu = make_cpu_backend<double>();
    cpu->gemm(false, false, m, n, k, 1.0, a.data(), k, b.data(), n, 0.0, expected.data(), n);
  }
  for (int round = 0; round < 2; ++round) {
    std::vector<std::vector<double>> results(kJobs);
    std::vector<std::string> errors(kJobs);
    std::vector<std::thread> threads;
    for (int j = 0; j < kJobs; ++j)
      threads.emplace_back([&, j] {
        try {
          auto gpu = make_cuda_backend<double>(0);
          Buffer<double> da(*gpu, a.size()), db(*gpu, b.size()), dc(*gpu, expected.size());
          gpu->upload(da.get(), a.data(), a.size());
          gpu->upload(db.get(), b.data(), b.size());
          for (int rep = 0; rep < 20; ++rep)  // keep the streams busy at the same time
            gpu->gemm(false, false, m, n, k, 1.0, da.get(), k, db.get(), n, 0.0, dc.get(), n);
          results[j].resize(expected.size());
          gpu->download(results[j].data(), dc.get(), expected.size());
        } catch (const std::exception& e) {
          errors[j] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    for (int j = 0; j < kJobs; ++j) {
      ASSERT_TRUE(errors[j].empty()) << "job " << j << ": " << errors[j];
      expect_close(expected, results[j], 1e-12,
                   "round " + std::to_string(round) + " job " + std::to_string(j) + " gemm on a shared device");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Whole requests through basin::analyze.
// ---------------------------------------------------------------------------------------------

struct Arch {
  const char* name;
  Model model;
};

std::vector<Arch> architectures() {
  std::vector<Arch> out;
  {
    Model m;
    m.input_dim = 3;
    m.layers = {Layer::dense(5), Layer::act(Activation::kTanh), Layer::dense(2)};
    out.push_back({"tanh_small", m});
  }
  {
    Model m;
    m.input_dim = 4;
    m.layers = {Layer::dense(6), Layer::act(Activation::kGelu), Layer::dense(5), Layer::act(Activation::kSoftplus),
                Layer::dense(3)};
    out.push_back({"gelu_softplus", m});
  }
  {
    Model m;
    m.input_dim = 5;
    m.layers = {Layer::dense(8, false), Layer::act(Activation::kRelu), Layer::dense(4),
                Layer::act(Activation::kLeakyRelu, 0.1), Layer::dense(3)};
    out.push_back({"relu_nobias", m});
  }
  {
    Model m;
    m.input_dim = 2;
    m.layers = {Layer::dense(7), Layer::act(Activation::kSigmoid), Layer::dense(7), Layer::act(Activation::kSilu),
                Layer::dense(4)};
    out.push_back({"sigmoid_silu", m});
  }
  return out;
}

struct ParityCase {
  std::string name;
  Model model;
  int64_t n;
  Loss loss;
  Method method;
  DType dtype;
  bool hessian;
};

// Test names carry the case; print only the name (not the object's bytes) in listings.
void PrintTo(const ParityCase& c, std::ostream* os) { *os << c.name; }

std::vector<ParityCase> parity_cases() {
  std::vector<ParityCase> cases;
  for (const Arch& arch : architectures()) {
    for (Loss loss : {Loss::kMse, Loss::kCrossEntropy}) {
      for (Method method : {Method::kGram, Method::kNormal, Method::kSvd}) {
        for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
          // n·k below N (Gram is the small side) for gram, above it for normal; svd gets both.
          const int64_t N = arch.model.num_params(), k = arch.model.output_dim();
          const int64_t n_small = std::max<int64_t>(2, N / (3 * k)), n_large = 2 * N / k + 3;
          const int64_t n = method == Method::kNormal ? n_large : n_small;
          std::string name = std::string(arch.name) + (loss == Loss::kMse ? "_mse_" : "_ce_") + method_name(method) +
                             (dtype == DType::kFloat64 ? "_f64" : "_f32");
          cases.push_back({name, arch.model, n, loss, method, dtype, /*hessian=*/method != Method::kNormal});
          if (method == Method::kSvd) cases.push_back({name + "_tall", arch.model, n_large, loss, method, dtype, false});
        }
      }
    }
  }
  return cases;
}

AnalysisRequest make_request(const ParityCase& c, uint64_t seed) {
  AnalysisRequest r;
  r.model = c.model;
  const int64_t N = c.model.num_params(), k = c.model.output_dim(), d = c.model.input_dim;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  r.params.resize(N);
  for (double& p : r.params) p = 0.6 * normal(rng);
  r.num_examples = c.n;
  r.inputs.resize(c.n * d);
  for (double& x : r.inputs) x = normal(rng);
  r.loss = c.loss;
  if (c.loss == Loss::kMse) {
    r.targets.resize(c.n * k);
    for (double& y : r.targets) y = normal(rng);
  } else {
    std::uniform_int_distribution<int64_t> label(0, k - 1);
    r.labels.resize(c.n);
    for (int64_t& l : r.labels) l = label(rng);
  }
  r.want.jacobian = true;
  r.want.ggn = true;
  r.want.hessian = c.hessian;
  r.method = c.method;
  r.dtype = c.dtype;
  return r;
}

std::vector<double> squared(const std::vector<double>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[i] * v[i];
  return out;
}

class GpuParity : public ::testing::TestWithParam<ParityCase> {
 protected:
  void SetUp() override { BASIN_SKIP_WITHOUT_CUDA(); }
};

TEST_P(GpuParity, MatchesCpu) {
  const ParityCase& c = GetParam();
  AnalysisRequest request = make_request(c, std::hash<std::string>{}(c.name));
  request.device = Device::kCpu;
  const AnalysisResult cpu = analyze(request);
  request.device = Device::kCuda;
  const AnalysisResult gpu = analyze(request);
  const double tol = c.dtype == DType::kFloat64 ? tolerance<double>() : tolerance<float>();

  EXPECT_EQ(cpu.backend, "cpu");
  EXPECT_EQ(gpu.backend, "cuda");
  EXPECT_FALSE(gpu.device.empty());
  expect_close(cpu.outputs, gpu.outputs, tol, "outputs");
  ASSERT_TRUE(cpu.loss_value && gpu.loss_value);
  expect_close({*cpu.loss_value}, {*gpu.loss_value}, tol, "loss");
  expect_close({*cpu.grad_norm}, {*gpu.grad_norm}, tol, "grad_norm");

  ASSERT_TRUE(cpu.jacobian && gpu.jacobian);
  const JacobianSpectrum& cj = *cpu.jacobian;
  const JacobianSpectrum& gj = *gpu.jacobian;
  EXPECT_EQ(cj.method, gj.method);
  if (c.method == Method::kSvd)
    expect_close(cj.singular_values, gj.singular_values, tol, "jacobian singular values");
  else
    expect_close(squared(cj.singular_values), squared(gj.singular_values), tol, "jacobian singular values squared");
  // The rank must agree whenever the cut is clear: the last kept value well above the tolerance
  // and the first dropped one well below it (on the CPU).
  const std::vector<double>& sv = cj.singular_values;
  const bool kept_clear = cj.rank == 0 || sv[cj.rank - 1] > 10 * cj.tolerance;
  const bool dropped_clear = cj.rank >= static_cast<int64_t>(sv.size()) || sv[cj.rank] < 0.1 * cj.tolerance;
  if (kept_clear && dropped_clear) EXPECT_EQ(cj.rank, gj.rank) << "jacobian rank (tolerance " << cj.tolerance << ")";

  ASSERT_TRUE(cpu.ggn && gpu.ggn);
  expect_close(cpu.ggn->eigenvalues, gpu.ggn->eigenvalues, tol, "ggn eigenvalues");

  if (c.hessian) {
    ASSERT_TRUE(cpu.hessian && gpu.hessian);
    expect_close(cpu.hessian->eigenvalues, gpu.hessian->eigenvalues, tol, "hessian eigenvalues");
    // eig(H − GGN) is compared on the scale of H: the residual can be tiny next to H (near a
    // minimum), and its absolute error follows H's.
    double h_scale = 0;
    for (double v : cpu.hessian->eigenvalues) h_scale = std::max(h_scale, std::fabs(v));
    expect_close(cpu.hessian->residual_eigenvalues, gpu.hessian->residual_eigenvalues, tol,
                 "hessian residual eigenvalues", h_scale);
    EXPECT_NEAR(cpu.hessian->residual_rel, gpu.hessian->residual_rel, 100 * tol) << "residual_rel";
  }
}

INSTANTIATE_TEST_SUITE_P(Analyze, GpuParity, ::testing::ValuesIn(parity_cases()),
                         [](const ::testing::TestParamInfo<ParityCase>& info) { return info.param.name; });

// --vectors through the engine: the bases and eigenvectors agree with the CPU's (the sign
// convention makes them comparable entry by entry where the values are distinct; the null basis,
// unique only as a subspace, by its projector V·Vᵀ), for a wide and a tall G.
TEST(GpuParityVectors, BasesAndEigenvectorsMatchCpu) {
  BASIN_SKIP_WITHOUT_CUDA();
  const Model model = architectures()[2].model;
  const int64_t N = model.num_params(), k = model.output_dim();
  for (const int64_t n : {std::max<int64_t>(2, N / (3 * k)), 2 * N / k + 3}) {
    ParityCase c{"vectors", model, n, Loss::kCrossEntropy, Method::kAuto, DType::kFloat64, N <= 600};
    AnalysisRequest request = make_request(c, 123 + n);
    request.vectors.jacobian_row = request.vectors.jacobian_null = request.vectors.jacobian_left = true;
    request.vectors.ggn = true;
    request.vectors.hessian = c.hessian;
    request.device = Device::kCpu;
    const AnalysisResult cpu = analyze(request);
    request.device = Device::kCuda;
    const AnalysisResult gpu = analyze(request);
    ASSERT_EQ(cpu.vectors.size(), gpu.vectors.size());
    for (size_t a = 0; a < cpu.vectors.size(); ++a) {
      const VectorArray& x = cpu.vectors[a];
      const VectorArray& y = gpu.vectors[a];
      const std::string what = x.name + " n=" + std::to_string(n);
      ASSERT_EQ(x.name, y.name);
      ASSERT_EQ(x.shape, y.shape) << what;
      if (x.name == "jacobian_row_basis" || x.name == "jacobian_left_basis") {
        expect_close(x.data, y.data, 1e-8, what);
        continue;
      }
      if (x.name != "jacobian_null_basis") {
        // Eigenvectors are unique (up to sign) only for a simple eigenvalue: compare the columns
        // whose eigenvalue is separated from every other by 1e-6·max|λ| (the GGN's and H's
        // zero clusters are not).
        const std::vector<double>& lambda = x.name == "ggn_eigenvectors" ? cpu.ggn->eigenvalues : cpu.hessian->eigenvalues;
        double scale = 0;
        for (double l : lambda) scale = std::max(scale, std::fabs(l));
        std::vector<double> cx, cy;
        for (int64_t j = 0; j < x.shape[1]; ++j) {
          const double lj = lambda[x.indices[j]];
          bool simple = true;
          for (size_t i = 0; i < lambda.size(); ++i)
            if (static_cast<int64_t>(i) != x.indices[j] && std::fabs(lambda[i] - lj) <= 1e-6 * scale) simple = false;
          if (!simple) continue;
          for (int64_t i = 0; i < x.shape[0]; ++i) {
            cx.push_back(x.data[i * x.shape[1] + j]);
            cy.push_back(y.data[i * x.shape[1] + j]);
          }
        }
        EXPECT_FALSE(cx.empty()) << what << ": no simple eigenvalue to compare";
        expect_close(cx, cy, 1e-7, what + " (columns of simple eigenvalues)");
        continue;
      }
      const int64_t rows = x.shape[0], cols = x.shape[1];
      std::vector<double> px(static_cast<size_t>(rows * rows), 0.0), py(px.size(), 0.0);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < rows; ++j)
          for (int64_t c2 = 0; c2 < cols; ++c2) {
            px[i * rows + j] += x.data[i * cols + c2] * x.data[j * cols + c2];
            py[i * rows + j] += y.data[i * cols + c2] * y.data[j * cols + c2];
          }
      expect_close(px, py, 1e-8, what + " projector", 1.0);
    }
  }
}

// Returning G itself (--save-jacobian): the assembled matrix is the same on both backends.
TEST(GpuParityJacobian, ReturnedJacobianMatchesCpu) {
  BASIN_SKIP_WITHOUT_CUDA();
  ParityCase c{"jacobian_matrix", architectures()[2].model, 7, Loss::kMse, Method::kGram, DType::kFloat64, false};
  AnalysisRequest request = make_request(c, 99);
  request.return_jacobian = true;
  request.device = Device::kCpu;
  const AnalysisResult cpu = analyze(request);
  request.device = Device::kCuda;
  const AnalysisResult gpu = analyze(request);
  expect_close(cpu.jacobian_matrix, gpu.jacobian_matrix, 1e-12, "jacobian matrix");
}

// auto on a tall G with genuine singular values below GᵀG's resolution, under a memory limit G
// does not fit but TSQR does (the limits of tests/engine/test_jacobian.cpp's
// AutoDecidesATallDeficientRankWithTsqrWhenGDoesNotFit, halved for float32): both backends
// refine with TSQR (the GPU's geqrf on [R; G_block], two blocks) and agree like two SVDs.
TEST(GpuParityTsqr, TallDeficientJacobianUnderATightMemoryLimit) {
  BASIN_SKIP_WITHOUT_CUDA();
  Model model;
  model.input_dim = 4;
  model.layers = {Layer::dense(8), Layer::act(Activation::kTanh), Layer::dense(1), Layer::act(Activation::kTanh),
                  Layer::dense(8), Layer::act(Activation::kTanh), Layer::dense(3)};
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    ParityCase c{"tsqr", model, 60, Loss::kMse, Method::kAuto, dtype, false};
    AnalysisRequest request = make_request(c, 85);
    request.limits.max_memory_bytes = (dtype == DType::kFloat64 ? 250 : 125) * 1024;
    request.device = Device::kCpu;
    const AnalysisResult cpu = analyze(request);
    request.device = Device::kCuda;
    const AnalysisResult gpu = analyze(request);
    const double tol = dtype == DType::kFloat64 ? tolerance<double>() : tolerance<float>();
    const std::string what = std::string("tsqr ") + dtype_name(dtype);
    ASSERT_TRUE(cpu.jacobian && gpu.jacobian) << what;
    EXPECT_EQ(cpu.jacobian->method, "tsqr") << what;
    EXPECT_EQ(gpu.jacobian->method, "tsqr") << what;
    EXPECT_EQ(gpu.jacobian->refined_from, "normal") << what;
    expect_close(cpu.jacobian->singular_values, gpu.jacobian->singular_values, tol, what + " jacobian σ");
    // float64 (seed 85): the values nearest the cut are 3.7× above and 3.0× below the tolerance
    // (180·ε·σ_max), a margin ~25 times the QRs' round-off, so the rank must agree. float32's
    // values crowd its cut (1.2× / 2.3×) and are not held to the same rank.
    if (dtype == DType::kFloat64) EXPECT_EQ(cpu.jacobian->rank, gpu.jacobian->rank) << what;
    ASSERT_TRUE(cpu.ggn && gpu.ggn) << what;
    expect_close(cpu.ggn->eigenvalues, gpu.ggn->eigenvalues, tol, what + " ggn");
  }
}

// Checkpoints of a training run in one request (analyze_checkpoints): the data are uploaded once
// and the Grams solved together -- syevjBatched when n·k ≤ 32, cusolverDnXsyevBatched above --
// and every checkpoint must equal its own analysis on the CPU.
TEST(GpuParityBatch, CheckpointsMatchCpuOneAtATime) {
  BASIN_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
    for (int64_t n : {int64_t(8), int64_t(30)}) {  // n·k = 24 (syevjBatched) and 90 (XsyevBatched)
      for (Loss loss : {Loss::kMse, Loss::kCrossEntropy}) {
        ParityCase c{"batch", architectures()[1].model, n, loss, Method::kAuto, dtype, false};
        AnalysisRequest request = make_request(c, 500 + n);
        ASSERT_EQ(request.model.output_dim(), 3);
        std::mt19937_64 rng(7 + n);
        std::normal_distribution<double> normal(0.0, 0.6);
        std::vector<std::vector<double>> checkpoints(7, request.params);
        for (size_t b = 1; b < checkpoints.size(); ++b)
          for (double& p : checkpoints[b]) p += 0.3 * normal(rng);
        request.device = Device::kCuda;
        const std::vector<AnalysisResult> gpu = analyze_checkpoints(request, checkpoints);
        ASSERT_EQ(gpu.size(), checkpoints.size());
        const double tol = dtype == DType::kFloat64 ? tolerance<double>() : tolerance<float>();
        for (size_t b = 0; b < checkpoints.size(); ++b) {
          request.device = Device::kCpu;
          request.params = checkpoints[b];
          const AnalysisResult cpu = analyze(request);
          const std::string what = std::string(dtype_name(dtype)) + " n=" + std::to_string(n) + " " +
                                   loss_name(loss) + " checkpoint " + std::to_string(b);
          EXPECT_EQ(gpu[b].backend, "cuda");
          expect_close(cpu.outputs, gpu[b].outputs, tol, what + " outputs");
          ASSERT_TRUE(cpu.jacobian && gpu[b].jacobian) << what;
          EXPECT_EQ(cpu.jacobian->method, gpu[b].jacobian->method) << what;
          expect_close(squared(cpu.jacobian->singular_values), squared(gpu[b].jacobian->singular_values), tol,
                       what + " jacobian σ²");
          ASSERT_TRUE(cpu.ggn && gpu[b].ggn) << what;
          expect_close(cpu.ggn->eigenvalues, gpu[b].ggn->eigenvalues, tol, what + " ggn");
        }
      }
    }
  }
}

}  // namespace
}  // namespace basin

namespace basin {
namespace {

// A graph request (conv, pooling, residual add, per-channel scale, transpose, reshape, dense:
// every op family's CUDA kernels, residual_cnn_graph.hpp) through basin::analyze on both
// backends: the Gram and SVD routes, the exact Hessian, float64 and float32.
TEST(GpuParityGraph, ResidualCnnMatchesCpu) {
  BASIN_SKIP_WITHOUT_CUDA();
  const std::shared_ptr<const Graph> graph = test::residual_cnn();
  const int64_t n = 4, N = graph->num_params(), k = graph->output_dim();
  for (const DType dtype : {DType::kFloat64, DType::kFloat32})
    for (const Method method : {Method::kGram, Method::kSvd}) {
      const std::string what = std::string(dtype == DType::kFloat64 ? "f64" : "f32") +
                               (method == Method::kSvd ? " svd" : " gram");
      AnalysisRequest r;
      r.graph = graph;
      std::mt19937_64 rng(17);
      std::normal_distribution<double> normal(0.0, 1.0);
      r.params.resize(static_cast<size_t>(N));
      for (double& p : r.params) p = 0.5 * normal(rng);
      r.num_examples = n;
      r.inputs.resize(static_cast<size_t>(n * 2 * 8 * 8));
      for (double& x : r.inputs) x = normal(rng);
      r.loss = Loss::kCrossEntropy;
      std::uniform_int_distribution<int64_t> label(0, k - 1);
      r.labels.resize(static_cast<size_t>(n));
      for (int64_t& l : r.labels) l = label(rng);
      r.want.jacobian = r.want.ggn = r.want.hessian = true;
      r.method = method;
      r.dtype = dtype;
      r.device = Device::kCpu;
      const AnalysisResult cpu = analyze(r);
      r.device = Device::kCuda;
      const AnalysisResult gpu = analyze(r);
      const double tol = dtype == DType::kFloat64 ? tolerance<double>() : tolerance<float>();
      EXPECT_EQ(gpu.backend, "cuda") << what;
      expect_close(cpu.outputs, gpu.outputs, tol, what + " graph outputs");
      ASSERT_TRUE(cpu.grad_norm && gpu.grad_norm) << what;
      expect_close({*cpu.grad_norm}, {*gpu.grad_norm}, tol, what + " graph grad_norm");
      ASSERT_TRUE(cpu.jacobian && gpu.jacobian) << what;
      if (method == Method::kSvd)
        expect_close(cpu.jacobian->singular_values, gpu.jacobian->singular_values, tol, what + " graph σ(G)");
      else
        expect_close(squared(cpu.jacobian->singular_values), squared(gpu.jacobian->singular_values), tol,
                     what + " graph σ(G)²");
      ASSERT_TRUE(cpu.ggn && gpu.ggn) << what;
      expect_close(cpu.ggn->eigenvalues, gpu.ggn->eigenvalues, tol, what + " graph ggn eigenvalues");
      ASSERT_TRUE(cpu.hessian && gpu.hessian) << what;
      expect_close(cpu.hessian->eigenvalues, gpu.hessian->eigenvalues, tol, what + " graph hessian eigenvalues");
    }
}

// The matrix-free spectra (issue 12) on the backend, against the CPU: H·V and GGN·V products through Hutch++ (the
// same seeded probes on both, so the traces agree to round-off), block Lanczos's top and bottom
// eigenvalues (GGN bottom: its null space's zeros, more than a block), and SLQ's nodes, for an
// MLP and the residual CNN, float64 and float32.
TEST(GpuParitySpectra, MatrixFreeMatchesCpu) {
  BASIN_SKIP_WITHOUT_CUDA();
  struct Case {
    std::string name;
    AnalysisRequest r;
  };
  std::vector<Case> cases;
  for (const DType dtype : {DType::kFloat64, DType::kFloat32}) {
    const std::string tag = dtype == DType::kFloat64 ? " f64" : " f32";
    {
      ParityCase pc{"mlp", architectures()[1].model, 12, Loss::kCrossEntropy, Method::kGram, dtype, false};
      Case c{"mlp" + tag, make_request(pc, 41)};
      cases.push_back(std::move(c));
    }
    {
      const std::shared_ptr<const Graph> graph = test::residual_cnn();
      AnalysisRequest r;
      r.graph = graph;
      std::mt19937_64 rng(19);
      std::normal_distribution<double> normal(0.0, 1.0);
      r.params.resize(static_cast<size_t>(graph->num_params()));
      for (double& p : r.params) p = 0.5 * normal(rng);
      r.num_examples = 4;
      r.inputs.resize(static_cast<size_t>(4 * 2 * 8 * 8));
      for (double& x : r.inputs) x = normal(rng);
      r.loss = Loss::kCrossEntropy;
      for (int64_t i = 0; i < 4; ++i) r.labels.push_back(i % graph->output_dim());
      r.dtype = dtype;
      cases.push_back({"residual cnn" + tag, std::move(r)});
    }
  }
  for (Case& c : cases) {
    AnalysisRequest& r = c.r;
    const bool f64 = r.dtype == DType::kFloat64;
    r.want = Want{false, false, false, false};
    r.want.hessian_top = r.want.ggn_top = true;
    r.want.hessian_trace = r.want.ggn_trace = true;
    r.want.hessian_density = r.want.ggn_density = true;
    r.spectra.method = "matrix_free";
    r.spectra.top_k = 4;
    r.spectra.bottom_k = 3;
    r.spectra.lanczos_block = 2;
    r.spectra.lanczos_steps = 30;
    r.spectra.probes = 12;
    r.spectra.tol = f64 ? 1e-10 : 1e-5;
    r.spectra.seed = 3;
    r.device = Device::kCpu;
    const AnalysisResult cpu = analyze(r);
    r.device = Device::kCuda;
    const AnalysisResult gpu = analyze(r);
    const double tol = f64 ? tolerance<double>() : tolerance<float>();
    EXPECT_EQ(gpu.backend, "cuda") << c.name;
    for (const bool hessian : {true, false}) {
      const std::string what = c.name + (hessian ? " hessian" : " ggn");
      const auto& ct = hessian ? cpu.hessian_top : cpu.ggn_top;
      const auto& gt = hessian ? gpu.hessian_top : gpu.ggn_top;
      const auto& cb = hessian ? cpu.hessian_bottom : cpu.ggn_bottom;
      const auto& gb = hessian ? gpu.hessian_bottom : gpu.ggn_bottom;
      ASSERT_TRUE(ct && gt && cb && gb) << what;
      double scale = 0;
      for (double v : ct->eigenvalues) scale = std::max(scale, std::fabs(v));
      for (double v : cb->eigenvalues) scale = std::max(scale, std::fabs(v));
      expect_close(ct->eigenvalues, gt->eigenvalues, tol, what + " lanczos top", scale);
      expect_close(cb->eigenvalues, gb->eigenvalues, tol, what + " lanczos bottom", scale);
      if (f64) {  // (float32's residuals sit near its tolerance: the flags may differ by round-off)
        EXPECT_TRUE(ct->converged && cb->converged) << what;
        EXPECT_TRUE(gt->converged && gb->converged) << what;
        for (double x : gt->residual_norms) EXPECT_LE(x, 1e-10 * scale) << what;
        for (double x : gb->residual_norms) EXPECT_LE(x, 1e-10 * scale) << what;
      }
      const auto& ctr = hessian ? cpu.hessian_trace : cpu.ggn_trace;
      const auto& gtr = hessian ? gpu.hessian_trace : gpu.ggn_trace;
      ASSERT_TRUE(ctr && gtr) << what;
      // The same probes: the estimate is a sum of products vᵀAv, each to round-off.
      expect_close({ctr->estimate}, {gtr->estimate}, tol, what + " hutch++ trace", scale * double(cpu.num_params));
      EXPECT_EQ(ctr->matvecs, gtr->matvecs) << what;
      const auto& cd = hessian ? cpu.hessian_density : cpu.ggn_density;
      const auto& gd = hessian ? gpu.hessian_density : gpu.ggn_density;
      ASSERT_TRUE(cd && gd) << what;
      ASSERT_EQ(cd->nodes.size(), gd->nodes.size()) << what;
      // The first probe's extreme nodes (Ritz values of a short Krylov space: the interior ones
      // move with round-off more than the ends).
      for (size_t p = 0; p < cd->nodes.size(); ++p) {
        ASSERT_FALSE(cd->nodes[p].empty() || gd->nodes[p].empty()) << what;
        expect_close({cd->nodes[p].front(), cd->nodes[p].back()}, {gd->nodes[p].front(), gd->nodes[p].back()},
                     f64 ? 1e-8 : 1e-3, what + " slq extreme nodes", scale);
      }
      EXPECT_EQ(cd->grid.size(), gd->grid.size()) << what;
    }
  }
}

}  // namespace
}  // namespace basin
