// Folding aligned layouts into the StridedMaps of the broadcast kernels (broadcast_plan.hpp).
#include "broadcast_plan.hpp"

#include <algorithm>
#include <string>

#include "basin/error.hpp"

namespace basin {
namespace {

// One axis of the iteration space: its size and each operand's stride (0: broadcast along it);
// `reduced`: the destination is 1 there (the source is summed over it).
template <int M>
struct Axis {
  int64_t n = 1;
  int64_t stride[M] = {};
  bool reduced = false;
};

// The sizes of a layout as [E, R, dims...] and its row-major strides (0 where the size is 1).
struct Sizes {
  std::vector<int64_t> n, stride;
};
Sizes sizes_of(const Layout& l) {
  Sizes s;
  s.n.push_back(l.E);
  s.n.push_back(l.R);
  s.n.insert(s.n.end(), l.dims.begin(), l.dims.end());
  s.stride.assign(s.n.size(), 0);
  int64_t step = 1;
  for (size_t d = s.n.size(); d-- > 0;) {
    s.stride[d] = s.n[d] == 1 ? 0 : step;
    step *= s.n[d];
  }
  return s;
}

// Drops size-1 axes, merges neighbours of the same kind that are contiguous in every operand,
// and puts the reduced axes last (stable). Throws when the result exceeds kMaxRank.
template <int M>
std::vector<Axis<M>> fold(const std::vector<Axis<M>>& axes, const GraphNode& node) {
  std::vector<Axis<M>> out;
  for (const Axis<M>& a : axes) {
    if (a.n == 1) continue;
    if (!out.empty() && out.back().reduced == a.reduced) {
      Axis<M>& b = out.back();
      bool contiguous = true;
      for (int m = 0; m < M; ++m) contiguous = contiguous && b.stride[m] == a.stride[m] * a.n;
      if (contiguous) {
        b.n *= a.n;
        for (int m = 0; m < M; ++m) b.stride[m] = a.stride[m];
        continue;
      }
    }
    out.push_back(a);
  }
  std::stable_partition(out.begin(), out.end(), [](const Axis<M>& a) { return !a.reduced; });
  if (static_cast<int>(out.size()) > kMaxRank)
    op_error(node, "the broadcast needs " + std::to_string(out.size()) + " strided dims; at most " +
                       std::to_string(kMaxRank) + " are supported", true);
  return out;
}

template <int M>
StridedMap map_of(const std::vector<Axis<M>>& axes, int m, bool kept_only) {
  StridedMap s;
  for (const Axis<M>& a : axes) {
    if (kept_only && a.reduced) continue;
    s.dims[s.rank] = a.n;
    s.strides[s.rank] = a.stride[m];
    ++s.rank;
  }
  return s;
}

[[noreturn]] void mismatch(const char* what) {
  throw Error(ErrorCode::kInternal, std::string("broadcast: ") + what + " layouts do not broadcast");
}

int64_t count_of(const Layout& l) { return l.E * l.R * shape_numel(l.dims); }

}  // namespace

Shape align_to(const Shape& shape, size_t rank) {
  Shape s(rank - std::min(rank, shape.size()), 1);
  s.insert(s.end(), shape.begin(), shape.end());
  return s;
}

int folded_rank(const std::vector<const Shape*>& dims) {
  // Two adjacent axes merge exactly when the same operands are broadcast along both, so the
  // folded rank is the number of runs of equal broadcast patterns (size-1 axes vanish).
  if (dims.empty()) return 0;
  const size_t rank = dims[0]->size();
  int runs = 0;
  std::vector<bool> prev;
  for (size_t d = 0; d < rank; ++d) {
    int64_t n = 1;
    for (const Shape* s : dims) n = std::max(n, (*s)[d]);
    if (n == 1) continue;
    std::vector<bool> pattern;
    for (const Shape* s : dims) pattern.push_back((*s)[d] == n);
    if (pattern != prev) ++runs;
    prev = pattern;
  }
  return runs;
}

namespace {
// The maps of a reduce_sum / reduce_max from src (layout ls) into dst (layout ld).
struct ReducePlan {
  StridedMap out, in;
  int reduce_rank = 0;
};
ReducePlan plan_reduce(const GraphNode& node, const Layout& ls, const Layout& ld) {
  if (ls.dims.size() != ld.dims.size()) mismatch("reduce: ranks of the");
  const Sizes s = sizes_of(ls), d = sizes_of(ld);
  std::vector<Axis<2>> axes(s.n.size());
  for (size_t i = 0; i < axes.size(); ++i) {
    if (s.n[i] != d.n[i] && s.n[i] != 1 && d.n[i] != 1) mismatch("reduce: source and destination");
    axes[i].n = std::max(s.n[i], d.n[i]);
    axes[i].stride[0] = d.stride[i];
    axes[i].stride[1] = s.stride[i];
    axes[i].reduced = d.n[i] == 1 && s.n[i] != 1;
  }
  const std::vector<Axis<2>> f = fold(axes, node);
  ReducePlan p{map_of(f, 0, true), map_of(f, 1, false), 0};
  for (const Axis<2>& a : f) p.reduce_rank += a.reduced;
  return p;
}
}  // namespace

template <class T>
void accumulate(const OpCall<T>& c, T alpha, const T* src, const Layout& ls, T beta, T* dst, const Layout& ld) {
  if (count_of(ld) == 0) return;
  const ReducePlan p = plan_reduce(c.node, ls, ld);
  c.kernels.reduce_sum(p.out, p.in, p.reduce_rank, alpha, beta, src, dst);
}

template <class T>
void maximum(const OpCall<T>& c, const T* src, const Layout& ls, T* dst, const Layout& ld) {
  if (count_of(ld) == 0) return;
  const ReducePlan p = plan_reduce(c.node, ls, ld);
  c.kernels.reduce_max(p.out, p.in, p.reduce_rank, src, dst);
}

template <class T>
void combine(const OpCall<T>& c, BinaryKind kind, T alpha, const T* a, const Layout& la, const T* b, const Layout& lb,
             T beta, T* dst, const Layout& ld) {
  if (la.dims.size() != ld.dims.size() || lb.dims.size() != ld.dims.size()) mismatch("combine: ranks of the");
  if (count_of(ld) == 0) return;
  const Sizes sa = sizes_of(la), sb = sizes_of(lb), sd = sizes_of(ld);
  const size_t rank = sa.n.size();
  Layout full{std::max({la.E, lb.E, ld.E}), std::max({la.R, lb.R, ld.R}), Shape(ld.dims.size())};
  bool direct = true;  // dst has the full layout: one binary call, no scratch
  std::vector<int64_t> n(rank);
  for (size_t i = 0; i < rank; ++i) {
    n[i] = std::max({sa.n[i], sb.n[i], sd.n[i]});
    for (int64_t x : {sa.n[i], sb.n[i], sd.n[i]})
      if (x != n[i] && x != 1) mismatch("combine: operand");
    if (i >= 2) full.dims[i - 2] = n[i];
    direct = direct && sd.n[i] == n[i];
  }
  Buffer<T> scratch;
  T* out = dst;
  std::vector<int64_t> out_stride = sd.stride;
  if (!direct) {
    scratch = Buffer<T>(c.be, static_cast<size_t>(count_of(full)));
    out = scratch.get();
    out_stride = sizes_of(full).stride;
  }
  std::vector<Axis<3>> axes(rank);
  for (size_t i = 0; i < rank; ++i) {
    axes[i].n = n[i];
    axes[i].stride[0] = out_stride[i];
    axes[i].stride[1] = sa.stride[i];
    axes[i].stride[2] = sb.stride[i];
  }
  const std::vector<Axis<3>> f = fold(axes, c.node);
  if (full.E * full.R * shape_numel(full.dims) > 0)
    c.kernels.binary(kind, map_of(f, 0, false), map_of(f, 1, false), map_of(f, 2, false), alpha,
                         direct ? beta : T(0), a, b, out);
  if (!direct) accumulate(c, T(1), out, full, beta, dst, ld);
}

#define BASIN_INSTANTIATE(T)                                                                                     \
  template void accumulate<T>(const OpCall<T>&, T, const T*, const Layout&, T, T*, const Layout&);              \
  template void maximum<T>(const OpCall<T>&, const T*, const Layout&, T*, const Layout&);                      \
  template void combine<T>(const OpCall<T>&, BinaryKind, T, const T*, const Layout&, const T*, const Layout&, T, \
                           T*, const Layout&);
BASIN_INSTANTIATE(double)
BASIN_INSTANTIATE(float)
#undef BASIN_INSTANTIATE

}  // namespace basin
