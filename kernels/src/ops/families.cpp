// The generic derivative passes of the three op families (op.hpp): written once from each
// family's defining functions.
#include <algorithm>

#include "basin/error.hpp"
#include "op_util.hpp"

namespace basin {

template <class T>
void add_into(Backend<T>& be, const Tensor<T>& src, const Tensor<T>& dst) {
  const int64_t block = src.R * src.size();
  if (src.R != dst.R || src.size() != dst.size())
    throw Error(ErrorCode::kInternal, "add_into: tensors of different shapes");
  if (src.E == dst.E) {
    be.axpy(static_cast<size_t>(src.count()), T(1), src.data, dst.data);
  } else if (dst.E == 1) {
    Buffer<T> sums(be, static_cast<size_t>(block));
    be.column_sums(src.E, block, src.data, block, sums.get());
    be.axpy(static_cast<size_t>(block), T(1), sums.get(), dst.data);
  } else if (src.E == 1) {
    for (int64_t e = 0; e < dst.E; ++e) be.axpy(static_cast<size_t>(block), T(1), src.data, dst.data + e * block);
  } else {
    throw Error(ErrorCode::kInternal, "add_into: example counts differ");
  }
}

template <class T>
Tensor<T> tensor_in(Buffer<T>& storage, Backend<T>& be, int64_t E, int64_t R, const Shape& shape) {
  storage = Buffer<T>(be, static_cast<size_t>(E * R * shape_numel(shape)));
  return Tensor<T>{storage.get(), E, R, shape};
}

// ---- LinearOp ----

template <class T>
void LinearOp<T>::forward(const OpCall<T>& c, Tensor<T> out) {
  c.be.fill(out.data, static_cast<size_t>(out.count()), T(0));
  for (int j = 0; j < static_cast<int>(c.in.size()); ++j) apply(c, j, c.in[j], out);
}

template <class T>
void LinearOp<T>::jvp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, Tensor<T> out) {
  for (int j = 0; j < static_cast<int>(t.size()); ++j)
    if (t[j]) apply(c, j, t[j], out);
}

template <class T>
void LinearOp<T>::vjp(const OpCall<T>& c, const Tensor<T>& g, const std::vector<Tensor<T>>& gin) {
  for (int j = 0; j < static_cast<int>(gin.size()); ++j)
    if (gin[j]) transpose(c, j, g, gin[j]);
}

template <class T>
void LinearOp<T>::rvjp(const OpCall<T>& c, const std::vector<Tensor<T>>&, const Tensor<T>&, const Tensor<T>& dg,
                       const std::vector<Tensor<T>>& gin) {
  if (!dg) return;  // linear: no second-order term
  for (int j = 0; j < static_cast<int>(gin.size()); ++j)
    if (gin[j]) transpose(c, j, dg, gin[j]);
}

// ---- UnaryOp ----
// The backend's activation primitives take the primal z [E×d] and R rows per example; an
// unbatched z (E = 1) with per-example rows is the same call with E = 1 and E·R rows.

template <class T>
void UnaryOp<T>::forward(const OpCall<T>& c, Tensor<T> out) {
  c.be.activation_forward(fn_, static_cast<size_t>(out.count()), c.in[0].data, out.data);
}

namespace {
// rows of `t` per primal row of z, when z (E_z = 1 or E) broadcasts over t's (E, R).
template <class T>
int64_t rows_per_primal(const Tensor<T>& z, const Tensor<T>& t) {
  return z.E == 1 ? t.E * t.R : t.R;
}
}  // namespace

template <class T>
void UnaryOp<T>::jvp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, Tensor<T> out) {
  if (!t[0]) return;
  const Tensor<T>& z = c.in[0];
  Buffer<T> tmp(c.be, static_cast<size_t>(t[0].count()));
  c.be.copy(tmp.get(), t[0].data, static_cast<size_t>(t[0].count()));
  c.be.scale_by_activation_derivative(fn_, z.E, rows_per_primal(z, t[0]), z.size(), z.data, tmp.get());
  add_into(c.be, Tensor<T>{tmp.get(), t[0].E, t[0].R, t[0].shape}, out);
}

