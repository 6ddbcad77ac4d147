// Type inference: checks an op's inputs and attributes against the ops
// table's rule for it and gives the result type. Shared by eager dispatch,
// the tracer and the verifier, so every place agrees on shapes and errors.
#pragma once

#include <span>

#include "ir/ops.h"

namespace bj::ir {

/// Checks `inputs` and `attrs` for `op` and returns the result type.
/// Canonicalizes `attrs` in place (negative axes made non-negative and
/// sorted, a -1 in a reshape target resolved, slice bounds clamped), so the
/// canonical form is what kernels and the IR see. Throws ShapeError,
/// DTypeError, IndexError or ValueError naming the op and the input types.
Type infer(OpKind op, std::span<const Type> inputs, OpAttrs& attrs);

/// NumPy broadcasting of two shapes; throws ShapeError (naming `op`) if they do not broadcast.
Shape broadcast_shapes(std::string_view op, const Shape& a, const Shape& b);

/// Maps axis (possibly negative) into [0, rank); throws IndexError naming `op`.
int normalize_axis(std::string_view op, int64_t axis, int rank);

}  // namespace bj::ir
