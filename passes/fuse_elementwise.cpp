// Elementwise fusion: maximal groups of elementwise (and broadcasting) op
// nodes over one output shape become "elementwise" regions, one loop nest
// each; a value used outside its group is still materialized (yielded).
// Algorithm, in program order over the fusible nodes:
//   1. a node joins the group of one of its producers when the result stays
//      convex, i.e. none of its operands is computed from that group by a
//      node outside it, counting other groups as the single regions they will
//      become (else two regions could each need the other); otherwise it
//      starts a group;
//   2. the groups of its other producers then merge into its group where the
//      union stays convex;
//   3. groups of two or more become regions (groups of one stay plain ops),
//      and the nodes are reordered so each region comes after everything it
//      uses.
// Nodes already in regions are not touched.
#include <algorithm>
#include <functional>
#include <unordered_set>

#include "passes/fusion.h"
#include "passes/passes.h"

namespace bj::passes {

namespace {

/// The groups being formed, in program order (steps 1 and 2 of the header's algorithm).
class Grouping {
 public:
  std::vector<std::vector<ir::Node*>> groups;

  /// Step 1: node n joins the group of the first producer (of its shape) it can join while the
  /// group stays convex, else starts a group of its own. Returns its group.
  int place(ir::Node* n) {
    int joined = -1;
    for (const ir::Value* v : n->inputs) {
      const int gid = group_of_producer(v, n);
      if (gid < 0) continue;
      bool convex = true;
      for (const ir::Value* w : n->inputs) {
        const ir::Node* x = w->def;
        if (x && (!group_of_.count(x) || group_of_.at(x) != gid) && depends_on(x, gid)) convex = false;
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
    group_of_[n] = joined;
    return joined;
  }

  /// Step 2: the groups of n's other producers merge into its group `joined` while the union
  /// stays convex.
  void merge_producers(const ir::Node* n, int joined) {
    for (const ir::Value* v : n->inputs) {
      const int other = group_of_producer(v, n);
      if (other < 0 || other == joined || !union_convex(joined, other)) continue;
      for (ir::Node* m : groups[other]) {
        group_of_[m] = joined;
        groups[joined].push_back(m);
      }
      groups[other].clear();
    }
  }

 private:
  /// The group of v's producer if it has n's shape, else -1.
  int group_of_producer(const ir::Value* v, const ir::Node* n) const {
    auto it = v->def ? group_of_.find(v->def) : group_of_.end();
    if (it == group_of_.end() || !(v->def->result->type.shape == n->result->type.shape)) return -1;
    return it->second;
  }

  /// True if no operand of groups a and b comes from outside them through either.
  bool union_convex(int a, int b) {
    for (int gid : {a, b})
      for (const ir::Node* m : groups[gid])
        for (const ir::Value* w : m->inputs) {
          const ir::Node* x = w->def;
          auto xg = x ? group_of_.find(x) : group_of_.end();
          const bool inside = xg != group_of_.end() && (xg->second == a || xg->second == b);
          if (x && !inside && (depends_on(x, a) || depends_on(x, b))) return false;
        }
    return true;
  }

  /// Does top-level node x depend on group gid? A group will be one region, so depending on any
  /// member of a group means depending on all of its members' operands: the search goes
  /// through whole groups.
  bool depends_on(const ir::Node* x, int gid) {
    std::unordered_set<const ir::Node*> seen;
    std::function<bool(const ir::Node*)> visit = [&](const ir::Node* n) {
      if (!n || !seen.insert(n).second) return false;
      auto it = group_of_.find(n);
      if (it != group_of_.end() && it->second == gid) return true;
      auto through = [&](const ir::Node& m) {
        for (const ir::Value* v : m.inputs)
          if (v->def && visit(v->def)) return true;
        return false;
      };
      if (through(*n)) return true;
      for (const auto& b : n->body)
        if (through(*b)) return true;
      if (it != group_of_.end())
        for (const ir::Node* mate : groups[it->second])
          if (visit(mate)) return true;
      return false;
    };
    return visit(x);
  }

  std::unordered_map<const ir::Node*, int> group_of_;
};

}  // namespace

bool fuse_elementwise(ir::Graph& g, const PassContext&) {
  Uses uses = compute_uses(g);
  Grouping grouping;
  for (auto& np : g.mutable_nodes()) {
    ir::Node* n = np.get();
    if (!fusible_elementwise(n, n->kind == ir::NodeKind::kOp ? n->result->type.shape : Shape{})) continue;
    grouping.merge_producers(n, grouping.place(n));
  }
  // Step 3: groups of two or more become regions, each after everything it uses.
  bool changed = false;
  const std::unordered_map<const ir::Node*, size_t> pos = positions(g);
  for (auto& members : grouping.groups) {
    if (members.size() < 2) continue;
    std::sort(members.begin(), members.end(), [&](const ir::Node* a, const ir::Node* b) { return pos.at(a) < pos.at(b); });
    make_region(g, ir::RegionKind::kElementwise, members, uses);
    changed = true;
  }
  if (changed) stable_topological_sort(g);
  return changed;
}

}  // namespace bj::passes
