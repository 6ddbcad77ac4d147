// Hybridization: a hybridized block's calls are looked up by a key (input
// type, training mode, grad mode, whether the input requires grad); the
// first call of a key runs eagerly while the tracer records it, and the trace
// is optimized, compiled and kept as a variant (in grad mode, a forward and a
// backward: frontend/compiled_training.h). Later calls run the variants' compiled
// code; a call whose data takes a path no variant recorded (a failed guard)
// runs eagerly, so its result is always the eager one, and that path is
// traced and compiled as one more variant, up to a cap.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace bj::nn {

struct HybridizeOptions {
  /// Variants (traced paths) kept per key; past it, unseen paths run eagerly.
  int max_variants = 8;
  /// Keys (input type, train/eval, grad mode) kept; a new key past it drops the least recently
  /// used one with its variants, so a stream of distinct shapes does not grow memory without end.
  int max_keys = 64;
  /// Compile on a background thread: calls keep running eagerly until the
  /// variant is ready, so no call waits for LLVM.
  bool background = false;
  /// Use the on-disk object cache (BJ_CACHE=0 also turns it off).
  bool use_cache = true;
  /// Compile calls in grad mode too (forward and backward); false runs them eagerly.
  bool compile_training = true;
  /// Compiled calls give eager mode's results bit for bit: no approximated exp/tanh/log, sums in
  /// eager's order, no pass that changes rounding (BatchNorm folding). Slower than the default,
  /// which differs from eager by a few units in the last place; over hundreds of training steps
  /// such differences grow (as between any two orders of float arithmetic), so this is how a
  /// compiled run reproduces an eager one exactly.
  bool exact = false;
  /// Tiered compilation: a new variant is first compiled without LLVM's optimizations (about ten
  /// times faster to compile, slower to run, the same results) unless the object cache holds its
  /// optimized code, and is then recompiled optimized on a background thread and swapped in.
  /// Off in exact mode and with `background` (no call waits for LLVM there anyway).
  bool tiered = true;
  /// Adaptive fallback: a key outside grad mode times its first optimized compiled calls and a
  /// few eager ones; if compiled code is not at least 5 % faster, its calls run eagerly (reported
  /// in stats and BJ_LOG=recompiles) and the verdict is checked again every 5000 calls.
  bool adaptive = true;
  /// Dynamic batch: outside grad mode, when a call misses only in its inputs' leading (batch)
  /// dim and a variant for another batch size exists, the two traces are unified into one
  /// variant for every batch size (loops with a run-time trip count). Each later batch size's
  /// first call still runs eagerly and is traced; if its trace is that program at that size, the
  /// variant serves the size from then on, else a variant of its own is compiled as before.
  bool dynamic_batch = true;
};

/// What a hybridized block did, since hybridize().
struct HybridStats {
  struct GuardFailure {
    std::string guard;   ///< as printed: "guard %12 == true"
    ir::Origin origin;   ///< where the guard was recorded (block path, file:line)
    std::string key;     ///< the key of its variant: "f32[2,20], inference, no grad"
    int variant = 0;     ///< its variant, numbered from 1 per key in the order they were compiled
    bool exact_value = false;  ///< it compares an exact value read as a plain number
    int64_t count = 0;
  };
  int64_t calls = 0;             ///< calls while hybridized
  int64_t compiled_hits = 0;     ///< calls answered by compiled code
  int64_t eager_fallbacks = 0;   ///< calls that ran eagerly (traced or not)
  int64_t traces = 0;            ///< eager calls recorded for compilation
  int64_t keys = 0;              ///< keys (input types and modes) now cached
  int64_t variants = 0;          ///< compiled variants now kept
  int64_t compile_failures = 0;  ///< traces that could not be compiled
  int64_t cache_hits = 0;        ///< variants loaded from the on-disk object cache (no LLVM run)
  int64_t upgrades = 0;          ///< first-tier variants recompiled optimized and swapped in
  int64_t upgrades_pending = 0;  ///< first-tier variants still running while their optimized code compiles
  int64_t slower_keys = 0;       ///< keys now served eagerly because compiled code was not faster (adaptive)
  int64_t dynamic_variants = 0;  ///< variants for every batch size (counted in `variants` too)
  int64_t dynamic_sizes = 0;     ///< batch sizes they serve
  double compile_ms = 0;         ///< total time in optimization and LLVM
  std::vector<GuardFailure> guard_failures;  ///< per guard of every variant, those that failed
  /// Why calls ran eagerly: reason -> count ("new path", "grad mode", "variant cap", ...).
  std::vector<std::pair<std::string, int64_t>> eager_reasons;

  /// A few lines, for people.
  std::string str() const;
};

/// Where hybridization's log lines go: the variant-cap notice, compile
/// failure warnings, and with BJ_LOG=recompiles / BJ_LOG=stats (read at each
/// use) the retrace reasons and the per-block report at exit. Standard
/// error by default; an empty function restores it.
void set_log_handler(std::function<void(const std::string&)> handler);

}  // namespace bj::nn
