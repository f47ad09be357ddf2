#include "block_cache.hpp"

#include <cstdlib>
#include <cstring>

namespace basin::cpu {

BlockCache::~BlockCache() {
  for (const Cached& c : cached_) std::free(c.p);
  for (const auto& [p, bytes] : live_) std::free(p);  // leaked Buffers, if any
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
    std::free(c.p);
    cached_bytes_ -= c.bytes;
    freed += c.bytes;
  }
}

void* BlockCache::allocate(size_t bytes) {
  if (bytes < kMinBytes) return std::calloc(bytes, 1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = cached_.begin(); it != cached_.end(); ++it) {
      if (it->bytes < bytes || it->bytes - bytes > bytes / 8) continue;
      void* p = it->p;
      live_.emplace(p, it->bytes);  // may throw bad_alloc: the block stays cached
      cached_bytes_ -= it->bytes;
      cached_.erase(it);
      std::memset(p, 0, bytes);
      return p;
    }
    free_cached_locked(bytes);
  }
  void* p = std::calloc(bytes, 1);
  if (p == nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    free_cached_locked(cached_bytes_);
    p = std::calloc(bytes, 1);
    if (p == nullptr) return nullptr;
  }
  std::lock_guard<std::mutex> lock(mu_);
  try {
    live_.emplace(p, bytes);
  } catch (...) {  // no memory for the bookkeeping: no block either
    std::free(p);
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
    std::free(p);
  }
}

}  // namespace basin::cpu
