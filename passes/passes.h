// The optimization passes. Each lives in its own file with a paragraph on
// what it does and assumes, and has one entry point that returns whether it
// changed the graph. The pipeline (pipeline.cpp) lists them in order.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "ir/graph.h"

namespace bj::passes {

/// Evaluates op `n` on literal inputs (their bytes), giving the result's
/// bytes. Supplied by a layer that has kernels (passes/ depends only on ir/).
using ConstEvaluator = std::function<std::vector<std::byte>(const ir::Node& n, std::span<const std::byte* const> inputs)>;

/// What passes may need besides the graph.
struct PassContext {
  ConstEvaluator evaluate;  ///< for constant folding; folding is skipped without it
};

bool dead_code_elimination(ir::Graph& g, const PassContext& ctx);
bool common_subexpression_elimination(ir::Graph& g, const PassContext& ctx);
bool constant_folding(ir::Graph& g, const PassContext& ctx);
bool algebraic_simplification(ir::Graph& g, const PassContext& ctx);
bool guard_scheduling(ir::Graph& g, const PassContext& ctx);
bool contraction_epilogue_fusion(ir::Graph& g, const PassContext& ctx);
bool reduction_fusion(ir::Graph& g, const PassContext& ctx);
bool elementwise_fusion(ir::Graph& g, const PassContext& ctx);
bool memory_planning(ir::Graph& g, const PassContext& ctx);

/// Bytes of all intermediates memory planning places (before sharing).
int64_t intermediate_bytes(const ir::Graph& g);

}  // namespace bj::passes
