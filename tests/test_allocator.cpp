// The caching allocator: large buffers are reused instead of faulted in again.
#include <cstring>

#include "runtime/allocator.h"
#include "tests/helpers.h"

using namespace bj;

TEST_CASE("a freed large block is reused by the next allocation of its size") {
  rt::empty_cache();
  const size_t bytes = size_t{64} << 20;
  void* first;
  {
    auto s = rt::make_storage(bytes);
    first = s->data();
    std::memset(s->data(), 1, bytes);
  }
  auto before = rt::allocator_stats();
  CHECK(before.cached_bytes >= bytes);
  {
    auto s = rt::make_storage(bytes - 100);  // rounds to the same block
    CHECK(s->data() == first);
  }
  auto after = rt::allocator_stats();
  CHECK(after.cache_hits == before.cache_hits + 1);
  CHECK(after.system_allocs == before.system_allocs);
  rt::empty_cache();
  CHECK(rt::allocator_stats().cached_bytes == 0);
}

TEST_CASE("live storages never overlap and small sizes reuse their bucket") {
  std::vector<std::shared_ptr<rt::Storage>> live;
  for (size_t b : {1, 63, 64, 65, 1000, 4096, 100000, 1 << 20, (1 << 20) + 1, 3 << 20}) live.push_back(rt::make_storage(b));
  for (size_t i = 0; i < live.size(); ++i) {
    CHECK(reinterpret_cast<uintptr_t>(live[i]->data()) % 64 == 0);
    for (size_t j = i + 1; j < live.size(); ++j) {
      auto a = static_cast<char*>(live[i]->data()), b = static_cast<char*>(live[j]->data());
      bool disjoint = a + live[i]->bytes() <= b || b + live[j]->bytes() <= a;
      CHECK(disjoint);
    }
  }
  void* p = live[4]->data();
  live[4].reset();
  CHECK(rt::make_storage(1000)->data() == p);
}

TEST_CASE("tensors of a repeated large op reuse storage") {
  Tensor x = ones({1 << 22});
  auto run = [&] {
    Tensor y = x * 2 + 1;
    CHECK(y.data<float>()[17] == 3);
  };
  run();  // warms the cache
  auto s0 = rt::allocator_stats();
  for (int i = 0; i < 5; ++i) run();
  auto s1 = rt::allocator_stats();
  CHECK(s1.system_allocs == s0.system_allocs);
  CHECK(s1.cache_hits > s0.cache_hits);
}

TEST_CASE("the cache limit returns blocks to the system") {
  size_t old = rt::cache_limit();
  rt::set_cache_limit(0);
  { auto s = rt::make_storage(8 << 20); }
  CHECK(rt::allocator_stats().cached_bytes == 0);
  rt::set_cache_limit(old);
}
