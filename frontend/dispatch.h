// Eager dispatch: the one place every op runs through. It checks and infers
// the result type with ir::infer, allocates the result from the caching
// allocator (or aliases the input for view ops), and calls the op's kernel.
// The tracer and autograd hook in here.
#pragma once

#include <span>

#include "frontend/tensor.h"
#include "ir/ops.h"

namespace bj::detail {

/// Runs `op` eagerly on `inputs` and returns its result.
Tensor apply(ir::OpKind op, std::span<const Tensor> inputs, ir::OpAttrs attrs = {});
inline Tensor apply(ir::OpKind op, std::initializer_list<Tensor> inputs, ir::OpAttrs attrs = {}) {
  return apply(op, std::span<const Tensor>(inputs.begin(), inputs.size()), std::move(attrs));
}

/// Runs an elementwise `op` on (self, other...) and writes the result into
/// self's storage; ShapeError if the result's shape differs from self's.
void apply_inplace(ir::OpKind op, Tensor& self, std::initializer_list<Tensor> others);

/// Copies `value`'s data into `target` (state: a constant, or a parameter outside grad mode), as
/// an in-place op would, and records it as the traced graph's commit of `target` when tracing.
/// ShapeError unless both have one type.
void assign_state(const Tensor& target, const Tensor& value);

/// A new tensor of `type` with uninitialized storage.
Tensor empty(const Type& type);

/// A tensor of `type` over `storage` (compiled code's outputs), with no autograd state.
Tensor tensor_over(std::shared_ptr<rt::Storage> storage, const Type& type);

}  // namespace bj::detail
