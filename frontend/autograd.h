// Reverse-mode autograd, PyTorch-style: recording is always on for ops
// whose inputs require grad (unless a NoGradGuard is active); backward()
// walks the recorded graph in reverse topological order and accumulates
// gradients into the leaves' grad(). Gradient formulas live next to their
// ops in ir/ops.def and are written with Tensor ops, so a traced backward
// is recorded like any other code.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "frontend/tensor.h"
#include "ir/ops.h"

namespace bj {

/// Whether ops record gradients on this thread (on by default).
bool is_grad_enabled();
void set_grad_enabled(bool on);

/// Turns recording off for its scope (inference, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(is_grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

namespace autograd {

/// A step of the recorded graph: gets its output's gradient, gives each input's.
struct AutogradMeta;

struct Node {
  virtual ~Node() = default;
  /// Per input, the node that receives that input's gradient (null: none needed).
  std::vector<std::shared_ptr<Node>> next;
  /// Fills `input_grads` (sized like next) for the inputs that need one.
  virtual void apply(const Tensor& grad, std::vector<Tensor>& input_grads) = 0;
  /// "mul", "accumulate_grad".
  virtual std::string name() const = 0;
  /// The leaf whose grad() this node accumulates into (null for other nodes).
  virtual const AutogradMeta* leaf() const { return nullptr; }
};

/// Autograd state of a tensor (absent for tensors that never required grad).
struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;      ///< null for leaves
  std::weak_ptr<Node> accumulator;    ///< a leaf's AccumulateGrad node, while a graph uses it
};

/// True if the op's results can carry gradients (its grad column is not NO_GRAD).
bool is_differentiable(ir::OpKind op);
/// True if running `op` on `inputs` now must be recorded.
bool must_record(ir::OpKind op, std::span<const Tensor> inputs, DType result_dtype);
/// Records `op` (just run on `inputs`, giving `result`) and makes result require grad.
void record(ir::OpKind op, const ir::OpAttrs& attrs, std::span<const Tensor> inputs, Tensor& result);

/// State captured before an in-place op overwrites its first input.
struct InplaceRecord {
  std::shared_ptr<Node> node;
};
/// Before an in-place `op` on inputs[0]: checks it is allowed and saves what
/// backward needs. Returns an empty record if nothing must be recorded.
InplaceRecord begin_inplace(ir::OpKind op, const ir::OpAttrs& attrs, std::span<const Tensor> inputs);
/// After the in-place write: inputs[0] now carries the op's history.
void finish_inplace(InplaceRecord& rec, Tensor& self);

/// Runs backward from `root` with initial gradient `grad` (ones for a one-element root if undefined).
void backward(const Tensor& root, const Tensor& grad);

/// The gradients of `root` (with output gradient `grad`, as for backward) with respect to the
/// tensors `wrt` (leaves or not; each must require grad), returned instead of accumulated
/// (undefined where none arrives); the walk stops at them. No grad() changes; AutogradError if
/// a leaf not in `wrt` would get a gradient (its accumulation could not be returned).
std::vector<Tensor> grad(const Tensor& root, const Tensor& grad, const std::vector<Tensor>& wrt);
/// The same from several roots at once, each with its output gradient.
std::vector<Tensor> grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                         const std::vector<Tensor>& wrt);

/// Where the gradient of `t` goes (its grad_fn or its leaf's accumulator); null if t needs none.
std::shared_ptr<Node> gradient_edge(const Tensor& t);
/// Sets the grad() of `leaf` (a tensor that requires grad) to `grad`: what backward leaves after
/// zero_grad, for a compiled step that computed the gradient itself.
void set_grad(const Tensor& leaf, Tensor grad);
/// The storage of `leaf`'s gradient when nothing but `leaf` holds that gradient or its storage and
/// it has type `type`; else null. A compiled step may write the next gradient there, unseen by
/// anyone, instead of allocating one (eager's zero_grad would have dropped the old one).
rt::Storage* sole_grad_storage(const Tensor& leaf, const Type& type);
/// Moves `leaf`'s gradient out (leaving none), for a caller that puts it back with set_grad.
Tensor take_grad(const Tensor& leaf);
/// Makes `t` require grad with `node` as its grad_fn (for nodes made outside the op table,
/// such as a compiled backward).
void set_grad_fn(Tensor& t, std::shared_ptr<Node> node);

}  // namespace autograd
}  // namespace bj
