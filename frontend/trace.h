// Tracing: run a block's forward eagerly with a recorder switched on and get
// the graph of what it computed, with a guard for every read of tensor data
// by host code (README, "Tracing and the IR"). The trace's outputs are the eager
// outputs. A traced graph runs on new inputs through the reference
// interpreter, which also tells whether the new inputs take the traced path.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "codegen/executable.h"
#include "frontend/nn/block.h"
#include "frontend/tensor.h"
#include "ir/graph.h"

namespace bj {

struct Trace {
  std::shared_ptr<ir::Graph> graph;
  std::vector<Tensor> outputs;         ///< the eager outputs of the traced call
  std::vector<nn::Parameter> params;   ///< bound to graph->params(), in order (by reference)
  std::vector<Tensor> consts;          ///< bound to graph->consts(), in order (by reference)
  std::vector<std::string> notes;      ///< what the trace had to assume (captured or random tensors)
  bool random_frozen = false;          ///< a random tensor became a literal: the graph repeats its numbers
  /// The graph input holding the generator's state (i64[2]: seed, first counter) if forward drew
  /// random numbers with rand(), else -1; each run reserves `random_blocks` counters for it.
  int rng_input = -1;
  uint64_t random_blocks = 0;
};

/// Traces `block` called on `input`. Parameters become graph parameters
/// (one per parameter, however often used), the block tree's constants
/// become named constants, tensors made inside forward become literals, and
/// a tensor captured from elsewhere becomes a named constant with a note.
/// `where` is the block call's site (for origins when `block` is a child
/// called from a parent's forward).
Trace trace(nn::Block& block, const Tensor& input, std::source_location where = std::source_location::current());
/// The same for a call with a list of inputs (Block::forward_many): the graph's inputs are the
/// defined ones (an undefined input is absent, not an input), its outputs every output.
Trace trace(nn::Block& block, const Tensors& inputs, std::source_location where = std::source_location::current());
/// A training call traced: forward and backward as one joint graph.
struct TrainingTrace {
  /// The joint graph's inputs are the traced inputs and one gradient input per forward output
  /// that requires grad ("grad", or "grad0", "grad1", ... for several outputs); its outputs are
  /// the forward's outputs, then one gradient per entry of `gradients`. `outputs` holds the eager
  /// values of the same (the outputs with their eager autograd graph, and the gradients autograd
  /// computed while recording).
  Trace trace;
  int forward_outputs = 1;  ///< how many of the graph's outputs the forward returns
  /// The forward outputs that have a gradient input, in the order of those inputs.
  std::vector<int> grad_outputs;
  /// Per gradient output: the index in trace.params of its parameter, or -1 - i for input i.
  std::vector<int> gradients;
  bool backward = false;  ///< an output requires grad, so the graph has a backward
};

/// Traces `fn(inputs)` (which calls `block`; its parameters become graph parameters) in grad
/// mode, and then the backward of its outputs from gradient inputs with respect to the
/// parameters it used and the inputs that require grad, recorded from autograd's formulas. No
/// grad() changes. TraceError if the backward cannot be recorded (it reads data on the host, or
/// reaches a tensor that requires grad and is neither).
/// What a whole-step trace (nn::TrainStep) records after the backward.
struct AfterBackward {
  /// Tensors bound as named constants before `fn` runs (an optimizer's moments).
  std::vector<std::pair<std::string, Tensor>> state;
  /// Runs traced once the gradients are computed (the loss's autograd graph is gone by then),
  /// with the trace's parameters and, per gradient, its index there (or -1 - i for input i);
  /// tensors it changes in place (parameters, `state`) become the graph's commits.
  std::function<void(const std::vector<nn::Parameter>& params, const std::vector<int>& gradients,
                     const std::vector<Tensor>& grads)>
      run;
};
TrainingTrace trace_training(nn::Block& block, const std::vector<Tensor>& inputs,
                             const std::function<Tensors(const std::vector<Tensor>&)>& fn,
                             const AfterBackward& after = {});
/// The same for one call of `block` on `input`.
TrainingTrace trace_training(nn::Block& block, const Tensor& input,
                             std::source_location where = std::source_location::current());

/// Traces a function of several tensors (the graph is named `name`).
Trace trace(const std::string& name, const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
            const std::vector<Tensor>& inputs);

/// The result of running a trace's graph on new inputs.
struct GraphRun {
  bool guards_hold = true;
  std::vector<Tensor> outputs;  ///< empty when a guard failed
  int failed_guard = -1;        ///< index among the graph's guards
  std::string guard;            ///< the failed guard as printed ("guard %12 == true")
  ir::Origin origin;            ///< where it was recorded
};

/// Interprets the trace's graph on `inputs` (same count, dtypes and shapes as
/// traced; ShapeError otherwise), with the parameters' current values. If every
/// guard held, the graph's commits write the parameters and constants (state the
/// traced code changed in place), as compiled runs do.
GraphRun run(const Trace& t, const std::vector<Tensor>& inputs);

/// A trace compiled by LLVM: the same bindings, run as machine code.
class CompiledTrace {
 public:
  CompiledTrace(Trace t, std::shared_ptr<codegen::Executable> exe);
  /// Like bj::run, through the compiled code (reentrant).
  GraphRun run(const std::vector<Tensor>& inputs) const;
  /// The hot path of a hybridized call: one input whose type the caller
  /// has matched with the trace's, one output. Returns -1 and sets `out`, or
  /// the index of the failed guard (and leaves `out` alone).
  int try_run(const Tensor& x, Tensor& out) const;
  /// The same, giving every output's storage (in the graph's order).
  int try_run(const Tensor& x, std::vector<std::shared_ptr<rt::Storage>>& outputs) const;
  /// The same for a graph of several inputs (without the generator's state, which this adds),
  /// whose types the caller has matched with the trace's.
  /// `reuse` as for Executable::run.
  int try_run(std::span<const Tensor> inputs, std::vector<std::shared_ptr<rt::Storage>>& outputs,
              std::span<rt::Storage* const> reuse = {}) const;
  /// Output i's type for a call on `inputs` (code for every batch size: at their batch size).
  Type output_type(size_t i, std::span<const Tensor> inputs) const;
  /// Guard `index` as printed ("guard %12 == true") and where it was recorded.
  std::string describe_guard(int index, ir::Origin* origin = nullptr) const;
  /// True if guard `index` compares an exact value the host read as a plain number (an item()
  /// used in C++ arithmetic, a data<T>() read): each distinct value is another path.
  bool guard_reads_exact_value(int index) const;
  /// How many guards the compiled graph checks.
  int guard_count() const { return exe_->graph().num_guards(); }
  const codegen::Executable& executable() const { return *exe_; }
  const Trace& trace() const { return trace_; }

