// The verifier: SSA form, arity and attributes from the ops table, types
// consistent with inference, guards on one-element bool predicates, and
// planned arena offsets (in bounds, aligned, and never shared by two values
// live at the same time). Linear in the graph's size (up to a log factor),
// so a hostile 50 MB file is checked in seconds.
#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "ir/error.h"
#include "ir/graph.h"
#include "ir/infer.h"

namespace bj::ir {

namespace {

/// At most n characters of s (origins and node texts come from files: keep messages short).
std::string clip(const std::string& s, size_t n = 120) { return s.size() <= n ? s : s.substr(0, n) + "..."; }

[[noreturn]] void fail(const Graph& g, const Node& n, const std::string& what) {
  std::string at = n.line ? "line " + std::to_string(n.line) + ":" + std::to_string(n.column) + ": " : "";
  std::string where = n.origin.path.empty() ? "" : " (at " + clip(n.origin.path) + ")";
  throw VerifyError("verify", at + "'" + clip(describe(g, n)) + "'" + where + ": " + what);
}

/// The node's operand count against the ops table, before anything reads its operands.
void check_arity(const Graph& g, const Node& n) {
  const int arity = op_info(n.op).arity;
  if ((arity >= 0 && static_cast<int>(n.inputs.size()) != arity) || (arity < 0 && n.inputs.empty()))
    fail(g, n, std::string(op_name(n.op)) + " takes " + (arity >= 0 ? std::to_string(arity) : "one or more") +
                   " operands, got " + std::to_string(n.inputs.size()));
}

/// A row region: reductions over the same trailing axes of the same space (keepdim), and
/// elementwise members over that space or the reduced one (one value per row).
void check_row_region(const Graph& g, const Node& r) {
  const Node* first = nullptr;
  for (const auto& n : r.body)
    if (n->kind == NodeKind::kOp && has_trait(n->op, kReduction)) {
      first = n.get();
      break;
    }
  if (!first || row_reduction_axes(*first) == 0)
    fail(g, r, "a row region holds a reduction over trailing axes that keeps them");
  const Shape &space = first->inputs[0]->type.shape, &rows = first->result->type.shape;
  for (const auto& n : r.body) {
    if (n->kind != NodeKind::kOp) fail(g, *n, "a region holds op nodes only");
    check_arity(g, *n);
    const Shape& s = n->result->type.shape;
    if (has_trait(n->op, kElementwise)) {
      if (!(s == space) && !(s == rows))
        fail(g, *n, "its shape is neither the row region's space " + space.str() + " nor its rows " + rows.str());
    } else if (!has_trait(n->op, kReduction) || n->attrs.dims != first->attrs.dims ||
               !(n->inputs[0]->type.shape == space) || !n->attrs.keepdim) {
      fail(g, *n, "a fused row region cannot hold this op (only elementwise ops and reductions like its first)");
    }
  }
}

/// A region is one loop nest: elementwise members share its iteration space,
/// which is the contraction's output or the reduction's input.
void check_region(const Graph& g, const Node& r) {
  if (r.body.empty()) fail(g, r, "a region needs at least one node");
  if (r.region == RegionKind::kRow) return check_row_region(g, r);
  const Node* anchor = nullptr;  // the contraction or reduction the region is built around
  for (const auto& n : r.body) {
    if (n->kind != NodeKind::kOp) fail(g, *n, "a region holds op nodes only");
    check_arity(g, *n);
    if (has_trait(n->op, kElementwise)) continue;
    if (anchor || r.region == RegionKind::kElementwise)
      fail(g, *n, "a fused " + std::string(region_kind_name(r.region)) + " region cannot hold this op");
    anchor = n.get();
  }
  if (r.region == RegionKind::kContraction && (!anchor || !has_trait(anchor->op, kContraction) || anchor != r.body.front().get()))
    fail(g, r, "a contraction region starts with its contraction");
  if (r.region == RegionKind::kReduction && (!anchor || !has_trait(anchor->op, kReduction) || anchor != r.body.back().get()))
    fail(g, r, "a reduction region ends with its reduction");
  const Shape& space = r.region == RegionKind::kReduction ? anchor->inputs[0]->type.shape
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
        check_nodes(g, n.body, defined, &n);
        std::unordered_set<const Value*> body_values;
        for (const auto& b : n.body) body_values.insert(b->result);
        for (const Value* y : n.yields)
          if (!body_values.count(y)) fail(g, n, "yields a value its body does not compute");
        for (const auto& b : n.body) defined.erase(b->result);  // only yielded values are visible after it
        for (const Value* y : n.yields) defined.insert(y);
        break;
      }
      case NodeKind::kOp: {
        check_arity(g, n);
        if (std::string unread = unread_attrs(op_info(n.op).attrs, n.attrs); !unread.empty())
          fail(g, n, "sets attributes " + std::string(op_name(n.op)) + " does not read: " + unread);
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

/// Planned offsets: each in the arena and 64-byte aligned, and no two values whose live
/// intervals (inclusive, over top-level positions, as memory planning computes them) meet share
/// a byte, except a result in place of an operand its node reads last (reads_in_place: the same
/// bytes). A sweep over intervals with the live byte ranges in an ordered map (disjoint by then).
void check_offsets(const Graph& g) {
  const auto& nodes = g.nodes();
  struct Live {
    const Value* v;
    const Node* def;
    size_t begin, end;
  };
  std::unordered_map<const Value*, size_t> index;
  std::vector<Live> lives;
  auto add = [&](const Value* v, const Node& def, size_t at) {
    if (!v || v->offset < 0) return;
    const auto bytes = static_cast<int64_t>(v->type.bytes());
    if (v->offset % 64 != 0) fail(g, def, "its arena offset @" + std::to_string(v->offset) + " is not 64-byte aligned");
    if (v->offset > g.arena_bytes || bytes > g.arena_bytes - v->offset)
      fail(g, def, "its " + std::to_string(bytes) + " bytes at @" + std::to_string(v->offset) +
                       " do not fit the arena of " + std::to_string(std::max<int64_t>(g.arena_bytes, 0)) + " bytes");
    index[v] = lives.size();
    lives.push_back({v, &def, at, at});
  };
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = *nodes[i];
    if (n.kind == NodeKind::kRegion) {
      for (const auto& b : n.body) add(b->result, *b, i);
    } else if (n.kind == NodeKind::kOp && n.op == OpKind::Reshape && n.result->offset >= 0 &&
               n.result->offset == n.inputs[0]->offset && index.count(n.inputs[0])) {
      index[n.result] = index.at(n.inputs[0]);  // a view of its input's bytes: its uses keep them live
    } else {
      add(n.result, n, i);
    }
  }
  if (lives.empty()) return;
  auto use = [&](const Value* v, size_t at) {
    if (auto it = index.find(v); it != index.end()) lives[it->second].end = std::max(lives[it->second].end, at);
  };
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (const Value* v : nodes[i]->inputs) use(v, i);
    for (const auto& b : nodes[i]->body)
      for (const Value* v : b->inputs) use(v, i);
  }
  for (const Value* v : g.outputs()) use(v, nodes.size());
  for (const Commit& c : g.commits()) use(c.value, nodes.size());
  std::sort(lives.begin(), lives.end(), [](const Live& a, const Live& b) { return a.begin < b.begin; });
  std::map<int64_t, const Live*> live;  // offset -> value, byte ranges pairwise disjoint
  std::multimap<size_t, int64_t> ends;  // end position -> offset
  for (const Live& l : lives) {
    while (!ends.empty() && ends.begin()->first < l.begin) {
      live.erase(ends.begin()->second);
      ends.erase(ends.begin());
    }
    const int64_t lo = l.v->offset, hi = lo + static_cast<int64_t>(l.v->type.bytes());
    if (hi == lo) continue;  // empty values occupy nothing
    auto next = live.lower_bound(lo);
    const Live* clash = nullptr;
    if (next != live.end() && next->first < hi) clash = next->second;
    if (!clash && next != live.begin()) {
      auto prev = std::prev(next);
      if (prev->first + static_cast<int64_t>(prev->second->v->type.bytes()) > lo) clash = prev->second;
    }
    // In place: the clash is an operand read last here, at the same bytes, and its bytes pass on.
    const Node& top = *nodes[l.begin];
    if (clash && clash->end == l.begin && clash->v->offset == lo && reads_in_place(top, clash->v, l.v) &&
        (top.result == l.v || std::find(top.yields.begin(), top.yields.end(), l.v) != top.yields.end())) {
      live.erase(lo);
      for (auto it = ends.begin(); it != ends.end(); ++it)
        if (it->second == lo) {
          ends.erase(it);
          break;
        }
      clash = nullptr;
    }
    if (clash)
      fail(g, *l.def, "its arena bytes overlap those of a value still live (" + clip(describe(g, *clash->def)) + ")");
    live[lo] = &l;
    ends.emplace(l.end, lo);
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
  check_offsets(g);
  for (const Value* v : g.outputs())
    if (!defined.count(v)) throw VerifyError("verify", "a returned value is not defined");
  std::unordered_set<const Value*> committed;
  for (const Commit& c : g.commits()) {
    const std::string what = "commit %" + c.target->name;
    if (c.target->kind != ValueKind::kParam && c.target->kind != ValueKind::kConst)
      throw VerifyError("verify", "a commit writes a parameter or a constant, not a computed value");
    if (!defined.count(c.target) || !defined.count(c.value))
      throw VerifyError("verify", what + ": the value is not defined");
    if (!(c.value->type == c.target->type))
      throw VerifyError("verify", what + ": the value is " + c.value->type.str() + ", the target " + c.target->type.str());
    if (!committed.insert(c.target).second) throw VerifyError("verify", what + ": the target is committed twice");
  }
}

}  // namespace bj::ir
