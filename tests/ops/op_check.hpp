// A generic check of one primitive op against central finite differences in float64, on the
// CPU backend: forward shape, jvp, vjp (per-example and summed) and rvjp, for every
// differentiable input, under the broadcast contract of kernels/src/ops/op.hpp.
//
//   OpCase c;
//   c.op = "conv"; c.attrs["strides"] = attr_of(std::vector<int64_t>{2, 2});
//   c.inputs = {{{3, 8, 8}}, {{4, 3, 3, 3}, /*batched=*/false}};
//   check_op(c);            // EXPECTs inside; returns the forward output shape
//
// What is checked (h = c.step, tolerance c.tol relative to the largest magnitude compared):
//   jvp     J·t           vs (f(x + h t) − f(x − h t)) / 2h, each direction r of R separately;
//   vjp     ⟨g, J_j t_j⟩  = ⟨J_jᵀ g, t_j⟩ for each input j (adjoint identity), per-example
//           cotangents of an unbatched input summed over e = the summed (E = 1) cotangent;
//   rvjp    ġ_j            vs (vjp_j(x + h t, ḡ + h ġ_out) − vjp_j(x − h t, ḡ − h ġ_out)) / 2h.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "basin/backend.hpp"
#include "basin/error.hpp"
#include "basin/graph.hpp"
#include "ops/op.hpp"

namespace basin {
namespace test {

struct OpInput {
  Shape shape;
  bool batched = true;         // has the example axis
  bool differentiable = true;  // false: a constant (no tangent, no cotangent)
  std::vector<double> values;  // empty: random N(0, scale²); batched: n × size, example-major
  double scale = 1.0;
  double offset = 0.0;         // added to random values (keep sqrt/log inputs positive)
};

struct OpCase {
  std::string op;
  Attributes attrs;
  std::vector<OpInput> inputs;
  int64_t n = 3;       // examples
  int64_t R = 2;       // directions per example
  double step = 1e-5;  // finite-difference step
  double tol = 1e-6;   // relative tolerance
  unsigned seed = 1;
};

namespace detail {

inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

inline void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double scale = std::max({max_abs(want), max_abs(got), 1e-300});
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(got[i] - want[i]);
    if (d > worst) worst = d, at = i;
  }
  EXPECT_LE(worst, tol * std::max(scale, 1.0)) << what << ": worst error " << worst << " at " << at << " (got "
                                                << got[at] << ", want " << want[at] << "; scale " << scale << ")";
}

struct Harness {
  const OpCase& c;
  std::unique_ptr<Backend<double>> be = make_cpu_backend<double>();
  std::vector<GraphValue> values;
  GraphNode node;
  const OpDef* def = nullptr;
  std::unique_ptr<Op<double>> op;
  Shape out_shape;
  bool out_batched = false;
  std::vector<std::vector<double>> x;  // host inputs
  std::vector<Buffer<double>> keep;    // device memory of the current call

  explicit Harness(const OpCase& oc) : c(oc) {
    node.name = "under_test";
    node.op = c.op;
    node.attrs = c.attrs;
    std::mt19937_64 rng(c.seed);
    std::normal_distribution<double> nd(0.0, 1.0);
    values.resize(c.inputs.size());
    for (size_t j = 0; j < c.inputs.size(); ++j) {
      const OpInput& in = c.inputs[j];
      GraphValue& v = values[j];
      v.name = "in" + std::to_string(j);
      v.shape = in.shape;
      v.batched = in.batched;
      v.differentiable = in.differentiable;
      v.kind = in.batched ? ValueKind::kNode : (in.differentiable ? ValueKind::kParameter : ValueKind::kConstant);
      const int64_t count = (in.batched ? c.n : 1) * shape_numel(in.shape);
      std::vector<double> data = in.values;
      if (data.empty())
        for (int64_t i = 0; i < count; ++i) data.push_back(in.offset + in.scale * nd(rng));
      x.push_back(data);
      out_batched = out_batched || in.batched;
    }
    std::vector<const GraphValue*> ptrs;
    for (const GraphValue& v : values) ptrs.push_back(&v);
    def = find_op(c.op);
    if (def == nullptr) throw std::runtime_error("op '" + c.op + "' is not registered");
    out_shape = def->infer(node, ptrs);
    op = make_op<double>(*def, node, ptrs);
  }

  int64_t E_of(size_t j) const { return c.inputs[j].batched ? c.n : 1; }
  int64_t E_out() const { return out_batched ? c.n : 1; }

