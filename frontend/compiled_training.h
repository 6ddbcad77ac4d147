// Compiled training calls: a training trace (frontend/trace.h) split into a
// forward graph, which also returns the values the backward reads, and a
// backward graph (ir/split.h), both JIT-compiled. A compiled call's output
// carries one autograd node whose backward runs the compiled backward and
// hands each parameter's (and the input's) gradient to autograd, which
// accumulates it into grad() as for any eager node.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "frontend/trace.h"
#include "ir/split.h"

namespace bj {

/// The backward half of a compiled training trace.
class CompiledBackward : public std::enable_shared_from_this<CompiledBackward> {
 public:
  CompiledBackward(const TrainingTrace& t, ir::BackwardSplit split, const codegen::CompileOptions& options);

  /// Gives `out` (forward output 0 of a call on `x` that ran `forward` and produced
  /// `outputs`) the autograd node that runs this backward.
  void attach(Tensor& out, const Tensor& x, const Trace& forward,
              std::vector<std::shared_ptr<rt::Storage>>& outputs) const;

  const codegen::Executable& executable() const { return *exe_; }

 private:
  friend class CompiledBackwardNode;
  std::string name_;
  std::vector<ir::BackwardSplit::Saved> saved_;
  std::vector<int> params_, consts_;  // indices into the trace's parameters and constants
  std::vector<int> gradients_;        // per backward output: a parameter's index in the trace, -1 for x
  std::vector<Type> saved_types_, output_types_;
  std::shared_ptr<codegen::Executable> exe_;
};

/// A training trace, compiled: the forward (outputs: the block's output, then the saved
/// values) and, if the output requires grad, the backward.
struct CompiledTraining {
  CompiledTrace forward;
  std::shared_ptr<const CompiledBackward> backward;

  /// A hybridized training call: -1 and `out` (with its backward node), or the failed guard.
  int try_run(const Tensor& x, Tensor& out) const;
};

/// Splits and compiles `t` (bj::Error if LLVM fails).
CompiledTraining compile_training(const TrainingTrace& t, const codegen::CompileOptions& options = {});

}  // namespace bj
