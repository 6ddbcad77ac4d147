// Reference interpreter (see interpreter.h).
#include "runtime/interpreter.h"

#include <cstring>
#include <unordered_map>

namespace bj::rt {

namespace {

class Interpreter {
 public:
  explicit Interpreter(const ir::Graph& g) {
    if (g.arena_bytes >= 0) arena_ = make_storage(static_cast<size_t>(g.arena_bytes));
  }

  void bind(const std::vector<ir::Value*>& vs, std::span<const ConstView> data) {
    for (size_t i = 0; i < vs.size(); ++i) env_[vs[i]] = data[i];
  }

  /// Runs `nodes` in order; false when a guard fails (recorded in r).
  bool run(const std::vector<std::unique_ptr<ir::Node>>& nodes, InterpretResult& r) {
    for (const auto& np : nodes) {
      const ir::Node& n = *np;
      switch (n.kind) {
        case ir::NodeKind::kLiteral: env_[n.result] = ConstView{n.data.data(), n.result->type}; break;
        case ir::NodeKind::kGuard: {
          bool seen = *static_cast<const uint8_t*>(env_.at(n.inputs[0]).data) != 0;
          if (seen != n.expect) {
            r.failed_guard = &n;
            r.failed_guard_index = guards_;
            return false;
          }
          ++guards_;
          break;
        }
        case ir::NodeKind::kRegion:  // the same ops, one after the other: fusion changes no result
          if (!run(n.body, r)) return false;
          break;
        case ir::NodeKind::kOp: {
          args_.clear();
          for (const ir::Value* in : n.inputs) args_.push_back(env_.at(in));
          void* out = place(*n.result);
          run_kernel(n.op, args_, n.attrs, View{out, n.result->type});
          env_[n.result] = ConstView{out, n.result->type};
          break;
        }
      }
    }
    return true;
  }

  const ConstView& at(const ir::Value* v) const { return env_.at(v); }

 private:
  /// Memory for a result: its planned place in the arena, or storage of its own.
  void* place(const ir::Value& v) {
    if (arena_ && v.offset >= 0) return static_cast<char*>(arena_->data()) + v.offset;
    owned_.push_back(make_storage(v.type.bytes()));
    return owned_.back()->data();
  }

  std::unordered_map<const ir::Value*, ConstView> env_;
  std::vector<std::shared_ptr<Storage>> owned_;
  std::shared_ptr<Storage> arena_;
  std::vector<ConstView> args_;
  int guards_ = 0;
};

}  // namespace

InterpretResult interpret(const ir::Graph& g, std::span<const ConstView> inputs, std::span<const ConstView> params,
                          std::span<const ConstView> consts) {
  Interpreter in(g);
  in.bind(g.inputs(), inputs);
  in.bind(g.params(), params);
  in.bind(g.consts(), consts);
  InterpretResult r;
  if (!in.run(g.nodes(), r)) return r;
  for (const ir::Value* v : g.outputs()) {
    auto s = make_storage(v->type.bytes());
    std::memcpy(s->data(), in.at(v).data, v->type.bytes());
    r.outputs.push_back(std::move(s));
  }
  // Every guard held: the commits, staged first so that one commit's value may be another's target.
  std::vector<std::vector<std::byte>> staged;
  for (const ir::Commit& c : g.commits()) {
    const auto* p = static_cast<const std::byte*>(in.at(c.value).data);
    staged.emplace_back(p, p + c.value->type.bytes());
  }
  for (size_t i = 0; i < staged.size(); ++i)
    if (!staged[i].empty()) std::memcpy(const_cast<void*>(in.at(g.commits()[i].target).data), staged[i].data(), staged[i].size());
  return r;
}

}  // namespace bj::rt
