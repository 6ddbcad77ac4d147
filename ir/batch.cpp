// Graphs for every batch size (see batch.h).
#include "ir/batch.h"

#include <functional>
#include <string>
#include <unordered_map>

namespace bj::ir {

namespace {

std::vector<const Node*> nodes_in_order(const Graph& g) {
  std::vector<const Node*> out;
  for_each_node(g.nodes(), [&](const Node& n) { out.push_back(&n); });
  return out;
}

/// Compares two graphs value by value and node by node; `dim0(i, a, b)` decides whether dims 0
/// `a` and `b` of value i (values_in_order) agree.
/// Node `n` as printed, cut short (a large literal prints as all its bytes), and its origin.
std::string node_text(const Graph& g, const Node& n) {
  constexpr size_t kMost = 100;
  std::string text = describe(g, n);
  if (text.size() > kMost) text = text.substr(0, kMost) + "...";
  return "`" + text + "` (" + n.origin.str() + ")";
}

/// Where value `v` of `g` comes from, for messages.
std::string where(const Graph& g, const Value* v) { return v->def ? node_text(g, *v->def) : "%" + v->name; }

bool same_program(const Graph& a, const Graph& b, const std::function<bool(size_t, int64_t, int64_t)>& dim0,
                  std::string* why) {
  auto differ = [&](std::string what) {
    if (why) *why = std::move(what);
    return false;
  };
  const std::vector<const Value*> va = values_in_order(a), vb = values_in_order(b);
  if (va.size() != vb.size() || a.inputs().size() != b.inputs().size() || a.params().size() != b.params().size() ||
      a.consts().size() != b.consts().size() || a.outputs().size() != b.outputs().size() ||
      a.commits().size() != b.commits().size())
    return differ("they record different numbers of values or nodes");
  std::unordered_map<const Value*, size_t> ia, ib;
  for (size_t i = 0; i < va.size(); ++i) {
    ia[va[i]] = i;
    ib[vb[i]] = i;
    const Type &ta = va[i]->type, &tb = vb[i]->type;
    if (va[i]->kind != vb[i]->kind || va[i]->name != vb[i]->name || ta.dtype != tb.dtype ||
        ta.shape.size() != tb.shape.size())
      return differ(where(b, vb[i]) + " is not " + where(a, va[i]));
    for (int d = 1; d < ta.shape.size(); ++d)
      if (ta.shape[d] != tb.shape[d])
        return differ(where(b, vb[i]) + " has a dim other than the first that changes with the batch size");
    if (!ta.shape.empty() && !dim0(i, ta.shape[0], tb.shape[0]))
      return differ(where(b, vb[i]) + " has a dim 0 that is not a multiple of the batch size");
  }
  auto same_values = [&](const std::vector<Value*>& x, const std::vector<Value*>& y) {
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i)
      if (ia.at(x[i]) != ib.at(y[i])) return false;
    return true;
  };
  const std::vector<const Node*> na = nodes_in_order(a), nb = nodes_in_order(b);
  if (na.size() != nb.size()) return differ("they record different numbers of nodes");
  for (size_t i = 0; i < na.size(); ++i) {
    const Node &x = *na[i], &y = *nb[i];
    const std::string node = node_text(b, y);
    if (x.kind == NodeKind::kLiteral && y.kind == NodeKind::kLiteral && x.data != y.data)
      return differ("literal " + node + " holds other data (made from the batch size, or of its size)");
    if (x.kind == NodeKind::kGuard && y.kind == NodeKind::kGuard && x.expect != y.expect)
      return differ(node + " took the other branch");
    if (x.kind != y.kind || x.expect != y.expect || x.data != y.data || x.body.size() != y.body.size() ||
        (x.kind == NodeKind::kRegion && x.region != y.region) || !same_values(x.inputs, y.inputs) ||
        !same_values(x.yields, y.yields) || (x.result == nullptr) != (y.result == nullptr) ||
        (x.result && ia.at(x.result) != ib.at(y.result)) || (x.kind == NodeKind::kOp && x.op != y.op))
      return differ(node + " is not " + node_text(a, x));
    if (x.kind != NodeKind::kOp) continue;
    OpAttrs ax = x.attrs, ay = y.attrs;
    if (op_info(x.op).attrs & kShape) {  // a target shape: the result's, which the types compare
      if (ax.dims != x.result->type.shape || ay.dims != y.result->type.shape) return differ(node + " has another shape");
      ax.dims = ay.dims = Shape{};
    }
    if (!(ax == ay)) return differ(node + " has other attributes");
  }
  if (!same_values(a.outputs(), b.outputs())) return differ("they return other values");
  for (size_t i = 0; i < a.commits().size(); ++i)
    if (ia.at(a.commits()[i].target) != ib.at(b.commits()[i].target) ||
        ia.at(a.commits()[i].value) != ib.at(b.commits()[i].value))
      return differ("they commit other values");
  return true;
}

}  // namespace

std::vector<const Value*> values_in_order(const Graph& g) {
  std::vector<const Value*> out;
  for (auto* list : {&g.inputs(), &g.params(), &g.consts()}) out.insert(out.end(), list->begin(), list->end());
  for_each_node(g.nodes(), [&](const Node& n) {
    if (n.result) out.push_back(n.result);
  });
  return out;
}

std::optional<std::vector<int32_t>> unify_batch(const Graph& a, int64_t ba, const Graph& b, int64_t bb,
                                                std::string* why) {
  if (ba <= 0 || bb <= 0 || ba == bb) return std::nullopt;
  std::vector<int32_t> factors(values_in_order(b).size(), 0);
  bool any = false;
  const bool same = same_program(a, b, [&](size_t i, int64_t da, int64_t db) {
    if (da == db) return true;
    if (db % bb != 0 || db / bb > (int64_t{1} << 30)) return false;
    const int64_t k = db / bb;
    if (k < 1 || da != k * ba) return false;
    factors[i] = static_cast<int32_t>(k);
    any = true;
    return true;
  }, why);
  if (!same) return std::nullopt;
  if (!any) {  // nothing scales with the batch
    if (why) *why = "no value changes with the batch size";
    return std::nullopt;
  }
  for (size_t i = b.inputs().size(); i < b.inputs().size() + b.params().size() + b.consts().size(); ++i)
    if (factors[i]) {  // state bound by reference has one size
      if (why) *why = "parameter or constant " + where(b, values_in_order(b)[i]) + " changes with the batch size";
      return std::nullopt;
    }
  return factors;
}

void set_batch(Graph& g, int64_t batch, const std::vector<int32_t>& factors) {
  const std::vector<const Value*> vs = values_in_order(g);
  for (size_t i = 0; i < vs.size(); ++i) const_cast<Value*>(vs[i])->batch = factors.at(i);
  g.batch = batch;
}

bool fits_batch(const Graph& g, int64_t g_batch, const std::vector<int32_t>& factors, const Graph& other, int64_t n,
                std::string* why) {
  if (n < 0 || factors.size() != values_in_order(g).size()) return false;
  return same_program(g, other, [&](size_t i, int64_t dg, int64_t d) {
    const int64_t k = factors[i];
    return k == 0 ? dg == d : dg == k * g_batch && d == k * n;
  }, why);
}

Type type_at(const Graph& g, const Value& v, int64_t n) {
  Type t = v.type;
  if (v.batch > 0 && g.batch > 0) t.shape[0] = v.batch * n;
  return t;
}

}  // namespace bj::ir
