// The forward/backward split of a joint training graph (see split.h).
//
// 1. Mark the forward: walking the nodes backwards from the forward outputs,
//    the committed values (state is written by the forward) and every guard, a node belongs to the forward if the forward needs its
//    result. A gradient input reached this way is an error.
// 2. Mark the backward: walking backwards from the gradient outputs through
//    the nodes the forward does not own.
// 3. Copy the forward's nodes, in order, into the forward graph.
// 4. Copy the backward's nodes, in order, into the backward graph. An operand
//    the forward owns becomes a backward input (a saved value; a literal is
//    copied instead), and a saved result becomes one more forward output.
//
// Between 2 and 4, what to save is chosen (rematerialization): a saved value
// that an elementwise op computes is instead recomputed in the backward from
// the values its elementwise cone starts at, when those cost fewer bytes to
// keep than it does (values already saved, parameters, constants, literals
// and graph inputs cost nothing more). Only IEEE arithmetic, compares and
// selects are recomputed: they round the same in the forward and the
// backward, exact or not, so gradients do not change. LayerNorm then keeps
// its centred input and standard deviation, not its normalized and scaled
// outputs; GELU its pre-activation and tanh, not the products around them.
#include "ir/split.h"

#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "ir/error.h"
#include "ir/semantics.h"

namespace bj::ir {

namespace {

/// Values of the nodes reachable backwards from `roots` through nodes `take` accepts.
std::unordered_set<const Value*> reach(const Graph& g, std::vector<const Value*> roots,
                                       const std::function<bool(const Node&)>& take) {
  std::unordered_set<const Value*> needed(roots.begin(), roots.end());
  const auto& nodes = g.nodes();
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    const Node& n = **it;
    const bool wanted = n.kind == NodeKind::kGuard ? take(n) : needed.count(n.result) && take(n);
    if (wanted)
      for (const Value* v : n.inputs) needed.insert(v);
  }
  return needed;
}

/// An op the backward may compute again instead of reading it saved: elementwise, pure, f32 or
/// bool (compiled loops handle those; i64 work goes through runtime calls), and rounding the
/// same wherever it runs. Not tanh or exp: the forward may have computed those exactly (a
/// guard's input cone) and the backward approximately, and a max's gradient compares values
/// with the saved maximum for equality.
bool recomputable(const Node& n) {
  return n.kind == NodeKind::kOp && has_trait(n.op, kElementwise) && has_trait(n.op, kPure) &&
         same_bits_everywhere(n.op, n.attrs) &&
         (n.result->type.dtype == DType::kF32 || n.result->type.dtype == DType::kBool);
}

/// Chooses the values the backward reads saved (see the file comment). `saved` starts as every
/// forward value the backward reads; `free` holds those that cost nothing to keep.
void rematerialize(const Graph& g, std::unordered_set<const Value*>& saved, const std::function<bool(const Value*)>& free) {
  auto cost = [&](const Value* v) { return free(v) ? int64_t{0} : static_cast<int64_t>(v->type.bytes()); };
  bool changed = true;
  while (changed) {
    changed = false;
    for (auto it = g.nodes().rbegin(); it != g.nodes().rend(); ++it) {  // latest first
      const Value* v = (*it)->result;
      if (!v || !saved.count(v) || free(v) || !recomputable(**it)) continue;
      // The frontier of v's elementwise cone: where recomputing it would start.
      std::unordered_set<const Value*> frontier, seen;
      std::vector<const Value*> work(v->def->inputs.begin(), v->def->inputs.end());
      while (!work.empty()) {
        const Value* u = work.back();
        work.pop_back();
        if (!seen.insert(u).second) continue;
        if (free(u) || saved.count(u) || !u->def || !recomputable(*u->def)) {
          frontier.insert(u);
          continue;
        }
        work.insert(work.end(), u->def->inputs.begin(), u->def->inputs.end());
      }
      int64_t added = 0;  // what keeping the frontier costs beyond what is kept already
      for (const Value* u : frontier)
        if (!saved.count(u)) added += cost(u);
      if (added >= cost(v)) continue;
      saved.erase(v);
      saved.insert(frontier.begin(), frontier.end());
      changed = true;
    }
  }
}

}  // namespace

