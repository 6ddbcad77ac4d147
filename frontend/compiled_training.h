// Compiled training calls: a training trace (frontend/trace.h) split into a
// forward graph, which also returns the values the backward reads, and a
// backward graph (ir/split.h), both JIT-compiled. A compiled call's output
// carries one autograd node whose backward runs the compiled backward and
// hands each parameter's (and each input's) gradient to autograd, which
// accumulates it into grad() as for any eager node. With several outputs
// that require grad, each carries a node that passes its gradient on to
// the one node of the call, which runs once every used output's gradient
// has arrived (an unused output's gradient is zeros).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "frontend/trace.h"
#include "ir/split.h"

namespace bj {

/// The backward half of a compiled training trace.
class CompiledBackward : public std::enable_shared_from_this<CompiledBackward> {
 public:
  CompiledBackward(const TrainingTrace& t, ir::BackwardSplit split, const codegen::CompileOptions& options);

  /// Gives `outs` (the forward outputs of a call on `inputs` that ran `forward` and produced
  /// `outputs`) the autograd nodes that run this backward.
  void attach(std::span<Tensor> outs, std::span<const Tensor> inputs, const Trace& forward,
              std::vector<std::shared_ptr<rt::Storage>>& outputs) const;

  const codegen::Executable& executable() const { return *exe_; }

 private:
  friend class CompiledBackwardNode;
  std::string name_;
  std::vector<ir::BackwardSplit::Saved> saved_;
  std::vector<int> params_, consts_;  // indices into the trace's parameters and constants
  std::vector<int> gradients_;        // per backward output: a parameter's index in the trace, -1 - i for input i
  std::vector<int> grad_outputs_;     // the forward outputs with a gradient input, in that order
  std::vector<Type> saved_types_, output_types_, grad_types_;
  std::shared_ptr<codegen::Executable> exe_;
};

/// A training trace, compiled: the forward (outputs: the block's outputs, then the saved
/// values) and, if an output requires grad, the backward.
struct CompiledTraining {
  CompiledTrace forward;
  std::shared_ptr<const CompiledBackward> backward;
  int outputs = 1;  ///< the block's outputs among the forward's

  /// A hybridized training call: -1 and `out` (with its backward node), or the failed guard.
  int try_run(const Tensor& x, Tensor& out) const;
  /// The same for a call with several inputs (those present, whose types the caller has
  /// matched with the trace's), giving every output.
  int try_run(std::span<const Tensor> inputs, Tensors& outs) const;
};

/// Splits and compiles `t` (bj::Error if LLVM fails).
CompiledTraining compile_training(const TrainingTrace& t, const codegen::CompileOptions& options = {});

}  // namespace bj
