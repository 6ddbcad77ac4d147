// Internal to codegen/: the Lowerer, which turns an optimized, planned graph
// into one LLVM function (lower.h is the interface). It is defined in parts:
//   lower.cpp              the entry function: buffers, guards, callbacks into
//                          the runtime, oneDNN products, output copies, and the
//                          dispatch of each node on its plan's Strategy
//   lower_loops.cpp        loop functions (a noinline wrapper around an
//                          always-inlined body with noalias operands, run
//                          directly or on the thread pool), counted loops,
//                          accumulator loops, the canonical summation order
//   lower_elements.cpp     the element semantics: each elementwise op's scalar
//                          expression, comparisons, reduction combines
//   lower_elementwise.cpp  elementwise regions: one loop nest
//   lower_reduction.cpp    reduction regions: accumulations (and exact row sums)
//   lower_row.cpp          row regions: softmax, LayerNorm, a row at a time
//   lower_contraction.cpp  contraction regions: dot-product loops, the
//                          register-blocked kernel over packed weights
//   lower_loss.cpp         cross-entropy and its gradient, a row (or 16 rows) at a time
//   lower_conv.cpp         few-tap convolutions and their weight gradients
//   lower_pool.cpp         average pooling and its gradient
#pragma once

#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <array>
#include <functional>
#include <unordered_set>
#include <unordered_map>
#include <vector>

#include "codegen/plan.h"
#include "ir/graph.h"
#include "ir/semantics.h"

namespace bj::codegen {

using LV = llvm::Value;
/// The scalars of the current iteration: graph value -> its LLVM value.
using Scalars = std::unordered_map<const ir::Value*, LV*>;
/// A loop nest's iteration space and its operands' element strides (ir/shape.h).
using Space = StridedSpace;

class Lowerer {
 public:
  Lowerer(const ir::Graph& g, const Plan& plan, llvm::LLVMContext& ctx, llvm::Module& m);
  /// Emits the entry function (lower.h) and everything it calls into the module.
  void run();

 private:
  // ---- the entry function: setup, buffers, guards, callbacks, copies (lower.cpp) ----
  /// The target CPU and features, vector width and nounwind on a generated function.
  void attributes(llvm::Function& f);
  /// Buffer addresses: inputs, params, consts, outputs, arena (see lower.h).
  void bind_buffers();
  /// The address of a value that lives in memory.
  LV* address(const ir::Value* v);
  void emit_guard(const ir::Node& n, int index);
  void emit_callback(const ir::Node& n);
  /// bj_rt_call_node(ctx, id, {inputs...}, out)
  void emit_call_node(int32_t id, const std::vector<LV*>& inputs, LV* out);
  /// A product (with its bias) run by one oneDNN primitive, B reordered when it is a parameter;
  /// the rest of its region as a loop over the primitive's result.
  void emit_dnnl_product(const ir::Node& n, const DnnlProduct& d);
  void emit_output_copies();
  /// The commits not computed in place, copied into their targets (after the output copies).
  void emit_commits();
  /// A stack slot in the entry block of the function being emitted.
  llvm::AllocaInst* entry_alloca(llvm::Type* t);
  /// A top-level op (a region of one) or region, as its plan says.
  void emit_planned(const ir::Node& n);
  /// The loop nest a top-level node needs: its region's kind, or for an op alone the kind of
  /// region it would anchor.
  static ir::RegionKind nest_kind(const ir::Node& n);

  // ---- loop functions, loops, operands, the canonical sum (lower_loops.cpp) ----
  /// A loop function: `void name(i64 begin, i64 end, ptr bufs)` loads its
  /// `n` operand pointers and calls `name.body(begin, end, ptr noalias...)`
  /// (always inlined, so the noalias facts reach the loops and the
  /// vectorizer needs no runtime overlap checks: memory planning keeps
  /// every value a loop writes apart from what it reads). Returns the
  /// wrapper, with the builder at the start of the body function.
  struct LoopFunction {
    llvm::Function* wrapper;
    llvm::Function* body;
  };
  LoopFunction begin_loop_function(const char* name, size_t n, std::vector<LV*>& ptrs);
  /// In main: fn(0, outer, addresses of `operands`), through the thread pool when `parallel`. In
  /// code for every batch size, the batch size goes along as one more operand, and with
  /// `per_outer` (work per outer iteration) set, whether to use the pool is decided at run time.
  void call_loop_function(llvm::Function* fn, const std::vector<LV*>& operands, int64_t outer, bool parallel);
  void call_loop_function(llvm::Function* fn, const std::vector<LV*>& operands, LV* outer, bool parallel,
                          int64_t per_outer = 0);
  /// A loop function over `space` (its outermost dim split by begin/end);
  /// `body(ivs, ptrs)` emits one innermost iteration. Called from main with
  /// the addresses of `operands`, in parallel when `parallel`.
  void emit_loop_function(const Space& space, const std::vector<LV*>& operands, bool parallel,
                          const std::function<void(const std::vector<LV*>& ivs, const std::vector<LV*>& ptrs)>& body,
                          bool batched = false);

