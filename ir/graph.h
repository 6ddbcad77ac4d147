// The graph IR: an SSA dataflow graph of typed values. Values are graph
// inputs, parameters (bound by reference to the model's parameters, by name),
// named constants (bound like parameters: a block's constant tensors and
// tensors captured by a trace), or results of nodes. Nodes run in program
// order: op applications (any op of ir/ops.def), literals (small data made
// inside the traced code, stored in the graph), guards (a one-element
// predicate and the outcome the trace saw) and fused regions (a group of op
// nodes that codegen emits as one loop nest; the values it yields are the
// only ones materialized in memory). Every node keeps its origin: the block
// path and, where known, file:line. A graph may also commit values to its
// parameters and constants (state it updates in place: an optimizer's
// weights and moments, BatchNorm's running statistics): a commit is written
// once every node ran and every guard held, so a call whose guard fails
// changes nothing.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ir/ops.h"

namespace bj::ir {

/// Where a node came from.
struct Origin {
  std::string path;  ///< block path, "chimera.0.net.0"; empty outside any block
  std::string file;  ///< source file (base name), empty if unknown
  int line = 0;
  friend bool operator==(const Origin&, const Origin&) = default;
  /// "chimera.0.net (seed_models.h:40)"; "top level" outside any block.
  std::string str() const {
    std::string s = path.empty() ? "top level" : path;
    if (!file.empty()) s += " (" + file + ":" + std::to_string(line) + ")";
    return s;
  }
};

enum class ValueKind : uint8_t { kInput, kParam, kConst, kResult };

struct Node;

struct Value {
  ValueKind kind;
  Type type;
  std::string name;      ///< inputs, params and consts: their name; results: empty
  Node* def = nullptr;   ///< results: the node that computes the value
  int64_t offset = -1;   ///< byte offset in the arena, once memory planning placed it
                         ///< (a batched value's: per unit of batch size, see Graph::batch)
  /// In a graph for every batch size (Graph::batch > 0): dim 0 is `batch` times the call's batch
  /// size (type.shape has it at Graph::batch). 0: every dim is as type says.
  int32_t batch = 0;
};

enum class NodeKind : uint8_t { kOp, kLiteral, kGuard, kRegion };

/// What a fused region is built around (one loop nest each): elementwise ops only, a contraction
/// with its epilogue, a reduction with its producers, or a row: reductions over the same trailing
/// axes (keepdim) and the elementwise work before, between and after them (softmax, LayerNorm),
/// computed one row at a time while the row stays in cache.
enum class RegionKind : uint8_t { kElementwise, kContraction, kReduction, kRow };
/// The IR spelling: "elementwise", "contraction", "reduction", "row".
std::string_view region_kind_name(RegionKind k);
/// The region kind spelled `name`, if there is one.
std::optional<RegionKind> region_kind_named(std::string_view name);

struct Node;
/// For an op reducing the trailing axes of its input and keeping them (softmax's max and sum,
/// LayerNorm's mean): how many axes it reduces. 0 for anything else (an empty reduction too).
int row_reduction_axes(const Node& n);

struct Value;
/// True if top-level node `n` reads each element of `operand` only where it writes the same element
/// of `result` (one of its results), before writing it: `n` is an elementwise op, or an elementwise
/// or contraction region whose ops reading `operand` are elementwise over the result's shape (a
/// product's own operands are read along rows) and none after the op writing the result (a
/// region may run op by op), and the two have one type. Memory planning may
/// then give `result` the operand's bytes when this is the operand's last read (in place).
bool reads_in_place(const Node& n, const Value* operand, const Value* result);

struct Node {
  NodeKind kind = NodeKind::kOp;
  OpKind op = OpKind::Neg;       ///< kOp
  OpAttrs attrs;                 ///< kOp
  std::vector<Value*> inputs;    ///< kOp: the operands; kGuard: the predicate
  Value* result = nullptr;       ///< kOp, kLiteral
  std::vector<std::byte> data;   ///< kLiteral: the value's bytes, row-major
  bool expect = true;            ///< kGuard: the predicate's truth seen when tracing
  RegionKind region = RegionKind::kElementwise;  ///< kRegion
  std::vector<std::unique_ptr<Node>> body;   ///< kRegion: its op nodes, in order
  std::vector<Value*> yields;                ///< kRegion: body values used after the region
  Origin origin;
  uint32_t line = 0, column = 0;  ///< where the node starts in the IR text it was parsed from (0: not parsed)
};

/// Calls f(node) for every node of `nodes`, region bodies included (a region before its body).
template <class F>
void for_each_node(const std::vector<std::unique_ptr<Node>>& nodes, F&& f) {
  for (const auto& n : nodes) {
    f(*n);
    if (n->kind == NodeKind::kRegion) for_each_node(n->body, f);
  }
}

/// State a graph writes: `target` (a parameter or a constant) takes `value` at the end of a call.
struct Commit {
  Value* target;
  Value* value;
};

class Graph {
 public:
  /// Names are made of letters, digits and `_.-` (others become `_`), so they print as `@name`.
  explicit Graph(std::string name = "main") { set_name(std::move(name)); }
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  const std::string& name() const { return name_; }
  void set_name(std::string n);

