// CPU kernels for every op of the ops table, over contiguous row-major
// buffers. Eager mode, the reference interpreter and (for ops codegen does
// not inline) compiled code all call these.
#pragma once

#include <span>

#include "ir/ops.h"

namespace bj::rt {

/// A contiguous buffer seen as a value of type `type`.
struct View {
  void* data;
  Type type;
};
struct ConstView {
  const void* data;
  Type type;
};

/// Runs `op` on `in`, writing `out`. `attrs` must be canonical and `out.type`
/// the result of ir::infer (the caller checks; kernels do not re-validate).
/// `out` may alias an input of an elementwise op of the same shape (in-place ops).
void run_kernel(ir::OpKind op, std::span<const ConstView> in, const ir::OpAttrs& attrs, const View& out);

/// Threads used by large kernels (OpenMP); BJ_NUM_THREADS or the core count.
int num_threads();
void set_num_threads(int n);

}  // namespace bj::rt
