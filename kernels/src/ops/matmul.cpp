// "matmul": y = op(a) · op(b) (+ c), NumPy matmul semantics on the per-example shapes, with
// op(x) = xᵀ (last two axes) when trans_a / trans_b is 1 (ONNX Gemm's transA/transB; a dense
// layer is matmul(x, W, b) with trans_b = 1, W [out, in] as PyTorch stores it).
//   a [..., M, K] or [K];  b [..., K, N] or [K];  batch axes equal, or present on one side only;
//   c (optional) [N], added to every row.
// Bilinear in (a, b) (BilinearOp) plus the affine bias.
#include <algorithm>

#include "basin/error.hpp"
#include "op_util.hpp"

namespace basin {
namespace {

struct Dims {
  bool a_vec = false, b_vec = false;
  bool trans_a = false, trans_b = false;
  int64_t M = 1, K = 1, N = 1;
  int64_t batch = 1;            // product of the output's batch axes
  bool a_batched_axes = false;  // a has the batch axes (else broadcast)
  bool b_batched_axes = false;
  bool has_bias = false;
  Shape out;
};

Dims dims_of(const GraphNode& node, const std::vector<const GraphValue*>& in) {
  if (in.size() != 2 && in.size() != 3) op_error(node, "expects 2 or 3 inputs (a, b[, bias]), got " + std::to_string(in.size()));
  Dims d;
  d.trans_a = attr_int(node.attrs, "trans_a", 0) != 0;
  d.trans_b = attr_int(node.attrs, "trans_b", 0) != 0;
  Shape sa = in[0]->shape, sb = in[1]->shape;
  if (sa.empty() || sb.empty()) op_error(node, "inputs must have at least one axis");
  d.a_vec = sa.size() == 1;
  d.b_vec = sb.size() == 1;
  if (d.a_vec) { sa.insert(sa.begin(), 1); d.trans_a = false; }
  if (d.b_vec) { sb.push_back(1); d.trans_b = false; }
  const size_t ra = sa.size(), rb = sb.size();
  d.M = d.trans_a ? sa[ra - 1] : sa[ra - 2];
  const int64_t Ka = d.trans_a ? sa[ra - 2] : sa[ra - 1];
  const int64_t Kb = d.trans_b ? sb[rb - 1] : sb[rb - 2];
  d.N = d.trans_b ? sb[rb - 2] : sb[rb - 1];
  if (Ka != Kb)
    op_error(node, "inner dimensions differ: a " + shape_string(in[0]->shape) + " and b " + shape_string(in[1]->shape) +
                       (d.trans_b ? " (b transposed)" : ""));
  d.K = Ka;
  const Shape ba(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
  if (!ba.empty() && !bb.empty() && ba != bb)
    op_error(node, "batch axes " + shape_string(ba) + " and " + shape_string(bb) +
                       " differ; Basin broadcasts only when one side has none", true);
  const Shape& batch = ba.empty() ? bb : ba;
  d.a_batched_axes = !ba.empty();
  d.b_batched_axes = !bb.empty();
  d.batch = shape_numel(batch);
  d.out = batch;
  if (!d.a_vec) d.out.push_back(d.M);
  if (!d.b_vec) d.out.push_back(d.N);
  if (in.size() == 3) {
    d.has_bias = true;
    if (in[2]->shape != Shape{d.N} || d.b_vec)
      op_error(node, "bias shape " + shape_string(in[2]->shape) + " must be [" + std::to_string(d.N) + "]");
    if (in[2]->batched) op_error(node, "the bias must not depend on the input", true);
  }
  return d;
}

Shape infer(const GraphNode& node, const std::vector<const GraphValue*>& in) { return dims_of(node, in).out; }

template <class T>
class MatMul final : public BilinearOp<T> {
 public:
  using value_type = T;
  MatMul(const GraphNode& node, const std::vector<const GraphValue*>& in)
      : d_(dims_of(node, in)), b_plain_(!in[1]->batched && in[1]->shape.size() == 2) {}

  int dense_factor_input(int slot) const override {
    return slot == 1 && d_.trans_b && d_.a_vec && b_plain_ ? 0 : -1;
  }
  int dense_bias_input() const override { return d_.has_bias ? 2 : -1; }

  void apply(const OpCall<T>& c, const Tensor<T>& a, const Tensor<T>& b, Tensor<T> out) override {
    const int64_t E = max_examples<T>({&a, &b, &out}), R = max_rows<T>({&a, &b, &out});
    const int64_t lda = d_.trans_a ? d_.M : d_.K, ldb = d_.trans_b ? d_.K : d_.N;
    if (b.E == 1 && b.R == 1 && !d_.b_batched_axes && !d_.trans_a && a.E == E && a.R == R && out.E == E) {
      c.be.gemm(false, d_.trans_b, E * R * d_.batch * d_.M, d_.N, d_.K, T(1), a.data, d_.K, b.data, ldb, T(1), out.data,
                d_.N);
      return;
    }
    if (vector_rows() && a.R == 1 && a.E == E && out.E == E && b.E == 1 && b.R == R && R > 1) {
      // Tangent directions of the weight (rvjp's forward pass): out[e, r] = b[r] · a[e].
      if (d_.trans_b) {  // b viewed [(R·N) × K]
        c.be.gemm(false, true, E, R * d_.N, d_.K, T(1), a.data, d_.K, b.data, d_.K, T(1), out.data, R * d_.N);
      } else {
        for (int64_t r = 0; r < R; ++r)
          c.be.gemm(false, false, E, d_.N, d_.K, T(1), a.data, d_.K, b.at(0, r), d_.N, T(1), out.data + r * d_.N,
                    R * d_.N);
      }
      return;
    }
    for_each(E, R, operand(a, d_.a_batched_axes, d_.M * d_.K), operand(b, d_.b_batched_axes, d_.K * d_.N),
             operand(out, true, d_.M * d_.N), [&](const T* A, const T* B, T* C) {
      c.be.gemm(d_.trans_a, d_.trans_b, d_.M, d_.N, d_.K, T(1), A, lda, B, ldb, T(1), C, d_.N);
    });
  }

  void transpose_a(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& b, Tensor<T> ga) override {
    const int64_t E = max_examples<T>({&g, &b, &ga}), R = max_rows<T>({&g, &b, &ga});
    const int64_t ldb = d_.trans_b ? d_.K : d_.N;
    if (b.E == 1 && b.R == 1 && !d_.b_batched_axes && !d_.trans_a && ga.E == E && ga.R == R && g.E == E && g.R == R) {
      c.be.gemm(false, !d_.trans_b, E * R * d_.batch * d_.M, d_.K, d_.N, T(1), g.data, d_.N, b.data, ldb, T(1), ga.data,
                d_.K);
      return;
    }
    if (vector_rows() && g.R == 1 && g.E == E && ga.E == E && ga.R == R && b.E == 1 && b.R == R && R > 1) {
      // ga[e, r] = g[e] · op(b[r])ᵀ for R directions of the weight, one GEMM per direction.
      for (int64_t r = 0; r < R; ++r)
        c.be.gemm(false, !d_.trans_b, E, d_.K, d_.N, T(1), g.data, d_.N, b.at(0, r), ldb, T(1), ga.data + r * d_.K,
                  R * d_.K);
      return;
    }
    for_each(E, R, operand(ga, d_.a_batched_axes, d_.M * d_.K), operand(b, d_.b_batched_axes, d_.K * d_.N),
             operand(g, true, d_.M * d_.N), [&](T* GA, const T* B, const T* G) {
      if (!d_.trans_a)
        c.be.gemm(false, !d_.trans_b, d_.M, d_.K, d_.N, T(1), G, d_.N, B, ldb, T(1), GA, d_.K);
      else
        c.be.gemm(d_.trans_b, true, d_.K, d_.M, d_.N, T(1), B, ldb, G, d_.N, T(1), GA, d_.M);
    });
  }

  void transpose_b(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& a, Tensor<T> gb) override {
    const int64_t E = max_examples<T>({&g, &a, &gb}), R = max_rows<T>({&g, &a, &gb});
    const int64_t lda = d_.trans_a ? d_.M : d_.K;
    const bool plain = !d_.trans_a && !d_.a_batched_axes && !d_.b_batched_axes && a.R == 1 && a.E == E && g.E == E;
    if (plain && gb.E == 1 && d_.trans_b && (d_.M == 1 || R == 1)) {
      // Σ_e g[e]ᵀ a[e]: with M == 1, g viewed [E × (R·N)] gives gb [(R·N) × K] = (r, o, q) at once.
      const int64_t rows_a = d_.M == 1 ? E : E * d_.M, cols_g = d_.M == 1 ? R * d_.N : d_.N;
      c.be.gemm(true, false, cols_g, d_.K, rows_a, T(1), g.data, cols_g, a.data, d_.K, T(1), gb.data, d_.K);
      return;
    }
    if (plain && gb.E == E && d_.trans_b && d_.M == 1) {
      // Per example: gb[e] viewed [(R·N) × K] = g[e] as a column [(R·N) × 1] times a[e] [1 × K].
      for (int64_t e = 0; e < E; ++e)
        c.be.gemm(false, false, R * d_.N, d_.K, 1, T(1), g.at(e, 0), 1, a.at(e, 0), d_.K, T(1), gb.at(e, 0), d_.K);
      return;
    }
    if (vector_rows() && gb.E == 1 && g.R == 1 && g.E == E && a.E == E && a.R == R && R > 1) {
      // Σ_e of g[e] with the R tangent directions ȧ[e, r] of the input, one GEMM per direction.
      for (int64_t r = 0; r < R; ++r) {
        if (d_.trans_b)
          c.be.gemm(true, false, d_.N, d_.K, E, T(1), g.data, d_.N, a.data + r * d_.K, R * d_.K, T(1), gb.at(0, r), d_.K);
        else
          c.be.gemm(true, false, d_.K, d_.N, E, T(1), a.data + r * d_.K, R * d_.K, g.data, d_.N, T(1), gb.at(0, r), d_.N);
      }
      return;
    }
    for_each(E, R, operand(a, d_.a_batched_axes, d_.M * d_.K), operand(gb, d_.b_batched_axes, d_.K * d_.N),
             operand(g, true, d_.M * d_.N), [&](const T* A, T* GB, const T* G) {
      if (!d_.trans_b) {
        if (!d_.trans_a) c.be.gemm(true, false, d_.K, d_.N, d_.M, T(1), A, d_.K, G, d_.N, T(1), GB, d_.N);
        else c.be.gemm(false, false, d_.K, d_.N, d_.M, T(1), A, d_.M, G, d_.N, T(1), GB, d_.N);
      } else {
        c.be.gemm(true, d_.trans_a, d_.N, d_.K, d_.M, T(1), G, d_.N, A, lda, T(1), GB, d_.K);
      }
    });
  }

  // ---- the bias (input 2) ----
  // Per-example vectors times a plain matrix (a dense layer): the case the fast paths cover.
  bool vector_rows() const { return d_.a_vec && !d_.a_batched_axes && !d_.b_batched_axes && !d_.trans_a; }
  void forward(const OpCall<T>& c, Tensor<T> out) override {
    BilinearOp<T>::forward(c, out);
    if (d_.has_bias) add_bias(c, c.in[2], out);
  }
  void jvp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, Tensor<T> out) override {
    BilinearOp<T>::jvp(c, t, out);
    if (d_.has_bias && t[2]) add_bias(c, t[2], out);
  }
  void vjp(const OpCall<T>& c, const Tensor<T>& g, const std::vector<Tensor<T>>& gin) override {
    BilinearOp<T>::vjp(c, g, gin);
    if (d_.has_bias && gin[2] && g) bias_transpose(c, g, gin[2]);
  }
  void rvjp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, const Tensor<T>& g, const Tensor<T>& dg,
            const std::vector<Tensor<T>>& gin) override {
    BilinearOp<T>::rvjp(c, t, g, dg, gin);
    if (d_.has_bias && gin[2] && dg) bias_transpose(c, dg, gin[2]);
  }

