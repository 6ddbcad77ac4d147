// Dead-code elimination. A node is live if it is a guard (its check is the
// point), or computes a graph output, a committed value or a value a live
// node uses; all other
// op and literal nodes are removed. In a fused region, body nodes that feed
// no live yield are removed and yields nobody uses any more are dropped;
// a region with nothing left to yield is removed whole.
// Algorithm: one backward sweep over the nodes with a set of live values.
#include <unordered_set>

#include "passes/passes.h"
#include "passes/util.h"

namespace bj::passes {

bool dce(ir::Graph& g, const PassContext&) {
  std::unordered_set<const ir::Value*> live(g.outputs().begin(), g.outputs().end());
  for (const ir::Commit& c : g.commits()) live.insert(c.value);
  std::unordered_map<const ir::Node*, bool> dead;
  bool changed = false;
  auto& nodes = g.mutable_nodes();
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    ir::Node& n = **it;
    switch (n.kind) {
      case ir::NodeKind::kGuard: break;
      case ir::NodeKind::kOp:
      case ir::NodeKind::kLiteral:
        if (!live.count(n.result)) {
          dead[&n] = true;
          changed = true;
          continue;
        }
        break;
      case ir::NodeKind::kRegion: {
        size_t before = n.yields.size() + n.body.size();
        std::erase_if(n.yields, [&](const ir::Value* y) { return !live.count(y); });
        std::unordered_set<const ir::Value*> inner(n.yields.begin(), n.yields.end());
        for (auto b = n.body.rbegin(); b != n.body.rend(); ++b)
          if (inner.count((*b)->result))
            for (const ir::Value* v : (*b)->inputs) inner.insert(v);
        std::erase_if(n.body, [&](const std::unique_ptr<ir::Node>& b) { return !inner.count(b->result); });
        changed |= n.yields.size() + n.body.size() != before;
        if (n.yields.empty()) {
          dead[&n] = true;
          continue;
        }
        for (const ir::Value* v : inner) live.insert(v);
        continue;
      }
    }
    for (const ir::Value* v : n.inputs) live.insert(v);
  }
  erase_nodes(g, dead);
  return changed;
}

}  // namespace bj::passes
