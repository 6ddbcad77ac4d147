// The optimization pipeline wired to the runtime: constant folding
// evaluates with the same kernels eager mode uses.
#pragma once

#include "passes/pipeline.h"

namespace bj::codegen {

/// The pass context with a kernel-backed constant evaluator.
passes::PassContext pass_context();
/// Runs the default pipeline on `g`.
passes::PipelineReport optimize(ir::Graph& g, const passes::PipelineOptions& options = passes::PipelineOptions::from_env());

}  // namespace bj::codegen
