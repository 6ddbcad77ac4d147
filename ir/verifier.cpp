// The verifier: SSA form, arity and attributes from the ops table, types
// consistent with inference, guards on one-element bool predicates.
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

}  // namespace

void verify(const Graph& g) {
  std::unordered_set<const Value*> defined;
  std::set<std::string> names;
  for (auto* list : {&g.inputs(), &g.params(), &g.consts()})
    for (const Value* v : *list) {
      if (!names.insert(v->name).second) throw VerifyError("verify", "the name %" + v->name + " is defined twice");
      defined.insert(v);
    }
  for (const auto& np : g.nodes()) {
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
  for (const Value* v : g.outputs())
    if (!defined.count(v)) throw VerifyError("verify", "a returned value is not defined");
}

}  // namespace bj::ir
