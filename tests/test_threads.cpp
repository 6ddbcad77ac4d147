// The runtime's thread pool (runtime/threads.h): every chunk runs exactly
// once on its fixed bounds whoever runs it, nested loops run serially,
// callers from many threads at once all finish, and a loop does not wait
// for a worker that is slow to start.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/kernels.h"
#include "runtime/threads.h"

using namespace bj;

namespace {
/// Sets the thread count for a test and restores it after.
struct Threads {
  int saved = rt::num_threads();
  explicit Threads(int n) { rt::set_num_threads(n); }
  ~Threads() { rt::set_num_threads(saved); }
};
}  // namespace

TEST_CASE("runtime threads: parallel_chunks runs each chunk once, on its fixed bounds, at any thread count") {
  for (int threads : {1, 2, 3, 4}) {
    CAPTURE(threads);
    Threads t(threads);
    for (int64_t n : {0, 1, 7, 1000, 100003}) {
      for (int chunks : {1, 2, 3, 8}) {
        CAPTURE(n);
        CAPTURE(chunks);
        std::mutex mu;
        std::vector<std::pair<int64_t, int64_t>> got, want;
        rt::parallel_chunks(n, chunks, [&](int64_t b, int64_t e) {
          std::lock_guard lock(mu);
          got.push_back({b, e});
        });
        for (int c = 0; c < chunks; ++c) want.push_back({n * c / chunks, n * (c + 1) / chunks});
        std::sort(got.begin(), got.end());
        CHECK(got == want);
      }
    }
  }
}

TEST_CASE("runtime threads: a loop inside a chunk runs serially on that chunk's thread") {
  Threads t(2);
  std::atomic<int> inner_calls{0}, mismatched{0};
  rt::parallel_chunks(4, 4, [&](int64_t, int64_t) {
    const auto outer = std::this_thread::get_id();
    rt::parallel_chunks(10, 5, [&](int64_t, int64_t) {
      ++inner_calls;
      if (std::this_thread::get_id() != outer) ++mismatched;
    });
  });
  CHECK(inner_calls == 20);
  CHECK(mismatched == 0);
}

TEST_CASE("runtime threads: 8 threads each running parallel loops at once all get every chunk") {
  Threads t(2);
  std::vector<std::thread> callers;
  std::vector<int64_t> sums(8, 0);
  for (int c = 0; c < 8; ++c)
    callers.emplace_back([&, c] {
      for (int round = 0; round < 200; ++round) {
        std::atomic<int64_t> sum{0};
        rt::parallel_chunks(1000, 4, [&](int64_t b, int64_t e) {
          int64_t s = 0;
          for (int64_t i = b; i < e; ++i) s += i;
          sum += s;
        });
        sums[static_cast<size_t>(c)] += sum.load();
      }
    });
  for (auto& th : callers) th.join();
  for (int64_t s : sums) CHECK(s == 200 * (999 * 1000 / 2));
  CHECK(rt::pool_workers() == 1);
}

TEST_CASE("runtime threads: while one thread's loop holds the pool, another thread's loop runs alone and does not wait") {
  Threads t(2);
  std::atomic<bool> release{false}, holding{false};
  std::thread holder([&] {
    rt::parallel_chunks(2, 2, [&](int64_t b, int64_t) {
      if (b != 0) return;
      holding = true;
      while (!release) std::this_thread::yield();  // chunk 0 keeps the pool busy
    });
  });
  while (!holding) std::this_thread::yield();
  std::vector<std::thread::id> ran;
  rt::parallel_chunks(100, 4, [&](int64_t, int64_t) { ran.push_back(std::this_thread::get_id()); });
  release = true;
  holder.join();
  REQUIRE(ran.size() == 4);
  for (const auto& id : ran) CHECK(id == std::this_thread::get_id());
}
