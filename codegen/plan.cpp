// Lowering decisions (see plan.h).
#include "codegen/plan.h"

#include "ir/error.h"
#include "ir/semantics.h"
#include "runtime/kernels.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <span>

namespace bj::codegen {

namespace {
bool f32_or_bool(const Type& t) { return t.dtype == DType::kF32 || t.dtype == DType::kBool; }

bool region_inline(const ir::Node& r) {
  for (const auto& b : r.body) {
    bool ok = ir::has_trait(b->op, ir::kElementwise)  ? inline_elementwise(*b)
              : ir::has_trait(b->op, ir::kReduction)  ? inline_reduction(*b)
              : ir::has_trait(b->op, ir::kContraction) ? b->op == ir::OpKind::Matmul  // inline, or the runtime's
                                                      : false;
    if (!ok) return false;
  }
  return true;
}
}  // namespace

bool inline_pow(double p) {
  const float q = static_cast<float>(p);  // the kernels take the exponent as a float
  // Not 0: powf(x, 0) is 1 except for a signaling NaN x, which gives NaN.
  return q == 0.5f || (q == std::trunc(q) && q != 0 && std::fabs(q) <= kPowMaxInlineExponent);
}

bool inline_elementwise(const ir::Node& n) {
  if (n.kind != ir::NodeKind::kOp || !ir::has_trait(n.op, ir::kElementwise)) return false;
  if (n.op == ir::OpKind::Pow && !inline_pow(n.attrs.scalar)) return false;
  for (const ir::Value* v : n.inputs)  // a cast reads integers too
    if (!f32_or_bool(v->type) && !(n.op == ir::OpKind::Cast && v->type.dtype == DType::kI64)) return false;
  return f32_or_bool(n.result->type);
}

bool inline_loss(const ir::Node& n) {
  if (n.kind != ir::NodeKind::kOp || (n.op != ir::OpKind::CrossEntropy && n.op != ir::OpKind::CrossEntropyGrad)) return false;
  const ir::Value* logits = n.inputs[0];
  return logits->type.dtype == DType::kF32 && logits->type.shape.size() == 2 && !logits->batch;
}

bool inline_conv(const ir::Node& n) {
  if (n.kind != ir::NodeKind::kOp || (n.op != ir::OpKind::Conv2d && n.op != ir::OpKind::Conv2dGradWeight)) return false;
  const ir::Value *x = n.inputs[0], *other = n.inputs[1];
  if (x->type.dtype != DType::kF32 || other->type.dtype != DType::kF32 || n.result->type.dtype != DType::kF32 ||
      x->batch || other->batch || n.result->batch || n.attrs.groups != 1 || n.attrs.stride.size() != 2 ||
      n.attrs.stride[1] != 1)
    return false;
  const Shape& w = n.op == ir::OpKind::Conv2d ? other->type.shape : n.result->type.shape;
  const Shape& y = n.op == ir::OpKind::Conv2d ? n.result->type.shape : other->type.shape;
  // A row's vectors are straight-line code: wide images would make code (and compile time) grow.
  return w.size() == 4 && y.size() == 4 && w[1] * w[2] * w[3] <= kInlineConvTaps && y[3] <= kInlineWindowRow;
}

bool inline_pool(const ir::Node& n) {
  if (n.kind != ir::NodeKind::kOp || (n.op != ir::OpKind::AvgPool2d && n.op != ir::OpKind::AvgPool2dGrad)) return false;
  const ir::Value* x = n.inputs[0];
  if (x->type.dtype != DType::kF32 || n.result->type.dtype != DType::kF32 || x->batch || n.result->batch ||
      x->type.shape.size() != 4 || n.attrs.kernel.size() != 2 || n.attrs.stride.size() != 2)
    return false;
  const int64_t row = n.op == ir::OpKind::AvgPool2d ? n.result->type.shape[3] : x->type.shape[3];  // the loop's row
  if (row > kInlineWindowRow || n.attrs.kernel[0] * n.attrs.kernel[1] > kInlineConvTaps) return false;
  return n.op == ir::OpKind::AvgPool2d ||
         (n.attrs.stride[0] >= n.attrs.kernel[0] && n.attrs.stride[1] >= n.attrs.kernel[1]);
}

bool exact_inline(const ir::Node& n) {
  return inline_elementwise(n) && ir::same_bits_everywhere(n.op, n.attrs);
}

namespace {
bool exact_row_sum(const ir::Node& n) {
  if (n.op != ir::OpKind::Sum || n.result->type.dtype != DType::kF32 || n.attrs.dims.empty()) return false;
  const Shape& in = n.inputs[0]->type.shape;
  int64_t r = 1;
  const int count = n.attrs.dims.size();
  for (int i = 0; i < count; ++i) {  // the reduced axes are the trailing ones
    if (n.attrs.dims[i] != in.size() - count + i) return false;
    r *= in[in.size() - count + i];
  }
  return r <= rt::kSumBlock;
}
/// A max or min: the extreme of a set is the same in any order (ties of -0 and +0 and NaNs included,
/// as ir::maximum orders them), so the vectorized reduction is eager's.
bool exact_extremum(const ir::Node& n) {
  return (n.op == ir::OpKind::Max || n.op == ir::OpKind::Min) && inline_reduction(n);
}
bool exact_product(const ir::Node& n) {
  return inline_matmul(n) && n.result->type.dtype == DType::kF32;
}
}  // namespace

bool inline_movement(const ir::Node& n) {
  if (n.kind != ir::NodeKind::kOp) return false;
  return n.op == ir::OpKind::Reshape ||
         (n.op == ir::OpKind::Expand && f32_or_bool(n.inputs[0]->type) && f32_or_bool(n.result->type));
}

bool exact_lowering(const ir::Node& n) {
  auto exact = [](const auto& b) { return exact_inline(*b); };
  if (n.kind == ir::NodeKind::kOp)
    return exact_inline(n) || inline_movement(n) || (n.op == ir::OpKind::Sum && exact_row_sum(n)) || exact_extremum(n) ||
           (n.op == ir::OpKind::Matmul && exact_product(n));
  if (n.kind != ir::NodeKind::kRegion || n.body.empty()) return false;
  const ir::Node &front = *n.body.front(), &back = *n.body.back();
  if (n.region == ir::RegionKind::kReduction)
    return (exact_row_sum(back) || exact_extremum(back)) && std::all_of(n.body.begin(), n.body.end() - 1, exact);
  if (n.region == ir::RegionKind::kRow)  // sums in the canonical order, exact elementwise work
    return std::all_of(n.body.begin(), n.body.end(), [&](const auto& b) {
      return ir::has_trait(b->op, ir::kReduction) ? exact_row_sum(*b) : exact_inline(*b);
    });
  if (n.region == ir::RegionKind::kContraction)
    return front.op == ir::OpKind::Matmul && exact_product(front) && std::all_of(n.body.begin() + 1, n.body.end(), exact);
  return std::all_of(n.body.begin(), n.body.end(), exact);
}

std::unordered_set<const ir::Node*> guard_cone(const ir::Graph& g) {
  std::unordered_map<const ir::Node*, const ir::Node*> top;  // body node -> its region
  for (const auto& n : g.nodes()) {
    top[n.get()] = n.get();
    for (const auto& b : n->body) top[b.get()] = n.get();
  }
  std::unordered_set<const ir::Node*> cone;
  std::vector<const ir::Value*> work;
  for (const auto& n : g.nodes())
    if (n->kind == ir::NodeKind::kGuard) work.insert(work.end(), n->inputs.begin(), n->inputs.end());
  while (!work.empty()) {
    const ir::Value* v = work.back();
    work.pop_back();
    if (!v->def || !top.count(v->def)) continue;
    const ir::Node* t = top.at(v->def);
    if (!cone.insert(t).second) continue;
    work.insert(work.end(), t->inputs.begin(), t->inputs.end());
    for (const auto& b : t->body) work.insert(work.end(), b->inputs.begin(), b->inputs.end());
  }
  return cone;
}

bool inline_reduction(const ir::Node& n) {
  return n.kind == ir::NodeKind::kOp && ir::has_trait(n.op, ir::kReduction) && n.result->type.dtype == DType::kF32;
}

namespace {
/// Rows at which a product whose rows scale with the batch is judged (inline_matmul).
constexpr int64_t kDynamicProductRows = 16;
}  // namespace

bool inline_matmul(const ir::Node& n) {
  if (n.kind != ir::NodeKind::kOp || n.op != ir::OpKind::Matmul) return false;
  const Shape &a = n.inputs[0]->type.shape, &c = n.result->type.shape;
  if (a.size() != 2 || n.inputs[1]->type.shape.size() != 2) return false;
  const int64_t k = n.attrs.transpose_a ? a[0] : a[1];
  if (!n.attrs.transpose_a && !n.attrs.transpose_b && k <= kSkinnyRowK && n.result->type.dtype == DType::kF32) return true;
  if (n.result->batch) return c[1] * k * kDynamicProductRows < rt::kDnnlMinMacs;
  if (!n.attrs.transpose_a && n.attrs.transpose_b && c[1] <= kNarrowDotN && k >= 16 &&
      c[0] * c[1] * k < rt::kDnnlParallelMacs && n.result->type.dtype == DType::kF32)
    return true;
  return c[0] * c[1] * k < rt::kDnnlMinMacs;
}

bool row_product(const ir::Node& mm) {
  return inline_matmul(mm) && !mm.attrs.transpose_b && mm.result->type.dtype == DType::kF32 &&
         mm.inputs[0]->type.dtype == DType::kF32 && mm.inputs[1]->type.dtype == DType::kF32;
}

bool row_product_in_scratch(const ir::Node& mm) {
  return row_product(mm) && (mm.result->type.shape[1] + 15) / 16 * 16 <= kRowScratchFloats;
}

bool dot_product(const ir::Node& mm) {
  return inline_matmul(mm) && mm.attrs.transpose_b && !mm.attrs.transpose_a && mm.result->type.dtype == DType::kF32 &&
         mm.inputs[0]->type.dtype == DType::kF32 && mm.inputs[1]->type.dtype == DType::kF32;
}

bool narrow_dot(const ir::Node& mm) {
  return dot_product(mm) && mm.result->type.shape[1] <= kNarrowDotN && mm.inputs[0]->type.shape[1] >= 16;
}

std::string_view strategy_name(Strategy s) {
  switch (s) {
    case Strategy::kLoops: return "loops";
    case Strategy::kExactLoops: return "exact loops";
    case Strategy::kPacked: return "packed";
    case Strategy::kDnnl: return "oneDNN";
    case Strategy::kRuntimeProduct: return "runtime product";
    case Strategy::kRuntime: return "runtime";
  }
  return "?";
}

const NodePlan& Plan::at(const ir::Node& n) const {
  auto it = nodes.find(&n);
  if (it == nodes.end()) throw Error("codegen", "a node without a plan (internal error in the plan)");
  return it->second;
}

std::vector<const NodePlan*> Plan::with(Strategy s) const {
  std::vector<const NodePlan*> out;
  for (const auto& [node, np] : nodes)
    if (np.strategy == s) out.push_back(&np);
  return out;
}

namespace {

/// The body of a top-level op (itself) or region.
std::vector<const ir::Node*> body_of(const ir::Node& n) {
  if (n.kind != ir::NodeKind::kRegion) return {&n};
  std::vector<const ir::Node*> body;
  for (const auto& b : n.body) body.push_back(b.get());
  return body;
}

/// Rows from which a product repacks a weight that changes every call (PlanOptions::params_change).
constexpr int64_t kPackRowsWhenParamsChange = 16;

/// make_plan's state: the plan so far and the graph's parameters by value.
class Planner {
 public:
  Planner(const ir::Graph& g, const PlanOptions& options) : g_(g), options_(options) {
    p_.arena_bytes = std::max<int64_t>(g.arena_bytes, 0);
    p_.arena_row_bytes = g.arena_row_bytes;
    for (const ir::Value* v : g.outputs()) has_memory_.insert(v);
    for (size_t i = 0; i < g.params().size(); ++i) param_index_[g.params()[i]] = static_cast<int>(i);
  }

