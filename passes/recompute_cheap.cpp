// Recomputing cheap values instead of storing them (before fusion). An
// elementwise op that rounds the same everywhere (IEEE arithmetic, compares,
// selects: ir::same_bits_everywhere), with one operand of its own shape that
// is a graph input, parameter or constant and only small broadcast operands
// besides, is copied for each further reader that fusion could absorb it
// into (an elementwise op or a reduction) and that also reads the result of
// an op fusion cannot absorb (a product, a movement op) computed after it:
// such a reader ends up in another loop than the value's first reader.
// Fusion then computes the value inside each loop from the operand that loop
// can read, instead of one loop writing it to memory and the others reading
// it back: the reads are the same, the write is gone. The backward of a
// training step is where this pays: rematerialization (ir/split.h) brings
// such values back from saved ones (GELU's 1 + tanh and 0.5 x), and loops on
// both sides of a product read them. The copies compute the same bits, so
// results do not change. Runs after cse, which would merge the copies back.
#include <algorithm>
#include <unordered_map>

#include "ir/semantics.h"
#include "passes/passes.h"
#include "passes/util.h"

namespace bj::passes {

namespace {

/// A consumer fusion may compute its operand in: an elementwise op or a reduction.
bool absorbs(const ir::Node& n) {
  return n.kind == ir::NodeKind::kOp && (ir::has_trait(n.op, ir::kElementwise) || ir::has_trait(n.op, ir::kReduction));
}

/// True if op node n is cheap to compute again in another loop (see the file comment).
bool cheap(const ir::Node& n) {
  if (n.kind != ir::NodeKind::kOp || !ir::has_trait(n.op, ir::kElementwise) || !ir::has_trait(n.op, ir::kPure) ||
      !ir::same_bits_everywhere(n.op, n.attrs))
    return false;
  const Type& t = n.result->type;
  if (t.dtype != DType::kF32 && t.dtype != DType::kBool) return false;
  int full = 0;
  for (const ir::Value* v : n.inputs) {
    if (v->type.shape == t.shape) {
      if (++full > 1 || v->kind == ir::ValueKind::kResult) return false;  // an input, parameter or constant
    } else if (v->type.numel() * 8 > t.numel()) {
      return false;  // only small broadcast operands (scalars, per-channel vectors) besides
    }
  }
  return full == 1;
}

}  // namespace

bool recompute_cheap(ir::Graph& g, const PassContext&) {
  Uses uses = compute_uses(g);
  auto& nodes = g.mutable_nodes();
  const auto pos = positions(g);
  // Per node: the position of the latest op no fusion absorbs that it reads, directly or through
  // ops fusion may absorb (-1: none). A value a region yields (a graph fused already) counts as
  // made by an op fusion does not absorb, at the region's position.
  std::unordered_map<const ir::Node*, int64_t> barrier;
  std::unordered_map<const ir::Value*, int64_t> yielded_at;
  for (const auto& np : nodes)
    for (const ir::Value* y : np->yields) yielded_at[y] = static_cast<int64_t>(pos.at(np.get()));
  for (const auto& np : nodes) {
    int64_t latest = -1;
    for (const ir::Value* v : np->inputs) {
      if (!v->def || v->def->kind == ir::NodeKind::kLiteral) continue;
      if (auto y = yielded_at.find(v); y != yielded_at.end())
        latest = std::max(latest, y->second);
      else
        latest = std::max(latest, absorbs(*v->def) ? barrier.at(v->def) : static_cast<int64_t>(pos.at(v->def)));
    }
    barrier[np.get()] = latest;
  }
  // The copies to make: for each reader, which of its operands to give a copy of.
  std::unordered_map<const ir::Node*, std::vector<ir::Node*>> copies_for;
  for (const auto& np : nodes) {
    const ir::Node& n = *np;
    if (!cheap(n)) continue;
    const std::vector<ir::Node*>& readers = uses.of(n.result);
    const bool stored = uses.output.count(n.result) > 0;  // an output: every later loop may copy
    for (size_t i = stored ? 0 : 1; i < readers.size(); ++i) {
      ir::Node* u = readers[i];
      if (absorbs(*u) && barrier.at(u) > static_cast<int64_t>(pos.at(&n))) copies_for[u].push_back(np.get());
    }
  }
  if (copies_for.empty()) return false;
  for (size_t i = 0; i < nodes.size(); ++i) {
    auto it = copies_for.find(nodes[i].get());
    if (it == copies_for.end()) continue;
    ir::Node& user = *nodes[i];
    size_t made = 0;
    for (const ir::Node* original : it->second) {
      auto copy = g.make_op(original->op, original->attrs, original->inputs, original->result->type, original->origin);
      for (ir::Value*& in : user.inputs)
        if (in == original->result) in = copy->result;
      nodes.insert(nodes.begin() + static_cast<std::ptrdiff_t>(i + made), std::move(copy));
      ++made;
    }
    i += made;
  }
  return true;
}

}  // namespace bj::passes