  Value* add_input(std::string name, Type type);
  Value* add_param(std::string name, Type type);
  Value* add_const(std::string name, Type type);
  /// Appends an op node. The result type is given (the caller ran ir::infer).
  Value* add_op(OpKind op, OpAttrs attrs, std::vector<Value*> inputs, Type type, Origin origin);
  /// Appends a literal: `data` holds type.bytes() bytes.
  Value* add_literal(Type type, std::vector<std::byte> data, Origin origin);
  /// Appends a guard on a one-element predicate.
  void add_guard(Value* predicate, bool expect, Origin origin);
  void add_output(Value* v) { outputs_.push_back(v); }
  /// Writes `value` into the parameter or constant `target` once the call succeeded.
  void add_commit(Value* target, Value* value) { commits_.push_back({target, value}); }

  // ---- For passes: detached nodes, to insert where they belong. ----
  std::unique_ptr<Node> make_op(OpKind op, OpAttrs attrs, std::vector<Value*> inputs, Type type, Origin origin);
  std::unique_ptr<Node> make_literal(Type type, std::vector<std::byte> data, Origin origin);
  /// The top-level node list, to reorder, erase from or insert into.
  std::vector<std::unique_ptr<Node>>& mutable_nodes() { return nodes_; }
  /// Replaces every use of `from` (operands, region yields, graph outputs, committed values) by `to`.
  void replace_uses(Value* from, Value* to);
  /// Bytes of the arena memory planning laid out (-1: not planned); for a graph for every batch
  /// size, that of its static values, then `arena_row_bytes` per unit of batch size.
  int64_t arena_bytes = -1;
  int64_t arena_row_bytes = 0;
  /// > 0: the graph serves every batch size (ir/batch.h). Its types give batched dims as at this
  /// batch size; the values with Value::batch set scale with the call's.
  int64_t batch = 0;

  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& params() const { return params_; }
  const std::vector<Value*>& consts() const { return consts_; }
  const std::vector<Value*>& outputs() const { return outputs_; }
  const std::vector<Commit>& commits() const { return commits_; }
  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  /// Number of guard nodes.
  int num_guards() const;

 private:
  Value* new_value(ValueKind kind, Type type, std::string name);

  std::string name_;
  std::vector<std::unique_ptr<Value>> values_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Value*> inputs_, params_, consts_, outputs_;
  std::vector<Commit> commits_;
};

/// The text form (see ir/printer.cpp): deterministic, one node per line,
/// origins as trailing comments. parse(print(g)) prints identically.
std::string print(const Graph& g);
/// A short description of node `n` as printed ("guard %12 == true"), for messages.
std::string describe(const Graph& g, const Node& n);
/// Parses the text form; ParseError (with line:column and what was expected) on bad text.
std::unique_ptr<Graph> parse(std::string_view text);
/// Checks SSA form, arity and attributes from the ops table and that every
/// type agrees with inference; VerifyError naming the node and its origin.
void verify(const Graph& g);
/// Graphviz DOT: ops as nodes, values as edges labelled with types,
/// parameters and constants drawn apart, one cluster per block path.
std::string to_dot(const Graph& g);

}  // namespace bj::ir
