// How each node of an optimized graph will run in compiled code: inlined
// as loops in the generated function, or called back into the runtime's
// kernels (movement ops, large matrix products through oneDNN, integer
// work). Also gives memory to values the runtime must write that memory
// planning left in registers. Computed without LLVM, so a cache hit needs
// no LLVM at all.
#pragma once

#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "ir/graph.h"
#include "runtime/jit_abi.h"

namespace bj::codegen {


/// A weight kept in another layout, repacked by the executable only when
/// the parameter changes: the transposed right operand of a small product
/// kept [K, N16] (N padded with zeros to a multiple of 16) so the product
/// runs on whole vectors, the right operand of a oneDNN product reordered to
/// the layout oneDNN prefers, or a convolution's weights likewise.
struct Packing {
  int param;         ///< index among the graph's parameters
  int64_t n, k;      ///< transposed packing: the parameter is [n, k]
  int64_t n_pad() const { return (n + 15) / 16 * 16; }
  std::optional<rt::FusedMatmul> dnnl;  ///< set: reordered for this product instead
  std::optional<rt::PackedConv> conv;   ///< set: a convolution's weights, in oneDNN's layout
};

/// A large product with its bias add run by one oneDNN primitive; what follows it in its region
/// (relu, tanh, ...) is an elementwise loop over the primitive's result. Also a convolution
/// with packed weights (no bias, nothing fused).
struct DnnlProduct {
  int32_t callback;   ///< index in Plan::context
  int packing = -1;   ///< slot of its reordered weights, -1: B as stored
  const ir::Value* bias = nullptr;
  const ir::Value* result;  ///< what the primitive writes (the product, or product + bias)
  size_t fused = 1;         ///< region body nodes the primitive covers; the rest are the epilogue loop
};

/// How one top-level op or region runs in compiled code.
enum class Strategy : uint8_t {
  kLoops,           ///< one loop nest in the generated code (elementwise, reduction, small product)
  kExactLoops,      ///< loops computing eager's values bit for bit (in a guard's input cone): sums
                    ///< and small products in the canonical order, exact elementwise ops
  kPacked,          ///< a small product over a packed weight, register-blocked; its epilogue per tile
  kDnnl,            ///< one oneDNN primitive (the product with its bias), then an epilogue loop
  kRuntimeProduct,  ///< the product through the runtime's kernel, then an epilogue loop
  kRuntime,         ///< every node through bj_rt_call_node (eager mode's kernels)
};
std::string_view strategy_name(Strategy s);

struct NodePlan {
  Strategy strategy = Strategy::kLoops;
  int packing = -1;             ///< kPacked: index into Plan::packings
  int64_t padded_offset = -1;   ///< kPacked, tiles too wide for stack scratch and N not a multiple
                                ///< of 16: arena offset of the padded rows
  std::optional<DnnlProduct> dnnl;  ///< kDnnl
};

struct Plan {
  /// Every top-level op and region node (literals and guards need no plan).
  std::unordered_map<const ir::Node*, NodePlan> nodes;
  const NodePlan& at(const ir::Node& n) const;
  /// The nodes planned with strategy `s`.
  std::vector<const NodePlan*> with(Strategy s) const;
  std::vector<Packing> packings;
  /// Nodes (top-level, or in a region's body) run through bj_rt_call_node: their index in `context`.
  std::unordered_map<const ir::Node*, int32_t> callback;
  /// Extra arena space (after memory planning's) for values that need memory.
  std::unordered_map<const ir::Value*, int64_t> scratch;
  int64_t arena_bytes = 0;  ///< memory planning's arena plus scratch
  /// A graph for every batch size (ir/batch.h): bytes per unit of batch size after arena_bytes,
  /// where batched values live (their offsets and their `scratch` are per unit).
  int64_t arena_row_bytes = 0;
  rt::JitContext context;
  /// Per commit of the graph: its value is computed straight into the target's memory (the loop
  /// that computes it reads the target only at the element it writes, no guard follows it and
  /// nothing after it reads the target). Other commits are copied at the end, in `commit_order`.
  std::vector<bool> commit_in_place;
  std::vector<int> commit_order;
};

/// Exponents of pow that codegen computes inline: 1/2 and nonzero integers up to this magnitude
/// (binary powering); other exponents call the runtime's kernel (libm's powf, as eager mode does).
inline constexpr int kPowMaxInlineExponent = 16;
bool inline_pow(double p);
/// True if codegen emits loops for elementwise op `n` (f32 and bool values).
bool inline_elementwise(const ir::Node& n);
/// True if codegen emits loops for `n`, a cross_entropy or cross_entropy_grad of f32 logits
/// [N, C] (not in code for every batch size), outside guard cones and exact mode.
bool inline_loss(const ir::Node& n);
/// Taps (in_channels * kernel area) up to which codegen computes a convolution and its weight
/// gradient as loops (inline_conv): one vector accumulator per tap must fit in registers.
inline constexpr int64_t kInlineConvTaps = 28;
/// The widest output row (input row, for a pooling gradient) that convolution and pooling loops
/// take: each row's vectors are straight-line code. Windows of pools are limited to
/// kInlineConvTaps cells.
inline constexpr int64_t kInlineWindowRow = 256;
/// True if codegen emits loops for `n`, a conv2d or conv2d_grad_weight of f32 NCHW images with
/// at most kInlineConvTaps taps, one group, stride 1 along rows of the image and output rows of
/// at most kInlineWindowRow (not in code for every batch size), outside guard cones and exact mode.
bool inline_conv(const ir::Node& n);
/// True if codegen emits loops for `n`, an avg_pool2d of f32 NCHW images or the gradient of one
/// whose windows do not overlap, with windows of at most kInlineConvTaps cells and rows of at
/// most kInlineWindowRow (not in code for every batch size), outside guard cones and exact mode.
/// Both give eager's results bit for bit.
bool inline_pool(const ir::Node& n);
/// True if op `n`'s inline loop gives eager's kernel's result bit for bit on every input: the
/// elementwise ops IEEE arithmetic rounds once (add, mul, div, sqrt, compares, selects...), not
/// the approximated ones (exp, log, tanh, sigmoid, pow other than x^1 and x^2).
bool exact_inline(const ir::Node& n);
/// True if codegen can compute top-level node `n` (an op or a region) in a guard's input cone as
/// eager mode does, bit for bit: exact elementwise ops, f32 sums over trailing axes of at most
/// rt::kSumBlock elements per row (in the canonical order), small 2-D products with an exact
/// epilogue (each element summed as eager's small-product kernel sums it).
bool exact_lowering(const ir::Node& n);
/// True if codegen copies for movement op `n` itself, exactly: a reshape (its bytes, any dtype)
/// or an expand of f32 or bool (a loop reading the input with broadcast strides).
bool inline_movement(const ir::Node& n);
/// True if codegen emits loops for this reduction (f32 sum/max/min).
bool inline_reduction(const ir::Node& n);
/// True if codegen emits loops for this matrix product (2-D f32): a small one (a product whose rows
/// scale with the batch, ir/batch.h, is judged per row: loops when n * k is small), or a row
/// product with few terms per element (k <= kSkinnyRowK) however many rows it has.
bool inline_matmul(const ir::Node& n);
/// Terms per element (k) up to which a row product (row_product()) runs as loops at any size, and
/// a product over a transposed parameter as the packed kernel: oneDNN's blocking over k gains
/// nothing there (measured on the seed MLP's 512-row layers, Zen 5: its 20 -> 256 layer ran at the
/// same speed in both), and the loops apply the region's epilogue to each row while it is in L1
/// instead of in a second pass over the whole product in memory.
inline constexpr int64_t kSkinnyRowK = 16;
inline constexpr int64_t kSkinnyPackedK = 32;
/// Floats of scratch on the stack per row of a product before the epilogue reads it (a row
/// product computes one or two rows at a time, a packed tile up to 4): wider rows go through memory.
inline constexpr int64_t kRowScratchFloats = 8192;
/// True if an inline product (outside guard cones) runs as row updates: B is read as stored
/// (not transposed), so each row of C is sum_k A(i,k) * B(k,:) over whole vectors of B's row
/// (with an epilogue, the row goes to stack scratch first when at most kRowScratchFloats wide,
/// to memory otherwise).
bool row_product(const ir::Node& mm);
/// True if the packed kernel's tiles of `n_pad`-float rows go to stack scratch for the epilogue.
inline bool packed_tiles_in_scratch(int64_t n_pad) { return 4 * n_pad <= kRowScratchFloats; }
/// True if row product `mm`'s rows are computed into stack scratch for its region's epilogue.
bool row_product_in_scratch(const ir::Node& mm);
/// Columns up to which a product of A and a transposed B ([N, K], both as stored) with k >= 16 runs
/// as narrow_dot loops at any size oneDNN would run on one thread (kDnnlParallelMacs): a layer
/// onto 10 classes, where oneDNN wastes most of its 16-column vectors.
inline constexpr int64_t kNarrowDotN = 16;
/// True if dot product `mm` (dot_product()) has at most kNarrowDotN columns and k >= 16: each row
/// (two at a time for at most 12 columns) keeps one 16-lane accumulator per column along k, then
/// one transposing reduction gives the row's sums (Lowerer::emit_narrow_dot).
bool narrow_dot(const ir::Node& mm);
/// True if an inline product (outside guard cones) runs as blocked dot products: A as stored and
/// B transposed, so C(i,j) sums A's row i times B's row j over vectors along k, eight columns of
/// C at a time (the product goes to memory first when its region has an epilogue).
bool dot_product(const ir::Node& mm);

/// The top-level nodes whose values feed a guard (its input cone; a region counts whole). They
/// compute exactly what eager mode computes, bit for bit, so a compiled call takes the path eager
/// would take: kExactLoops where exact_lowering() holds, else kRuntime (eager's own kernels).
std::unordered_set<const ir::Node*> guard_cone(const ir::Graph& g);

/// What the planner may assume about how the code is called.
struct PlanOptions {
  /// The parameters change between calls (training): packing a weight costs its size on every
  /// call, so oneDNN products and small products whose rows are few read it as stored.
  bool params_change = false;
  /// Every node planned as a guard's input cone is (sweep 1): exact loops where they give eager's
  /// values bit for bit, eager's kernels elsewhere. No oneDNN fusion, no packing.
  bool exact = false;
};

/// The plan of every node of an optimized graph, in four sweeps (plan.cpp).
Plan make_plan(const ir::Graph& g, const PlanOptions& options = {});

}  // namespace bj::codegen
