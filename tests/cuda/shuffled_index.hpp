// for_each_index(count, body): body(idx) for every idx in [0, count), in a shuffled order -- the
// host stand-in for a grid-stride loop, whose threads run in no particular order. Shared by the
// host emulation of the CUDA backend and its op kernels.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace basin {
namespace test {

template <class Body>
void for_each_index(int64_t count, Body body) {
  static thread_local std::mt19937_64 rng(777);
  std::vector<int64_t> order(static_cast<size_t>(std::max<int64_t>(count, 0)));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::shuffle(order.begin(), order.end(), rng);  // threads run in no particular order
  for (int64_t idx : order) body(idx);
}

}  // namespace test
}  // namespace basin
