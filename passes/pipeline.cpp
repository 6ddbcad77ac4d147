// The pass manager, and the pipeline as an ordered, commented list.
#include "passes/pipeline.h"

#include <cstdlib>
#include <iostream>

#include "ir/env.h"
#include "ir/error.h"

namespace bj::passes {

const std::vector<Pass>& all_passes() {
  static const std::vector<Pass> passes = {
      {"simplify", simplify},
      {"fold-batchnorm", fold_batchnorm, /*exact=*/false},
      {"fold", fold},
      {"cse", cse},
      {"dce", dce},
      {"schedule-guards", schedule_guards},
      {"recompute-cheap", recompute_cheap},
      {"fuse-row", fuse_row},
      {"fuse-contraction", fuse_contraction},
      {"fuse-reduction", fuse_reduction},
      {"fuse-elementwise", fuse_elementwise},
      {"plan-memory", plan_memory},
  };
  return passes;
}

const Pass& pass_named(const std::string& name) {
  std::string known;
  for (const Pass& p : all_passes()) {
    if (name == p.name) return p;
    known += (known.empty() ? "" : ", ") + std::string(p.name);
  }
  throw ValueError("passes", "no pass named '" + name + "' (known: " + known + ")");
}

const std::vector<Step>& default_pipeline() {
  static const std::vector<Step> steps = {
      // 1. Clean up what tracing leaves (x / 2 from `x /= 2`, repeated
      //    literals, identities), until nothing changes: each rewrite can
      //    expose another.
      {{pass_named("simplify"), pass_named("fold"), pass_named("cse"), pass_named("dce")}, true},
      // 2. Eval-mode BatchNorm into the convolution before it (the only pass that changes
      //    rounding, so never where a guard reads), and the normalization it leaves dead out.
      {{pass_named("fold-batchnorm"), pass_named("dce")}},
      // 3. Guards as early as their inputs allow, before fusion groups
      //    nodes: a diverging call stops before the work it would discard.
      {{pass_named("schedule-guards")}},
      // 4. Cheap IEEE elementwise values read by several loops are computed in each of them
      //    instead of stored once (after cse, which would merge the copies).
      {{pass_named("recompute-cheap")}},
      // 5. Fusion, the most specific first: rows (softmax, LayerNorm: reductions
      //    over trailing axes with the work around them), matmul epilogues, then
      //    the producers of each reduction, then whatever elementwise work is left.
      {{pass_named("fuse-row")}},
      {{pass_named("fuse-contraction")}},
      {{pass_named("fuse-reduction")}},
      {{pass_named("fuse-elementwise")}},
      // 6. Fusion may leave values no one reads any more.
      {{pass_named("dce")}},
      // 7. Last: offsets in one arena for what must live in memory.
      {{pass_named("plan-memory")}},
  };
  return steps;
}

PipelineOptions PipelineOptions::from_env() {
  PipelineOptions o;
  o.verify = env::verify();
  if (auto p = env::print_after()) o.parse_flag("--print-after=" + *p);
  return o;
}

bool PipelineOptions::parse_flag(const std::string& arg) {
  if (arg == "--print-after-all") return print_after_all = true;
  const std::string prefix = "--print-after=";
  if (arg.rfind(prefix, 0) != 0) return false;
  std::string list = arg.substr(prefix.size());
  for (size_t start = 0; start <= list.size();) {
    size_t comma = std::min(list.find(',', start), list.size());
    std::string name = list.substr(start, comma - start);
    if (name == "all")
      print_after_all = true;
    else if (!name.empty())
      print_after.insert(pass_named(name).name);
    start = comma + 1;
  }
  return true;
}

PipelineReport run_pipeline(ir::Graph& g, const std::vector<Step>& steps, const PassContext& ctx,
                            const PipelineOptions& o) {
#ifndef NDEBUG
  const bool verify = true;
#else
  const bool verify = o.verify;
#endif
  std::ostream& out = o.out ? *o.out : std::cout;
  PipelineReport report;
  auto run_one = [&](const Pass& p) {
    if (o.exact && !p.exact) return false;
    auto t0 = std::chrono::steady_clock::now();
    bool changed = p.run(g, ctx);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    report.runs.push_back({p.name, changed, ms});
    if (verify) {
      try {
        ir::verify(g);
      } catch (const VerifyError& e) {
        throw VerifyError(std::string("after ") + p.name, e.detail());
      }
    }
    if (o.print_after_all || o.print_after.count(p.name))
      out << "// -- after " << p.name << (changed ? "" : " (unchanged)") << " --\n" << (changed ? ir::print(g) : "");
    return changed;
  };
  for (const Step& s : steps) {
    bool again = true;
    for (int round = 0; again && round < 16; ++round) {  // fixed points come in a few rounds; 16 bounds a cycle
      again = false;
      for (const Pass& p : s.passes) again |= run_one(p);
      again &= s.to_fixed_point;
    }
  }
  report.arena_bytes = g.arena_bytes;
  report.intermediate_bytes = intermediate_bytes(g);
  return report;
}

}  // namespace bj::passes
