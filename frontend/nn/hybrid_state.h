// The state behind Block::hybridize (internal to the frontend): the variant
// cache, its lock, counters, background compiles and logging.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <source_location>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "frontend/nn/hybrid.h"
#include "frontend/compiled_training.h"
#include "frontend/trace.h"

namespace bj::nn {
class Block;
}

namespace bj::nn::detail {

class Hybrid {
 public:
  Hybrid(Block& b, HybridizeOptions options);
  ~Hybrid();  // waits for background compiles
  Hybrid(const Hybrid&) = delete;
  Hybrid& operator=(const Hybrid&) = delete;

  /// One call of the hybridized block `b` (never while tracing).
  Tensor call(Block& b, const Tensor& x, const std::source_location& where);
  /// One call with a list of inputs (undefined: absent), giving every output.
  Tensors call(Block& b, const Tensors& inputs, const std::source_location& where);
  HybridStats stats() const;
  /// Returns once no compile (background or second tier) of this block is running or queued.
  void wait_for_compiles();

  /// A compiled path of a call outside grad mode: what Block::export_model writes and an imported
  /// block preloads.
  struct Path {
    bool list = false;  ///< called with a list (forward_many)
    std::vector<std::optional<Type>> inputs;  ///< each input's type (nullopt: absent); one for a one-input call
    bool training = false;
    Trace trace;  ///< as traced (not optimized), bound to the block's parameters and constants
  };
  /// Every compiled variant of the keys outside grad mode, most used first within a key.
  std::vector<Path> paths() const;
  /// Adds `code` (compiled from path.trace) as a variant of path's key (and for a one-input
  /// path, of the key of a call with a list of that one input).
  void preload(const Path& path, const CompiledTraining& code);
  const HybridizeOptions& options() const { return options_; }
  /// The stats report, for BJ_LOG=stats.
  void report() const;

 private:
  /// What compiled code is specialized for, besides the guards inside it.
  struct Key {
    Type input;  // a one-input call's input
    std::vector<std::optional<Type>> inputs;  // a call with a list: each input's type (nullopt: absent)
    bool list = false;  // called with a list (forward_many)
    bool training = false;
    bool grad = false;
    uint64_t input_grad = 0;  // bit i: input i requires grad (its gradient is compiled too)
    bool operator==(const Key&) const = default;
    std::string str() const;
  };
  /// One traced path, compiled.
  struct Variant {
    explicit Variant(CompiledTraining c);
    CompiledTraining code;  // the forward, and in grad mode the backward
    int number = 0;  // 1, 2, ... per key, in the order compiled
    std::unique_ptr<std::atomic<int64_t>[]> guard_failures;  // per guard of the compiled graph
  };
  struct Entry {
    Key key;
    std::vector<std::shared_ptr<const Variant>> variants;  // most used first (roughly)
    int pending = 0;         // traces being compiled
    std::string failed;      // why this key runs eagerly for good (compile or trace failure)
    bool cap_logged = false;
    int compiled = 0;        // variants numbered so far
    int upgrading = 0;       // first-tier variants queued or compiling optimized (the key is kept meanwhile)
    // Adaptive fallback (HybridizeOptions::adaptive): per-call times, then the verdict.
    std::vector<double> compiled_us, eager_us;
    bool serve_eager = false;  // compiled code was not faster: calls run eagerly
    int64_t served_eager = 0;  // calls since the verdict (checked again past kRecheckCalls)
    uint64_t last_used = 0;  // for dropping the least recently used key
  };