  Plan run() {
    // In graph order within each sweep: callback indices and packing slots are part of the code.
    const auto cone = guard_cone(g_);
    if (g_.batch > 0)
      for (const auto& n : g_.nodes())
        if (plannable(*n) && batched(*n) && (options_.exact || cone.count(n.get()) || !dynamic_loops(*n))) {
          p_.nodes[n.get()].strategy = Strategy::kRuntime;  // eager's kernels, at the call's batch size
          for (const ir::Node* b : body_of(*n)) call(*b);
        }
    for (const auto& n : g_.nodes())
      if (plannable(*n) && !planned(*n) && (options_.exact || cone.count(n.get()))) plan_in_cone(*n);
    for (const auto& n : g_.nodes())
      if (plannable(*n) && !planned(*n)) plan_dnnl(*n);
    for (const auto& n : g_.nodes())
      if (plannable(*n) && !planned(*n)) plan_packed(*n);
    for (const auto& n : g_.nodes())
      if (plannable(*n) && !planned(*n)) plan_rest(*n);
    plan_commits();
    return std::move(p_);
  }

 private:
  static bool plannable(const ir::Node& n) { return n.kind == ir::NodeKind::kOp || n.kind == ir::NodeKind::kRegion; }
  bool planned(const ir::Node& n) const { return p_.nodes.count(&n) > 0; }

