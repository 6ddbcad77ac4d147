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

bool dce(ir::Graph& g, const PassContext& ctx);
bool cse(ir::Graph& g, const PassContext& ctx);
bool fold(ir::Graph& g, const PassContext& ctx);
bool simplify(ir::Graph& g, const PassContext& ctx);
bool fold_batchnorm(ir::Graph& g, const PassContext& ctx);
bool schedule_guards(ir::Graph& g, const PassContext& ctx);
bool recompute_cheap(ir::Graph& g, const PassContext& ctx);
bool fuse_row(ir::Graph& g, const PassContext& ctx);
bool fuse_contraction(ir::Graph& g, const PassContext& ctx);
bool fuse_reduction(ir::Graph& g, const PassContext& ctx);
bool fuse_elementwise(ir::Graph& g, const PassContext& ctx);
bool plan_memory(ir::Graph& g, const PassContext& ctx);

/// Bytes of all intermediates memory planning places (before sharing).
int64_t intermediate_bytes(const ir::Graph& g);

}  // namespace bj::passes
