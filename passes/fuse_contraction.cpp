// Contraction-epilogue fusion: a matrix product and the elementwise chain
// that consumes it (bias add, activation, ...) become one "contraction"
// region, so codegen applies the epilogue to each output tile while it is
// in registers (or as oneDNN post-ops). The chain grows while the current
// value has exactly one user, that user is an elementwise op of the same
// shape, and the value is not a graph output. Another operand of the chain
// (a bias, a mask) comes from outside, unless it is computed by elementwise
// ops of the product's shape used nowhere else (a ReLU gradient's mask
// `cast(gt(h, 0))`): that cone joins the region right before the chain op
// that reads it, so the epilogue computes it per element instead of a loop
// storing it first. Runs before the other fusions, which then leave these
// nodes alone.
#include <unordered_set>

#include "passes/fusion.h"
#include "passes/passes.h"

namespace bj::passes {

namespace {

struct Side {
  const Uses& uses;
  const std::unordered_map<const ir::Node*, size_t> top_level;  // the graph's top-level nodes
  const std::unordered_set<const ir::Node*>& taken;

  /// Appends to `body` (producers first) the cone computing `v` that may join a region over
  /// `shape`: top-level elementwise ops of that shape whose result has one use (`user`) and is
  /// not returned.
  void cone(const ir::Value* v, const ir::Node* user, const Shape& shape, std::vector<ir::Node*>& body) const {
    ir::Node* p = v->def;
    if (!fusible_elementwise(p, shape) || !top_level.count(p) || taken.count(p) || uses.output.count(v) ||
        uses.of(v).size() != 1 || uses.of(v)[0] != user)
      return;
    for (const ir::Value* w : p->inputs) cone(w, p, shape, body);
    body.push_back(p);
  }
};

}  // namespace

bool fuse_contraction(ir::Graph& g, const PassContext&) {
  Uses uses = compute_uses(g);
  std::unordered_set<const ir::Node*> taken;  // an epilogue node two chains reach joins the first
  std::vector<std::vector<ir::Node*>> groups;
  const Side side{uses, positions(g), taken};
  for (auto& n : g.mutable_nodes()) {
    if (n->kind != ir::NodeKind::kOp || !ir::has_trait(n->op, ir::kContraction) || taken.count(n.get())) continue;
    std::vector<ir::Node*> chain{n.get()};
    const Shape& shape = n->result->type.shape;
    for (;;) {
      const ir::Value* v = chain.back()->result;
      if (uses.output.count(v) || uses.of(v).size() != 1) break;
      ir::Node* next = uses.of(v)[0];
      if (!fusible_elementwise(next, shape) || taken.count(next)) break;
      for (const ir::Value* w : next->inputs)
        if (w != v) side.cone(w, next, shape, chain);
      chain.push_back(next);
    }
    if (chain.size() < 2) continue;
    taken.insert(chain.begin(), chain.end());
    groups.push_back(chain);
  }
  for (const auto& chain : groups) make_region(g, ir::RegionKind::kContraction, chain, uses, /*in_order=*/true);
  return !groups.empty();
}

}  // namespace bj::passes