  Tensor<double> upload(const std::vector<double>& host, int64_t E, int64_t R, const Shape& shape) {
    keep.emplace_back(*be, host.size());
    be->upload(keep.back().get(), host.data(), host.size());
    return Tensor<double>{keep.back().get(), E, R, shape};
  }
  Tensor<double> zeros(int64_t E, int64_t R, const Shape& shape) {
    keep.emplace_back(*be, static_cast<size_t>(E * R * shape_numel(shape)));
    return Tensor<double>{keep.back().get(), E, R, shape};
  }
  std::vector<double> download(const Tensor<double>& t) {
    std::vector<double> h(static_cast<size_t>(t.count()));
    be->download(h.data(), t.data, h.size());
    return h;
  }
  OpCall<double> call(const std::vector<std::vector<double>>& xs) {
    std::vector<Tensor<double>> in;
    for (size_t j = 0; j < xs.size(); ++j) in.push_back(upload(xs[j], E_of(j), 1, c.inputs[j].shape));
    Tensor<double> out = zeros(E_out(), 1, out_shape);
    OpCall<double> oc{*be, be->op_kernels(), node, in, out};
    op->forward(oc, out);
    oc.out = out;
    return oc;
  }
  std::vector<double> forward(const std::vector<std::vector<double>>& xs) { return download(call(xs).out); }
};

// x + s·(direction r of t), for the inputs; t[j] is [(E_j·R) × size] host data (empty: none).
inline std::vector<std::vector<double>> shifted(const Harness& h, const std::vector<std::vector<double>>& t, int64_t r,
                                                double s) {
  std::vector<std::vector<double>> xs = h.x;
  for (size_t j = 0; j < xs.size(); ++j) {
    if (t[j].empty()) continue;
    const int64_t size = shape_numel(h.c.inputs[j].shape), E = h.E_of(j);
    for (int64_t e = 0; e < E; ++e)
      for (int64_t i = 0; i < size; ++i) xs[j][e * size + i] += s * t[j][(e * h.c.R + r) * size + i];
  }
  return xs;
}

}  // namespace detail

