// The runtime's thread pool (see threads.h).
#include "runtime/threads.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/kernels.h"

namespace bj::rt {

namespace {

void pause() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

thread_local bool t_in_loop = false;  // a chunk runs on this thread: nested loops run serially

/// One loop: its chunks are claimed through `next`.
struct Job {
  void (*fn)(void*, int64_t, int64_t);
  void* ctx;
  int64_t n;
  int chunks;
  std::atomic<int> next{0};
};

/// Claims and runs chunks of `job` until none is left.
void work(Job& job) {
  const bool outer = !t_in_loop;
  t_in_loop = true;
  for (int c; (c = job.next.fetch_add(1, std::memory_order_relaxed)) < job.chunks;)
    job.fn(job.ctx, job.n * c / job.chunks, job.n * (c + 1) / job.chunks);
  if (outer) t_in_loop = false;
}

class Pool {
 public:
  ~Pool() { resize(0); }

  /// Runs `job` on the caller and the workers; false (nothing run) if another loop holds the pool.
  bool run(Job& job, int workers) {
    std::unique_lock lock(submit_, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    if (static_cast<int>(threads_.size()) != workers) resize(workers);
    // A worker counts itself in `inside_` before it reads `current_` (both sequentially
    // consistent): once current_ is cleared and inside_ is 0, no worker can still see the job.
    current_.store(&job);
    wake(false);
    work(job);
    current_.store(nullptr);
    while (inside_.load() > 0) pause();  // chunks claimed by workers, still running
    return true;
  }

  int workers() {
    std::lock_guard lock(submit_);
    return static_cast<int>(threads_.size());
  }

 private:
  /// A new epoch: workers spinning see it, sleeping ones are woken (sequentially consistent: a
  /// worker counts itself in `sleepers_` before it checks the epoch, the caller the reverse).
  void wake(bool always) {
    epoch_.fetch_add(1);
    if (always || sleepers_.load() > 0) {
      std::lock_guard lock(sleep_mu_);
      sleep_cv_.notify_all();
    }
  }

  void resize(int workers) {  // call with submit_ held
    stop_.store(true);
    wake(true);
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    stop_.store(false);
    // Each worker starts from the epoch now: a loop or stop posted before it runs is not missed.
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, now = epoch_.load()] { loop(now); });
  }

  void loop(uint64_t seen) {
    const auto spin = std::chrono::microseconds(kSpinMicros);
    for (;;) {
      uint64_t now = epoch_.load();
      if (now == seen) {  // spin a little (the next loop often follows at once), then sleep
        const auto until = std::chrono::steady_clock::now() + spin;
        while ((now = epoch_.load(std::memory_order_relaxed)) == seen && std::chrono::steady_clock::now() < until)
          for (int i = 0; i < 64; ++i) pause();
        if (now == seen) {
          std::unique_lock lock(sleep_mu_);
          sleepers_.fetch_add(1);
          sleep_cv_.wait(lock, [&] { return epoch_.load() != seen; });
          sleepers_.fetch_sub(1);
          continue;
        }
      }
      seen = now;
      if (stop_.load()) return;
      inside_.fetch_add(1);
      if (Job* job = current_.load()) work(*job);
      inside_.fetch_sub(1);
    }
  }

  std::mutex submit_;  // one loop at a time
  std::vector<std::thread> threads_;
  std::atomic<Job*> current_{nullptr};
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> inside_{0}, sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
};

Pool& pool() {
  static auto* p = new Pool;  // never destroyed: workers may outlive static destructors at exit
  return *p;
}

}  // namespace

void parallel_chunks(int64_t n, int chunks, void (*fn)(void*, int64_t, int64_t), void* ctx) {
  Job job{fn, ctx, n, chunks};
  if (chunks <= 1 || t_in_loop || !pool().run(job, num_threads() - 1)) work(job);
}

int pool_workers() { return pool().workers(); }

}  // namespace bj::rt
