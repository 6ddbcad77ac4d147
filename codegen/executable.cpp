// Compilation with the on-disk object cache, and running executables.
#include "codegen/executable.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

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
  exe->graph_ = ir::parse(ir::print(g));
  passes::PipelineOptions quiet;  // compile() prints nothing; `blockjit dump` shows the passes
  quiet.verify = env::verify();
  quiet.exact = options.exact;
  optimize(*exe->graph_, quiet);
  exe->plan_ = make_plan(*exe->graph_, {.params_change = options.training, .exact = options.exact});
  const HostInfo& host = host_info();
  // Everything that determines the code; the whole key is stored in (and checked against) the entry.
  const std::string key = ir::print(*exe->graph_) + "|llvm " + host.llvm_version + "|" + host.cpu + "|" +
                          host.features + "|codegen " + codegen_source_hash() +
                          (options.training ? "|training" : "") + (options.exact ? "|exact" : "");
  exe->key_ = fmt::format("{:016x}", fnv1a(key));
  const bool use_cache = options.use_cache && cache_enabled() && !options.keep_ir && !options.keep_asm;
  const std::optional<std::string> dir = use_cache ? cache_dir() : std::nullopt;
  std::optional<std::string> object = dir ? cache_read(*dir, exe->key_, key) : std::nullopt;
  exe->packed_.resize(exe->plan_.packings.size());
  for (const auto& [node, np] : exe->plan_.nodes)  // primitives are made now, not in the first run
    if (np.dnnl) rt::matmul_prepare(*exe->plan_.context.nodes[static_cast<size_t>(np.dnnl->callback)].fused);
  if (object) {
    try {
      exe->code_ = load_object(*object, kEntrySymbol);
      exe->from_cache_ = true;
    } catch (const std::exception&) {  // valid on disk but not linkable here: remove it and compile
      cache_remove(*dir, exe->key_);
    }
  }
  if (!exe->code_) {
    LoweredCode code = lower(*exe->graph_, exe->plan_, options.keep_ir, options.keep_asm);
    exe->ir_ = std::move(code.llvm_ir);
    exe->asm_ = std::move(code.assembly);
    exe->code_ = load_object(code.object, kEntrySymbol);
    if (dir) cache_write(*dir, exe->key_, key, code.object);
  }
  exe->entry_ = reinterpret_cast<int32_t (*)(void* const*, const void*)>(exe->code_->entry());
  exe->compile_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return exe;
}

std::shared_ptr<const Executable::Packed> Executable::packed(size_t slot, const rt::ConstView& param,
                                                            const uint64_t* version) const {
  {
    std::lock_guard lock(packed_mu_);
    const auto& cur = packed_[slot];
    if (cur && version && cur->source == param.data && cur->version == *version) return cur;
  }
  const Packing& pk = plan_.packings[slot];
  const float* src = static_cast<const float*>(param.data);
  std::shared_ptr<rt::Storage> data;
  if (pk.dnnl) {
    data = rt::make_storage(rt::matmul_packed_weight_bytes(*pk.dnnl));
    rt::matmul_pack_weight(*pk.dnnl, src, data->data());
  } else if (pk.conv) {
    data = rt::make_storage(rt::conv_packed_weight_bytes(*pk.conv));
    rt::conv_pack_weight(*pk.conv, src, data->data());
  } else {  // [n, k] -> [k, n_pad], zero columns after n
    const int64_t np = pk.n_pad();
    data = rt::make_storage(static_cast<size_t>(np * pk.k) * sizeof(float));
    float* dst = static_cast<float*>(data->data());
    // Tiles of 16 x 16, so that both the reads and the writes stay within a few cache lines.
    constexpr int64_t kTile = 16;
    for (int64_t j0 = 0; j0 < pk.n; j0 += kTile)
      for (int64_t k0 = 0; k0 < pk.k; k0 += kTile)
        for (int64_t k = k0; k < std::min(k0 + kTile, pk.k); ++k)
          for (int64_t j = j0; j < std::min(j0 + kTile, pk.n); ++j) dst[k * np + j] = src[j * pk.k + k];
    for (int64_t k = 0; k < pk.k; ++k) std::fill(dst + k * np + pk.n, dst + (k + 1) * np, 0.0f);
  }
  auto fresh = std::make_shared<const Packed>(Packed{param.data, version ? *version : 0, std::move(data)});
  if (version) {
    std::lock_guard lock(packed_mu_);
    packed_[slot] = fresh;
  }
  return fresh;
}

Executable::Result Executable::run(std::span<const rt::ConstView> inputs, std::span<const rt::ConstView> params,
                                   std::span<const rt::ConstView> consts, std::span<const uint64_t> param_versions) const {
  const ir::Graph& g = *graph_;
  if (inputs.size() != g.inputs().size() || params.size() != g.params().size() || consts.size() != g.consts().size())
    throw ValueError("run", fmt::format("the compiled {} takes {} inputs, {} parameters and {} constants", g.name(),
                                        g.inputs().size(), g.params().size(), g.consts().size()));
  std::vector<const void*> data;
  for (auto* list : {&inputs, &params, &consts})
    for (const rt::ConstView& v : *list) data.push_back(v.data);
  Result r;
  r.failed_guard = run(data, param_versions, r.outputs);
  return r;
}

namespace {
/// Per-thread scratch for arenas: a compiled call finishes before its thread starts another.
std::byte* thread_arena(size_t bytes) {
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<std::byte, Free> buf;
  thread_local size_t size = 0;
  if (bytes > size) {
    size = (bytes + 4095) / 4096 * 4096;
    buf.reset(static_cast<std::byte*>(std::aligned_alloc(64, size)));
    if (!buf) throw std::bad_alloc();
  }
  return buf.get();
}
}  // namespace

int Executable::run(std::span<const void* const> data, std::span<const uint64_t> param_versions,
                    std::vector<std::shared_ptr<rt::Storage>>& outputs) const {
  const ir::Graph& g = *graph_;
  const size_t n_in = g.inputs().size(), n_params = g.params().size();
  const size_t n = data.size() + g.outputs().size() + 1 + plan_.packings.size();
  void* small[32];
  std::vector<void*> large(n > 32 ? n : 0);
  void** bufs = n > 32 ? large.data() : small;
  size_t k = 0;
  for (const void* d : data) bufs[k++] = const_cast<void*>(d);
  outputs.clear();
  for (const ir::Value* v : g.outputs()) {
    outputs.push_back(rt::make_storage(v->type.bytes()));
    bufs[k++] = outputs.back()->data();
  }
  bufs[k++] = plan_.arena_bytes > 0 ? thread_arena(static_cast<size_t>(plan_.arena_bytes)) : nullptr;
  std::shared_ptr<const Packed> packs[8];  // held for the call
  std::vector<std::shared_ptr<const Packed>> more_packs;
  for (size_t s = 0; s < plan_.packings.size(); ++s) {
    const auto p = static_cast<size_t>(plan_.packings[s].param);
    const uint64_t* version = param_versions.size() == n_params ? &param_versions[p] : nullptr;
    auto pk = packed(s, rt::ConstView{data[n_in + p], g.params()[p]->type}, version);
    bufs[k++] = pk->data->data();
    if (s < 8)
      packs[s] = std::move(pk);
    else
      more_packs.push_back(std::move(pk));
  }
  const int failed = entry_(bufs, &plan_.context);
  if (failed >= 0) outputs.clear();
  return failed;
}

}  // namespace bj::codegen