  /// In a graph for every batch size: true if `n` reads or makes a batched value.
  static bool batched(const ir::Node& n) {
    for (const ir::Node* b : body_of(n)) {
      if (b->result && b->result->batch) return true;
      for (const ir::Value* v : b->inputs)
        if (v->batch) return true;
    }
    return false;
  }
  /// True if codegen's loops for batched node `n` take the batch size at run time: the batch is
  /// their outer dimension (elementwise work; reductions, rows and products that keep dim 0).
  static bool dynamic_loops(const ir::Node& n) {
    const std::vector<const ir::Node*> body = body_of(n);
    for (const ir::Node* b : body) {
      if (b->op == ir::OpKind::Reshape && b->inputs[0]->batch != b->result->batch) return false;
      if (ir::has_trait(b->op, ir::kReduction) &&
          (!b->inputs[0]->batch || std::find(b->attrs.dims.begin(), b->attrs.dims.end(), 0) != b->attrs.dims.end()))
        return false;
      if (ir::has_trait(b->op, ir::kContraction) &&
          (b->op != ir::OpKind::Matmul || b->attrs.transpose_a || b->inputs[1]->batch || !b->inputs[0]->batch ||
           b->inputs[0]->type.shape.size() != 2))
        return false;
    }
    return true;
  }

