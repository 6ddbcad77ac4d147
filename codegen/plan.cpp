// Lowering decisions (see plan.h).
#include "codegen/plan.h"

namespace bj::codegen {

namespace {
bool f32_or_bool(const Type& t) { return t.dtype == DType::kF32 || t.dtype == DType::kBool; }

bool region_inline(const ir::Node& r) {
  for (const auto& b : r.body) {
    bool ok = ir::has_trait(b->op, ir::kElementwise)  ? inline_elementwise(*b)
              : ir::has_trait(b->op, ir::kReduction)  ? inline_reduction(*b)
              : ir::has_trait(b->op, ir::kContraction) ? b->inputs[0]->type.shape.size() == 2 &&
                                                            b->inputs[1]->type.shape.size() == 2
                                                      : false;
    if (!ok) return false;
  }
  return true;
}
}  // namespace

bool inline_elementwise(const ir::Node& n) {
  if (n.kind != ir::NodeKind::kOp || !ir::has_trait(n.op, ir::kElementwise)) return false;
  for (const ir::Value* v : n.inputs)
    if (!f32_or_bool(v->type)) return false;
  return f32_or_bool(n.result->type);
}

bool inline_reduction(const ir::Node& n) {
  return n.kind == ir::NodeKind::kOp && ir::has_trait(n.op, ir::kReduction) && n.result->type.dtype == DType::kF32;
}

bool inline_matmul(const ir::Node& n) {
  if (n.kind != ir::NodeKind::kOp || n.op != ir::OpKind::Matmul) return false;
  const Shape &a = n.inputs[0]->type.shape, &c = n.result->type.shape;
  if (a.size() != 2 || n.inputs[1]->type.shape.size() != 2) return false;
  const int64_t k = n.attrs.transpose_a ? a[0] : a[1];
  return c[0] * c[1] * k < kInlineMatmulMaxMacs;
}

std::string plan_build_id() { return __DATE__ " " __TIME__; }

Plan make_plan(const ir::Graph& g) {
  Plan p;
  p.arena_bytes = std::max<int64_t>(g.arena_bytes, 0);
  std::unordered_map<const ir::Value*, bool> has_memory;
  for (const ir::Value* v : g.outputs()) has_memory[v] = true;
  auto needs_memory = [&](const ir::Value* v) {
    if (v->offset >= 0 || has_memory.count(v) || p.scratch.count(v)) return;
    p.scratch[v] = p.arena_bytes;
    p.arena_bytes += (static_cast<int64_t>(v->type.bytes()) + 63) / 64 * 64;
  };
  auto call = [&](const ir::Node& n) {
    rt::JitNode jn{n.op, n.attrs, {}, n.result->type};
    for (const ir::Value* v : n.inputs) {
      jn.inputs.push_back(v->type);
      if (v->def && v->def->kind == ir::NodeKind::kOp) needs_memory(v);
    }
    needs_memory(n.result);
    p.callback[&n] = static_cast<int32_t>(p.context.nodes.size());
    p.context.nodes.push_back(std::move(jn));
  };
  // A small product whose transposed right operand is a parameter reads it packed [K, N] and
  // accumulates its result rows in memory (vectorized over N).
  std::unordered_map<const ir::Value*, int> param_index;
  for (size_t i = 0; i < g.params().size(); ++i) param_index[g.params()[i]] = static_cast<int>(i);
  auto pack = [&](const ir::Node& mm) {
    const ir::Value* b = mm.inputs[1];
    const int64_t n = mm.result->type.shape[1];
    if (!mm.attrs.transpose_b || !param_index.count(b) || n % 16 != 0) return;  // whole vectors per row
    int slot = -1;
    for (size_t i = 0; i < p.packings.size(); ++i)
      if (p.packings[i].param == param_index[b]) slot = static_cast<int>(i);
    if (slot < 0) {
      slot = static_cast<int>(p.packings.size());
      p.packings.push_back({param_index[b], b->type.shape[0], b->type.shape[1]});
    }
    p.packed[&mm] = slot;
    needs_memory(mm.result);
  };
  for (const auto& n : g.nodes()) {
    if (n->kind == ir::NodeKind::kOp && inline_matmul(*n)) pack(*n);
    if (n->kind == ir::NodeKind::kRegion && n->region == "contraction" && region_inline(*n) &&
        inline_matmul(*n->body.front()))
      pack(*n->body.front());
  }
  for (const auto& n : g.nodes()) {
    switch (n->kind) {
      case ir::NodeKind::kLiteral:
      case ir::NodeKind::kGuard: break;
      case ir::NodeKind::kOp:
        if (!inline_elementwise(*n) && !inline_reduction(*n) && !inline_matmul(*n)) call(*n);
        break;
      case ir::NodeKind::kRegion:
        if (!region_inline(*n)) {
          for (const auto& b : n->body) call(*b);
        } else if (n->region == "contraction" && !inline_matmul(*n->body.front())) {
          call(*n->body.front());  // oneDNN computes the product; the epilogue stays a loop
        }
        break;
    }
  }
  return p;
}

}  // namespace bj::codegen