 private:
  Trace trace_;
  std::shared_ptr<codegen::Executable> exe_;
  std::vector<int> written_;  ///< what the graph commits: param i as i, const i as -1 - i
};

/// Optimizes and JIT-compiles the trace's graph (bj::Error if LLVM fails).
CompiledTrace compile(const Trace& t, const codegen::CompileOptions& options = {});

/// True while a trace is being recorded on this thread.
bool is_tracing();

namespace detail {
// Hooks called by eager dispatch and host reads; no-ops unless tracing.
void trace_op(ir::OpKind op, const ir::OpAttrs& attrs, std::span<const Tensor> inputs, const Tensor& result);
/// Before an in-place op writes inputs[0]: the values of the inputs (opaque).
std::vector<const void*> trace_inplace_begin(ir::OpKind op, std::span<const Tensor> inputs);
void trace_inplace_end(ir::OpKind op, const ir::OpAttrs& attrs, const std::vector<const void*>& before, const Tensor& self);
void trace_created(const Tensor& t, bool random);
struct RandomDraw;
/// rand() drew `t` from the generator's counters in `draw`: a rand_uniform op of the state input.
void trace_random(const Tensor& t, const RandomDraw& draw);
/// `if (t)`: `return_address` is in the user's code, for the guard's file:line.
void trace_truth(const Tensor& t, bool outcome, const void* return_address);
/// A guard of a recorded graph replayed eagerly (an imported block): the truth of `t` was
/// `outcome`; the guard keeps the file:line it was first recorded at.
void trace_replayed_guard(const Tensor& t, bool outcome, const ir::Origin& recorded);
/// `target` (state: a parameter or a constant) took `value`'s data (dispatch's assign_state).
void trace_assign(const Tensor& target, const Tensor& value);
void trace_raw_read(const Tensor& t, const std::source_location& where);
/// For item(): the graph value of t and the trace's epoch (null/0 when not tracing).
std::pair<const void*, uint64_t> trace_scalar_source(const Tensor& t);
}  // namespace detail

}  // namespace bj
