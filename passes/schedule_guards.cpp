// Guard scheduling: each guard moves as early as its inputs allow, so a
// call that diverges stops before computing what it would throw away.
// Algorithm: emit, for each guard in program order, the not yet emitted
// nodes its predicate depends on (in their program order) and then the
// guard; then every remaining node in program order. Guards keep their
// relative order, and no node moves before anything it uses.
#include <functional>
#include <unordered_set>

#include "passes/passes.h"
#include "passes/util.h"

namespace bj::passes {

bool schedule_guards(ir::Graph& g, const PassContext&) {
  auto& nodes = g.mutable_nodes();
  std::unordered_map<const ir::Value*, size_t> def_at;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i]->result) def_at[nodes[i]->result] = i;
    for (const auto& b : nodes[i]->body) def_at[b->result] = i;
  }
  std::vector<bool> emitted(nodes.size(), false);
  std::vector<size_t> order;
  std::function<void(size_t)> emit = [&](size_t i) {
    if (emitted[i]) return;
    emitted[i] = true;
    auto deps = [&](const ir::Node& n) {
      for (const ir::Value* v : n.inputs) {
        auto it = def_at.find(v);
        if (it != def_at.end() && it->second != i) emit(it->second);
      }
    };
    deps(*nodes[i]);
    for (const auto& b : nodes[i]->body) deps(*b);
    order.push_back(i);
  };
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i]->kind == ir::NodeKind::kGuard) emit(i);
  for (size_t i = 0; i < nodes.size(); ++i) emit(i);
  return apply_order(g, order);
}

}  // namespace bj::passes
