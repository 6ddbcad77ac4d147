// The pass manager and the default pipeline.
#pragma once

#include <chrono>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "passes/passes.h"

namespace bj::passes {

using PassFn = bool (*)(ir::Graph&, const PassContext&);

struct Pass {
  const char* name;  ///< as --print-after takes it: "dce", "fuse-elementwise", ...
  PassFn run;
  /// Results are bit for bit the same after the pass (false only for fold-batchnorm, which
  /// rescales weights instead of activations and keeps away from what guards read).
  bool exact = true;
};

/// One step of a pipeline: a pass, or a group of passes repeated until none changes the graph.
struct Step {
  std::vector<Pass> passes;
  bool to_fixed_point = false;
};

struct PipelineOptions {
  bool verify = false;                   ///< verify after every pass (always on in debug builds)
  /// Only the passes that keep every result bit for bit (Pass::exact): for compiled code that
  /// must compute what eager mode computes (CompileOptions::exact).
  bool exact = false;
  bool print_after_all = false;          ///< print the IR after every pass
  std::set<std::string> print_after;     ///< ... or after these passes
  std::ostream* out = nullptr;           ///< where printing goes
  /// From the environment: BJ_VERIFY=1, BJ_PRINT_AFTER=all|NAME[,NAME].
  static PipelineOptions from_env();
  /// Adds --print-after-all / --print-after=NAME[,NAME] (returns false for other arguments).
  bool parse_flag(const std::string& arg);
};

struct PassRun {
  std::string name;
  bool changed;
  double ms;
};
struct PipelineReport {
  std::vector<PassRun> runs;
  int64_t arena_bytes = -1;         ///< after memory planning
  int64_t intermediate_bytes = 0;   ///< what the intermediates would take unshared
};

/// The passes in order (see pipeline.cpp for why this order).
const std::vector<Step>& default_pipeline();
/// Every pass by name.
const std::vector<Pass>& all_passes();
/// The pass called `name`; ValueError listing the names otherwise.
const Pass& pass_named(const std::string& name);

/// Runs `steps` on `g`; VerifyError if a pass leaves a broken graph.
PipelineReport run_pipeline(ir::Graph& g, const std::vector<Step>& steps, const PassContext& ctx,
                            const PipelineOptions& options = {});

}  // namespace bj::passes
