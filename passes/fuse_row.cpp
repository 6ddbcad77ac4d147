// Row fusion: softmax, log-softmax and LayerNorm as one region each. They are
// reductions over the trailing axes of a value (keepdim), elementwise work
// on the whole value before and after them, and a little arithmetic on the
// per-row results in between (mean = sum / n, sqrt(var + eps)). Fused, codegen
// walks one row at a time: a pass over the row per reduction, then one that
// computes and stores what the region yields, while the row stays in cache,
// so the value is read from memory once and the intermediates never are.
//
// A region grows from a reduction over trailing axes (keepdim) that has a
// consumer among the row's work (a lone reduction stays for fuse-reduction):
// it takes, to a fixed point, the producers and consumers of its members that
// are elementwise over the row space S or the reduced space S' (S with the
// reduced axes at 1), and the reductions over the same axes of a value of
// shape S. The region takes its last member's place, so a member whose value
// is read outside the region before that place cuts the region there: the
// members from that reader on are dropped (repeatedly, until none is).
//
// Runs before fuse-contraction, so that attention's scale and mask join its
// softmax instead of the product's epilogue: between two batched products,
// scale + mask + softmax are one region.
#include <algorithm>
#include <unordered_set>

#include "passes/fusion.h"
#include "passes/passes.h"

namespace bj::passes {

namespace {

struct Row {
  Shape space, rows;
  Shape axes;
};

/// A top-level op node that a row region over `row` may take.
bool row_member(const ir::Node* n, const Row& row) {
  if (!n || n->kind != ir::NodeKind::kOp) return false;
  if (ir::has_trait(n->op, ir::kElementwise))
    return fusible_elementwise(n, row.space) || fusible_elementwise(n, row.rows);
  return ir::row_reduction_axes(*n) > 0 && n->attrs.dims == row.axes && n->inputs[0]->type.shape == row.space &&
         n->result->type.dtype == DType::kF32;
}

/// True if some member reads a reduction's result: the row has work after a reduction.
bool reads_a_reduction(const std::vector<ir::Node*>& members) {
  std::unordered_set<const ir::Value*> reduced;
  for (const ir::Node* m : members)
    if (ir::has_trait(m->op, ir::kReduction)) reduced.insert(m->result);
  for (const ir::Node* m : members)
    for (const ir::Value* v : m->inputs)
      if (reduced.count(v)) return true;
  return false;
}

}  // namespace

bool fuse_row(ir::Graph& g, const PassContext&) {
  Uses uses = compute_uses(g);
  auto& nodes = g.mutable_nodes();
  const std::unordered_map<const ir::Node*, size_t> pos = positions(g);
  std::unordered_set<const ir::Node*> taken;
  std::vector<std::vector<ir::Node*>> groups;
  for (auto& seed : nodes) {
    if (taken.count(seed.get()) || ir::row_reduction_axes(*seed) == 0 || seed->result->type.dtype != DType::kF32)
      continue;
    const Row row{seed->inputs[0]->type.shape, seed->result->type.shape, seed->attrs.dims};
    std::unordered_set<ir::Node*> group{seed.get()};
    for (bool grew = true; grew;) {
      grew = false;
      std::vector<ir::Node*> members(group.begin(), group.end());
      auto take = [&](ir::Node* n) {
        if (!pos.count(n) || taken.count(n) || group.count(n) || !row_member(n, row)) return;
        group.insert(n);
        grew = true;
      };
      for (ir::Node* m : members) {
        for (ir::Value* v : m->inputs) take(v->def);
        for (ir::Node* u : uses.of(m->result)) take(u);
      }
    }
    // Cut the region before the first outside reader that comes before its end.
    std::vector<ir::Node*> members(group.begin(), group.end());
    std::sort(members.begin(), members.end(), [&](const ir::Node* a, const ir::Node* b) { return pos.at(a) < pos.at(b); });
    for (bool cut = true; cut && !members.empty();) {
      cut = false;
      const size_t end = pos.at(members.back());
      std::unordered_set<const ir::Node*> in(members.begin(), members.end());
      size_t first_reader = end;
      for (const ir::Node* m : members)
        for (const ir::Node* u : uses.of(m->result))
          if (!in.count(u) && pos.at(u) < first_reader) first_reader = pos.at(u);
      if (first_reader < end) {
        std::erase_if(members, [&](const ir::Node* m) { return pos.at(m) >= first_reader; });
        cut = true;
      }
    }
    if (!reads_a_reduction(members)) continue;
    for (const ir::Node* m : members) taken.insert(m);
    groups.push_back(std::move(members));
  }
  for (const auto& members : groups) make_region(g, ir::RegionKind::kRow, members, uses);
  return !groups.empty();
}

}  // namespace bj::passes
