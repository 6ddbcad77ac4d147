// Graphviz export: one DOT node per op, literal and guard; graph inputs,
// parameters and constants drawn in their own shapes and colours; edges
// labelled with the value's type; a cluster per block path.
#include <fmt/format.h>

#include <map>
#include <unordered_map>

#include "ir/graph.h"

namespace bj::ir {

namespace {
/// A DOT string; labels keep their \n line breaks.
std::string quote(const std::string& s) {
  std::string r = "\"";
  for (char c : s) r += c == '"' ? std::string("\\\"") : std::string(1, c);
  return r + "\"";
}
}  // namespace

std::string to_dot(const Graph& g) {
  std::string out = "digraph " + quote(g.name()) + " {\n";
  out += "  rankdir=TB;\n  node [fontname=\"monospace\", fontsize=10];\n  edge [fontname=\"monospace\", fontsize=9];\n";
  std::unordered_map<const Value*, std::string> src;  // DOT node producing each value
  int k = 0;
  auto leaf = [&](const Value* v, const char* shape, const char* color, const char* kind) {
    std::string id = "v" + std::to_string(k++);
    src[v] = id;
    out += fmt::format("  {} [label={}, shape={}, style=filled, fillcolor={}];\n", id,
                       quote(std::string(kind) + " %" + v->name + "\\n" + v->type.str()), shape, color);
  };
  for (const Value* v : g.inputs()) leaf(v, "invhouse", "lightblue", "input");
  for (const Value* v : g.params()) leaf(v, "box", "lightyellow", "param");
  for (const Value* v : g.consts()) leaf(v, "box", "lightgrey", "const");

  std::map<std::string, std::vector<std::string>> clusters;  // block path -> node lines
  std::vector<std::string> regions, edges;                     // fused regions: one cluster each
  int r = 0;
  auto node_line = [&](const Node& n) {
    std::string id = "n" + std::to_string(k++), label, attrs;
    switch (n.kind) {
      case NodeKind::kOp: label = std::string(op_name(n.op)); attrs = "shape=ellipse"; break;
      case NodeKind::kLiteral: label = "literal"; attrs = "shape=note, fontsize=8"; break;
      case NodeKind::kGuard:
        label = std::string("guard == ") + (n.expect ? "true" : "false");
        attrs = "shape=diamond, color=red, fontcolor=red";
        break;
      case NodeKind::kRegion: break;
    }
    if (n.result) {
      label += "\\n%" + std::to_string(r++);
      src[n.result] = id;
    }
    for (const Value* in : n.inputs) edges.push_back(fmt::format("  {} -> {} [label={}];", src[in], id, quote(in->type.str())));
    return fmt::format("{} [label={}, {}];", id, quote(label), attrs);
  };
  for (const auto& n : g.nodes()) {
    if (n->kind != NodeKind::kRegion) {
      clusters[n->origin.path].push_back(node_line(*n));
      continue;
    }
    std::string c = fmt::format("  subgraph cluster_r{} {{\n    label={};\n    style=filled;\n    fillcolor=aliceblue;\n",
                                regions.size(), quote("fused " + std::string(region_kind_name(n->region)) + (n->origin.path.empty() ? "" : " (" + n->origin.path + ")")));
    for (const auto& b : n->body) c += "    " + node_line(*b) + "\n";
    regions.push_back(c + "  }\n");
  }
  int c = 0;
  for (const auto& [path, lines] : clusters) {
    std::string indent = path.empty() ? "  " : "    ";
    if (!path.empty()) out += fmt::format("  subgraph cluster_{} {{\n    label={};\n    style=rounded;\n", c++, quote(path));
    for (const std::string& l : lines) out += indent + l + "\n";
    if (!path.empty()) out += "  }\n";
  }
  for (const std::string& reg : regions) out += reg;
  for (const std::string& e : edges) out += e + "\n";
  for (size_t i = 0; i < g.outputs().size(); ++i) {
    const Value* v = g.outputs()[i];
    out += fmt::format("  out{} [label={}, shape=house, style=filled, fillcolor=palegreen];\n", i,
                       quote("output " + std::to_string(i) + "\\n" + v->type.str()));
    out += fmt::format("  {} -> out{};\n", src[v], i);
  }
  for (size_t i = 0; i < g.commits().size(); ++i) {  // state written at the end: an edge back to its target
    const Commit& cm = g.commits()[i];
    out += fmt::format("  commit{} [label={}, shape=invhouse, style=filled, fillcolor=khaki];\n", i,
                       quote("commit %" + cm.target->name));
    out += fmt::format("  {} -> commit{};\n  commit{} -> {} [style=dashed];\n", src[cm.value], i, i, src[cm.target]);
  }
  return out + "}\n";
}

}  // namespace bj::ir