  /// Sweep 1. A guard's input cone runs as eager does: no oneDNN fusion, no packing, eager's
  /// kernels where inline code could differ (see guard_cone()).
  void plan_in_cone(const ir::Node& n) {
    if (exact_lowering(n)) {
      p_.nodes[&n].strategy = Strategy::kExactLoops;
      return;
    }
    p_.nodes[&n].strategy = Strategy::kRuntime;
    for (const ir::Node* b : body_of(n)) call(*b);
  }

  /// Sweep 2. A large 2-D product and the bias add ([n] or [1, n]) right after it, if any, are one
  /// oneDNN primitive (what rt::FusedMatmul can fuse); the rest of its region, whatever elementwise
  /// ops, is a loop over the primitive's result. A parameter as its right operand is read reordered.
  void plan_dnnl(const ir::Node& n) {
    if (n.kind == ir::NodeKind::kRegion && (n.region != ir::RegionKind::kContraction || n.yields.size() != 1 ||
                                            n.yields[0] != n.body.back()->result))
      return;
    const std::vector<const ir::Node*> body = body_of(n);
    const ir::Node& mm = *body.front();
    if (batched(n)) return;  // primitives are made for one size
    if (mm.op == ir::OpKind::Conv2d) {
      if (!inline_conv(mm)) plan_packed_conv(n);  // few taps: loops (sweep 4), faster than oneDNN's
      return;
    }
    std::optional<rt::FusedMatmul> product = flat_product(mm);
    if (!product || inline_matmul(mm) || (skinny_over_param(mm) && packable(mm))) return;
    rt::FusedMatmul f = *product;
    if (f.m * f.n * f.k < rt::kDnnlMinMacs) return;  // a batch of rows too small for oneDNN: the runtime's loops
    const ir::Value *cur = mm.result, *bias = nullptr;
    size_t i = 1;
    if (i < body.size() && body[i]->op == ir::OpKind::Add && (bias = bias_of(*body[i], cur, f.n))) {
      f.bias = true;
      cur = body[i++]->result;
    }
    const size_t fused = i;
    DnnlProduct d{static_cast<int32_t>(p_.context.nodes.size()), -1, bias, cur, fused};
    if (param_index_.count(mm.inputs[1]) && !options_.params_change) {  // a reorder per call would cost more
      f.packed_b = true;
      d.packing = static_cast<int>(p_.packings.size());
      p_.packings.push_back({param_index_.at(mm.inputs[1]), 0, 0, f, std::nullopt});
    }
    rt::JitNode jn{mm.op, mm.attrs, {mm.inputs[0]->type, mm.inputs[1]->type}, cur->type, f, std::nullopt, {}, 0};
    if (bias) jn.inputs.push_back(bias->type);
    for (const ir::Value* v : {static_cast<const ir::Value*>(mm.inputs[0]), static_cast<const ir::Value*>(mm.inputs[1]), bias})
      if (v) operand_needs_memory(v);
    needs_memory(cur);
    p_.context.nodes.push_back(std::move(jn));
    p_.nodes[&n] = NodePlan{Strategy::kDnnl, -1, -1, d};
  }

