// Reduction fusion: the elementwise producers of a reduction fold into it,
// so the norm of an expression is one pass over memory ("reduction" region,
// ending with the reduction). Producers are taken backwards from the
// reduction's operand while they are elementwise ops over the reduction's
// input shape. A producer whose value is also used elsewhere still joins
// (its value is then yielded, i.e. materialized) provided every such use
// comes after the reduction: the region takes the reduction's place, so
// nothing before it may need one of its values.
#include <unordered_set>

#include "passes/fusion.h"
#include "passes/passes.h"

namespace bj::passes {

bool fuse_reduction(ir::Graph& g, const PassContext&) {
  Uses uses = compute_uses(g);
  auto& nodes = g.mutable_nodes();
  const std::unordered_map<const ir::Node*, size_t> pos = positions(g);
  std::unordered_set<const ir::Node*> taken;
  std::vector<std::vector<ir::Node*>> groups;
  for (auto& n : nodes) {
    if (n->kind != ir::NodeKind::kOp || !ir::has_trait(n->op, ir::kReduction)) continue;
    const Shape& space = n->inputs[0]->type.shape;
    std::unordered_set<ir::Node*> group{n.get()};
    std::vector<ir::Node*> frontier{n.get()};
    while (!frontier.empty()) {
      ir::Node* m = frontier.back();
      frontier.pop_back();
      for (ir::Value* v : m->inputs) {
        ir::Node* p = v->def;
        if (!fusible_elementwise(p, space) || group.count(p) || taken.count(p) || !pos.count(p)) continue;
        bool ok = true;
        for (ir::Node* u : uses.of(v)) ok &= group.count(u) > 0 || pos.at(u) > pos.at(n.get());
        if (!ok) continue;
        group.insert(p);
        frontier.push_back(p);
      }
    }
    if (group.size() < 2) continue;
    std::vector<ir::Node*> members(group.begin(), group.end());
    std::sort(members.begin(), members.end(), [&](const ir::Node* a, const ir::Node* b) { return pos.at(a) < pos.at(b); });
    for (const ir::Node* m : members) taken.insert(m);
    groups.push_back(members);
  }
  for (const auto& members : groups) make_region(g, ir::RegionKind::kReduction, members, uses);
  return !groups.empty();
}

}  // namespace bj::passes
