// How each node of an optimized graph will run in compiled code: inlined
// as loops in the generated function, or called back into the runtime's
// kernels (movement ops, large matrix products through oneDNN, integer
// work). Also gives memory to values the runtime must write that memory
// planning left in registers. Computed without LLVM, so a cache hit needs
// no LLVM at all.
#pragma once

#include <optional>
#include <unordered_map>

#include "ir/graph.h"
#include "runtime/jit_abi.h"

namespace bj::codegen {

/// Products with at least this many multiply-adds go to oneDNN.
inline constexpr int64_t kInlineMatmulMaxMacs = int64_t{1} << 18;

/// A weight matrix kept in another layout, repacked by the executable only
/// when the parameter changes: the transposed right operand of a small
/// product kept [K, N16] (N padded with zeros to a multiple of 16) so the
/// product runs on whole vectors, or the right operand of a oneDNN product
/// reordered to the layout oneDNN prefers.
struct Packing {
  int param;         ///< index among the graph's parameters
  int64_t n, k;      ///< transposed packing: the parameter is [n, k]
  int64_t n_pad() const { return (n + 15) / 16 * 16; }
  std::optional<rt::FusedMatmul> dnnl;  ///< set: reordered for this product instead
};

/// A large product with its epilogue (bias add, relu) run by one oneDNN primitive.
struct DnnlProduct {
  int32_t callback;   ///< index in Plan::context
  int packing = -1;   ///< slot of its reordered weights, -1: B as stored
  const ir::Value* bias = nullptr;
  const ir::Value* result;  ///< the region's (or node's) single result
};

struct Plan {
  /// Small products that read a packed weight: node -> index into `packings`.
  std::unordered_map<const ir::Node*, int> packed;
  std::vector<Packing> packings;
  /// Packed products whose N is not a multiple of 16: arena offset of their padded [M, N16] rows.
  std::unordered_map<const ir::Node*, int64_t> padded_product;
  /// Large products (a lone matmul node or a contraction region) oneDNN runs whole.
  std::unordered_map<const ir::Node*, DnnlProduct> dnnl;
  /// Nodes run through bj_rt_call_node, with their index in `context`.
  std::unordered_map<const ir::Node*, int32_t> callback;
  /// Extra arena space (after memory planning's) for values that need memory.
  std::unordered_map<const ir::Value*, int64_t> scratch;
  int64_t arena_bytes = 0;  ///< memory planning's arena plus scratch
  rt::JitContext context;
};

/// True if codegen emits loops for elementwise op `n` (f32 and bool values).
bool inline_elementwise(const ir::Node& n);
/// True if codegen emits loops for this reduction (f32 sum/max/min).
bool inline_reduction(const ir::Node& n);
/// True if codegen emits loops for this matrix product (2-D f32, small).
bool inline_matmul(const ir::Node& n);

Plan make_plan(const ir::Graph& g);

}  // namespace bj::codegen
