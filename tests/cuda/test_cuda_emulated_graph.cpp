// A small residual CNN through the graph executor (kernels/src/graph/executor.hpp) on the host
// emulation of the CUDA backend -- whose op kernels are the CUDA launches' plans around the
// element bodies, run in a shuffled order (emulated_op_kernels.hpp) -- against the CPU backend:
// forward, gradient, Gram, G, GᵀG and the residual Hessian must agree. Every op family's
// kernels run here (conv: im2col/col2im; pooling: max forward/apply/transpose, avg and its
// transpose; broadcast: binary with an unbatched per-channel operand, reduce_sum of the
// parameter cotangents; layout: transpose, reshape), in the forward, tangent and cotangent
// passes the engine uses. Not evidence about CUDA itself: basin_gpu_parity_tests on a GPU is.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "basin/backend.hpp"
#include "basin/graph.hpp"
#include "emulated_cuda_backend.hpp"
#include "graph/executor.hpp"
#include "residual_cnn_graph.hpp"

namespace basin {
namespace {

std::vector<double> host_copy(Backend<double>& be, const Buffer<double>& buf) {
  std::vector<double> h(buf.size());
  be.download(h.data(), buf.get(), h.size());
  return h;
}

void expect_close(const std::vector<double>& expected, const std::vector<double>& actual, double tol,
                  const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  double scale = 1e-300;
  for (double v : expected) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < expected.size(); ++i)
    ASSERT_NEAR(expected[i], actual[i], tol * scale) << what << " at flat index " << i << " of " << expected.size();
}

TEST(EmulatedGraph, ResidualCnnMatchesCpu) {
  const std::shared_ptr<const Graph> graph = test::residual_cnn();
  const int64_t n = 3, k = graph->output_dim(), N = graph->num_params();
  ASSERT_EQ(k, 3);
  ASSERT_EQ(N, 4 * 2 * 9 + 4 + 4 * 4 * 9 + 4 + 4 + 3 * 36 + 3);
  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> params(static_cast<size_t>(N)), inputs(static_cast<size_t>(n * 2 * 64));
  for (double& p : params) p = 0.5 * normal(rng);
  for (double& x : inputs) x = normal(rng);
  std::vector<double> dloss(static_cast<size_t>(n * k)), eye(static_cast<size_t>(n * k * k), 0.0);
  for (double& v : dloss) v = normal(rng);
  for (int64_t row = 0; row < n * k; ++row) eye[static_cast<size_t>(row * k + row % k)] = 1.0;

  auto cpu = make_cpu_backend<double>();
  test::EmulatedCudaBackend<double> emu;
  {
    GraphNetwork<double> a(*cpu, graph, params, inputs, n, nullptr);
    GraphNetwork<double> b(emu, graph, params, inputs, n, nullptr);
    a.forward();
    b.forward();
    const double tol = 1e-11;
    expect_close(a.outputs(), b.outputs(), tol, "outputs");
    expect_close(a.gradient(dloss, true), b.gradient(dloss, true), tol, "gradient");
    expect_close(host_copy(*cpu, a.gram(eye, k)), host_copy(emu, b.gram(eye, k)), tol, "gram");
    expect_close(host_copy(*cpu, a.jacobian(eye, k)), host_copy(emu, b.jacobian(eye, k)), tol, "jacobian");
    for (uint64_t block : {uint64_t(1), uint64_t(1) << 22}) {
      expect_close(host_copy(*cpu, a.normal(eye, k, block)), host_copy(emu, b.normal(eye, k, block)), tol,
                   "normal block_bytes=" + std::to_string(block));
      expect_close(host_copy(*cpu, a.residual_hessian(block)), host_copy(emu, b.residual_hessian(block)), tol,
                   "residual_hessian block_bytes=" + std::to_string(block));
    }
  }
  EXPECT_EQ(emu.live_allocations(), 0) << "every allocation released";
}

}  // namespace
}  // namespace basin
