// Inputs for the op kernel tests (basin/op_kernels.hpp), shared by the host tests
// (test_cuda_op_kernels.cpp: emulated CUDA op kernels vs naive references and vs the CPU's) and
// the GPU parity suite (test_gpu_parity.cpp: the CUDA backend's vs the CPU's). Index maps are
// random views with permuted axes, padding between rows, offsets and broadcast (stride 0) axes;
// window geometries cover strides, padding on each side, dilation, 1-D and 2-D.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "basin/op_kernels.hpp"

namespace basin {
namespace test {

// A view over `dims`: axes laid out in memory in the order `perm` (perm[0] outermost), each
// memory row padded by `pad` elements, `offset` elements in, axes with broadcast[d] read with
// stride 0. *extent = the number of elements the view's buffer needs.
inline StridedMap strided_view(const std::vector<int64_t>& dims, const std::vector<int>& perm,
                               const std::vector<bool>& broadcast, int64_t pad, int64_t offset, size_t* extent) {
  StridedMap m;
  m.rank = static_cast<int>(dims.size());
  m.offset = offset;
  int64_t stride = 1;
  for (int k = m.rank - 1; k >= 0; --k) {
    const int d = perm[k];
    m.dims[d] = dims[d];
    m.strides[d] = broadcast[d] ? 0 : stride;
    if (!broadcast[d]) stride *= dims[d] + (k == m.rank - 1 ? pad : 0);
  }
  int64_t last = offset;
  for (int d = 0; d < m.rank; ++d) last += (dims[d] - 1) * m.strides[d];
  *extent = static_cast<size_t>(last + 1 + pad);
  for (int d = 0; d < m.rank; ++d)
    if (dims[d] == 0) *extent = static_cast<size_t>(offset + 1);
  return m;
}

struct MapRng {
  std::mt19937_64 rng;
  explicit MapRng(uint64_t seed) : rng(seed) {}
  int64_t uniform(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }
  std::vector<int64_t> dims(int rank, int64_t lo = 1, int64_t hi = 4) {
    std::vector<int64_t> d(static_cast<size_t>(rank));
    for (auto& x : d) x = uniform(lo, hi);
    return d;
  }
  std::vector<int> perm(int rank, bool identity) {
    std::vector<int> p(static_cast<size_t>(rank));
    std::iota(p.begin(), p.end(), 0);
    if (!identity) std::shuffle(p.begin(), p.end(), rng);
    return p;
  }
  std::vector<bool> mask(int rank, double p_true) {
    std::vector<bool> m(static_cast<size_t>(rank));
    for (size_t i = 0; i < m.size(); ++i) m[i] = std::bernoulli_distribution(p_true)(rng);
    return m;
  }
};

struct CopyCase {
  std::string name;
  StridedMap out, in;
  size_t dst_size = 0, src_size = 0;
};

// Destinations are injective (no broadcast axes); sources may broadcast.
inline std::vector<CopyCase> strided_copy_cases(uint64_t seed) {
  std::vector<CopyCase> cases;
  MapRng r(seed);
  for (int c = 0; c < 24; ++c) {
    const int rank = static_cast<int>(c % 7 == 0 ? 0 : r.uniform(1, 6));
    const std::vector<int64_t> dims = r.dims(rank);
    CopyCase k;
    const bool plain = c % 4 == 0;  // both contiguous: folds to one dimension
    k.out = strided_view(dims, r.perm(rank, plain || c % 3 == 0), std::vector<bool>(rank, false),
                         plain ? 0 : r.uniform(0, 2), plain ? 0 : r.uniform(0, 3), &k.dst_size);
    k.in = strided_view(dims, r.perm(rank, plain), plain ? std::vector<bool>(rank, false) : r.mask(rank, 0.25),
                        plain ? 0 : r.uniform(0, 2), plain ? 0 : r.uniform(0, 5), &k.src_size);
    k.name = "copy case " + std::to_string(c) + " rank " + std::to_string(rank);
    cases.push_back(k);
  }
  // A big contiguous one (many grid-stride iterations per thread on a device).
  CopyCase big;
  big.out = strided_view({3, 70000}, {0, 1}, {false, false}, 0, 0, &big.dst_size);
  big.in = strided_view({3, 70000}, {1, 0}, {false, false}, 0, 0, &big.src_size);
  big.name = "copy 3x70000 transposed source";
  cases.push_back(big);
  return cases;
}

struct BinaryCase {
  std::string name;
  BinaryKind kind = BinaryKind::kAdd;
  StridedMap out, a, b;
  size_t dst_size = 0, a_size = 0, b_size = 0;
};

inline std::vector<BinaryCase> binary_cases(uint64_t seed) {
  std::vector<BinaryCase> cases;
  MapRng r(seed);
  for (int c = 0; c < 20; ++c) {
    const int rank = static_cast<int>(c % 9 == 0 ? 0 : r.uniform(1, 5));
    const std::vector<int64_t> dims = r.dims(rank);
    BinaryCase k;
    k.kind = c % 2 == 0 ? BinaryKind::kAdd : BinaryKind::kMul;
    k.out = strided_view(dims, r.perm(rank, c % 3 != 0), std::vector<bool>(rank, false), r.uniform(0, 1),
                         r.uniform(0, 2), &k.dst_size);
    k.a = strided_view(dims, r.perm(rank, c % 4 == 0), r.mask(rank, 0.2), r.uniform(0, 1), r.uniform(0, 3), &k.a_size);
    k.b = strided_view(dims, r.perm(rank, true), r.mask(rank, 0.5), 0, r.uniform(0, 3), &k.b_size);
    k.name = std::string(k.kind == BinaryKind::kAdd ? "add" : "mul") + " case " + std::to_string(c) + " rank " +
             std::to_string(rank);
    cases.push_back(k);
  }
  return cases;
}

struct ReduceCase {
  std::string name;
  StridedMap out, in;
  int reduce_rank = 0;
  size_t dst_size = 0, src_size = 0;
};

// in_map: a permuted view of a contiguous source (the reduced axes are the trailing dims of the
// map, anywhere in memory); out_map: an injective view over the kept dims.
inline std::vector<ReduceCase> reduce_sum_cases(uint64_t seed) {
  std::vector<ReduceCase> cases;
  MapRng r(seed);
  for (int c = 0; c < 20; ++c) {
    const int rank = static_cast<int>(r.uniform(1, 5));
    const int reduce_rank = static_cast<int>(c % 5 == 0 ? rank : r.uniform(0, rank));
    std::vector<int64_t> dims = r.dims(rank);
    ReduceCase k;
    k.reduce_rank = reduce_rank;
    k.in = strided_view(dims, r.perm(rank, c % 3 == 0), r.mask(rank, 0.15), r.uniform(0, 1), r.uniform(0, 3),
                        &k.src_size);
    const int kept = rank - reduce_rank;
    std::vector<int64_t> kept_dims(dims.begin(), dims.begin() + kept);
    k.out = strided_view(kept_dims, r.perm(kept, c % 2 == 0), std::vector<bool>(kept, false), r.uniform(0, 1),
                         r.uniform(0, 2), &k.dst_size);
    k.name = "reduce case " + std::to_string(c) + " rank " + std::to_string(rank) + " reducing " +
             std::to_string(reduce_rank);
    cases.push_back(k);
  }
  // Summing examples: [E = 300, d = 7] → [7], the reduced axis outermost in memory.
  ReduceCase e;
  e.reduce_rank = 1;
  e.in = strided_view({7, 300}, {1, 0}, {false, false}, 0, 0, &e.src_size);
  e.out = strided_view({7}, {0}, {false}, 0, 0, &e.dst_size);
  e.name = "reduce 300 examples of 7";
  cases.push_back(e);
  return cases;
}

struct WindowCase {
  std::string name;
  WindowGeometry g;
  int64_t batch = 1;
};

// out = ⌊(in + pads − dilation·(kernel − 1) − 1) / stride⌋ + 1 (ceil_mode off).
inline int64_t window_out(int64_t in, int64_t k, int64_t s, int64_t pad_begin, int64_t pad_end, int64_t dil) {
  return (in + pad_begin + pad_end - dil * (k - 1) - 1) / s + 1;
}

inline WindowGeometry window(int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                             int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dh, int64_t dw) {
  WindowGeometry g;
  g.channels = c;
  g.height = h;
  g.width = w;
  g.kernel_h = kh;
  g.kernel_w = kw;
  g.stride_h = sh;
  g.stride_w = sw;
  g.pad_top = pt;
  g.pad_left = pl;
  g.pad_bottom = pb;
  g.pad_right = pr;
  g.dilation_h = dh;
  g.dilation_w = dw;
  g.out_h = window_out(h, kh, sh, pt, pb, dh);
  g.out_w = window_out(w, kw, sw, pl, pr, dw);
  return g;
}

inline std::vector<WindowCase> window_cases() {
  return {
      {"3x3 stride 1 pad 1", window(2, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 3},
      {"3x3 stride 2 pad 1 (odd size)", window(3, 7, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1), 2},
      {"2x2 stride 2 no pad", window(1, 6, 8, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1), 4},
      {"3x3 dilation 2 pad 2", window(2, 9, 8, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2), 2},
      {"asymmetric pads and strides", window(2, 6, 7, 2, 3, 2, 1, 0, 2, 1, 0, 1, 1), 2},
      {"kernel larger than stride grid gaps", window(1, 5, 5, 1, 1, 3, 3, 0, 0, 0, 0, 1, 1), 2},
      {"5x5 kernel on 4x4 with pad 2", window(1, 4, 4, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1), 1},
      {"1-D kernel 3 stride 2 pad 1", window(3, 1, 11, 1, 3, 1, 2, 0, 1, 0, 1, 1, 1), 3},
      {"1-D dilation 3", window(2, 1, 13, 1, 3, 1, 1, 0, 0, 0, 0, 1, 3), 2},
      {"1x1 conv", window(4, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1), 2},
  };
}

// ceil_mode's output size (PyTorch): ⌈…⌉ + 1, less one when the last window would start in the
// end padding.
inline int64_t window_out_ceil(int64_t in, int64_t k, int64_t s, int64_t pad_begin, int64_t pad_end, int64_t dil) {
  const int64_t span = in + pad_begin + pad_end - dil * (k - 1) - 1;
  int64_t out = (span + s - 1) / s + 1;
  if ((out - 1) * s >= in + pad_begin) --out;
  return out;
}

struct PoolCase {
  std::string name;
  WindowGeometry g;
  int64_t examples = 1, rows_per_example = 1;  // max_pool_apply / _transpose: (E·R) rows
};

// Every window holds at least one input element (the ops refuse other geometries); average
// pooling has dilation 1.
inline std::vector<PoolCase> pool_cases() {
  std::vector<PoolCase> cases = {
      {"2x2 stride 2", window(2, 6, 6, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1), 2, 3},
      {"3x3 stride 2 pad 1", window(3, 7, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1), 2, 2},
      {"3x3 stride 1 pad 1 (overlapping)", window(1, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 3, 1},
      {"asymmetric 2x3 stride (1,2) pads", window(2, 5, 7, 2, 3, 1, 2, 1, 0, 0, 1, 1, 1), 1, 4},
      {"1-D kernel 3 stride 2 pad 1", window(3, 1, 10, 1, 3, 1, 2, 0, 1, 0, 1, 1, 1), 2, 2},
      {"1-D kernel 2 stride 2", window(2, 1, 9, 1, 2, 1, 2, 0, 0, 0, 0, 1, 1), 3, 1},
  };
  // ceil_mode: the last window runs past the padded input and is clipped.
  WindowGeometry c = window(2, 7, 7, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1);
  c.out_h = window_out_ceil(7, 2, 2, 0, 0, 1);
  c.out_w = window_out_ceil(7, 2, 2, 0, 0, 1);
  cases.push_back({"ceil_mode 2x2 stride 2 on 7x7", c, 2, 2});
  WindowGeometry c2 = window(1, 6, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1);
  c2.out_h = window_out_ceil(6, 3, 2, 1, 1, 1);
  c2.out_w = window_out_ceil(5, 3, 2, 1, 1, 1);
  cases.push_back({"ceil_mode 3x3 stride 2 pad 1", c2, 1, 3});
  return cases;
}

// Max pooling also with dilation (average pooling has none).
inline std::vector<PoolCase> max_pool_cases() {
  std::vector<PoolCase> cases = pool_cases();
  cases.push_back({"3x3 dilation 2 pad 2", window(2, 9, 9, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2), 2, 2});
  cases.push_back({"1-D dilation 3", window(1, 1, 12, 1, 3, 1, 2, 0, 1, 0, 1, 1, 3), 2, 1});
  return cases;
}

}  // namespace test
}  // namespace basin
