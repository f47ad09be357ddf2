// Element bodies of the gather kernels (basin/op_kernels.hpp), shared by the CPU loops
// (kernels/cpu/ops/gather.cpp) and the CUDA kernels: ONE output element per index, no atomics
// (docs/ARCHITECTURE.md "Op kernels"). The transpose (a scatter-add of rows) is written in
// gather form: each table-gradient element sums the positions whose index selects its row.
//
// Layouts (GatherGeometry): table [Et, Rt, V, D] (Et, Rt ∈ {1, E}, {1, R}: stride 0 when shared),
// indices [Ei, S] (Ei ∈ {1, E}) holding row numbers as T, rows out [E, R, S, D]. An index
// outside [0, V) selects a zero row (the op refuses such data before it reaches a kernel).
#pragma once

#include <cstdint>

#include "basin/activation.hpp"  // BASIN_HD
#include "basin/op_kernels.hpp"

namespace basin {
namespace kernels {

// The row an index value selects, or −1 when it is out of range.
template <class T>
BASIN_HD inline int64_t gather_row(T v, int64_t vocab) {
  const int64_t r = static_cast<int64_t>(v);
  return (r >= 0 && r < vocab && static_cast<T>(r) == v) ? r : -1;
}

// out[i] = beta·out[i] + alpha·table[e, r, idx[e, s], d] for i = ((e·R + r)·S + s)·D + d.
template <class T>
BASIN_HD inline void gather_rows_at(const GatherGeometry& g, int64_t i, T alpha, T beta, const T* idx, const T* table,
                                    T* out) {
  const int64_t d = i % g.width;
  int64_t rest = i / g.width;
  const int64_t s = rest % g.positions;
  rest /= g.positions;
  const int64_t r = rest % g.rows;
  const int64_t e = rest / g.rows;
  const int64_t row = gather_row(idx[e * g.index_example_stride + s], g.vocab);
  const T v = row < 0 ? T(0) : table[e * g.table_example_stride + r * g.table_row_stride + row * g.width + d];
  out[i] = (beta == T(0) ? T(0) : beta * out[i]) + alpha * v;
}

// The transpose: for i = ((eo·R + r)·V + v)·D + d of gtable [Eo, R, V, D],
//   gtable[i] += alpha · Σ_{e ∈ eo's examples} Σ_s [idx[e, s] = v] · g[e, r, s, d]
// where eo's examples are eo·sum_examples … eo·sum_examples + sum_examples − 1 (sum_examples =
// E when the table's gradient is shared by all examples, Eo = 1; else 1).
template <class T>
BASIN_HD inline void gather_rows_transpose_at(const GatherGeometry& g, int64_t sum_examples, int64_t i, T alpha,
                                              const T* idx, const T* gout, T* gtable) {
  const int64_t d = i % g.width;
  int64_t rest = i / g.width;
  const int64_t v = rest % g.vocab;
  rest /= g.vocab;
  const int64_t r = rest % g.rows;
  const int64_t eo = rest / g.rows;
  T acc = T(0);
  for (int64_t k = 0; k < sum_examples; ++k) {
    const int64_t e = eo * sum_examples + k;
    const T* ix = idx + e * g.index_example_stride;
    const T* gr = gout + (e * g.rows + r) * g.positions * g.width + d;
    for (int64_t s = 0; s < g.positions; ++s)
      if (gather_row(ix[s], g.vocab) == v) acc += gr[s * g.width];
  }
  gtable[i] += alpha * acc;
}

}  // namespace kernels
}  // namespace basin