template <class T>
void UnaryOp<T>::vjp(const OpCall<T>& c, const Tensor<T>& g, const std::vector<Tensor<T>>& gin) {
  if (!gin[0] || !g) return;
  const Tensor<T>& z = c.in[0];
  Buffer<T> tmp(c.be, static_cast<size_t>(g.count()));
  c.be.copy(tmp.get(), g.data, static_cast<size_t>(g.count()));
  c.be.scale_by_activation_derivative(fn_, z.E, rows_per_primal(z, g), z.size(), z.data, tmp.get());
  add_into(c.be, Tensor<T>{tmp.get(), g.E, g.R, g.shape}, gin[0]);
}

template <class T>
void UnaryOp<T>::rvjp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, const Tensor<T>& g, const Tensor<T>& dg,
                      const std::vector<Tensor<T>>& gin) {
  // ġ_in = φ''(z)·ṫ·ḡ + φ'(z)·ġ_out
  if (!gin[0] || (!dg && !t[0])) return;
  const Tensor<T>& z = c.in[0];
  const int64_t E = gin[0].E, R = gin[0].R;
  // Work in the layout of the per-example result (E_max rows), then add into gin.
  const int64_t Emax = std::max({z.E, t[0] ? t[0].E : 1, dg ? dg.E : 1, g ? g.E : 1});
  (void)E;
  Buffer<T> tmp(c.be, static_cast<size_t>(Emax * R * z.size()));
  Tensor<T> work{tmp.get(), Emax, R, z.shape};
  if (dg) add_into(c.be, dg, work);
  if (t[0] && g && fn_.kind != Activation::kIdentity) {
    if (g.E != Emax || t[0].E != Emax || g.R != 1)
      throw Error(ErrorCode::kInternal, "unary rvjp: primal cotangent and tangent layouts do not match");
    c.be.rop_activation_backward(fn_, z.E == 1 ? 1 : Emax, z.E == 1 ? Emax * R : R, z.size(), z.data, t[0].data,
                                 g.data, work.data);
  } else {
    c.be.scale_by_activation_derivative(fn_, z.E, z.E == 1 ? Emax * R : R, z.size(), z.data, work.data);
  }
  add_into(c.be, work, gin[0]);
}

// ---- BilinearOp ----

template <class T>
void BilinearOp<T>::forward(const OpCall<T>& c, Tensor<T> out) {
  c.be.fill(out.data, static_cast<size_t>(out.count()), T(0));
  apply(c, c.in[0], c.in[1], out);
}

template <class T>
void BilinearOp<T>::jvp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, Tensor<T> out) {
  if (t[0]) apply(c, t[0], c.in[1], out);
  if (t[1]) apply(c, c.in[0], t[1], out);
}

template <class T>
void BilinearOp<T>::vjp(const OpCall<T>& c, const Tensor<T>& g, const std::vector<Tensor<T>>& gin) {
  if (!g) return;
  if (gin[0]) transpose_a(c, g, c.in[1], gin[0]);
  if (gin[1]) transpose_b(c, g, c.in[0], gin[1]);
}

template <class T>
void BilinearOp<T>::rvjp(const OpCall<T>& c, const std::vector<Tensor<T>>& t, const Tensor<T>& g, const Tensor<T>& dg,
                         const std::vector<Tensor<T>>& gin) {
  if (gin[0]) {
    if (dg) transpose_a(c, dg, c.in[1], gin[0]);
    if (t[1] && g) transpose_a(c, g, t[1], gin[0]);
  }
  if (gin[1]) {
    if (dg) transpose_b(c, dg, c.in[0], gin[1]);
    if (t[0] && g) transpose_b(c, g, t[0], gin[1]);
  }
}

#define BASIN_INSTANTIATE(T)                                                          \
  template void add_into<T>(Backend<T>&, const Tensor<T>&, const Tensor<T>&);         \
  template Tensor<T> tensor_in<T>(Buffer<T>&, Backend<T>&, int64_t, int64_t, const Shape&); \
  template class LinearOp<T>;                                                         \
  template class UnaryOp<T>;                                                          \
  template class BilinearOp<T>;
BASIN_INSTANTIATE(double)
BASIN_INSTANTIATE(float)
#undef BASIN_INSTANTIATE

}  // namespace basin
