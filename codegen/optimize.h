// The optimization pipeline wired to the runtime: constant folding
// evaluates with the same kernels eager mode uses.
#pragma once

#include <memory>

#include "passes/pipeline.h"

namespace bj::codegen {

/// The pass context with a kernel-backed constant evaluator.
passes::PassContext pass_context();
/// Runs the default pipeline on `g`.
passes::PipelineReport optimize(ir::Graph& g, const passes::PipelineOptions& options = passes::PipelineOptions::from_env());
/// A copy of `g` optimized as compile() optimizes it: quietly, verified when BJ_VERIFY asks,
/// `exact` as CompileOptions::exact.
std::unique_ptr<ir::Graph> optimized_copy(const ir::Graph& g, bool exact);

}  // namespace bj::codegen
