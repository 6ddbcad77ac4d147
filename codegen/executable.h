// bj::codegen::compile: an optimized graph as one JIT-compiled function,
// and the Executable that runs it. Compiled objects are cached on disk
// (codegen/object_cache.h; BJ_CACHE=0 turns it off) under a key of the
// optimized graph's text, LLVM's version, the CPU and its features, and a
// hash of the code generator's sources; a hit links the object without
// running LLVM.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "codegen/jit.h"
#include "codegen/plan.h"
#include "ir/graph.h"
#include "runtime/allocator.h"
#include "runtime/kernels.h"

namespace bj::codegen {

struct CompileOptions {
  bool use_cache = true;   ///< the on-disk object cache (also off with BJ_CACHE=0)
  bool keep_ir = false;    ///< keep the optimized LLVM IR text (compiles, never from the cache)
  bool keep_asm = false;   ///< keep the assembly text (likewise)
  bool training = false;   ///< parameters change between calls (see PlanOptions::params_change)
  /// Every result bit for bit as eager mode computes it (PlanOptions::exact), at some cost in
  /// speed: for reproducing an eager run exactly (HybridizeOptions::exact).
  bool exact = false;
  /// The first tier: optimized code from the object cache if it is there, else code made in a
  /// fraction of the time (no LLVM optimization, fast instruction selection) that runs slower,
  /// with the same results; that code is not cached.
  bool fast = false;
};

class Executable {
 public:
  struct Result {
    int failed_guard = -1;                               ///< -1: every guard held
    std::vector<std::shared_ptr<rt::Storage>> outputs;   ///< empty when a guard failed
  };

  /// Runs the compiled function on data for the graph's inputs, parameters
  /// and constants (types as in graph(); the caller checks). Reentrant: each
  /// call has its own arena and outputs, so concurrent runs are safe; no
  /// output is produced unless every guard held. `param_versions` (one per
  /// parameter: its storage's write count) lets packed weights be reused
  /// until a parameter changes; without them they are repacked every call.
  Result run(std::span<const rt::ConstView> inputs, std::span<const rt::ConstView> params,
             std::span<const rt::ConstView> consts, std::span<const uint64_t> param_versions = {}) const;
  /// The same without checks or views, for callers that bound the data
  /// themselves: `data` holds the inputs', parameters' and constants'
  /// addresses in the graph's order. Fills `outputs` (cleared when a guard
  /// fails) and returns the failed guard's index or -1. Output i is written over `reuse[i]` where
  /// that is given and of its type's size (its version then moves, and outputs[i] is null: the
  /// caller holds it), else into a new storage.
  int run(std::span<const void* const> data, std::span<const uint64_t> param_versions,
          std::vector<std::shared_ptr<rt::Storage>>& outputs, int64_t batch = 0,
          std::span<rt::Storage* const> reuse = {}) const;

  /// The same, writing the outputs where `outputs` points (one buffer per graph output, of its
  /// type's size) instead of allocating them; when a guard fails, what they hold is unspecified.
  int run_into(std::span<const void* const> data, std::span<void* const> outputs,
               std::span<const uint64_t> param_versions, int64_t batch = 0) const;

  /// Code for every batch size (compile_dynamic): the raw runs above take the call's batch size.
  bool dynamic() const { return graph_->batch > 0; }
  /// The call's batch size given the dims 0 of the inputs that scale with it (-1 if they
  /// disagree); 0 for code for one batch size.
  int64_t batch_of(std::span<const int64_t> input_dim0) const;
  /// Output i's type at batch size `batch` (as graph() says for code for one batch size).
  Type output_type(size_t i, int64_t batch) const;

  /// The optimized graph that was compiled.
  const ir::Graph& graph() const { return *graph_; }
  /// How each node runs (inline loops, runtime callbacks, oneDNN products).
  const Plan& plan() const { return plan_; }
  const std::string& llvm_ir() const { return ir_; }
  const std::string& assembly() const { return asm_; }
  bool from_cache() const { return from_cache_; }
  /// First-tier code (CompileOptions::fast, not from the cache): worth recompiling optimized.
  bool fast() const { return fast_; }
  double compile_ms() const { return compile_ms_; }
  const std::string& cache_key() const { return key_; }

  using EntryFn = int32_t (*)(void* const*, const void*);
  /// An executable over code linked ahead of time (codegen/aot_runtime.h): `optimized` is the graph
  /// as compile() optimized it (its printed text parsed back), `entry` the code lower() made for it.
  /// The plan is made again from the graph, as compile() made it.
  static std::shared_ptr<Executable> prebuilt(std::unique_ptr<ir::Graph> optimized, EntryFn entry, bool exact);

 private:
  friend std::shared_ptr<Executable> compile(const ir::Graph&, const CompileOptions&);
  friend std::shared_ptr<Executable> compile_optimized(std::unique_ptr<ir::Graph>, const CompileOptions&,
                                                       std::chrono::steady_clock::time_point);
  /// Makes the plan for graph_ and prepares its oneDNN primitives and packing slots.
  void prepare(const PlanOptions& options);
  std::unique_ptr<ir::Graph> graph_;
  Plan plan_;
  /// A parameter transposed for a small product, valid while the parameter keeps its address and version.
  struct Packed {
    const void* source;
    uint64_t version;
    std::shared_ptr<rt::Storage> data;
  };
  std::shared_ptr<const Packed> packed(size_t slot, const rt::ConstView& param, const uint64_t* version) const;
  mutable std::mutex packed_mu_;
  mutable std::vector<std::shared_ptr<const Packed>> packed_;
  std::unique_ptr<LoadedCode> code_;
  EntryFn entry_ = nullptr;
  std::string ir_, asm_, key_;
  bool from_cache_ = false;
  bool fast_ = false;
  double compile_ms_ = 0;
};

/// Optimizes a copy of `g` with the default pipeline and compiles it.
/// Throws bj::Error (with LLVM's message) if code generation fails.
std::shared_ptr<Executable> compile(const ir::Graph& g, const CompileOptions& options = {});

/// Code for every batch size from two traces of one program at batch sizes `ba` != `bb` (both
/// > 0; see ir/batch.h): both are optimized, and if the optimized graphs still unify, the second
/// is compiled with its batched dims taken from each call. nullptr if they do not unify or the
/// graph commits state.
std::shared_ptr<Executable> compile_dynamic(const ir::Graph& a, int64_t ba, const ir::Graph& b, int64_t bb,
                                            const CompileOptions& options = {});

}  // namespace bj::codegen
