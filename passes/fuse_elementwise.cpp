// Elementwise fusion: maximal groups of elementwise (and broadcasting) op
// nodes over one output shape become "elementwise" regions, one loop nest
// each; a value used outside its group is still materialized (yielded).
// Algorithm: in program order, a node joins the group of one of its
// producers when the result stays convex, i.e. none of its operands is
// computed from that group by a node outside it, counting other groups as
// the single regions they will become (else two regions could each need the
// other); otherwise it starts a group. The groups of its other producers
// then merge into its group where the union stays convex. Groups of one node
// stay plain ops. The nodes are then reordered so each region comes after
// everything it uses. Nodes already in regions are not touched.
#include <algorithm>
#include <functional>
#include <unordered_set>

#include "passes/fusion.h"
#include "passes/passes.h"

namespace bj::passes {

bool elementwise_fusion(ir::Graph& g, const PassContext&) {
  Uses uses = compute_uses(g);
  std::unordered_map<const ir::Node*, int> group_of;
  std::vector<std::vector<ir::Node*>> groups;

  // Does top-level node x depend on group gid? A group will be one region,
  // so depending on any member of a group means depending on all of its
  // members' operands: the search goes through whole groups.
  auto depends_on = [&](const ir::Node* x, int gid) {
    std::unordered_set<const ir::Node*> seen;
    std::function<bool(const ir::Node*)> visit = [&](const ir::Node* n) {
      if (!n || !seen.insert(n).second) return false;
      auto it = group_of.find(n);
      if (it != group_of.end() && it->second == gid) return true;
      auto through = [&](const ir::Node& m) {
        for (const ir::Value* v : m.inputs)
          if (v->def && visit(v->def)) return true;
        return false;
      };
      if (through(*n)) return true;
      for (const auto& b : n->body)
        if (through(*b)) return true;
      if (it != group_of.end())
        for (const ir::Node* mate : groups[it->second])
          if (visit(mate)) return true;
      return false;
    };
    return visit(x);
  };

  for (auto& np : g.mutable_nodes()) {
    ir::Node* n = np.get();
    if (!fusible_elementwise(n, n->kind == ir::NodeKind::kOp ? n->result->type.shape : Shape{})) continue;
    int joined = -1;
    for (const ir::Value* v : n->inputs) {
      auto it = v->def ? group_of.find(v->def) : group_of.end();
      if (it == group_of.end() || !(v->def->result->type.shape == n->result->type.shape)) continue;
      int gid = it->second;
      bool convex = true;
      for (const ir::Value* w : n->inputs) {
        const ir::Node* x = w->def;
        if (x && (!group_of.count(x) || group_of.at(x) != gid) && depends_on(x, gid)) convex = false;
      }
      if (convex) {
        joined = gid;
        break;
      }
    }
    if (joined < 0) {
      joined = static_cast<int>(groups.size());
      groups.emplace_back();
    }
    groups[joined].push_back(n);
    group_of[n] = joined;
    // Groups of the node's other producers merge in too, while the union stays convex.
    for (const ir::Value* v : n->inputs) {
      auto it = v->def ? group_of.find(v->def) : group_of.end();
      if (it == group_of.end() || it->second == joined || !(v->def->result->type.shape == n->result->type.shape))
        continue;
      const int other = it->second;
      bool convex = true;
      for (int gid : {joined, other})
        for (const ir::Node* m : groups[gid])
          for (const ir::Value* w : m->inputs) {
            const ir::Node* x = w->def;
            auto xg = x ? group_of.find(x) : group_of.end();
            bool inside = xg != group_of.end() && (xg->second == joined || xg->second == other);
            if (x && !inside && (depends_on(x, joined) || depends_on(x, other))) convex = false;
          }
      if (!convex) continue;
      for (ir::Node* m : groups[other]) {
        group_of[m] = joined;
        groups[joined].push_back(m);
      }
      groups[other].clear();
    }
  }
  bool changed = false;
  std::unordered_map<const ir::Node*, size_t> pos;
  for (size_t i = 0; i < g.nodes().size(); ++i) pos[g.nodes()[i].get()] = i;
  for (auto& members : groups) {
    if (members.size() < 2) continue;
    std::sort(members.begin(), members.end(), [&](const ir::Node* a, const ir::Node* b) { return pos[a] < pos[b]; });
    make_region(g, ir::RegionKind::kElementwise, members, uses);
    changed = true;
  }
  if (changed) stable_topological_sort(g);
  return changed;
}

}  // namespace bj::passes
