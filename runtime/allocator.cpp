// Caching allocator: see allocator.h for the policy.
#include "runtime/allocator.h"

#include "ir/env.h"

#include <sys/mman.h>

#include <bit>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

namespace bj::rt {

uint64_t Storage::next_version() {
  // Each thread takes a block of versions at a time: unique across threads without an atomic
  // operation on one shared counter per write.
  constexpr uint64_t kBlock = 1024;
  static std::atomic<uint64_t> counter{1};
  thread_local uint64_t next = 0, end = 0;
  if (next == end) {
    next = counter.fetch_add(kBlock, std::memory_order_relaxed);
    end = next + kBlock;
  }
  return next++;
}

namespace {

constexpr size_t kSmallMax = size_t{1} << 20;
constexpr size_t kLargeGranule = size_t{2} << 20;
constexpr size_t kAlign = 64;
constexpr int kSmallBuckets = 21;  // 2^0 .. 2^20 bytes
constexpr size_t kMaxBytes = size_t{1} << 62;

size_t rounded(size_t bytes) {
  if (bytes <= kSmallMax) return std::max(kAlign, std::bit_ceil(bytes));
  return (bytes + kLargeGranule - 1) / kLargeGranule * kLargeGranule;
}

class CachingAllocator {
 public:
  CachingAllocator() {
    if (auto mb = env::alloc_cache_mb()) limit_ = static_cast<size_t>(*mb) << 20;
  }
  // Never destroyed (tensors may outlive static destruction order); the OS reclaims.

  /// Returns a block of at least `bytes` bytes and sets `capacity` to its real size.
  void* allocate(size_t bytes, size_t& capacity) {
    if (bytes > kMaxBytes) throw std::bad_alloc();  // no machine has it, and rounding would wrap
    size_t size = rounded(bytes);
    {
      std::lock_guard lock(mu_);
      ++stats_.allocs;
      stats_.allocated_bytes += size;
      if (void* p = take_cached(size, capacity)) {
        ++stats_.cache_hits;
        stats_.allocated_bytes += capacity - size;
        return p;
      }
      ++stats_.system_allocs;
    }
    capacity = size;
    void* p = system_alloc(size);
    if (!p) {
      empty_cache();  // give the system back what we hold, then try once more
      p = system_alloc(size);
      if (!p) throw std::bad_alloc();
    }
    return p;
  }

  void release(void* p, size_t size) {
    {
      std::lock_guard lock(mu_);
      stats_.allocated_bytes -= size;
      if (stats_.cached_bytes + size <= limit_) {
        stats_.cached_bytes += size;
        if (size <= kSmallMax)
          small_[std::countr_zero(size)].push_back(p);
        else
          large_.emplace(size, p);
        return;
      }
    }
    system_free(p, size);
  }

  void empty_cache() {
    std::vector<std::pair<size_t, void*>> blocks;
    {
      std::lock_guard lock(mu_);
      for (int b = 0; b < kSmallBuckets; ++b) {
        for (void* p : small_[b]) blocks.emplace_back(size_t{1} << b, p);
        small_[b].clear();
      }
      for (auto& [size, p] : large_) blocks.emplace_back(size, p);
      large_.clear();
      stats_.cached_bytes = 0;
    }
    for (auto& [size, p] : blocks) system_free(p, size);
  }

  AllocatorStats stats() {
    std::lock_guard lock(mu_);
    return stats_;
  }
  size_t limit() {
    std::lock_guard lock(mu_);
    return limit_;
  }
  void set_limit(size_t bytes) {
    {
      std::lock_guard lock(mu_);
      limit_ = bytes;
    }
    empty_cache();
  }

 private:
  void* take_cached(size_t size, size_t& capacity) {
    capacity = size;
    if (size <= kSmallMax) {
      auto& list = small_[std::countr_zero(size)];
      if (list.empty()) return nullptr;
      void* p = list.back();
      list.pop_back();
      stats_.cached_bytes -= size;
      return p;
    }
    auto it = large_.lower_bound(size);  // best fit, wasting at most half the block
    if (it == large_.end() || it->first > 2 * size) return nullptr;
    void* p = it->second;
    capacity = it->first;
    stats_.cached_bytes -= it->first;
    large_.erase(it);
    return p;
  }

  static void* system_alloc(size_t size) {
    if (size <= kSmallMax) return std::aligned_alloc(kAlign, size);
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    madvise(p, size, MADV_HUGEPAGE);
    return p;
  }

  static void system_free(void* p, size_t size) {
    if (size <= kSmallMax)
      std::free(p);
    else
      munmap(p, size);
  }

  std::mutex mu_;
  std::vector<void*> small_[kSmallBuckets];
  std::multimap<size_t, void*> large_;
  AllocatorStats stats_;
  size_t limit_ = size_t{4} << 30;
};

CachingAllocator& allocator() {
  static auto* a = new CachingAllocator;
  return *a;
}

}  // namespace

Storage::Storage(size_t bytes) : data_(allocator().allocate(bytes, capacity_)), bytes_(bytes) {}
Storage::~Storage() { allocator().release(data_, capacity_); }

std::shared_ptr<Storage> make_storage(size_t bytes) { return std::make_shared<Storage>(bytes); }
AllocatorStats allocator_stats() { return allocator().stats(); }
void empty_cache() { allocator().empty_cache(); }
size_t cache_limit() { return allocator().limit(); }
void set_cache_limit(size_t bytes) { allocator().set_limit(bytes); }

}  // namespace bj::rt
