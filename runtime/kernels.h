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

/// The canonical summation order, shared by eager mode's kernels and the
/// code generated for a guard's input cone, so both round alike, bit for bit.
/// A sum of n terms t[0..n) (for a dot product, t[k] = a[k] * b[k], rounded)
/// keeps kSumLanes accumulators starting at -0 (the identity of IEEE
/// addition, so -0 sums stay -0); lane l adds t[k] for k = l (mod kSumLanes)
/// in increasing k; then lanes are folded in halves (l += l + 8 for l < 8,
/// then 4, 2, 1) and lane 0 is the sum. Rows longer than kSumBlock are
/// summed per block in this order and the blocks added in double.
inline constexpr int kSumLanes = 16;
inline constexpr int64_t kSumBlock = 4096;

/// Elements below which a loop (an eager kernel's or a compiled one's) stays on the calling thread.
/// Waking a sleeping worker costs tens of microseconds on a virtual machine (an interrupt between
/// cores goes through the hypervisor): at 2^16 the seed MLP's batch-512 step ran 1.6x slower on two
/// threads than on one (a Zen 5 VM); at 2^18 it runs as fast, and the transformer-block's two-thread
/// call got faster too.
inline constexpr int64_t kParallelGrain = int64_t{1} << 18;

/// Matrix products with at least this many multiply-adds run through oneDNN, in eager mode and in
/// compiled code alike; smaller ones are loops.
inline constexpr int64_t kDnnlMinMacs = int64_t{1} << 18;  // 64^3
/// oneDNN products of fewer multiply-adds run on the calling thread alone: waking the other
/// threads costs more than they save (measured: the seed MLP's batch-64 products, 330 K each,
/// took 12 us on one thread and 18 us on two), and a thread whose core is busy stalls them.
inline constexpr int64_t kDnnlParallelMacs = int64_t{1} << 22;

/// A large 2-D product run by oneDNN with its bias add fused into the
/// primitive: C[m,n] = A·B + bias, A stored [m,k] ([k,m] if ta), B
/// stored [k,n] ([n,k] if tb), bias [n]. (No activation post-op: oneDNN's
/// relu turns NaN into 0 where eager mode keeps it.) With `packed_b`
/// the B pointer holds the weights reordered by matmul_pack_weight into the
/// layout oneDNN prefers (done once per weight version by the caller).
struct FusedMatmul {
  int64_t m = 0, n = 0, k = 0;
  bool ta = false, tb = false, bias = false, packed_b = false;
};
/// Creates (and caches) the primitive now, so the first run pays nothing.
void matmul_prepare(const FusedMatmul& f);
size_t matmul_packed_weight_bytes(const FusedMatmul& f);
void matmul_pack_weight(const FusedMatmul& f, const float* b, void* packed);
void matmul_fused(const FusedMatmul& f, const float* a, const void* b, const float* bias, float* c);

/// A convolution run by compiled code with its weights kept in the layout oneDNN prefers
/// (reordered by conv_pack_weight once per weight version, by the caller): the same primitive
/// as kernel_Conv2d's, without the weights' reorder on every call.
struct PackedConv {
  Shape x, w, y;       ///< input, weight and result shapes
  ir::OpAttrs window;  ///< stride, padding, dilation, groups (canonical)
};
size_t conv_packed_weight_bytes(const PackedConv& c);
void conv_pack_weight(const PackedConv& c, const float* w, void* packed);
void conv_packed(const PackedConv& c, const float* x, const void* packed_w, float* y);

/// Threads used by large kernels and loops (runtime/threads.h) and by oneDNN (OpenMP); BJ_NUM_THREADS
/// or the core count.
int num_threads();
void set_num_threads(int n);

}  // namespace bj::rt
