// Shared helpers of the passes (see util.h).
#include "passes/util.h"

#include <cstring>
#include <queue>
#include <unordered_set>

#include "ir/error.h"

namespace bj::passes {

const std::vector<ir::Node*>& Uses::of(const ir::Value* v) const {
  static const std::vector<ir::Node*> none;
  auto it = users.find(v);
  return it == users.end() ? none : it->second;
}

Uses compute_uses(ir::Graph& g) {
  Uses u;
  for (auto& n : g.mutable_nodes()) {
    std::unordered_set<const ir::Value*> seen;  // one entry per user node
    auto note = [&](const ir::Value* v) {
      if (seen.insert(v).second) u.users[v].push_back(n.get());
    };
    for (const ir::Value* v : n->inputs) note(v);
    for (const auto& b : n->body)
      for (const ir::Value* v : b->inputs) note(v);
  }
  for (const ir::Value* v : g.outputs()) u.output[v] = true;
  for (const ir::Commit& c : g.commits()) u.output[c.value] = true;  // written at the end, like outputs
  return u;
}

std::unordered_map<const ir::Node*, size_t> positions(const ir::Graph& g) {
  std::unordered_map<const ir::Node*, size_t> pos;
  for (size_t i = 0; i < g.nodes().size(); ++i) pos[g.nodes()[i].get()] = i;
  return pos;
}

std::optional<double> literal_splat(const ir::Value* v) {
  if (!v->def || v->def->kind != ir::NodeKind::kLiteral) return std::nullopt;
  const auto& d = v->def->data;
  const size_t es = element_size(v->type.dtype);
  if (d.empty()) return std::nullopt;
  for (size_t i = es; i < d.size(); i += es)
    if (std::memcmp(d.data(), d.data() + i, es) != 0) return std::nullopt;
  switch (v->type.dtype) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, d.data(), 4);
      return f;
    }
    case DType::kI64: {
      int64_t i;
      std::memcpy(&i, d.data(), 8);
      return static_cast<double>(i);
    }
    default: return std::nullopt;
  }
}

bool literal_is(const ir::Value* v, float value) {
  if (v->type.dtype != DType::kF32 || !literal_splat(v)) return false;
  return std::memcmp(v->def->data.data(), &value, 4) == 0;
}

bool stable_topological_sort(ir::Graph& g) {
  auto& nodes = g.mutable_nodes();
  const size_t n = nodes.size();
  std::unordered_map<const ir::Value*, size_t> def_at;
  for (size_t i = 0; i < n; ++i) {
    if (nodes[i]->result) def_at[nodes[i]->result] = i;
    for (const auto& b : nodes[i]->body) def_at[b->result] = i;
  }
  std::vector<std::vector<size_t>> succ(n);
  std::vector<int> preds(n, 0);
  auto edge = [&](const ir::Value* v, size_t to) {
    auto it = def_at.find(v);
    if (it == def_at.end() || it->second == to) return;
    succ[it->second].push_back(to);
    ++preds[to];
  };
  size_t last_guard = n;
  for (size_t i = 0; i < n; ++i) {
    for (const ir::Value* v : nodes[i]->inputs) edge(v, i);
    for (const auto& b : nodes[i]->body)
      for (const ir::Value* v : b->inputs) edge(v, i);
    if (nodes[i]->kind == ir::NodeKind::kGuard) {  // guards stay in their order
      if (last_guard != n) {
        succ[last_guard].push_back(i);
        ++preds[i];
      }
      last_guard = i;
    }
  }
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;  // earliest original position first
  for (size_t i = 0; i < n; ++i)
    if (preds[i] == 0) ready.push(i);
  std::vector<size_t> order;
  while (!ready.empty()) {
    size_t i = ready.top();
    ready.pop();
    order.push_back(i);
    for (size_t j : succ[i])
      if (--preds[j] == 0) ready.push(j);
  }
  if (order.size() != n) throw VerifyError("topological sort", "the graph has a cycle (a pass grouped nodes badly)");
  return apply_order(g, order);
}

bool apply_order(ir::Graph& g, const std::vector<size_t>& order) {
  auto& nodes = g.mutable_nodes();
  bool moved = false;
  std::vector<std::unique_ptr<ir::Node>> sorted;
  for (size_t k = 0; k < order.size(); ++k) {
    moved |= order[k] != k;
    sorted.push_back(std::move(nodes[order[k]]));
  }
  nodes = std::move(sorted);
  return moved;
}

void erase_nodes(ir::Graph& g, const std::unordered_map<const ir::Node*, bool>& dead) {
  auto& nodes = g.mutable_nodes();
  std::erase_if(nodes, [&](const std::unique_ptr<ir::Node>& n) {
    auto it = dead.find(n.get());
    return it != dead.end() && it->second;
  });
}

}  // namespace bj::passes
