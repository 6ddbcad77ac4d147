// Constant folding. An op node whose operands are all literals becomes a
// literal holding its result, computed by the context's evaluator (the
// runtime's kernels, so folded values are bit-identical to eager ones).
// Only literals fold: parameters, constants and inputs are bound at run
// time (parameters change under training). Results above kMaxElements stay
// ops, so the graph does not balloon with data.
#include "passes/passes.h"
#include "passes/util.h"

namespace bj::passes {

namespace {
constexpr int64_t kMaxElements = 1 << 16;
}

bool fold(ir::Graph& g, const PassContext& ctx) {
  if (!ctx.evaluate) return false;
  bool changed = false;
  for (auto& n : g.mutable_nodes()) {
    if (n->kind != ir::NodeKind::kOp || !ir::has_trait(n->op, ir::kPure) || n->result->type.numel() > kMaxElements)
      continue;
    std::vector<const std::byte*> data;
    for (const ir::Value* v : n->inputs) {
      if (!v->def || v->def->kind != ir::NodeKind::kLiteral) break;
      data.push_back(v->def->data.data());
    }
    if (data.size() != n->inputs.size()) continue;
    n->data = ctx.evaluate(*n, data);
    n->kind = ir::NodeKind::kLiteral;  // the same value, now known
    n->inputs.clear();
    n->attrs = {};
    changed = true;
  }
  return changed;
}

}  // namespace bj::passes
