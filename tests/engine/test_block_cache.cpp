// The CPU backend's cache of freed large blocks (kernels/cpu/block_cache.hpp): blocks come back
// zeroed, are reused only for a fitting size, and the footprint (in use + cached) never exceeds
// the peak of bytes in use.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "cpu/block_cache.hpp"

namespace basin::cpu {
namespace {

constexpr size_t kBig = BlockCache::kMinBytes * 4;

bool all_zero(const void* p, size_t bytes) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < bytes; ++i)
    if (b[i] != 0) return false;
  return true;
}

TEST(BlockCache, ReusesAFreedBlockOfTheSameSizeZeroed) {
  BlockCache cache;
  void* a = cache.allocate(kBig);
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(all_zero(a, kBig));
  std::memset(a, 0xab, kBig);
  cache.release(a);
  EXPECT_EQ(cache.cached_bytes(), kBig);
  void* b = cache.allocate(kBig - 64);  // within 1/8: the same block
  EXPECT_EQ(b, a);
  EXPECT_TRUE(all_zero(b, kBig - 64));
  EXPECT_EQ(cache.cached_bytes(), 0u);
  cache.release(b);
}

// Mapped blocks (16 MiB and more) are resized for a request no cached block fits: grown (its
// first part zeroed again, the tail fresh) or shrunk, never a second block beside the cached one.
TEST(BlockCache, ResizesAMappedBlockForAnotherSize) {
  constexpr size_t kMapped = size_t(16) << 20;
  BlockCache cache;
  void* a = cache.allocate(kMapped);
  ASSERT_NE(a, nullptr);
  std::memset(a, 0xcd, kMapped);
  cache.release(a);
  void* b = cache.allocate(kMapped + kMapped / 2);  // grown
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(cache.cached_bytes(), 0u);
  EXPECT_TRUE(all_zero(b, kMapped + kMapped / 2));
  std::memset(b, 0xef, kMapped + kMapped / 2);
  cache.release(b);
  EXPECT_EQ(cache.cached_bytes(), kMapped + kMapped / 2);
  const size_t smaller = kMapped + kMapped / 4;  // 20 MiB: 4 MiB below the cached 24, over 1/8
  void* c = cache.allocate(smaller);           // shrunk
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(cache.cached_bytes(), 0u);
  EXPECT_TRUE(all_zero(c, smaller));
  cache.release(c);
  EXPECT_EQ(cache.cached_bytes(), smaller);
}

TEST(BlockCache, DoesNotHandOutABlockMuchLargerThanAsked) {
  BlockCache cache;
  void* a = cache.allocate(2 * kBig);
  cache.release(a);
  void* b = cache.allocate(kBig);  // half the cached block: a miss, and the cached one is freed
  EXPECT_TRUE(all_zero(b, kBig));
  EXPECT_EQ(cache.cached_bytes(), 0u);
  cache.release(b);
}

TEST(BlockCache, FootprintNeverExceedsThePeakInUse) {
  BlockCache cache;
  // A pattern of sizes that never repeats exactly: in use peaks at 3 blocks of ~kBig.
  size_t in_use = 0, peak = 0;
  std::vector<std::pair<void*, size_t>> held;
  for (int step = 0; step < 40; ++step) {
    const size_t bytes = kBig + static_cast<size_t>(step % 7) * (kBig / 3);
    void* p = cache.allocate(bytes);
    ASSERT_NE(p, nullptr);
    ASSERT_TRUE(all_zero(p, bytes));
    std::memset(p, 1, bytes);
    held.emplace_back(p, bytes);
    in_use += bytes;
    peak = std::max(peak, in_use);
    if (held.size() == 3) {
      for (auto& [q, n] : held) {
        cache.release(q);
        in_use -= n;
      }
      held.clear();
    }
    // Cached blocks are at most 1/8 larger than what they were asked for.
    EXPECT_LE(in_use + cache.cached_bytes(), peak + peak / 8) << "step " << step;
  }
  for (auto& [q, n] : held) cache.release(q);
}

TEST(BlockCache, SmallBlocksBypassTheCache) {
  BlockCache cache;
  void* a = cache.allocate(1024);
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(all_zero(a, 1024));
  cache.release(a);
  EXPECT_EQ(cache.cached_bytes(), 0u);
  cache.release(nullptr);
}

}  // namespace
}  // namespace basin::cpu
