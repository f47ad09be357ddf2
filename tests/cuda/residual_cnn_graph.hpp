// A small residual CNN as a Graph, with one node of every op family the CUDA op kernels serve
// (conv, max_pool, avg_pool, add/mul with an unbatched per-channel operand, transpose, reshape,
// matmul, unary): the emulated-backend graph test (test_cuda_emulated_graph.cpp) and the GPU
// parity suite (test_gpu_parity.cpp) both run it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "basin/graph.hpp"

namespace basin {
namespace test {

// x [2, 8, 8] → conv 3×3 pad 1 (+b) → tanh → max_pool 2×2 → conv 3×3 pad 1 → softplus, + the
// pooled input (residual) → ·γ + β (per-channel [4, 1, 1] parameters) → avg_pool 2×2 stride 2
// pad 1 → transpose (1, 2, 0) → reshape [36] → dense 3.
inline std::shared_ptr<const Graph> residual_cnn() {
  using Ints = std::vector<int64_t>;
  Graph g;
  int h = g.add_input("x", {2, 8, 8});
  const int w1 = g.add_parameter("w1", {4, 2, 3, 3}), b1 = g.add_parameter("b1", {4});
  const int w2 = g.add_parameter("w2", {4, 4, 3, 3});
  const int gamma = g.add_parameter("gamma", {4, 1, 1}), beta = g.add_parameter("beta", {4, 1, 1});
  const int w3 = g.add_parameter("w3", {3, 36}), b3 = g.add_parameter("b3", {3});
  Attributes conv;
  conv["pads"] = attr_of(Ints{1, 1, 1, 1});
  h = g.add_node("conv", {h, w1, b1}, conv, "conv1");
  Attributes fn;
  fn["fn"] = attr_of(std::string("tanh"));
  h = g.add_node("unary", {h}, fn, "act1");
  Attributes mp;
  mp["kernel_shape"] = attr_of(Ints{2, 2});
  mp["strides"] = attr_of(Ints{2, 2});
  const int pooled = g.add_node("max_pool", {h}, mp, "pool1");
  h = g.add_node("conv", {pooled, w2}, conv, "conv2");
  fn["fn"] = attr_of(std::string("softplus"));
  h = g.add_node("unary", {h}, fn, "act2");
  h = g.add_node("add", {h, pooled}, {}, "residual");
  h = g.add_node("mul", {h, gamma}, {}, "scale");
  h = g.add_node("add", {h, beta}, {}, "shift");
  Attributes ap;
  ap["kernel_shape"] = attr_of(Ints{2, 2});
  ap["strides"] = attr_of(Ints{2, 2});
  ap["pads"] = attr_of(Ints{1, 1, 1, 1});
  h = g.add_node("avg_pool", {h}, ap, "pool2");
  Attributes tr;
  tr["perm"] = attr_of(Ints{1, 2, 0});
  h = g.add_node("transpose", {h}, tr, "nhwc");
  Attributes rs;
  rs["shape"] = attr_of(Ints{36});
  h = g.add_node("reshape", {h}, rs, "flatten");
  Attributes dense;
  dense["trans_b"] = attr_of(int64_t{1});
  h = g.add_node("matmul", {h, w3, b3}, dense, "head");
  g.set_output(h);
  g.validate(100);
  return std::make_shared<const Graph>(g);
}

}  // namespace test
}  // namespace basin