// Runs every check; returns the output shape the op inferred.
inline Shape check_op(const OpCase& c) {
  using detail::expect_close;
  detail::Harness h(c);
  std::mt19937_64 rng(c.seed + 100);
  std::normal_distribution<double> nd(0.0, 1.0);
  auto randv = [&](int64_t count) {
    std::vector<double> v(static_cast<size_t>(count));
    for (double& e : v) e = nd(rng);
    return v;
  };
  const size_t J = c.inputs.size();
  // The derivative passes see no primal the op says it does not read (Op::reads_primal): the
  // executor frees those after the forward pass, so reading one must fail here.
  auto derivative_call = [&](const std::vector<std::vector<double>>& xs) {
    OpCall<double> oc = h.call(xs);
    for (size_t j = 0; j < J; ++j)
      if (!h.op->reads_primal(static_cast<int>(j))) oc.in[j].data = nullptr;
    return oc;
  };
  const int64_t R = c.R, osize = shape_numel(h.out_shape), Eo = h.E_out();
  // Tangents of the differentiable inputs.
  std::vector<std::vector<double>> t(J);
  for (size_t j = 0; j < J; ++j)
    if (c.inputs[j].differentiable) t[j] = randv(h.E_of(j) * R * shape_numel(c.inputs[j].shape));

  // ---- jvp vs finite differences ----
  std::vector<double> jt;
  {
    OpCall<double> oc = derivative_call(h.x);
    std::vector<Tensor<double>> tt;
    for (size_t j = 0; j < J; ++j)
      tt.push_back(t[j].empty() ? Tensor<double>{} : h.upload(t[j], h.E_of(j), R, c.inputs[j].shape));
    Tensor<double> out_t = h.zeros(Eo, R, h.out_shape);
    h.op->jvp(oc, tt, out_t);
    jt = h.download(out_t);
    std::vector<double> fd(jt.size());
    for (int64_t r = 0; r < R; ++r) {
      const std::vector<double> fp = h.forward(detail::shifted(h, t, r, c.step));
      const std::vector<double> fm = h.forward(detail::shifted(h, t, r, -c.step));
      for (int64_t e = 0; e < Eo; ++e)
        for (int64_t i = 0; i < osize; ++i)
          fd[(e * R + r) * osize + i] = (fp[e * osize + i] - fm[e * osize + i]) / (2 * c.step);
    }
    expect_close(jt, fd, c.tol, c.op + " jvp vs finite differences");
  }

  // ---- vjp: adjoint identity per input, per-example and summed ----
  const std::vector<double> g = randv(Eo * R * osize);
  for (size_t j = 0; j < J; ++j) {
    if (t[j].empty()) continue;
    OpCall<double> oc = derivative_call(h.x);
    // ⟨g, J_j t_j⟩ from a jvp with only t_j.
    std::vector<Tensor<double>> tt(J);
    tt[j] = h.upload(t[j], h.E_of(j), R, c.inputs[j].shape);
    Tensor<double> out_t = h.zeros(Eo, R, h.out_shape);
    h.op->jvp(oc, tt, out_t);
    const std::vector<double> jtj = h.download(out_t);
    double lhs = 0;
    for (size_t i = 0; i < g.size(); ++i) lhs += g[i] * jtj[i];
    // ⟨J_jᵀ g, t_j⟩ with per-example cotangents (E = n when the output is batched).
    const int64_t size = shape_numel(c.inputs[j].shape);
    std::vector<Tensor<double>> gin(J);
    gin[j] = h.zeros(Eo, R, c.inputs[j].shape);
    h.op->vjp(oc, h.upload(g, Eo, R, h.out_shape), gin);
    const std::vector<double> gj = h.download(gin[j]);
    double rhs = 0;
    for (int64_t e = 0; e < Eo; ++e)
      for (int64_t r = 0; r < R; ++r)
        for (int64_t i = 0; i < size; ++i)
          rhs += gj[(e * R + r) * size + i] * t[j][((h.E_of(j) == 1 ? 0 : e) * R + r) * size + i];
    EXPECT_NEAR(lhs, rhs, c.tol * std::max({std::fabs(lhs), std::fabs(rhs), 1.0}))
        << c.op << " vjp of input " << j << ": adjoint identity";
    if (!c.inputs[j].batched && Eo > 1) {  // summed cotangent = Σ_e per-example
      std::vector<Tensor<double>> gs(J);
      gs[j] = h.zeros(1, R, c.inputs[j].shape);
      h.op->vjp(oc, h.upload(g, Eo, R, h.out_shape), gs);
      std::vector<double> want(static_cast<size_t>(R * size), 0.0);
      for (int64_t e = 0; e < Eo; ++e)
        for (int64_t k = 0; k < R * size; ++k) want[k] += gj[e * R * size + k];
      expect_close(h.download(gs[j]), want, 1e-12, c.op + " summed vjp of input " + std::to_string(j));
    }
  }

  // ---- rvjp vs finite differences of the vjp ----
  if (h.op->differentiable()) {
    const std::vector<double> g1 = randv(Eo * osize), dg = randv(Eo * R * osize);
    OpCall<double> oc = derivative_call(h.x);
    std::vector<Tensor<double>> tt;
    for (size_t j = 0; j < J; ++j)
      tt.push_back(t[j].empty() ? Tensor<double>{} : h.upload(t[j], h.E_of(j), R, c.inputs[j].shape));
    std::vector<Tensor<double>> gin(J);
    for (size_t j = 0; j < J; ++j)
      if (!t[j].empty()) gin[j] = h.zeros(h.E_of(j), R, c.inputs[j].shape);  // unbatched: summed
    h.op->rvjp(oc, tt, h.upload(g1, Eo, 1, h.out_shape), h.upload(dg, Eo, R, h.out_shape), gin);
    for (size_t j = 0; j < J; ++j) {
      if (t[j].empty()) continue;
      const std::vector<double> got = h.download(gin[j]);
      const int64_t size = shape_numel(c.inputs[j].shape), Ej = h.E_of(j);
      std::vector<double> fd(got.size());
      for (int64_t r = 0; r < R; ++r) {
        std::vector<double> v[2];
        for (int s = 0; s < 2; ++s) {
          const double sign = s == 0 ? 1.0 : -1.0;
          std::vector<double> gg(g1);
          for (int64_t e = 0; e < Eo; ++e)
            for (int64_t i = 0; i < osize; ++i) gg[e * osize + i] += sign * c.step * dg[(e * R + r) * osize + i];
          OpCall<double> oc2 = derivative_call(detail::shifted(h, t, r, sign * c.step));
          std::vector<Tensor<double>> g2(J);
          g2[j] = h.zeros(Ej, 1, c.inputs[j].shape);
          h.op->vjp(oc2, h.upload(gg, Eo, 1, h.out_shape), g2);
          v[s] = h.download(g2[j]);
        }
        for (int64_t e = 0; e < Ej; ++e)
          for (int64_t i = 0; i < size; ++i)
            fd[(e * R + r) * size + i] = (v[0][e * size + i] - v[1][e * size + i]) / (2 * c.step);
      }
      expect_close(got, fd, c.tol, c.op + " rvjp of input " + std::to_string(j) + " vs finite differences");
    }
  }
  return h.out_shape;
}

// The output shape the op infers, or the basin::Error it throws (for bad-input tests).
inline Shape infer_shape(const OpCase& c) {
  detail::Harness h(c);
  return h.out_shape;
}

}  // namespace test
}  // namespace basin
