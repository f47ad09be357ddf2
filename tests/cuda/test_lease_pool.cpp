// The device context's pool of streams and handles (kernels/cuda/lease_pool.hpp), with a stand-in
// resource: a leased resource is its holder's alone, returned ones are reused, and the pool
// never makes more than the most holders there were at once -- under concurrent jobs.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "lease_pool.hpp"

namespace basin {
namespace {

struct FakeStream {
  int id = 0;
  std::atomic<int> holders{0};
};

TEST(LeasePool, ReusesReturnedResourcesInsteadOfMakingNewOnes) {
  cuda::LeasePool<FakeStream> pool;
  int made = 0;
  auto make = [&] {
    auto s = std::make_unique<FakeStream>();
    s->id = ++made;
    return s;
  };
  auto a = pool.take(make);
  auto b = pool.take(make);
  EXPECT_NE(a->id, b->id);
  EXPECT_EQ(pool.created(), 2u);
  FakeStream* a_ptr = a.get();
  pool.put(std::move(a));
  EXPECT_EQ(pool.idle(), 1u);
  auto c = pool.take(make);  // the returned one, not a new one
  EXPECT_EQ(c.get(), a_ptr);
  EXPECT_EQ(made, 2);
  EXPECT_EQ(pool.created(), 2u);
  pool.put(std::move(b));
  pool.put(std::move(c));
  EXPECT_EQ(pool.idle(), 2u);
}

TEST(LeasePool, AFailedCreationTakesNothingAndLeavesThePoolUsable) {
  cuda::LeasePool<FakeStream> pool;
  EXPECT_THROW(pool.take([]() -> std::unique_ptr<FakeStream> { throw std::runtime_error("no handle"); }),
               std::runtime_error);
  EXPECT_EQ(pool.created(), 0u);
  EXPECT_EQ(pool.idle(), 0u);
  auto s = pool.take([] { return std::make_unique<FakeStream>(); });
  EXPECT_EQ(pool.created(), 1u);
  pool.put(std::move(s));
  EXPECT_EQ(pool.idle(), 1u);
}

TEST(LeasePool, ConcurrentJobsNeverShareAResourceAndCreateAtMostOnePerConcurrentJob) {
  constexpr int kThreads = 6, kJobsPerThread = 300;
  cuda::LeasePool<FakeStream> pool;
  std::atomic<int> made{0}, shared{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int j = 0; j < kJobsPerThread; ++j) {
        auto s = pool.take([&] {
          auto r = std::make_unique<FakeStream>();
          r->id = ++made;
          return r;
        });
        if (s->holders.fetch_add(1) != 0) ++shared;  // someone else holds it too
        if (j % 50 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
        s->holders.fetch_sub(1);
        pool.put(std::move(s));
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(shared.load(), 0);
  EXPECT_GE(made.load(), 1);
  EXPECT_LE(made.load(), kThreads);  // ≤ the most jobs ever running at once
  EXPECT_EQ(pool.created(), static_cast<size_t>(made.load()));
  EXPECT_EQ(pool.idle(), static_cast<size_t>(made.load()));  // all returned
}

}  // namespace
}  // namespace basin
