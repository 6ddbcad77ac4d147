// The text form of a graph. Example:
//
//   graph @mlp(%x: f32[2,20]) -> (f32[2,10]) {
//     param %hidden.weight: f32[256,20]
//     %0: f32[2,256] = matmul(%x, %hidden.weight) {transpose_b}   # mlp.hidden (seed_models.h:22)
//     %1: f32[] = literal 1                                        # mlp
//     guard %7 == true                                             # mlp
//     fused elementwise {                                          # mlp.out
//       %8: f32[2,10] = add(%4, %out.bias)
//     } -> (%8)
//     return %8
//   }
//
// After memory planning, the header says `arena N` and each value placed in
// the arena carries its byte offset: `%3: f32[2,256] @1024 = relu(%2)`.
// A graph for every batch size (ir/batch.h) says `batch N (traced at 8)` in
// its header and prints its batched dims as N: `%3: f32[N,256] @256`, whose
// offset is per unit of N past the static values (`arena 1024+1088N`).
// Results are numbered in program order; inputs, parameters and constants
// print by name. Floats print in their shortest exact form, so the text
// parses back to the same bits.
#include <fmt/format.h>

#include <cstring>
#include <unordered_map>

#include "ir/graph.h"

namespace bj::ir {

namespace {

constexpr size_t kCommentColumn = 64;
constexpr int64_t kInlineLiteral = 16;  // larger literals print as hex bytes

std::string dims_str(const Shape& s) {
  std::string r = "[";
  for (int i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

std::string number(double v) { return fmt::format("{}", v); }

std::string element(DType t, const std::byte* p) {
  switch (t) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p, 4);
      return fmt::format("{}", f);
    }
    case DType::kI64: {
      int64_t i;
      std::memcpy(&i, p, 8);
      return std::to_string(i);
    }
    default: return *reinterpret_cast<const uint8_t*>(p) ? "true" : "false";
  }
}

class Printer {
 public:
  explicit Printer(const Graph& g) : g_(g) {
    int k = 0;
    for_each_node(g.nodes(), [&](const Node& n) {
      if (n.result) names_[n.result] = "%" + std::to_string(k++);
    });
    for (auto* list : {&g.inputs(), &g.params(), &g.consts()})
      for (Value* v : *list) names_[v] = "%" + v->name;
  }

  std::string name(const Value* v) const {
    auto it = names_.find(v);
    return it == names_.end() ? "%<unknown>" : it->second;
  }

  /// The text of a valued attribute.
  std::string value(const OpAttrs& a, Attr flag) const {
    switch (flag) {
      case kAxes: case kPerm: case kShape: return dims_str(a.dims);
      case kAxis: return std::to_string(a.axis);
      case kStart: return std::to_string(a.start);
      case kEnd: return std::to_string(a.end);
      case kStep: return std::to_string(a.step);
      case kScalar: return number(a.scalar);
      case kDType: return std::string(dtype_name(a.dtype));
      case kKernel: return dims_str(a.kernel);
      case kStride: return dims_str(a.stride);
      case kPadding: return dims_str(a.padding);
      case kDilation: return dims_str(a.dilation);
      case kGroups: return std::to_string(a.groups);
      case kNoAttrs: case kKeepdim: case kTransposeA: case kTransposeB: break;  // flags have no value
    }
    return "";
  }

  std::string attrs(const Node& n) const {
    const OpAttrs& a = n.attrs;
    const uint32_t f = op_info(n.op).attrs;
    std::vector<std::string> parts;
    for (const AttrSpelling& s : kAttrSpellings) {
      if (!(f & s.flag)) continue;
      if (is_flag_attr(s.flag)) {
        if (attr_is_set(a, s.flag)) parts.push_back(std::string(s.name));
      } else {
        parts.push_back(std::string(s.name) + "=" + value(a, s.flag));
      }
    }
    if (parts.empty()) return "";
    std::string s = " {";
    for (size_t i = 0; i < parts.size(); ++i) s += (i ? ", " : "") + parts[i];
    return s + "}";
  }

