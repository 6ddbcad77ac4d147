// The ahead-of-time runtime (see aot_abi.h): a model's paths become
// Executables over the code linked into the program, made on the first call.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "codegen/aot_abi.h"
#include "codegen/executable.h"
#include "codegen/object_cache.h"
#include "ir/error.h"

namespace bj::codegen {
namespace {

constexpr int kCannotRun = -1;
constexpr int kNullArgument = -2;

struct AotState {
  std::string error;  ///< set: the library cannot run here (and why)
  std::vector<std::shared_ptr<Executable>> exes;
  std::vector<std::vector<const void*>> data;  ///< per path: its parameters' then constants' data
  std::vector<uint64_t> versions;              ///< for packed weights: the tensors never change
  std::vector<std::string> guard_messages;     ///< per guard of path 1
};

/// Features the code may use that this CPU must have (those __builtin_cpu_supports knows).
std::string missing_features(const std::string& wanted) {
  struct Feature {
    const char* name;
    bool have;
  };
  __builtin_cpu_init();
  const Feature known[] = {
      {"avx", __builtin_cpu_supports("avx") != 0},           {"avx2", __builtin_cpu_supports("avx2") != 0},
      {"fma", __builtin_cpu_supports("fma") != 0},           {"f16c", __builtin_cpu_supports("f16c") != 0},
      {"bmi2", __builtin_cpu_supports("bmi2") != 0},         {"avx512f", __builtin_cpu_supports("avx512f") != 0},
      {"avx512bw", __builtin_cpu_supports("avx512bw") != 0}, {"avx512dq", __builtin_cpu_supports("avx512dq") != 0},
      {"avx512vl", __builtin_cpu_supports("avx512vl") != 0}, {"avx512bf16", __builtin_cpu_supports("avx512bf16") != 0},
  };
  std::string missing;
  for (const Feature& f : known)
    if (!f.have && (wanted + ",").find(std::string("+") + f.name + ",") != std::string::npos)
      missing += (missing.empty() ? "" : ", ") + std::string(f.name);
  return missing;
}

void prepare(const bj_aot_model& m, AotState& s) {
  const std::string name = m.name ? m.name : "?";
  if (m.abi != BJ_AOT_ABI_VERSION) {
    s.error = fmt::format("{}: made for AOT interface {}, this runtime has {}", name, m.abi, BJ_AOT_ABI_VERSION);
    return;
  }
  if (!m.source_hash || codegen_source_hash() != m.source_hash) {
    s.error = fmt::format("{}: made by another blockjit build (code generator {}, this runtime's {}): make it again "
                          "with this build's `blockjit aot`",
                          name, m.source_hash ? m.source_hash : "?", codegen_source_hash());
    return;
  }
  if (std::string missing = missing_features(m.features ? m.features : ""); !missing.empty()) {
    s.error = fmt::format("{}: made for a {} CPU; this one lacks {}", name, m.cpu ? m.cpu : "?", missing);
    return;
  }
  try {
    for (uint64_t k = 0; k < m.n_paths; ++k) {
      const bj_aot_path& p = m.paths[k];
      std::unique_ptr<ir::Graph> g = ir::parse(std::string_view(p.graph, p.graph_bytes));
      if (g->inputs().size() != m.n_inputs || g->outputs().size() != m.n_outputs ||
          p.n_offsets != g->params().size() + g->consts().size())
        throw Error("aot", fmt::format("path {}'s graph does not fit its description", k + 1));
      std::vector<const void*> data;
      size_t i = 0;
      for (const auto* list : {&g->params(), &g->consts()})
        for (const ir::Value* v : *list) {
          const uint64_t at = p.offsets[i++];
          if (at % 64 != 0 || at > m.blob_bytes || v->type.bytes() > m.blob_bytes - at)
            throw Error("aot", fmt::format("path {}: tensor %{} lies outside the library's data", k + 1, v->name));
          data.push_back(m.blob + at);
        }
      if (k == 0)
        for (const auto& n : g->nodes())
          if (n->kind == ir::NodeKind::kGuard)
            s.guard_messages.push_back(fmt::format(
                "{}: no recorded path takes this data: path 1 failed {}, recorded at {}{}", name, ir::describe(*g, *n),
                n->origin.str(), m.n_paths > 1 ? fmt::format(" (and the other {} paths failed too)", m.n_paths - 1) : ""));
      if (s.versions.size() < g->params().size()) s.versions.resize(g->params().size(), 1);
      s.exes.push_back(Executable::prebuilt(std::move(g), p.entry, m.exact != 0));
      s.data.push_back(std::move(data));
    }
  } catch (const std::exception& e) {
    s.error = fmt::format("{}: cannot be prepared: {}", name, e.what());
    s.exes.clear();
  }
}

std::mutex g_mu;
std::map<const bj_aot_model*, std::unique_ptr<AotState>>& states() {
  static auto* m = new std::map<const bj_aot_model*, std::unique_ptr<AotState>>;
  return *m;
}

AotState& state(const bj_aot_model* m) {
  // States live as long as the process, so each thread may keep the one it used last.
  thread_local const bj_aot_model* last = nullptr;
  thread_local AotState* last_state = nullptr;
  if (m == last) return *last_state;
  std::lock_guard lock(g_mu);
  auto& slot = states()[m];
  if (!slot) {
    slot = std::make_unique<AotState>();
    prepare(*m, *slot);
  }
  last = m;
  last_state = slot.get();
  return *slot;
}

}  // namespace
}  // namespace bj::codegen

extern "C" int bj_aot_run(const bj_aot_model* model, const void* const* inputs, void* const* outputs) {
  using namespace bj::codegen;
  if (!model || (!inputs && model->n_inputs > 0) || (!outputs && model->n_outputs > 0)) return kNullArgument;
  AotState& s = state(model);
  if (!s.error.empty()) return kCannotRun;
  int first_failure = -1;
  const void* small[32];
  std::vector<const void*> large;
  for (size_t k = 0; k < s.exes.size(); ++k) {
    const size_t n = model->n_inputs + s.data[k].size();
    if (n > 32) large.resize(n);
    const void** data = n > 32 ? large.data() : small;
    std::copy(inputs, inputs + model->n_inputs, data);
    std::copy(s.data[k].begin(), s.data[k].end(), data + model->n_inputs);
    const Executable& exe = *s.exes[k];
    const int failed = exe.run_into({data, n}, {outputs, model->n_outputs},
                                    std::span<const uint64_t>(s.versions.data(), exe.graph().params().size()));
    if (failed < 0) return 0;
    if (k == 0) first_failure = failed;
  }
  return first_failure + 1;
}

extern "C" const char* bj_aot_message(const bj_aot_model* model, int code) {
  using namespace bj::codegen;
  if (code == 0) return "done: every guard of a recorded path held";
  if (code == kNullArgument || !model) return "a null model, inputs or outputs pointer";
  AotState& s = state(model);
  if (code == kCannotRun) return s.error.empty() ? "the library can run here" : s.error.c_str();
  if (code > 0 && static_cast<size_t>(code - 1) < s.guard_messages.size()) return s.guard_messages[code - 1].c_str();
  return "not a code bj_aot_run returns";
}
