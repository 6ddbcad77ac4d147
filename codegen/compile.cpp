// Compilation: optimization, LLVM, and the on-disk object cache (see executable.h).
#include <chrono>
#include <string>

#include <fmt/format.h>

#include "codegen/executable.h"
#include "codegen/host.h"
#include "codegen/lower.h"
#include "codegen/object_cache.h"
#include "codegen/optimize.h"
#include "passes/passes.h"
#include "ir/batch.h"
#include "ir/env.h"
#include "ir/error.h"
#include "ir/hash.h"

namespace bj::codegen {

/// Compiles an optimized (memory-planned) graph.
std::shared_ptr<Executable> compile_optimized(std::unique_ptr<ir::Graph> g, const CompileOptions& options,
                                              std::chrono::steady_clock::time_point t0) {
  auto exe = std::shared_ptr<Executable>(new Executable);
  exe->graph_ = std::move(g);
  exe->prepare({.params_change = options.training, .exact = options.exact});
  const HostInfo& host = host_info();
  // Everything that determines the code; the whole key is stored in (and checked against) the entry.
  const std::string key = ir::print(*exe->graph_) + "|llvm " + host.llvm_version + "|" + host.cpu + "|" +
                          host.features + "|codegen " + codegen_source_hash() +
                          (options.training ? "|training" : "") + (options.exact ? "|exact" : "");
  exe->key_ = fmt::format("{:016x}", fnv1a(key));
  const bool use_cache = options.use_cache && cache_enabled() && !options.keep_ir && !options.keep_asm;
  const std::optional<std::string> dir = use_cache ? cache_dir() : std::nullopt;
  std::optional<std::string> object = dir ? cache_read(*dir, exe->key_, key) : std::nullopt;
  if (object) {
    try {
      exe->code_ = load_object(*object, kEntrySymbol);
      exe->from_cache_ = true;
    } catch (const std::exception&) {  // valid on disk but not linkable here: remove it and compile
      cache_remove(*dir, exe->key_);
    }
  }
  if (!exe->code_) {  // the first tier's code is never cached: the cache holds optimized code only
    exe->fast_ = options.fast;
    LoweredCode code = lower(*exe->graph_, exe->plan_, options.keep_ir, options.keep_asm, kEntrySymbol, options.fast);
    exe->ir_ = std::move(code.llvm_ir);
    exe->asm_ = std::move(code.assembly);
    exe->code_ = load_object(code.object, kEntrySymbol);
    if (dir && !options.fast) cache_write(*dir, exe->key_, key, code.object);
  }
  exe->entry_ = reinterpret_cast<int32_t (*)(void* const*, const void*)>(exe->code_->entry());
  exe->compile_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return exe;
}

std::shared_ptr<Executable> compile(const ir::Graph& g, const CompileOptions& options) {
  if (env::fault("compile"))
    throw Error("codegen", "compilation of " + g.name() + " failed on purpose (BJ_FAULT=compile, a test hook)");
  const auto t0 = std::chrono::steady_clock::now();
  return compile_optimized(optimized_copy(g, options.exact), options, t0);
}

std::shared_ptr<Executable> compile_dynamic(const ir::Graph& a, int64_t ba, const ir::Graph& b, int64_t bb,
                                            const CompileOptions& options) {
  if (env::fault("compile"))
    throw Error("codegen", "compilation of " + b.name() + " failed on purpose (BJ_FAULT=compile, a test hook)");
  const auto t0 = std::chrono::steady_clock::now();
  if (options.exact || !a.commits().empty() || !b.commits().empty() || !ir::unify_batch(a, ba, b, bb)) return nullptr;
  std::unique_ptr<ir::Graph> oa = optimized_copy(a, false), ob = optimized_copy(b, false);
  const auto factors = ir::unify_batch(*oa, ba, *ob, bb);  // passes may decide by size: check again
  if (!factors) return nullptr;
  ir::set_batch(*ob, bb, *factors);
  passes::plan_memory(*ob, pass_context());  // batched values per unit of batch size
  return compile_optimized(std::move(ob), options, t0);
}

}  // namespace bj::codegen