  /// A convolution whose weights are a parameter that stays put between calls (inference) keeps
  /// them in oneDNN's layout, reordered only when the parameter changes; the image and the result
  /// stay NCHW. Otherwise (training, weights computed in the graph) it runs eager mode's kernel.
  void plan_packed_conv(const ir::Node& n) {
    if (n.kind != ir::NodeKind::kOp || !param_index_.count(n.inputs[1]) || options_.params_change) return;
    rt::PackedConv c{n.inputs[0]->type.shape, n.inputs[1]->type.shape, n.result->type.shape, n.attrs};
    DnnlProduct d{static_cast<int32_t>(p_.context.nodes.size()), static_cast<int>(p_.packings.size()), nullptr,
                  n.result, 1};
    p_.packings.push_back({param_index_.at(n.inputs[1]), 0, 0, std::nullopt, c});
    rt::JitNode jn{n.op, n.attrs, {n.inputs[0]->type, n.inputs[1]->type}, n.result->type, std::nullopt, c, {}, 0};
    operand_needs_memory(n.inputs[0]);
    needs_memory(n.result);
    p_.context.nodes.push_back(std::move(jn));
    p_.nodes[&n] = NodePlan{Strategy::kDnnl, -1, -1, d};
  }

  /// A product oneDNN computes as one 2-D product: A [m, k] or, not transposed, [..., m, k] (its
  /// leading dims are rows: the same memory), times B [k, n] (or [n, k] transposed), f32.
  static std::optional<rt::FusedMatmul> flat_product(const ir::Node& mm) {
    if (mm.op != ir::OpKind::Matmul) return std::nullopt;
    const Shape &as = mm.inputs[0]->type.shape, &bs = mm.inputs[1]->type.shape, &cs = mm.result->type.shape;
    if (bs.size() != 2 || as.size() < 2 || (as.size() > 2 && mm.attrs.transpose_a) ||
        mm.result->type.dtype != DType::kF32 || cs.numel() == 0)
      return std::nullopt;
    const int64_t n = cs[cs.size() - 1];
    return rt::FusedMatmul{cs.numel() / n, n, mm.attrs.transpose_a ? as[0] : as[as.size() - 1], mm.attrs.transpose_a,
                           mm.attrs.transpose_b};
  }

