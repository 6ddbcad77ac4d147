// Region construction shared by the fusion passes (see fusion.h).
#include "passes/fusion.h"

#include <algorithm>
#include <unordered_set>

namespace bj::passes {

namespace {
std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (!path.empty()) {
    size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

/// The block path all members lie in (their longest common path prefix).
std::string common_path(const std::vector<ir::Node*>& members) {
  std::vector<std::string> common = components(members.front()->origin.path);
  for (const ir::Node* m : members) {
    std::vector<std::string> p = components(m->origin.path);
    size_t k = 0;
    while (k < common.size() && k < p.size() && common[k] == p[k]) ++k;
    common.resize(k);
  }
  std::string r;
  for (size_t i = 0; i < common.size(); ++i) r += (i ? "." : "") + common[i];
  return r;
}
}  // namespace

bool fusible_elementwise(const ir::Node* n, const Shape& shape) {
  return n && n->kind == ir::NodeKind::kOp && ir::has_trait(n->op, ir::kElementwise) && n->result->type.shape == shape;
}

ir::Node* make_region(ir::Graph& g, ir::RegionKind kind, const std::vector<ir::Node*>& members, const Uses& uses,
                      bool in_order) {
  std::unordered_set<const ir::Node*> in(members.begin(), members.end());
  auto region = std::make_unique<ir::Node>();
  region->kind = ir::NodeKind::kRegion;
  region->region = kind;
  region->origin.path = common_path(members);
  for (ir::Node* m : members) {
    bool outside = uses.output.count(m->result) > 0;
    for (const ir::Node* u : uses.of(m->result)) outside |= !in.count(u);
    if (outside) region->yields.push_back(m->result);
  }
  auto& nodes = g.mutable_nodes();
  size_t last = 0;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (in.count(nodes[i].get())) last = i;
  std::unordered_map<const ir::Node*, size_t> order;  // member -> position in the body
  for (size_t i = 0; i < members.size(); ++i) order[members[i]] = i;
  if (in_order) region->body.resize(members.size());
  for (auto& slot : nodes)
    if (in.count(slot.get())) {
      if (in_order)
        region->body[order.at(slot.get())] = std::move(slot);
      else
        region->body.push_back(std::move(slot));
    }
  ir::Node* r = region.get();
  nodes[last] = std::move(region);
  std::erase_if(nodes, [](const std::unique_ptr<ir::Node>& n) { return n == nullptr; });
  return r;
}

}  // namespace bj::passes
