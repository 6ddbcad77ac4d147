// Graph construction.
#include "ir/graph.h"

#include <algorithm>
#include <cctype>

namespace bj::ir {

std::string_view region_kind_name(RegionKind k) {
  switch (k) {
    case RegionKind::kElementwise: return "elementwise";
    case RegionKind::kContraction: return "contraction";
    case RegionKind::kReduction: return "reduction";
    case RegionKind::kRow: return "row";
  }
  return "?";
}

std::optional<RegionKind> region_kind_named(std::string_view name) {
  for (RegionKind k : {RegionKind::kElementwise, RegionKind::kContraction, RegionKind::kReduction, RegionKind::kRow})
    if (region_kind_name(k) == name) return k;
  return std::nullopt;
}

bool reads_in_place(const Node& n, const Value* operand, const Value* result) {
  if (operand->type != result->type || operand->batch != result->batch) return false;
  if (n.kind == NodeKind::kOp) return has_trait(n.op, kElementwise);
  if (n.kind != NodeKind::kRegion || (n.region != RegionKind::kElementwise && n.region != RegionKind::kContraction))
    return false;
  for (const Value* y : n.yields)
    if (y->type.shape != result->type.shape) return false;
  // A region whose ops run one after another (through eager mode's kernels) must have read the
  // operand by the time it writes the result: no reader after the result's op.
  bool written = false;
  for (const auto& b : n.body) {
    if (std::find(b->inputs.begin(), b->inputs.end(), operand) != b->inputs.end() &&
        (written || !has_trait(b->op, kElementwise) || b->result->type.shape != result->type.shape))
      return false;
    written |= b->result == result;
  }
  return true;
}

int row_reduction_axes(const Node& n) {
  if (n.kind != NodeKind::kOp || !has_trait(n.op, kReduction) || !n.attrs.keepdim || n.attrs.dims.empty()) return 0;
  const int rank = n.inputs.at(0)->type.shape.size(), count = n.attrs.dims.size();
  for (int i = 0; i < count; ++i)
    if (n.attrs.dims[i] != rank - count + i) return 0;
  return count;
}

void Graph::set_name(std::string n) {
  for (char& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') c = '_';
  name_ = n.empty() ? "main" : std::move(n);
}

Value* Graph::new_value(ValueKind kind, Type type, std::string name) {
  values_.push_back(std::make_unique<Value>(Value{kind, std::move(type), std::move(name), nullptr}));
  return values_.back().get();
}

Value* Graph::add_input(std::string name, Type type) {
  Value* v = new_value(ValueKind::kInput, std::move(type), std::move(name));
  inputs_.push_back(v);
  return v;
}

Value* Graph::add_param(std::string name, Type type) {
  Value* v = new_value(ValueKind::kParam, std::move(type), std::move(name));
  params_.push_back(v);
  return v;
}

Value* Graph::add_const(std::string name, Type type) {
  Value* v = new_value(ValueKind::kConst, std::move(type), std::move(name));
  consts_.push_back(v);
  return v;
}

std::unique_ptr<Node> Graph::make_op(OpKind op, OpAttrs attrs, std::vector<Value*> inputs, Type type, Origin origin) {
  auto n = std::make_unique<Node>();
  n->kind = NodeKind::kOp;
  n->op = op;
  n->attrs = std::move(attrs);
  n->inputs = std::move(inputs);
  n->origin = std::move(origin);
  n->result = new_value(ValueKind::kResult, std::move(type), "");
  n->result->def = n.get();
  return n;
}

std::unique_ptr<Node> Graph::make_literal(Type type, std::vector<std::byte> data, Origin origin) {
  auto n = std::make_unique<Node>();
  n->kind = NodeKind::kLiteral;
  n->data = std::move(data);
  n->origin = std::move(origin);
  n->result = new_value(ValueKind::kResult, std::move(type), "");
  n->result->def = n.get();
  return n;
}

Value* Graph::add_op(OpKind op, OpAttrs attrs, std::vector<Value*> inputs, Type type, Origin origin) {
  nodes_.push_back(make_op(op, std::move(attrs), std::move(inputs), std::move(type), std::move(origin)));
  return nodes_.back()->result;
}

Value* Graph::add_literal(Type type, std::vector<std::byte> data, Origin origin) {
  nodes_.push_back(make_literal(std::move(type), std::move(data), std::move(origin)));
  return nodes_.back()->result;
}

void Graph::replace_uses(Value* from, Value* to) {
  for_each_node(nodes_, [&](Node& n) {
    for (Value*& v : n.inputs)
      if (v == from) v = to;
    for (Value*& v : n.yields)
      if (v == from) v = to;
  });
  for (Value*& v : outputs_)
    if (v == from) v = to;
  for (Commit& c : commits_)
    if (c.value == from) c.value = to;
}

void Graph::add_guard(Value* predicate, bool expect, Origin origin) {
  auto n = std::make_unique<Node>();
  n->kind = NodeKind::kGuard;
  n->inputs = {predicate};
  n->expect = expect;
  n->origin = std::move(origin);
  nodes_.push_back(std::move(n));
}

int Graph::num_guards() const {
  int k = 0;
  for_each_node(nodes_, [&](const Node& n) { k += n.kind == NodeKind::kGuard; });
  return k;
}

}  // namespace bj::ir