  /// The bias `add` adds to the product `product` ([n] or [1, n], f32, not the product itself).
  static const ir::Value* bias_of(const ir::Node& add, const ir::Value* product, int64_t n) {
    const ir::Value* bias = add.inputs[0] == product ? add.inputs[1] : add.inputs[1] == product ? add.inputs[0] : nullptr;
    if (!bias || bias == product || bias->type.dtype != DType::kF32 || add.result->type.shape != product->type.shape)
      return nullptr;
    const Shape& bs = bias->type.shape;
    return (bs.size() == 1 && bs[0] == n) || (bs.size() == 2 && bs[0] == 1 && bs[1] == n) ? bias : nullptr;
  }

  /// A product over a transposed parameter with few terms per element (kSkinnyPackedK): the packed
  /// kernel at any size, not oneDNN.
  bool skinny_over_param(const ir::Node& mm) const {
    if (mm.kind != ir::NodeKind::kOp || mm.op != ir::OpKind::Matmul || mm.attrs.transpose_a || !mm.attrs.transpose_b ||
        !param_index_.count(mm.inputs[1]) || mm.result->type.dtype != DType::kF32)
      return false;
    const Shape &a = mm.inputs[0]->type.shape, &b = mm.inputs[1]->type.shape;
    return a.size() == 2 && b.size() == 2 && a[1] <= kSkinnyPackedK;
  }

  /// True if the packed kernel may compute `mm` (inline_matmul or skinny_over_param said it should).
  bool packable(const ir::Node& mm) const {
    const ir::Value* b = mm.inputs[1];
    if (!mm.attrs.transpose_b || !param_index_.count(b)) return false;
    const int64_t m = mm.result->type.shape[0], cols = mm.result->type.shape[1], n_pad = (cols + 15) / 16 * 16;
    // Padding costs K/16 * (n_pad/n - 1) extra multiply-adds per output; a dot product along k instead
    // costs about 8 operations of horizontal sum. Long k and few columns (mlp's 256 -> 10) stay dots.
    if (b->type.shape[1] * (n_pad - cols) > 8 * 16 * cols) return false;
    // Packing moves the whole weight; when it changes every call, that pays off only for enough rows.
    if (options_.params_change && m < kPackRowsWhenParamsChange) return false;
    return !(mm.result->batch && n_pad != cols);  // padded rows would be batched scratch: plain loops
  }

  /// Sweep 3. A small product whose transposed right operand is a parameter reads it packed [K, N]
  /// (N padded with zero columns to whole 16-float vectors) and accumulates its rows in registers.
  void plan_packed(const ir::Node& n) {
    const ir::Node& mm = n.kind == ir::NodeKind::kOp ? n : *n.body.front();
    const bool candidate = (n.kind == ir::NodeKind::kOp ||
                            (n.region == ir::RegionKind::kContraction && region_inline(n))) &&
                           (inline_matmul(mm) || skinny_over_param(mm));
    if (!candidate || !packable(mm)) return;
    const ir::Value* b = mm.inputs[1];
    const int64_t m = mm.result->type.shape[0], cols = mm.result->type.shape[1], n_pad = (cols + 15) / 16 * 16;
    NodePlan np{Strategy::kPacked, -1, -1, std::nullopt};
    for (size_t i = 0; i < p_.packings.size(); ++i)
      if (p_.packings[i].param == param_index_.at(b) && !p_.packings[i].dnnl) np.packing = static_cast<int>(i);
    if (np.packing < 0) {
      np.packing = static_cast<int>(p_.packings.size());
      p_.packings.push_back({param_index_.at(b), b->type.shape[0], b->type.shape[1], std::nullopt, std::nullopt});
    }
    if (n.kind == ir::NodeKind::kOp && n_pad == cols) {
      needs_memory(mm.result);  // written directly
    } else if (packed_tiles_in_scratch(n_pad)) {
      // the tile's rows go to stack scratch before the epilogue reads their first n columns
    } else if (n_pad == cols) {
      needs_memory(mm.result);
    } else {  // the product's rows, n_pad apart, before the epilogue reads their first n columns
      np.padded_offset = p_.arena_bytes;
      p_.arena_bytes += (m * n_pad * 4 + 63) / 64 * 64;
    }
    p_.nodes[&n] = np;
  }

