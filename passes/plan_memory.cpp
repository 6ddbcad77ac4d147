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
// A reshape of an intermediate is the same bytes: its result shares its
// input's memory (codegen then copies nothing), and the input lives until
// the last use of either. Values are written once, so sharing is safe.
// In place: an elementwise op or region (or a contraction region's
// epilogue) reads each element of an operand of its own type only where it
// writes the same element of its result; when that read is the operand's
// last, the result takes the operand's bytes (a training step's ReLU
// gradient overwrites the activations it masks: half the footprint, which
// then fits in L2). Every loop and kernel over such nodes reads an
// element's operands before writing it, at the same index.
#include <algorithm>
#include <map>
#include <unordered_set>

#include "passes/passes.h"
#include "passes/util.h"

namespace bj::passes {

namespace {

constexpr int64_t kAlign = 64;

struct Interval {
  ir::Value* value;
  size_t begin, end;
  int64_t size;
  int donor = -1;  ///< the interval whose bytes this one takes over at `begin` (in place), or -1
};

/// The intervals of the values that need memory of their own, and the reshapes that share
/// their input's (result -> the value whose memory it is).
struct Lifetimes {
  std::vector<Interval> intervals;
  std::vector<std::pair<ir::Value*, ir::Value*>> views;
};

Lifetimes lifetimes(ir::Graph& g) {
  Uses uses = compute_uses(g);
  auto& nodes = g.mutable_nodes();
  const std::unordered_map<const ir::Node*, size_t> pos = positions(g);
  Lifetimes out;
  std::unordered_map<const ir::Value*, size_t> interval_of;
  auto last_use = [&](const ir::Value* v, size_t at) {
    for (const ir::Node* u : uses.of(v)) at = std::max(at, pos.at(u));
    return at;
  };
  auto add = [&](ir::Value* v, size_t at) {
    if (uses.output.count(v)) return;
    // A batched value (ir/batch.h) is placed per unit of batch size, in the arena's second part.
    const int64_t bytes = static_cast<int64_t>(v->type.bytes()) / (g.batch > 0 && v->batch ? g.batch : 1);
    int64_t size = (bytes + kAlign - 1) / kAlign * kAlign;
    interval_of[v] = out.intervals.size();
    out.intervals.push_back({v, at, last_use(v, at), std::max<int64_t>(size, kAlign)});
  };
  for (size_t i = 0; i < nodes.size(); ++i) {
    ir::Node& n = *nodes[i];
    if (n.kind == ir::NodeKind::kOp && n.op == ir::OpKind::Reshape && !uses.output.count(n.result)) {
      auto in = interval_of.find(n.inputs[0]);
      if (in != interval_of.end()) {  // a view: the input's memory lives as long as the view is read
        Interval& root = out.intervals[in->second];
        root.end = std::max(root.end, last_use(n.result, i));
        interval_of[n.result] = in->second;
        out.views.push_back({n.result, root.value});
        continue;
      }
    }
    const size_t first = out.intervals.size();
    if (n.kind == ir::NodeKind::kOp) add(n.result, i);
    for (ir::Value* y : n.yields) add(y, i);
    // In place: a result takes the bytes of an operand this node reads last (one result per operand).
    std::vector<const ir::Value*> operands(n.inputs.begin(), n.inputs.end());
    for (const auto& b : n.body) operands.insert(operands.end(), b->inputs.begin(), b->inputs.end());
    std::unordered_set<size_t> taken;
    for (size_t r = first; r < out.intervals.size(); ++r)
      for (const ir::Value* u : operands) {
        auto d = interval_of.find(u);
        if (d == interval_of.end() || out.intervals[d->second].value != u || taken.count(d->second) ||
            out.intervals[d->second].end != i || !ir::reads_in_place(n, u, out.intervals[r].value))
          continue;
        out.intervals[r].donor = static_cast<int>(d->second);
        taken.insert(d->second);
        break;
      }
  }
  return out;
}

}  // namespace

int64_t intermediate_bytes(const ir::Graph& g) {
  int64_t total = 0;
  for (const auto& iv : lifetimes(const_cast<ir::Graph&>(g)).intervals) total += static_cast<int64_t>(iv.value->type.bytes());
  return total;
}

namespace {

/// Gives each interval an offset (its donor's, else best fit among the blocks freed so far, else
/// the arena's end); returns the arena's size. `all` is every interval (donors are indices in it).
int64_t place(const std::vector<const Interval*>& ivs, const std::vector<Interval>& all) {
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
  for (const Interval* ivp : ivs) {
    const Interval& iv = *ivp;
    while (!ending.empty() && ending.begin()->first < iv.begin) {
      const Interval* done = ending.begin()->second;
      release(done->value->offset, done->size);
      ending.erase(ending.begin());
    }
    if (iv.donor >= 0) {  // the donor's bytes pass to this interval instead of being released after it
      const Interval* donor = &all[static_cast<size_t>(iv.donor)];
      bool took = false;
      for (auto it = ending.lower_bound(donor->end); it != ending.end() && it->first == donor->end; ++it)
        if (it->second == donor) {
          ending.erase(it);
          iv.value->offset = donor->value->offset;
          ending.emplace(iv.end, &iv);
          took = true;
          break;
        }
      if (took) continue;
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
  return arena;
}

}  // namespace

bool plan_memory(ir::Graph& g, const PassContext&) {
  Lifetimes life = lifetimes(g);
  std::vector<Interval>& ivs = life.intervals;
  // The plan before, to report whether this one differs (a planned graph planned again does not).
  std::vector<int64_t> before;
  for (const Interval& iv : ivs) before.push_back(iv.value->offset);
  for (const auto& [view, root] : life.views) before.push_back(view->offset);
  const int64_t arena_before = g.arena_bytes, rows_before = g.arena_row_bytes;
  // Static values and batched ones (sizes per unit of batch size) are placed apart: scaling
  // the second part by the call's batch size keeps every pair of them apart.
  std::vector<const Interval*> fixed, batched;
  for (const Interval& iv : ivs) (g.batch > 0 && iv.value->batch ? batched : fixed).push_back(&iv);
  const int64_t arena = place(fixed, ivs);
  g.arena_row_bytes = place(batched, ivs);
  g.arena_bytes = arena;
  bool changed = arena != arena_before || g.arena_row_bytes != rows_before;
  for (size_t i = 0; i < ivs.size(); ++i) changed |= ivs[i].value->offset != before[i];
  for (size_t i = 0; i < life.views.size(); ++i) {
    auto [view, root] = life.views[i];
    changed |= root->offset != view->offset;
    view->offset = root->offset;
  }
  return changed;
}

}  // namespace bj::passes
