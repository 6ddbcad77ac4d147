// Splitting a traced training step (forward and backward recorded as one
// joint graph) into a forward graph and a backward graph, as AOTAutograd's
// partitioner does. The forward keeps what its outputs and guards need and
// nothing else; every value of it that the backward reads is "saved": the
// forward returns it as an extra output (or, for a graph input, the caller
// keeps the tensor). What only the backward needs (masks, transposes,
// broadcasts of saved values) is computed in the backward, not saved.
#pragma once

#include <memory>
#include <vector>

#include "ir/graph.h"

namespace bj::ir {

struct BackwardSplit {
  /// Where a backward input after the gradient inputs comes from.
  struct Saved {
    enum class From : uint8_t { kForwardOutput, kForwardInput } from;
    int index;  ///< among the forward graph's outputs or inputs
  };
  /// The joint graph's inputs except the gradient inputs, all of its parameters and constants
  /// (same order, so the joint graph's bindings fit), its guards; outputs: the joint graph's
  /// forward outputs, then the saved values it computes.
  std::unique_ptr<Graph> forward;
  /// Inputs: the gradient inputs, then one per saved value; parameters and constants: those the
  /// backward reads (see backward_params/backward_consts); outputs: the joint graph's gradient
  /// outputs. No guards.
  std::unique_ptr<Graph> backward;
  std::vector<Saved> saved;           ///< per backward input after the gradient inputs
  std::vector<int> backward_params;   ///< per backward parameter: its index among the joint graph's
  std::vector<int> backward_consts;   ///< per backward constant: its index among the joint graph's
};

/// Splits `joint`, a flat graph (no regions) whose last `gradient_inputs` inputs are output
/// gradients and whose first `forward_outputs` outputs are the forward's. Error if a forward
/// output or a guard depends on a gradient input.
BackwardSplit split_backward(const Graph& joint, int forward_outputs, int gradient_inputs);

}  // namespace bj::ir