  /// Sweep 4. Everything else: loops where codegen has them, the runtime's kernels otherwise.
  void plan_rest(const ir::Node& n) {
    NodePlan& np = p_.nodes[&n];
    if (n.kind == ir::NodeKind::kOp) {
      np.strategy = inline_elementwise(n) || inline_reduction(n) || inline_matmul(n) || inline_movement(n) ||
                            inline_loss(n) || inline_conv(n) || inline_pool(n)
                        ? Strategy::kLoops
                        : Strategy::kRuntime;
      if (np.strategy == Strategy::kRuntime) call(n);
    } else if (!region_inline(n)) {
      np.strategy = Strategy::kRuntime;
      for (const auto& b : n.body) call(*b);
    } else if (n.region == ir::RegionKind::kContraction && !inline_matmul(*n.body.front())) {
      np.strategy = Strategy::kRuntimeProduct;  // the runtime computes the product; the epilogue stays a loop
      call(*n.body.front());
    } else if (n.region == ir::RegionKind::kContraction &&
               ((row_product(*n.body.front()) && !row_product_in_scratch(*n.body.front())) ||
                (dot_product(*n.body.front()) && !narrow_dot(*n.body.front())))) {
      needs_memory(n.body.front()->result);  // the rows, before the epilogue loop reads them
    }
  }

