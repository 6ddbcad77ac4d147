// The caching allocator behind every tensor's storage. Freed blocks go back
// to a cache and are handed out again, so a chain of large eager ops does
// not pay for fresh page faults on every call (a new 64 MB buffer costs
// 30-40 ms of faults on this machine; reusing one costs nothing).
//   small (<= 1 MiB):  rounded up to a power of two, 64-byte aligned, per-size free lists
//   large (>  1 MiB):  rounded up to 2 MiB, mmap'd with transparent huge pages,
//                      best fit among cached blocks of at most twice the size
// Cached bytes above `cache_limit()` are returned to the system.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace bj::rt {

struct AllocatorStats {
  size_t allocated_bytes = 0;  ///< in live storages (rounded sizes)
  size_t cached_bytes = 0;     ///< free, kept for reuse
  uint64_t allocs = 0;         ///< calls to allocate
  uint64_t cache_hits = 0;     ///< of which served from the cache
  uint64_t system_allocs = 0;  ///< of which went to the system
};

/// Raw storage of one tensor: freed back to the allocator's cache on destruction.
class Storage {
 public:
  explicit Storage(size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  /// Identifies the storage's contents: drawn from one process-wide counter (in blocks per thread)
  /// at construction and at every in-place write, so no two storages (even
  /// one freed and another handed the same address) and no two states of one
  /// storage share a version. Autograd compares it to tell that a saved
  /// tensor changed; compiled code compares it to repack a weight.
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.store(next_version(), std::memory_order_relaxed); }

 private:
  static uint64_t next_version();
  std::atomic<uint64_t> version_{next_version()};
  size_t capacity_ = 0;  // the block's real size, for the cache
  void* data_;
  size_t bytes_;
};

/// A fresh storage of at least `bytes` bytes (uninitialized, 64-byte aligned).
std::shared_ptr<Storage> make_storage(size_t bytes);

AllocatorStats allocator_stats();
/// Returns every cached block to the system.
void empty_cache();
/// Upper bound on cached free bytes (default 4 GiB, or BJ_ALLOC_CACHE_MB).
size_t cache_limit();
void set_cache_limit(size_t bytes);

}  // namespace bj::rt
