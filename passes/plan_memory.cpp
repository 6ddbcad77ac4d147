// Memory planning: every intermediate that must live in memory (the result
// of a top-level op, or a value a region yields) gets a byte offset in one
// arena, and values that are never live at the same time share space.
// Graph outputs get memory of their own (they outlive the call); literals,
// inputs, parameters and constants are not intermediates; values inside a
// region that it does not yield stay in registers.
// Algorithm: live interval of a value = [its node's position, the position
// of its last top-level user] (inclusive, so an op's operands and result
// never overlap); in order of definition, values whose interval ended are
// freed, then each new value takes the best-fitting free block (64-byte
// aligned) or extends the arena.
#include <algorithm>
#include <map>

#include "passes/passes.h"
#include "passes/util.h"

namespace bj::passes {

namespace {

constexpr int64_t kAlign = 64;

struct Interval {
  ir::Value* value;
  size_t begin, end;
  int64_t size;
};

std::vector<Interval> intervals(ir::Graph& g) {
  Uses uses = compute_uses(g);
  auto& nodes = g.mutable_nodes();
  std::unordered_map<const ir::Node*, size_t> pos;
  for (size_t i = 0; i < nodes.size(); ++i) pos[nodes[i].get()] = i;
  std::vector<Interval> out;
  auto add = [&](ir::Value* v, size_t at) {
    if (uses.output.count(v)) return;
    size_t end = at;
    for (const ir::Node* u : uses.of(v)) end = std::max(end, pos.at(u));
    int64_t size = (static_cast<int64_t>(v->type.bytes()) + kAlign - 1) / kAlign * kAlign;
    out.push_back({v, at, end, std::max<int64_t>(size, kAlign)});
  };
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i]->kind == ir::NodeKind::kOp) add(nodes[i]->result, i);
    for (ir::Value* y : nodes[i]->yields) add(y, i);
  }
  return out;
}

}  // namespace

int64_t intermediate_bytes(const ir::Graph& g) {
  int64_t total = 0;
  for (const auto& iv : intervals(const_cast<ir::Graph&>(g))) total += static_cast<int64_t>(iv.value->type.bytes());
  return total;
}

bool plan_memory(ir::Graph& g, const PassContext&) {
  std::vector<Interval> ivs = intervals(g);
  // The plan before, to report whether this one differs (a planned graph planned again does not).
  std::vector<int64_t> before;
  for (const Interval& iv : ivs) before.push_back(iv.value->offset);
  const int64_t arena_before = g.arena_bytes;
  std::map<int64_t, int64_t> free_blocks;  // offset -> size
  std::multimap<size_t, const Interval*> ending;  // end position -> interval, for release
  int64_t arena = 0;
  auto release = [&](int64_t off, int64_t size) {
    auto next = free_blocks.lower_bound(off);
    if (next != free_blocks.end() && off + size == next->first) {  // merge with the block after
      size += next->second;
      next = free_blocks.erase(next);
    }
    if (next != free_blocks.begin()) {  // and with the block before
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        prev->second += size;
        return;
      }
    }
    free_blocks[off] = size;
  };
  for (const Interval& iv : ivs) {
    while (!ending.empty() && ending.begin()->first < iv.begin) {
      const Interval* done = ending.begin()->second;
      release(done->value->offset, done->size);
      ending.erase(ending.begin());
    }
    auto best = free_blocks.end();
    for (auto it = free_blocks.begin(); it != free_blocks.end(); ++it)
      if (it->second >= iv.size && (best == free_blocks.end() || it->second < best->second)) best = it;
    if (best != free_blocks.end()) {
      iv.value->offset = best->first;
      int64_t rest = best->second - iv.size, at = best->first + iv.size;
      free_blocks.erase(best);
      if (rest > 0) free_blocks[at] = rest;
    } else if (!free_blocks.empty() && std::prev(free_blocks.end())->first + std::prev(free_blocks.end())->second == arena) {
      auto last = std::prev(free_blocks.end());  // grow the free block at the arena's end
      iv.value->offset = last->first;
      arena = last->first + iv.size;
      free_blocks.erase(last);
    } else {
      iv.value->offset = arena;
      arena += iv.size;
    }
    ending.emplace(iv.end, &iv);
  }
  g.arena_bytes = arena;
  bool changed = arena != arena_before;
  for (size_t i = 0; i < ivs.size(); ++i) changed |= ivs[i].value->offset != before[i];
  return changed;
}

}  // namespace bj::passes