  // ---- code for every batch size (ir/batch.h) ----
  bool dynamic() const { return g_.batch > 0; }
  /// The call's batch size, in the function being emitted (main or a loop function).
  LV* batch_size();
  /// `n`, a count at the graph's batch size: in code for every batch size, when `batched`, the
  /// same count at the call's (n / Graph::batch * batch).
  LV* extent(int64_t n, bool batched);
  /// The bytes of value `v` (at the call's batch size).
  LV* bytes_of(const ir::Value* v);
  /// True if a loop nest computing `body` and storing `stores` runs over a batched space.
  static bool batched(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores);
  /// Loop metadata on `latch`: LLVM unrolls that loop at most `count` times.
  void limit_unroll(llvm::Instruction* latch, int count);
  /// for (iv = lo; iv < hi; ++iv) body(iv)
  void loop(LV* lo, LV* hi, const std::function<void(LV*)>& body);
  /// An accumulator loop: for (k = 0; k < n; k += step) acc = next(k, acc), the accumulators
  /// (phis) kept in registers; returns their final values, `init` itself when n is 0 (no loop, no
  /// read). `latch`, if given, receives the loop's back branch (for loop metadata).
  using Accumulators = std::vector<LV*>;
  Accumulators accumulate(int64_t n, int64_t step, const Accumulators& init,
                          const std::function<Accumulators(LV* k, const Accumulators& acc)>& next,
                          llvm::BranchInst** latch = nullptr);
  /// if (cond) acc = then(acc): returns the accumulators after it (phis where the two paths meet).
  Accumulators when(LV* cond, const Accumulators& acc, const std::function<Accumulators(const Accumulators&)>& then);
  /// Element offset sum(iv[d] * stride[d]).
  LV* offset(const std::vector<LV*>& ivs, const Shape& strides);
  /// The LLVM type one element of `t` is stored as (bool as i8).
  llvm::Type* element_type(DType t) const;
  LV* load_element(const Type& t, LV* base, LV* off);
  void store_element(const Type& t, LV* v, LV* base, LV* off);
  /// The memory operands of a loop nest: addresses and element strides over its iteration space.
  struct Operands {
    std::vector<LV*> addrs;
    std::vector<Shape> strides;
  };
  void add_operand(Operands& o, const ir::Value* v, const Shape& strides);
  /// Loads the external values (operands [0, ext.size())) at the current iteration.
  void load_externals(const std::vector<const ir::Value*>& ext, const std::vector<LV*>& ptrs,
                      const std::vector<LV*>& ivs, const Space& space, Scalars& val);
  /// Stores `stores` (operands from `first` on) at the current iteration.
  void store_values(const std::vector<const ir::Value*>& stores, size_t first, const std::vector<LV*>& ptrs,
                    const std::vector<LV*>& ivs, const Space& space, const Scalars& val);
  /// External operands of `body` (values computed elsewhere), in first-use order.
  static std::vector<const ir::Value*> externals(const std::vector<const ir::Node*>& body);
  /// The canonical sum (rt::kSumLanes, runtime/kernels.h) of n terms: 16 lanes from -0, lane l
  /// adding the terms k = l (mod 16) in order, then folded in halves. `chunk(k0)` gives the 16
  /// terms k0..k0+15 as a vector, `term(k)` one term (for the tail, which fills lanes 0..n%16;
  /// the other lanes add -0, which changes nothing). Eager mode's kernels sum in this order and
  /// no fast-math flag lets LLVM change it, so the result is theirs bit for bit.
  LV* canonical_sum(int64_t n, const std::function<LV*(LV* k0)>& chunk, const std::function<LV*(LV* k)>& term);
  /// canonical_sum with scalar terms only (assembled into vectors a chunk at a time).
  LV* canonical_sum(int64_t n, const std::function<LV*(LV* k)>& term);
  /// canonical_sum of a[k] * b[k] over two contiguous rows, loading 16 floats at a time.
  LV* canonical_dot(int64_t n, LV* a, LV* b);

