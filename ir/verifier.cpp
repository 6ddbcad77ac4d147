// The verifier: SSA form, arity and attributes from the ops table, types
// consistent with inference, guards on one-element bool predicates.
#include <algorithm>
#include <set>
#include <unordered_set>

#include "ir/error.h"
#include "ir/graph.h"
#include "ir/infer.h"

namespace bj::ir {

namespace {

[[noreturn]] void fail(const Graph& g, const Node& n, const std::string& what) {
  std::string where = n.origin.path.empty() ? "" : " (at " + n.origin.path + ")";
  throw VerifyError("verify", "'" + describe(g, n) + "'" + where + ": " + what);
}

/// A region is one loop nest: elementwise members share its iteration space,
/// which is the contraction's output or the reduction's input.
void check_region(const Graph& g, const Node& r) {
  if (r.region != "elementwise" && r.region != "contraction" && r.region != "reduction")
    fail(g, r, "unknown region kind '" + r.region + "'");
  if (r.body.empty()) fail(g, r, "a region needs at least one node");
  const Node* anchor = nullptr;  // the contraction or reduction the region is built around
  for (const auto& n : r.body) {
    if (n->kind != NodeKind::kOp) fail(g, *n, "a region holds op nodes only");
    if (has_trait(n->op, kElementwise)) continue;
    if (anchor || r.region == "elementwise") fail(g, *n, "a fused " + r.region + " region cannot hold this op");
    anchor = n.get();
  }
  if (r.region == "contraction" && (!anchor || !has_trait(anchor->op, kContraction) || anchor != r.body.front().get()))
    fail(g, r, "a contraction region starts with its contraction");
  if (r.region == "reduction" && (!anchor || !has_trait(anchor->op, kReduction) || anchor != r.body.back().get()))
    fail(g, r, "a reduction region ends with its reduction");
  const Shape& space = r.region == "reduction" ? anchor->inputs[0]->type.shape
                       : anchor                ? anchor->result->type.shape
                                               : r.body.front()->result->type.shape;
  for (const auto& n : r.body)
    if (n.get() != anchor && !(n->result->type.shape == space))
      fail(g, *n, "its shape differs from the region's iteration space " + space.str());
}

void check_nodes(const Graph& g, const std::vector<std::unique_ptr<Node>>& nodes,
                 std::unordered_set<const Value*>& defined, const Node* region) {
  for (const auto& np : nodes) {
    const Node& n = *np;
    for (const Value* in : n.inputs)
      if (!defined.count(in)) fail(g, n, "uses a value that is not defined before it");
    switch (n.kind) {
      case NodeKind::kGuard: {
        const Type& t = n.inputs.at(0)->type;
        if (t.dtype != DType::kBool || t.numel() != 1)
          fail(g, n, "a guard needs a one-element bool predicate, got " + t.str());
        break;
      }
      case NodeKind::kLiteral:
        if (n.data.size() != n.result->type.bytes())
          fail(g, n, "literal has " + std::to_string(n.data.size()) + " bytes, its type needs " +
                         std::to_string(n.result->type.bytes()));
        break;
      case NodeKind::kRegion: {
        if (region) fail(g, n, "regions do not nest");
        check_region(g, n);
        std::unordered_set<const Value*> inner = defined;
        check_nodes(g, n.body, inner, &n);
        for (const Value* y : n.yields) {
          if (!y->def || std::none_of(n.body.begin(), n.body.end(), [&](const auto& b) { return b->result == y; }))
            fail(g, n, "yields a value its body does not compute");
          defined.insert(y);  // only yielded values are visible after the region
        }
        break;
      }
      case NodeKind::kOp: {
        std::vector<Type> types;
        for (const Value* in : n.inputs) types.push_back(in->type);
        OpAttrs canonical = n.attrs;
        Type t;
        try {
          t = infer(n.op, types, canonical);
        } catch (const Error& e) {
          fail(g, n, e.detail());
        }
        if (!(canonical == n.attrs)) fail(g, n, "attributes are not in canonical form");
        if (!(t == n.result->type)) fail(g, n, "the result type should be " + t.str());
        break;
      }
    }
    if (n.result) defined.insert(n.result);
  }
}

}  // namespace

void verify(const Graph& g) {
  std::unordered_set<const Value*> defined;
  std::set<std::string> names;
  for (auto* list : {&g.inputs(), &g.params(), &g.consts()})
    for (const Value* v : *list) {
      if (!names.insert(v->name).second) throw VerifyError("verify", "the name %" + v->name + " is defined twice");
      defined.insert(v);
    }
  check_nodes(g, g.nodes(), defined, nullptr);
  for (const Value* v : g.outputs())
    if (!defined.count(v)) throw VerifyError("verify", "a returned value is not defined");
}

}  // namespace bj::ir
