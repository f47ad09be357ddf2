// The CPU backend's cache of freed large blocks (docs/ARCHITECTURE.md, "Host memory").
//
// The passes allocate and free the same large buffers again and again (a cotangent per node, a
// per-tensor Jacobian block per example block). Fresh large blocks come from mmap, so each one
// costs a page fault per 4 KiB page -- in a ResNet-20 σ(G) run, over a fifth of the time. The cache
// keeps freed blocks of at least kMinBytes and hands one back, zeroed, for a request of the same
// size (up to 1/8 larger).
//
// It never raises the footprint (bytes in use + bytes cached) above the peak of bytes in use
// (blocks' sizes, so at most 1/8 above the peak asked for): on a miss it first frees cached
// blocks totalling at least the request (or all of them). A reused block is zeroed in full, so
// pages a fresh block would never have touched are resident. Cached memory goes back to the
// system when the backend (one analysis) ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <unordered_map>

namespace basin::cpu {

class BlockCache {
 public:
  static constexpr size_t kMinBytes = size_t(1) << 16;  // smaller blocks: malloc's own free lists

  BlockCache() = default;
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;
  ~BlockCache();

  // Zeroed memory of `bytes` bytes, or nullptr when the system has none.
  void* allocate(size_t bytes);
  void release(void* p) noexcept;

  size_t cached_bytes() const;

 private:
  struct Cached {
    void* p;
    size_t bytes;
  };
  void free_cached_locked(size_t at_least) noexcept;
  void* resize_cached_locked(size_t bytes);

  mutable std::mutex mu_;
  std::unordered_map<void*, size_t> live_;  // large blocks in use → their size
  std::list<Cached> cached_;                // most recently freed first
  size_t cached_bytes_ = 0;
};

}  // namespace basin::cpu