  /// Sweep 5. State the graph writes: in place where that is safe, else copied at the end (from
  /// memory of its own), ordered so that a commit reading a parameter or constant another commit
  /// writes copies it first.
  void plan_commits() {
    const auto& commits = g_.commits();
    const auto& nodes = g_.nodes();
    std::unordered_map<const ir::Value*, size_t> made_at;  // top-level position of each value made there
    size_t last_guard = 0;
    bool any_guard = false;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i]->kind == ir::NodeKind::kGuard) last_guard = i, any_guard = true;
      if (nodes[i]->result) made_at[nodes[i]->result] = i;
      for (const ir::Value* y : nodes[i]->yields) made_at[y] = i;
    }
    // Where each value is last read: by a node, or at the end (outputs and committed values).
    std::unordered_map<const ir::Value*, size_t> last_read;
    for (size_t i = 0; i < nodes.size(); ++i) {
      for (const ir::Value* v : nodes[i]->inputs) last_read[v] = i;
      for (const auto& b : nodes[i]->body)
        for (const ir::Value* v : b->inputs) last_read[v] = i;
    }
    for (const ir::Value* v : g_.outputs()) last_read[v] = nodes.size();
    for (const ir::Commit& c : commits) last_read[c.value] = nodes.size();
    std::unordered_set<const ir::Value*> placed;
    p_.commit_in_place.assign(commits.size(), false);
    for (size_t i = 0; i < commits.size(); ++i) {
      const ir::Commit& c = commits[i];
      auto at = made_at.find(c.value);
      bool ok = at != made_at.end() && has_memory_.count(c.value) == 0 && !placed.count(c.value) &&
                (!any_guard || last_guard < at->second);
      if (ok) {
        const ir::Node& n = *nodes[at->second];
        auto read = last_read.find(c.target);
        ok = c.value->def->kind == ir::NodeKind::kOp && p_.at(n).strategy == Strategy::kLoops &&
             (read == last_read.end() || read->second <= at->second) && same_index_loop(n, c.value->type.shape);
      }
      if (ok) {
        p_.commit_in_place[i] = true;
        placed.insert(c.value);
        has_memory_.insert(c.value);
      } else if (c.value->def && c.value->def->kind == ir::NodeKind::kOp) {
        needs_memory(c.value);
      }
    }
    // Copies: a commit whose value is another commit's target goes before that commit.
    std::vector<int> state(commits.size(), 0);  // 0 unvisited, 1 in progress, 2 done
    std::function<void(size_t)> visit = [&](size_t i) {
      if (state[i] == 2) return;
      if (state[i] == 1)
        throw Error("codegen", "the graph's commits swap state in a cycle (%" + commits[i].target->name + ")");
      state[i] = 1;
      for (size_t j = 0; j < commits.size(); ++j)  // j writes what i reads: i first
        if (j != i && commits[j].target == commits[i].value) visit(j);
      state[i] = 2;
      if (!p_.commit_in_place[i]) p_.commit_order.push_back(static_cast<int>(i));
    };
    for (size_t i = 0; i < commits.size(); ++i) visit(i);
    std::reverse(p_.commit_order.begin(), p_.commit_order.end());
  }

  /// True if `n` is one elementwise loop over `shape` whose every node has that shape, so each
  /// iteration reads its operands at the element it writes.
  static bool same_index_loop(const ir::Node& n, const Shape& shape) {
    if (n.kind == ir::NodeKind::kRegion && n.region != ir::RegionKind::kElementwise) return false;
    for (const ir::Node* b : body_of(n))
      if (!ir::has_trait(b->op, ir::kElementwise) || b->result->type.shape != shape) return false;
    return true;
  }

  /// Gives `v` arena memory if memory planning left it in registers (the runtime writes memory).
  void needs_memory(const ir::Value* v) {
    if (v->offset >= 0 || has_memory_.count(v) || p_.scratch.count(v)) return;
    if (g_.batch > 0 && v->batch) {  // per unit of batch size, after the static part
      p_.scratch[v] = p_.arena_row_bytes;
      p_.arena_row_bytes += (static_cast<int64_t>(v->type.bytes()) / g_.batch + 63) / 64 * 64;
      return;
    }
    p_.scratch[v] = p_.arena_bytes;
    p_.arena_bytes += (static_cast<int64_t>(v->type.bytes()) + 63) / 64 * 64;
  }
  /// An operand the runtime reads: computed values need memory (inputs, params, literals have it).
  void operand_needs_memory(const ir::Value* v) {
    if (v->def && v->def->kind == ir::NodeKind::kOp) needs_memory(v);
  }

  /// Node `n` runs through bj_rt_call_node.
  void call(const ir::Node& n) {
    rt::JitNode jn{n.op, n.attrs, {}, n.result->type, std::nullopt, std::nullopt, {}, 0};
    for (const ir::Value* v : n.inputs) {
      jn.inputs.push_back(v->type);
      operand_needs_memory(v);
    }
    if (g_.batch > 0) {
      for (const ir::Value* v : n.inputs) jn.input_batch.push_back(v->batch);
      jn.output_batch = n.result->batch;
    }
    needs_memory(n.result);
    p_.callback[&n] = static_cast<int32_t>(p_.context.nodes.size());
    p_.context.nodes.push_back(std::move(jn));
  }

  const ir::Graph& g_;
  const PlanOptions options_;
  Plan p_;
  std::unordered_set<const ir::Value*> has_memory_;
  std::unordered_map<const ir::Value*, int> param_index_;
};

}  // namespace

Plan make_plan(const ir::Graph& g, const PlanOptions& options) { return Planner(g, options).run(); }

}  // namespace bj::codegen
