// Contraction-epilogue fusion: a matrix product and the elementwise chain
// that consumes it (bias add, activation, ...) become one "contraction"
// region, so codegen applies the epilogue to each output tile while it is
// in registers (or as oneDNN post-ops). The chain grows while the current
// value has exactly one user, that user is an elementwise op of the same
// shape, and the value is not a graph output; other operands of the chain
// (the bias) come from outside. Runs before the other fusions, which then
// leave these nodes alone.
#include <unordered_set>

#include "passes/fusion.h"
#include "passes/passes.h"

namespace bj::passes {

bool fuse_contraction(ir::Graph& g, const PassContext&) {
  Uses uses = compute_uses(g);
  std::unordered_set<const ir::Node*> taken;  // an epilogue node two chains reach joins the first
  std::vector<std::vector<ir::Node*>> groups;
  for (auto& n : g.mutable_nodes()) {
    if (n->kind != ir::NodeKind::kOp || !ir::has_trait(n->op, ir::kContraction)) continue;
    std::vector<ir::Node*> chain{n.get()};
    const Shape& shape = n->result->type.shape;
    for (;;) {
      const ir::Value* v = chain.back()->result;
      if (uses.output.count(v) || uses.of(v).size() != 1) break;
      ir::Node* next = uses.of(v)[0];
      if (!fusible_elementwise(next, shape) || taken.count(next)) break;
      chain.push_back(next);
    }
    if (chain.size() < 2) continue;
    taken.insert(chain.begin(), chain.end());
    groups.push_back(chain);
  }
  for (const auto& chain : groups) make_region(g, ir::RegionKind::kContraction, chain, uses);
  return !groups.empty();
}

}  // namespace bj::passes
