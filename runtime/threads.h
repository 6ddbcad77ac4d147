// The runtime's threads: large loops (eager kernels, compiled code's loop
// functions) split into fixed chunks that the calling thread and a small
// pool of workers claim one at a time. The caller never waits for a worker
// that has not started: a worker the OS has not scheduled yet (its core busy
// with another program) finds every chunk claimed and does nothing, so a
// busy core slows a loop down to one thread's speed instead of stalling it
// for a time slice. Workers spin briefly after a loop (kSpinMicros), then
// sleep until the next one. Chunk boundaries depend only on n and the chunk
// count, so results never depend on which thread ran what.
#pragma once

#include <cstdint>
#include <type_traits>

namespace bj::rt {

/// How long an idle worker spins for the next loop before it sleeps.
inline constexpr int64_t kSpinMicros = 50;

/// Calls fn(ctx, begin, end) for chunk c = [n * c / chunks, n * (c + 1) / chunks) of [0, n), each
/// chunk once, on the caller and the pool's workers; returns when every chunk is done. Runs on the
/// caller alone when chunks <= 1, inside another parallel loop, or while another thread's loop
/// holds the pool.
void parallel_chunks(int64_t n, int chunks, void (*fn)(void* ctx, int64_t begin, int64_t end), void* ctx);

/// parallel_chunks over a callable body(begin, end).
template <class Body>
void parallel_chunks(int64_t n, int chunks, Body&& body) {
  using B = std::remove_reference_t<Body>;
  parallel_chunks(n, chunks, [](void* ctx, int64_t b, int64_t e) { (*static_cast<B*>(ctx))(b, e); },
                  const_cast<void*>(static_cast<const void*>(&body)));
}

/// Workers in the pool now (threads - 1 once a loop ran; for tests).
int pool_workers();

}  // namespace bj::rt
