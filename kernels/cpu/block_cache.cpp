#include "block_cache.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace basin::cpu {

namespace {
// Blocks of 16 MiB and more are mapped and unmapped directly, with transparent huge pages (a fault
// per 2 MiB instead of per 4 KiB): malloc would serve sizes under its mmap threshold (which rises
// to 32 MiB as large blocks are freed) from its heap, where freed blocks fragment it and stay
// resident, so the process's footprint would grow past the peak of blocks in use. Smaller blocks
// come from malloc, whose heap reuses their pages without faults. A block's size tells which.
constexpr size_t kMapBytes = size_t(16) << 20;
void advise_huge_pages(void* p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  madvise(p, bytes, MADV_HUGEPAGE);
#endif
}
void* get_zeroed(size_t bytes) {
  if (bytes < kMapBytes) return std::calloc(bytes, 1);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  advise_huge_pages(p, bytes);
  return p;
}
void put_back(void* p, size_t bytes) noexcept {
  if (bytes < kMapBytes)
    std::free(p);
  else
    munmap(p, bytes);
}
}  // namespace

BlockCache::~BlockCache() {
  for (const Cached& c : cached_) put_back(c.p, c.bytes);
  for (const auto& [p, bytes] : live_) put_back(p, bytes);  // leaked Buffers, if any
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
    put_back(c.p, c.bytes);
    cached_bytes_ -= c.bytes;
    freed += c.bytes;
  }
}

// A mapped request no cached block fits: a cached mapped block is resized to it (mremap keeps
// its resident pages, so only growth faults): the largest smaller one grows, else the smallest
// larger one shrinks (its tail goes back to the system). Growth first frees other cached blocks
// totalling the growth, as a miss does.
void* BlockCache::resize_cached_locked(size_t bytes) {
  if (bytes < kMapBytes) return nullptr;
  auto grow = cached_.end(), shrink = cached_.end();  // the largest smaller, the smallest larger
  for (auto it = cached_.begin(); it != cached_.end(); ++it) {
    if (it->bytes < kMapBytes) continue;
    if (it->bytes < bytes && (grow == cached_.end() || it->bytes > grow->bytes)) grow = it;
    if (it->bytes >= bytes && (shrink == cached_.end() || it->bytes < shrink->bytes)) shrink = it;
  }
  const auto pick = grow != cached_.end() ? grow : shrink;
  if (pick == cached_.end()) return nullptr;
  const Cached c = *pick;
  cached_.erase(pick);
  cached_bytes_ -= c.bytes;
  if (c.bytes < bytes) free_cached_locked(bytes - c.bytes);
  void* q = mremap(c.p, c.bytes, bytes, MREMAP_MAYMOVE);
  if (q == MAP_FAILED) {
    put_back(c.p, c.bytes);
    return nullptr;
  }
  advise_huge_pages(q, bytes);
  try {
    live_.emplace(q, bytes);
  } catch (...) {
    put_back(q, bytes);
    return nullptr;
  }
  std::memset(q, 0, std::min(c.bytes, bytes));  // a grown tail is zero already
  return q;
}

void* BlockCache::allocate(size_t bytes) {
  if (bytes < kMinBytes) return std::calloc(bytes, 1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    // The smallest cached block that fits, at most 1/8 larger: its pages are resident already.
    auto best = cached_.end();
    for (auto it = cached_.begin(); it != cached_.end(); ++it)
      if (it->bytes >= bytes && it->bytes - bytes <= bytes / 8 && (best == cached_.end() || it->bytes < best->bytes))
        best = it;
    if (best != cached_.end()) {
      void* p = best->p;
      live_.emplace(p, best->bytes);  // may throw bad_alloc: the block stays cached
      cached_bytes_ -= best->bytes;
      cached_.erase(best);
      std::memset(p, 0, bytes);
      return p;
    }
    if (void* p = resize_cached_locked(bytes)) return p;
    free_cached_locked(bytes);
  }
  void* p = get_zeroed(bytes);
  if (p == nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    free_cached_locked(cached_bytes_);
    p = get_zeroed(bytes);
    if (p == nullptr) return nullptr;
  }
  std::lock_guard<std::mutex> lock(mu_);
  try {
    live_.emplace(p, bytes);
  } catch (...) {  // no memory for the bookkeeping: no block either
    put_back(p, bytes);
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
    put_back(p, bytes);
  }
}

}  // namespace basin::cpu
