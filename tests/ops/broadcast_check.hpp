// The (E, R) broadcast paths of op.hpp's contract that check_op (op_check.hpp) does not reach
// for a batched input: a tangent shared by every example (E = 1) or by every direction (R = 1)
// gives what the tiled tangent gives, a cotangent shared by the directions (R = 1) likewise, and
// a cotangent summed into E = 1 is the sum of the per-example ones.
#pragma once

#include "ops/op_check.hpp"

namespace basin {
namespace test {

inline void check_broadcast_paths(const OpCase& c) {
  detail::Harness h(c);
  std::mt19937_64 rng(c.seed + 200);
  std::normal_distribution<double> nd(0.0, 1.0);
  auto randv = [&](int64_t count) {
    std::vector<double> v(static_cast<size_t>(count));
    for (double& e : v) e = nd(rng);
    return v;
  };
  const size_t J = c.inputs.size();
  const int64_t R = c.R, Eo = h.E_out(), osize = shape_numel(h.out_shape);
  // x [E × size] tiled to [E × R × size] (each example's row repeated R times); from E = 1 to En.
  auto tile = [](const std::vector<double>& x, int64_t E, int64_t Rx, int64_t En, int64_t Rn, int64_t size) {
    std::vector<double> y;
    for (int64_t e = 0; e < En; ++e)
      for (int64_t r = 0; r < Rn; ++r)
        for (int64_t i = 0; i < size; ++i) y.push_back(x[((E == 1 ? 0 : e) * Rx + (Rx == 1 ? 0 : r)) * size + i]);
    return y;
  };
  for (size_t j = 0; j < J; ++j) {
    if (!c.inputs[j].differentiable || !c.inputs[j].batched) continue;
    const Shape& s = c.inputs[j].shape;
    const int64_t size = shape_numel(s), n = c.n;
    OpCall<double> oc = h.call(h.x);
    auto jvp = [&](const std::vector<double>& t, int64_t E, int64_t Rt) {
      std::vector<Tensor<double>> tt(J);
      tt[j] = h.upload(t, E, Rt, s);
      Tensor<double> out = h.zeros(Eo, R, h.out_shape);
      h.op->jvp(oc, tt, out);
      return h.download(out);
    };
    auto vjp = [&](const std::vector<double>& g, int64_t Rg, int64_t Ein) {
      std::vector<Tensor<double>> gin(J);
      gin[j] = h.zeros(Ein, R, s);
      h.op->vjp(oc, h.upload(g, Eo, Rg, h.out_shape), gin);
      return h.download(gin[j]);
    };
    const std::string what = c.op + " input " + std::to_string(j);
    const std::vector<double> t1 = randv(R * size);  // shared by the examples
    detail::expect_close(jvp(t1, 1, R), jvp(tile(t1, 1, R, n, R, size), n, R), 1e-14, what + ": jvp, tangent E = 1");
    const std::vector<double> t2 = randv(n * size);  // shared by the directions
    detail::expect_close(jvp(t2, n, 1), jvp(tile(t2, n, 1, n, R, size), n, R), 1e-14, what + ": jvp, tangent R = 1");
    const std::vector<double> g1 = randv(Eo * osize);  // cotangent shared by the directions
    detail::expect_close(vjp(g1, 1, n), vjp(tile(g1, Eo, 1, Eo, R, osize), R, n), 1e-14,
                         what + ": vjp, cotangent R = 1");
    const std::vector<double> g = randv(Eo * R * osize);
    const std::vector<double> per = vjp(g, R, n), summed = vjp(g, R, 1);
    std::vector<double> want(static_cast<size_t>(R * size), 0.0);
    for (int64_t e = 0; e < n; ++e)
      for (int64_t k = 0; k < R * size; ++k) want[k] += per[e * R * size + k];
    detail::expect_close(summed, want, 1e-13, what + ": vjp summed over the examples");
  }
}

}  // namespace test
}  // namespace basin
