#include "block_cache.hpp"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

namespace basin::cpu {

namespace {
// Large blocks are mapped and unmapped directly: malloc would serve sizes under its (rising,
// up to 32 MiB) mmap threshold from its heap, where freed blocks fragment it and stay resident,
// so the process's footprint would grow past the peak of blocks in use.
// Blocks of 2 MiB and more ask for transparent huge pages: a fault per 2 MiB instead of per 4 KiB.
void* map_zeroed(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
#ifdef MADV_HUGEPAGE
  if (bytes >= (size_t(2) << 20)) madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}
void unmap(void* p, size_t bytes) noexcept { munmap(p, bytes); }
}  // namespace

BlockCache::~BlockCache() {
  for (const Cached& c : cached_) unmap(c.p, c.bytes);
  for (const auto& [p, bytes] : live_) unmap(p, bytes);  // leaked Buffers, if any
}

size_t BlockCache::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_bytes_;
}

void BlockCache::free_cached_locked(size_t at_least) noexcept {
  // Oldest first: the most recently freed sizes are the likeliest to be asked for again.
  size_t freed = 0;
  while (!cached_.empty() && freed < at_least) {
    const Cached c = cached_.back();
    cached_.pop_back();
    unmap(c.p, c.bytes);
    cached_bytes_ -= c.bytes;
    freed += c.bytes;
  }
}

void* BlockCache::allocate(size_t bytes) {
  if (bytes < kMinBytes) return std::calloc(bytes, 1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    // The smallest cached block that fits, at most twice the request: its pages are resident
    // already (a fresh mapping costs a page fault per 4 KiB).
    auto best = cached_.end();
    for (auto it = cached_.begin(); it != cached_.end(); ++it)
      if (it->bytes >= bytes && it->bytes / 2 <= bytes && (best == cached_.end() || it->bytes < best->bytes)) best = it;
    if (best != cached_.end()) {
      void* p = best->p;
      live_.emplace(p, best->bytes);  // may throw bad_alloc: the block stays cached
      cached_bytes_ -= best->bytes;
      cached_.erase(best);
      std::memset(p, 0, bytes);
      return p;
    }
    free_cached_locked(bytes);
  }
  void* p = map_zeroed(bytes);
  if (p == nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    free_cached_locked(cached_bytes_);
    p = map_zeroed(bytes);
    if (p == nullptr) return nullptr;
  }
  std::lock_guard<std::mutex> lock(mu_);
  try {
    live_.emplace(p, bytes);
  } catch (...) {  // no memory for the bookkeeping: no block either
    unmap(p, bytes);
    return nullptr;
  }
  return p;
}

void BlockCache::release(void* p) noexcept {
  if (p == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = live_.find(p);
  if (it == live_.end()) {  // a small block
    std::free(p);
    return;
  }
  const size_t bytes = it->second;
  live_.erase(it);
  try {
    cached_.push_front(Cached{p, bytes});
    cached_bytes_ += bytes;
  } catch (...) {  // no memory for the list node: give the block back instead
    unmap(p, bytes);
  }
}

}  // namespace basin::cpu
