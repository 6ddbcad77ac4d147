// Common-subexpression elimination. Two pure op nodes with the same op,
// attributes and operands (in any order for commutative ops) compute the
// same value; so do two literals of the same type and bytes. The later one's
// uses move to the earlier one, and it is removed. Guards, regions and
// their bodies are left alone. Assumes SSA (operands are compared by identity)
// and runs over the top level in program order, so the kept node always
// dominates the removed one.
#include <cstring>
#include <algorithm>
#include <map>

#include "passes/passes.h"
#include "passes/util.h"

namespace bj::passes {

namespace {

/// A key that two nodes share exactly when they compute the same value.
std::string key(const ir::Node& n) {
  std::string k;
  auto put = [&](const void* p, size_t len) { k.append(static_cast<const char*>(p), len); };
  if (n.kind == ir::NodeKind::kLiteral) {
    k = "L" + n.result->type.str() + ":";
    put(n.data.data(), n.data.size());
    return k;
  }
  k = "O" + std::to_string(static_cast<int>(n.op)) + ":";
  std::vector<const ir::Value*> ins(n.inputs.begin(), n.inputs.end());
  if (ir::has_trait(n.op, ir::kCommutative)) std::sort(ins.begin(), ins.end());
  for (const ir::Value* v : ins) put(&v, sizeof v);
  const ir::OpAttrs& a = n.attrs;
  for (const Shape* d : {&a.dims, &a.kernel, &a.stride, &a.padding, &a.dilation}) {
    const int64_t size = d->size();
    put(&size, sizeof size);
    put(d->begin(), static_cast<size_t>(size) * sizeof(int64_t));
  }
  int64_t ints[] = {a.groups, a.axis, a.start, a.end, a.step, static_cast<int64_t>(a.dtype), a.keepdim,
                    a.transpose_a, a.transpose_b};
  put(ints, sizeof ints);
  put(&a.scalar, sizeof a.scalar);
  return k;
}

}  // namespace

bool cse(ir::Graph& g, const PassContext&) {
  std::map<std::string, ir::Value*> seen;
  std::unordered_map<const ir::Node*, bool> dead;
  for (auto& n : g.mutable_nodes()) {
    bool pure = n->kind == ir::NodeKind::kLiteral || (n->kind == ir::NodeKind::kOp && ir::has_trait(n->op, ir::kPure));
    if (!pure) continue;
    auto [it, fresh] = seen.try_emplace(key(*n), n->result);
    if (fresh) continue;
    g.replace_uses(n->result, it->second);
    dead[n.get()] = true;
  }
  erase_nodes(g, dead);
  return !dead.empty();
}

}  // namespace bj::passes