BackwardSplit split_backward(const Graph& joint, int forward_outputs, int gradient_inputs) {
  const int n_inputs = static_cast<int>(joint.inputs().size()), n_outputs = static_cast<int>(joint.outputs().size());
  if (forward_outputs < 0 || forward_outputs > n_outputs || gradient_inputs < 0 || gradient_inputs > n_inputs)
    throw Error("split_backward", "bad output or input counts");
  for (const auto& n : joint.nodes())
    if (n->kind == NodeKind::kRegion) throw Error("split_backward", "the joint graph must not have fused regions");
  std::unordered_set<const Value*> gradient(joint.inputs().end() - gradient_inputs, joint.inputs().end());

  // 1. The forward: its outputs and guards.
  std::vector<const Value*> roots(joint.outputs().begin(), joint.outputs().begin() + forward_outputs);
  for (const Commit& c : joint.commits()) roots.push_back(c.value);  // state the forward writes
  auto forward = reach(joint, roots, [](const Node&) { return true; });
  for (const Value* v : gradient)
    if (forward.count(v))
      throw Error("split_backward", "a forward output or a guard depends on the output gradient %" + v->name);
  auto in_forward = [&](const Node& n) { return n.kind == NodeKind::kGuard || forward.count(n.result); };

  // 2. The backward: its outputs, through nodes the forward does not own.
  std::vector<const Value*> grads(joint.outputs().begin() + forward_outputs, joint.outputs().end());
  auto backward = reach(joint, grads, [&](const Node& n) { return !in_forward(n); });

  // What to save, and so which forward nodes the backward computes again.
  auto free = [&](const Value* v) {
    return v->kind != ValueKind::kResult || v->def->kind == NodeKind::kLiteral;  // inputs, parameters, constants
  };
  std::unordered_set<const Value*> saved_values;
  for (const auto& n : joint.nodes())
    if (!in_forward(*n) && backward.count(n->result))
      for (const Value* v : n->inputs)
        if (v->kind == ValueKind::kResult && forward.count(v) && !gradient.count(v)) saved_values.insert(v);
  for (const Value* v : grads)
    if (v->kind == ValueKind::kResult && forward.count(v)) saved_values.insert(v);
  std::unordered_set<const Value*> kept_for_outputs;  // a gradient output the forward computes stays its value
  for (const Value* v : grads) kept_for_outputs.insert(v);
  rematerialize(joint, saved_values, [&](const Value* v) { return free(v) || kept_for_outputs.count(v); });
  auto in_backward = [&](const Node& n) {  // the backward's own nodes, and the forward's it computes again
    if (n.kind == NodeKind::kGuard) return false;
    return !in_forward(n) || (recomputable(n) && !saved_values.count(n.result));
  };
  backward = reach(joint, grads, in_backward);

  BackwardSplit s;
  s.forward = std::make_unique<Graph>(joint.name());
  s.backward = std::make_unique<Graph>(joint.name() + ".backward");
  Graph& f = *s.forward;
  Graph& b = *s.backward;

  // 3. The forward graph.
  std::unordered_map<const Value*, Value*> fmap;
  for (const Value* v : joint.inputs())
    if (!gradient.count(v)) fmap[v] = f.add_input(v->name, v->type);
  for (const Value* v : joint.params()) fmap[v] = f.add_param(v->name, v->type);
  for (const Value* v : joint.consts()) fmap[v] = f.add_const(v->name, v->type);
  auto copy = [](Graph& to, const Node& n, const std::vector<Value*>& ins) -> Value* {
    switch (n.kind) {
      case NodeKind::kOp: return to.add_op(n.op, n.attrs, ins, n.result->type, n.origin);
      case NodeKind::kLiteral: return to.add_literal(n.result->type, n.data, n.origin);
      case NodeKind::kGuard: to.add_guard(ins.at(0), n.expect, n.origin); return nullptr;
      case NodeKind::kRegion: break;
    }
    throw Error("split_backward", "unexpected region");
  };
  for (const auto& n : joint.nodes()) {
    if (!in_forward(*n)) continue;
    std::vector<Value*> ins;
    for (const Value* v : n->inputs) ins.push_back(fmap.at(v));
    if (Value* r = copy(f, *n, ins)) fmap[n->result] = r;
  }
  for (int i = 0; i < forward_outputs; ++i) f.add_output(fmap.at(joint.outputs()[i]));
  for (const Commit& c : joint.commits()) f.add_commit(fmap.at(c.target), fmap.at(c.value));

  // 4. The backward graph; forward values it reads become saved values.
  std::unordered_map<const Value*, Value*> bmap;
  for (const Value* v : joint.inputs())
    if (gradient.count(v)) bmap[v] = b.add_input(v->name, v->type);
  std::function<Value*(const Value*)> operand = [&](const Value* v) -> Value* {
    if (auto it = bmap.find(v); it != bmap.end()) return it->second;
    Value* mapped = nullptr;
    switch (v->kind) {
      case ValueKind::kParam:
        for (size_t i = 0; i < joint.params().size(); ++i)
          if (joint.params()[i] == v) s.backward_params.push_back(static_cast<int>(i));
        mapped = b.add_param(v->name, v->type);
        break;
      case ValueKind::kConst:
        for (size_t i = 0; i < joint.consts().size(); ++i)
          if (joint.consts()[i] == v) s.backward_consts.push_back(static_cast<int>(i));
        mapped = b.add_const(v->name, v->type);
        break;
      case ValueKind::kInput: {
        int index = 0;
        for (const Value* in : joint.inputs()) {
          if (in == v) break;
          index += !gradient.count(in);
        }
        s.saved.push_back({BackwardSplit::Saved::From::kForwardInput, index});
        mapped = b.add_input("saved" + std::to_string(s.saved.size() - 1), v->type);
        break;
      }
      case ValueKind::kResult:
        if (v->def->kind == NodeKind::kLiteral) {
          mapped = copy(b, *v->def, {});
        } else {
          const Value* fv = fmap.at(v);
          int index = -1;
          for (size_t i = 0; i < f.outputs().size(); ++i)
            if (f.outputs()[i] == fv) index = static_cast<int>(i);
          if (index < 0) {
            index = static_cast<int>(f.outputs().size());
            f.add_output(fmap.at(v));
          }
          s.saved.push_back({BackwardSplit::Saved::From::kForwardOutput, index});
          mapped = b.add_input("saved" + std::to_string(s.saved.size() - 1), v->type);
        }
        break;
    }
    return bmap[v] = mapped;
  };
  for (const auto& n : joint.nodes()) {
    if (!in_backward(*n) || !backward.count(n->result)) continue;
    std::vector<Value*> ins;
    for (const Value* v : n->inputs) ins.push_back(operand(v));
    bmap[n->result] = copy(b, *n, ins);
  }
  for (const Value* v : grads) b.add_output(operand(v));
  return s;
}

}  // namespace bj::ir