 private:
  // One matrix operand of a loop: the tensor, whether it has the batch axes, its matrix size.
  template <class X>
  struct Operand {
    const X& t;
    bool axes;
    int64_t mat;
  };
  template <class X>
  static Operand<X> operand(const X& t, bool axes, int64_t mat) { return Operand<X>{t, axes, mat}; }
  // Calls f(x, y, z) with the matrices of every (e, r, batch index); x and y are read at their
  // broadcast positions, z (the accumulated one) at (e or 0, r).
  template <class X, class Y, class Z, class F>
  void for_each(int64_t E, int64_t R, Operand<X> x, Operand<Y> y, Operand<Z> z, F f) const {
    for (int64_t e = 0; e < E; ++e)
      for (int64_t r = 0; r < R; ++r)
        for (int64_t bi = 0; bi < d_.batch; ++bi) f(ptr(x, e, r, bi), ptr(y, e, r, bi), ptr(z, e, r, bi));
  }
  template <class X>
  static auto ptr(const Operand<X>& o, int64_t e, int64_t r, int64_t bi) {
    return o.t.at(o.t.E == 1 ? 0 : e, o.t.R == 1 ? 0 : r) + (o.axes ? bi * o.mat : 0);
  }
  void add_bias(const OpCall<T>& c, const Tensor<T>& bias, const Tensor<T>& out) const {
    const int64_t rows = d_.batch * (d_.a_vec ? 1 : d_.M);
    for (int64_t e = 0; e < out.E; ++e)
      for (int64_t r = 0; r < out.R; ++r)
        c.be.add_row_vector(rows, d_.N, bias.at(bias.E == 1 ? 0 : e, bias.R == 1 ? 0 : r), out.at(e, r), d_.N);
  }
  void bias_transpose(const OpCall<T>& c, const Tensor<T>& g, const Tensor<T>& gc) const {
    const int64_t rows = d_.batch * (d_.a_vec ? 1 : d_.M);
    if (rows == 1) {
      add_into(c.be, Tensor<T>{g.data, g.E, g.R, Shape{d_.N}}, gc);
      return;
    }
    Buffer<T> sums(c.be, static_cast<size_t>(d_.N));
    for (int64_t e = 0; e < g.E; ++e)
      for (int64_t r = 0; r < g.R; ++r) {
        c.be.column_sums(rows, d_.N, g.at(e, r), d_.N, sums.get());
        c.be.axpy(static_cast<size_t>(d_.N), T(1), sums.get(), gc.at(gc.E == 1 ? 0 : e, r));
      }
  }

  Dims d_;
  bool b_plain_;
};

const OpDef kMatMul{"matmul", &infer, &make_op_as<MatMul<double>>, &make_op_as<MatMul<float>>};

}  // namespace

void register_matmul_ops(std::vector<const OpDef*>& table) { table.push_back(&kMatMul); }

}  // namespace basin
