// The reference interpreter: runs a Graph node by node with the eager
// kernels. It is the oracle for passes and codegen, and the divergence
// check of traces (which guard fails first for new inputs).
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "ir/graph.h"
#include "runtime/allocator.h"
#include "runtime/kernels.h"

namespace bj::rt {

struct InterpretResult {
  /// The graph's outputs, in fresh storage (empty if a guard failed and the run stopped).
  std::vector<std::shared_ptr<Storage>> outputs;
  /// The first guard that did not hold (nullptr if all held) and its index among the guards.
  const ir::Node* failed_guard = nullptr;
  int failed_guard_index = -1;
};

/// Runs `g` with data for its inputs, parameters and constants (in the
/// graph's order; types must match, the caller checks). Stops at the first
/// failed guard. A graph laid out by memory planning runs in one arena, at
/// the planned offsets (so a wrong plan shows as wrong outputs). When every
/// guard held, the graph's commits write the parameters' and constants'
/// memory (the views' data, which the caller owns and lets be written).
InterpretResult interpret(const ir::Graph& g, std::span<const ConstView> inputs, std::span<const ConstView> params,
                          std::span<const ConstView> consts);

}  // namespace bj::rt
