// What compiled code calls back into: the runtime's kernels for nodes that
// codegen does not inline (movement ops, large matrix products through
// oneDNN, integer work), and the thread pool for large loops. A plain C ABI,
// so generated code can call it by address.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "ir/ops.h"
#include "runtime/kernels.h"

namespace bj::rt {

/// One node compiled code runs through the runtime: its op, attributes and types.
struct JitNode {
  ir::OpKind op;
  ir::OpAttrs attrs;
  std::vector<Type> inputs;
  Type output;
  /// Set for a product with its epilogue fused into oneDNN (inputs A, B and
  /// the bias if any): runs matmul_fused instead of the op's kernel.
  std::optional<FusedMatmul> fused;
  /// Set for a convolution whose weights (input 1) compiled code keeps packed: runs conv_packed.
  std::optional<PackedConv> conv;
  /// In code for every batch size (ir/batch.h): per input, and for the output, how many times the
  /// call's batch size dim 0 is (0: as the type says). Empty in code for one batch size.
  std::vector<int32_t> input_batch;
  int32_t output_batch = 0;
};

/// The table a compiled function's callbacks index into (read-only while running).
struct JitContext {
  std::vector<JitNode> nodes;
};

}  // namespace bj::rt

extern "C" {
/// Runs node `id` of `ctx` (a JitContext) on `inputs`, writing `out`.
void bj_rt_call_node(const void* ctx, int32_t id, const void* const* inputs, void* out);
/// The same in code for every batch size: types with a batched dim 0 take `batch`.
void bj_rt_call_node_batch(const void* ctx, int32_t id, const void* const* inputs, void* out, int64_t batch);
/// Calls fn(begin, end, bufs) over [0, n) in chunks on the runtime's threads
/// (runtime/threads.h); one call on the calling thread when one thread is configured.
void bj_rt_parallel_for(void (*fn)(int64_t, int64_t, void* const*), int64_t n, void* const* bufs);
}