  // ---- element semantics (lower_elements.cpp) ----
  /// The scalar expression of elementwise op `n` on its operands' scalars `val`.
  LV* scalar(const ir::Node& n, const Scalars& val);
  /// ir::holds(c, a, b): ordered float predicates (false with NaN), unsigned ones for bools.
  LV* compare(ir::Cmp c, LV* a, LV* b, bool boolean);
  /// ir::maximum(a, b) (or ir::minimum when !max): NaN if either is, -0 below +0.
  LV* maximum(LV* a, LV* b, bool max);
  /// Where reduction `c` starts (ir::identity), or, over an empty axis, its result.
  LV* identity(ir::Combine c, bool empty);
  /// ir::combine(c, acc, v). Sums and products outside guard cones may be reassociated (so the
  /// loop vectorizes); max and min propagate NaN as ir::maximum and ir::minimum do.
  LV* combine(ir::Combine c, LV* acc, LV* v);

  // ---- one emitter per region kind (lower_elementwise.cpp, lower_reduction.cpp, lower_contraction.cpp) ----
  /// One loop nest over `shape` computing `body`'s scalars per element and storing `stores`.
  void emit_elementwise(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores,
                        const Shape& shape);
  /// The elementwise members (producers) and the final reduction, as one accumulation.
  void emit_reduction(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores);
  /// A sum over trailing axes (at most rt::kSumBlock elements per row) with its producers, in a
  /// guard's input cone: each row summed in the canonical order, as eager mode's kernel does.
  void emit_exact_row_sum(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores);
  /// A row region (passes/fuse_row.cpp) one row at a time: a pass over the row per reduction,
  /// then one storing the row values it yields. `exact`: its sums in the canonical order.
  void emit_row(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores, bool exact);
  /// C[m,n] = A·B: its sizes and the element strides of A(i,k) and B(k,j) as stored.
  struct ProductShape {
    int64_t m, n, k, a_i, a_k, b_k, b_j;
  };
  static ProductShape product_shape(const ir::Node& mm);
  /// `exact`: in a guard's input cone, each element summed as eager mode's small-product kernel
  /// sums it (the canonical order for dot products, increasing k otherwise; no fused multiply-adds).
  void emit_contraction(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores,
                        bool exact = false);
  /// Stores lanes [0, count) of vector `v` at `dst`: one masked store where AVX-512 makes those
  /// cheap, else plain stores of 8, 4, 2 and 1 lanes (AVX2's masked stores are microcoded and
  /// cost more than the product they end on AMD cores).
  void store_lanes(LV* v, LV* dst, int64_t count);
  /// C = A * B (row_product(): B as stored, [K, N]) into `out`: per row of C, vectors of 16
  /// columns (the last one masked) accumulate broadcast A(i,k) times B's row k.
  /// With an `epilogue` (row_product_in_scratch()), `out` is unused: each row goes to stack
  /// scratch and the epilogue (emit_row_epilogue) stores `stores` from it.
  void emit_row_product(const ir::Node& mm, LV* out, const std::vector<const ir::Node*>& epilogue = {},
                        const std::vector<const ir::Value*>& stores = {});
  /// A contraction region's epilogue over `rows` rows of the product from row `i0`, their
  /// products at `product` (`pitch` floats apart): per element, the epilogue's operands (`ext`,
  /// operands from `first` on, element strides `strides`) loaded, its ops applied, `stores`
  /// (the operands after those) stored; the loop along the row vectorizes.
  void emit_row_epilogue(const ir::Node& mm, const std::vector<const ir::Node*>& epilogue,
                         const std::vector<const ir::Value*>& ext, const std::vector<const ir::Value*>& stores,
                         const std::vector<LV*>& ptrs, const std::vector<Shape>& strides, size_t first, LV* i0,
                         int64_t rows, LV* product, int64_t pitch);
  /// C = A * B^T (dot_product(): A [M, K] and B [N, K] as stored) into `out`: per block of 8
  /// columns of C and row of A, 8 accumulators of 8 lanes along k (the last chunk masked), then
  /// one transposing reduction to the block's 8 sums (rows of B past N are not read).
  void emit_dot_product(const ir::Node& mm, LV* out);
  /// C = A * B^T for narrow_dot() products, then the region's epilogue (or C stored): per row
  /// (or pair of rows), one 16-lane accumulator per column along k (the last chunk masked), then
  /// column_sums to the row's sums in stack scratch, read by emit_row_epilogue.
  void emit_narrow_dot(const ir::Node& mm, const std::vector<const ir::Node*>& epilogue,
                       const std::vector<const ir::Value*>& stores);
  /// The 16 horizontal sums of 16 vectors as one vector (lane j the sum of v[j]): four rounds
  /// adding shuffled halves, then one permute putting the columns in order.
  LV* column_sums(const std::vector<LV*>& v);
  /// C = A * B with B packed as [K, N16] (N padded to a multiple of 16): a register-blocked
  /// kernel. Each tile of MR rows x NR 16-float vectors keeps its MR*NR
  /// accumulators in registers over the k loop (one broadcast of A and one
  /// fused multiply-add per accumulator and k), then stores them to C; the
  /// epilogue then runs over the tile's rows, reading their first N columns
  /// (vectorized by LLVM).
  void emit_packed_contraction(const ir::Node& mm, const std::vector<const ir::Node*>& epilogue,
                               const std::vector<const ir::Value*>& stores, const NodePlan& np);
  /// cross_entropy or cross_entropy_grad (inline_loss()) as loops over the rows (lower_loss.cpp).
  /// conv2d and conv2d_grad_weight with few taps (inline_conv) as loops (lower_conv.cpp).
  struct ConvShape {
    int64_t n, c, h, w, oc, kh, kw, oh, ow, sh, ph, pw, dh, dw;
  };
  static ConvShape conv_shape(const ir::Node& n);
  /// Lanes of output vector `v` (columns 16 v ...) that exist and whose input column for tap column kw is in the image.
  LV* conv_column_mask(const ConvShape& s, int64_t v, int64_t kw);
  void emit_conv(const ir::Node& n);
  void emit_conv_grad_weight(const ir::Node& n);
  /// avg_pool2d and avg_pool2d_grad (inline_pool) as loops (lower_pool.cpp).
  void emit_avg_pool(const ir::Node& n);
  /// A vector whose lane l is row[cols[l]] where that column is in [0, length) and `row_ok`
  /// holds; else 0 (and not read). `cols` has 16 constant columns.
  LV* load_columns(LV* row, const std::vector<int64_t>& cols, int64_t length, LV* row_ok);
  /// The cross-entropy op `n` as loops; with `with_grad` (its gradient, where fusible_losses), both.
  void emit_cross_entropy(const ir::Node& n, const ir::Node* with_grad = nullptr);
  /// True if `grad` is the gradient of the loss `ce` (same logits and targets), both planned as
  /// loops, and small enough that its rows need not be split among threads: one pass makes both.
  bool fusible_losses(const ir::Node& ce, const ir::Node& grad) const;
  /// emit_cross_entropy's loop over rows [begin, end) for at most 16 classes: 16 rows at a time,
  /// a vector per class; `total` is the forward's running sum (with `loss`), `scale` g / N.
  void emit_cross_entropy_across_rows(LV* begin, LV* end, std::array<LV*, 3> logits_targets_out, int64_t cols,
                                      bool loss, bool grad, LV* scale, llvm::AllocaInst* total);
  /// True if the gradient's rows are worth splitting among threads.
  bool parallel_gradient(const ir::Node& grad) const;

  const ir::Graph& g_;
  const Plan& plan_;
  llvm::LLVMContext& llvm_;
  llvm::Module& module_;
  llvm::IRBuilder<> b_;
  llvm::Type *f32_, *i8_, *i32_, *i64_;
  llvm::PointerType* ptr_;
  llvm::Function* main_ = nullptr;
  LV *bufs_ = nullptr, *ctx_ = nullptr, *arena_ = nullptr;
  LV *batch_main_ = nullptr, *batch_fn_ = nullptr;  // the call's batch size in main, in the loop function being emitted
  std::unordered_map<const ir::Value*, LV*> addr_;
  std::vector<LV*> output_addr_;
  std::vector<LV*> packed_;  // packed weights, one per plan_.packings entry
};

}  // namespace bj::codegen
