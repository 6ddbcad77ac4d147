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

/// A large 2-D product run by oneDNN with its epilogue fused into the
/// primitive: C[m,n] = act(A·B + bias), A stored [m,k] ([k,m] if ta), B
/// stored [k,n] ([n,k] if tb), bias [n], act relu or none. With `packed_b`
/// the B pointer holds the weights reordered by matmul_pack_weight into the
/// layout oneDNN prefers (done once per weight version by the caller).
struct FusedMatmul {
  int64_t m = 0, n = 0, k = 0;
  bool ta = false, tb = false, bias = false, relu = false, packed_b = false;
};
/// Creates (and caches) the primitive now, so the first run pays nothing.
void matmul_prepare(const FusedMatmul& f);
size_t matmul_packed_weight_bytes(const FusedMatmul& f);
void matmul_pack_weight(const FusedMatmul& f, const float* b, void* packed);
void matmul_fused(const FusedMatmul& f, const float* a, const void* b, const float* bias, float* c);

/// Threads used by large kernels (OpenMP); BJ_NUM_THREADS or the core count.
int num_threads();
void set_num_threads(int n);

}  // namespace bj::rt