  void refresh_structure(Block& b);
  /// "guard %12 == true of variant 2 (f32[2,20], inference, no grad), recorded at ...".
  static std::string describe(const Key& key, const Variant& v, int guard);
  /// Runs the call eagerly (the one input of a one-input key, else the list), counting `reason`.
  Tensors eager(Block& b, const Key& key, std::span<const Tensor> inputs, const std::source_location& where,
                const std::string& reason);
  /// Tries `key`'s variants, most used first, with run(variant) (-1 or the failed guard). True on
  /// a hit; otherwise what the caller's miss needs: the variants it saw and the last failure.
  /// What the adaptive fallback asks of a call (decided under the lock, with the lookup).
  enum class Probe { kNone, kTimeCompiled, kTimeEager, kServeEager };
  template <class Run>
  bool try_variants(const Key& key, Run&& run, int& compiled_seen, std::shared_ptr<const Variant>& failed_variant,
                    int& failed_guard, Probe& probe);
  Probe probe(Entry& e);  // call with mu_ held
  /// Adds a timed call of `key` (compiled or eager) and decides once there are enough.
  void record_time(const Key& key, Probe kind, double us);
  /// A call `probe` sends to eager mode: timed (kTimeEager) or served (kServeEager).
  Tensors adaptive_eager(Block& b, const Key& key, std::span<const Tensor> inputs, const std::source_location& where,
                         Probe probe);
  /// A call no variant took: trace it (or run it eagerly). Nothing (the caller looks again) when
  /// `key` compiled a variant since the caller's lookup saw `compiled_seen` of them.
  std::optional<Tensors> miss(Block& b, std::span<const Tensor> inputs, const std::source_location& where,
                              const Key& key, int compiled_seen, const Variant* failed_variant, int failed_guard);
  void compile_variant(Entry* e, TrainingTrace t);
  /// The second tier: recompiles first-tier variants optimized, one at a time, and swaps them in.
  /// One variant for every batch size of a family of keys (the same but for their inputs' dim 0).
  struct Dynamic {
    Key key;                                  // the family's key at batch size `batch`
    std::shared_ptr<const Variant> variant;   // its code
    std::shared_ptr<const ir::Graph> traced;  // the trace it was compiled from, at `batch`
    std::vector<int32_t> factors;             // per value of `traced` (ir::values_in_order)
    std::vector<int32_t> input_factors;       // per input of the key (absent: 0)
    int64_t batch = 0;
    std::set<int64_t> sizes;                  // batch sizes whose trace fits: the variant serves them
  };
  /// The batch size of `key` in `d`'s family, if it is one of it.
  static std::optional<int64_t> batch_in(const Dynamic& d, const Key& key);
  /// The batch sizes of two keys of a family: the dims 0 of the first input whose dim 0 differs.
  static std::pair<int64_t, int64_t> batch_sizes(const Key& a, const Key& b);
  /// The inputs' dims 0 of a key (absent inputs: -1).
  static std::vector<int64_t> dims0(const Key& key);
  /// True if keys `a` and `b` differ at most in their inputs' dims 0.
  static bool same_family(const Key& a, const Key& b);
  /// A call of a size a dynamic variant serves: true with `run`'s result -1, else false (a failed
  /// guard is counted).
  template <class Run>
  bool try_dynamic(const Key& key, Run&& run);
  /// After a miss traced `t` at `key` outside grad mode: true if a dynamic variant now serves the
  /// call's batch size (its trace fits, or it unified with another size's variant and compiled).
  bool adopt_dynamic(const Key& key, const TrainingTrace& t);
  void upgrade_loop();
  /// A trace of `e`'s key that will not compile: the key runs eagerly from now on (one warning per block).
  void give_up(Entry* e, const std::string& why);
  Entry* find(const Key& key);                     // call with mu_ held
  /// Drops least recently used idle keys while there are more than max_keys; call with mu_ held.
  void make_room();
  /// Drops `e` if a failed call left it with nothing (no variant, no compile pending, no verdict).
  void drop_if_empty(Entry* e);                    // call with mu_ held

  const HybridizeOptions options_;
  const std::string name_;
  mutable std::mutex mu_;  // guards everything below that is not atomic
  std::vector<std::unique_ptr<Entry>> entries_;
  uint64_t clock_ = 0;  // ticks per lookup, for last_used
  /// Entries of an older structure, kept so that calls and compiles still using them stay valid.
  std::vector<std::unique_ptr<Entry>> retired_;
  std::atomic<uint64_t> epoch_seen_;
  uint64_t fingerprint_ = 0;
  std::atomic<bool> has_params_;
  std::atomic<int64_t> calls_{0}, hits_{0}, eager_{0}, traces_{0}, compile_failures_{0}, cache_hits_{0};
  double compile_ms_ = 0;
  std::map<std::string, int64_t> eager_reasons_;
  bool warned_ = false;
  std::vector<std::thread> workers_;  // background compiles; joined by the destructor
  struct Upgrade {
    Entry* entry;
    std::shared_ptr<const Variant> variant;  // the first-tier variant to replace
    TrainingTrace trace;
  };
  std::deque<Upgrade> upgrades_;  // queued for the upgrader
  std::vector<std::unique_ptr<Entry>> evicted_;  // keys dropped by make_room while their upgrade was queued
  std::thread upgrader_;          // started with the first upgrade; joined by the destructor
  std::condition_variable work_cv_, done_cv_;
  bool stopping_ = false;
  const bool slow_compiled_;  // BJ_FAULT=slow-compiled: compiled calls wait 2 ms (a test hook)
  std::atomic<int64_t> upgraded_{0};
  std::vector<std::shared_ptr<Dynamic>> dynamic_;  // under mu_
  int dynamic_failures_ = 0;  // traces that did not unify (past kMaxUnifyFailures no more are tried)
};

}  // namespace bj::nn::detail
