// A pool of reusable resources handed out one holder at a time: the device context's streams and
// library handles (device_context.hpp). Plain C++ (no CUDA), so its concurrency contract is
// tested on the host (tests/cuda/test_lease_pool.cpp).
//
// Contract:
//   * take() returns an idle resource when there is one, or one made by `make` (called outside
//     the lock, so a slow creation does not block returns); it is the caller's alone until put();
//   * put() makes it idle again, for the next take() on any thread;
//   * the pool never holds more resources than the most holders there ever were at once.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace basin {
namespace cuda {

template <class R>
class LeasePool {
 public:
  template <class Make>
  std::unique_ptr<R> take(Make&& make) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        std::unique_ptr<R> r = std::move(idle_.back());
        idle_.pop_back();
        return r;
      }
    }
    std::unique_ptr<R> r = std::forward<Make>(make)();  // may throw: nothing was taken
    std::lock_guard<std::mutex> lock(mu_);
    ++created_;
    return r;
  }

  void put(std::unique_ptr<R> r) {
    if (!r) return;
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(std::move(r));
  }

  size_t created() const {
    std::lock_guard<std::mutex> lock(mu_);
    return created_;
  }
  size_t idle() const {
    std::lock_guard<std::mutex> lock(mu_);
    return idle_.size();
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<R>> idle_;
  size_t created_ = 0;
};

}  // namespace cuda
}  // namespace basin
