// Compilation: optimization, LLVM, and the on-disk object cache (see executable.h).
#include <chrono>
#include <string>

#include <fmt/format.h>

#include "codegen/executable.h"
#include "codegen/host.h"
#include "codegen/lower.h"
#include "codegen/object_cache.h"
#include "codegen/optimize.h"
#include "ir/env.h"
#include "ir/error.h"
#include "ir/hash.h"

namespace bj::codegen {

std::shared_ptr<Executable> compile(const ir::Graph& g, const CompileOptions& options) {
  if (env::fault("compile"))
    throw Error("codegen", "compilation of " + g.name() + " failed on purpose (BJ_FAULT=compile, a test hook)");
  auto t0 = std::chrono::steady_clock::now();
  auto exe = std::shared_ptr<Executable>(new Executable);
  exe->graph_ = optimized_copy(g, options.exact);
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

}  // namespace bj::codegen