  std::string literal(const Node& n) const {
    const Type& t = n.result->type;
    const size_t es = element_size(t.dtype);
    const int64_t count = t.numel();
    if (count > kInlineLiteral || t.dtype == DType::kBF16) {
      std::string hex = "0x";
      for (std::byte b : n.data) hex += fmt::format("{:02x}", static_cast<unsigned>(b));
      return hex;
    }
    if (t.shape.empty()) return element(t.dtype, n.data.data());
    std::string s = "[";
    for (int64_t i = 0; i < count; ++i) s += (i ? ", " : "") + element(t.dtype, n.data.data() + i * es);
    return s + "]";
  }

  /// A batched value's dim 0 prints as N (or kN): the call's batch size (ir/batch.h).
  std::string type(const Value* v) const {
    if (!v->batch || g_.batch <= 0) return v->type.str();
    std::string s = std::string(dtype_name(v->type.dtype)) + "[" + (v->batch == 1 ? "" : std::to_string(v->batch)) + "N";
    for (int i = 1; i < v->type.shape.size(); ++i) s += "," + std::to_string(v->type.shape[i]);
    return s + "]";
  }

  std::string def(const Value* v) const {
    std::string s = name(v) + ": " + type(v);
    if (v->offset >= 0) s += " @" + std::to_string(v->offset);
    return s;
  }

  std::string line(const Node& n) const {
    switch (n.kind) {
      case NodeKind::kGuard: return "guard " + name(n.inputs[0]) + " == " + (n.expect ? "true" : "false");
      case NodeKind::kLiteral: return def(n.result) + " = literal " + literal(n);
      case NodeKind::kRegion: return "fused " + std::string(region_kind_name(n.region)) + " {";
      case NodeKind::kOp: break;
    }
    std::string s = def(n.result) + " = " + std::string(op_name(n.op)) + "(";
    for (size_t i = 0; i < n.inputs.size(); ++i) s += (i ? ", " : "") + name(n.inputs[i]);
    return s + ")" + attrs(n);
  }

  static std::string comment(const Origin& o) {
    std::string c = o.path;
    if (!o.file.empty()) c += (c.empty() ? "(" : " (") + o.file + ":" + std::to_string(o.line) + ")";
    return c;
  }

  void nodes(const std::vector<std::unique_ptr<Node>>& list, const std::string& indent, std::string& out) const {
    for (const auto& n : list) {
      std::string l = indent + line(*n);
      std::string c = comment(n->origin);
      if (!c.empty()) l += std::string(l.size() < kCommentColumn ? kCommentColumn - l.size() : 2, ' ') + "# " + c;
      out += l + "\n";
      if (n->kind != NodeKind::kRegion) continue;
      nodes(n->body, indent + "  ", out);
      out += indent + "} -> (";
      for (size_t i = 0; i < n->yields.size(); ++i) out += (i ? ", " : "") + name(n->yields[i]);
      out += ")\n";
    }
  }

  std::string print() const {
    std::string out = "graph @" + g_.name() + "(";
    for (size_t i = 0; i < g_.inputs().size(); ++i)
      out += (i ? ", " : "") + name(g_.inputs()[i]) + ": " + type(g_.inputs()[i]);
    out += ") -> (";
    for (size_t i = 0; i < g_.outputs().size(); ++i) out += (i ? ", " : "") + type(g_.outputs()[i]);
    out += ")";
    if (g_.batch > 0) out += " batch N (traced at " + std::to_string(g_.batch) + ")";
    if (g_.arena_bytes >= 0) out += " arena " + std::to_string(g_.arena_bytes);
    if (g_.arena_row_bytes > 0) out += "+" + std::to_string(g_.arena_row_bytes) + "N";
    out += " {\n";
    for (Value* v : g_.params()) out += "  param " + name(v) + ": " + v->type.str() + "\n";
    for (Value* v : g_.consts()) out += "  const " + name(v) + ": " + v->type.str() + "\n";
    nodes(g_.nodes(), "  ", out);
    for (const Commit& c : g_.commits()) out += "  commit " + name(c.target) + " = " + name(c.value) + "\n";
    out += "  return";
    for (size_t i = 0; i < g_.outputs().size(); ++i) out += (i ? ", " : " ") + name(g_.outputs()[i]);
    return out + "\n}\n";
  }

 private:
  const Graph& g_;
  std::unordered_map<const Value*, std::string> names_;
};

}  // namespace

std::string print(const Graph& g) { return Printer(g).print(); }
std::string describe(const Graph& g, const Node& n) { return Printer(g).line(n); }

}  // namespace bj::ir
