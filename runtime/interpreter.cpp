// Reference interpreter (see interpreter.h).
#include "runtime/interpreter.h"

#include <cstring>
#include <unordered_map>

namespace bj::rt {

InterpretResult interpret(const ir::Graph& g, std::span<const ConstView> inputs, std::span<const ConstView> params,
                          std::span<const ConstView> consts) {
  std::unordered_map<const ir::Value*, ConstView> env;
  std::vector<std::shared_ptr<Storage>> owned;
  auto bind = [&](const std::vector<ir::Value*>& vs, std::span<const ConstView> data) {
    for (size_t i = 0; i < vs.size(); ++i) env[vs[i]] = data[i];
  };
  bind(g.inputs(), inputs);
  bind(g.params(), params);
  bind(g.consts(), consts);

  InterpretResult r;
  int guard_index = 0;
  std::vector<ConstView> args;
  for (const auto& np : g.nodes()) {
    const ir::Node& n = *np;
    switch (n.kind) {
      case ir::NodeKind::kLiteral: env[n.result] = ConstView{n.data.data(), n.result->type}; break;
      case ir::NodeKind::kGuard: {
        bool seen = *static_cast<const uint8_t*>(env.at(n.inputs[0]).data) != 0;
        if (seen != n.expect) {
          r.failed_guard = &n;
          r.failed_guard_index = guard_index;
          return r;
        }
        ++guard_index;
        break;
      }
      case ir::NodeKind::kOp: {
        args.clear();
        for (const ir::Value* in : n.inputs) args.push_back(env.at(in));
        auto out = make_storage(n.result->type.bytes());
        run_kernel(n.op, args, n.attrs, View{out->data(), n.result->type});
        env[n.result] = ConstView{out->data(), n.result->type};
        owned.push_back(std::move(out));
        break;
      }
    }
  }
  for (const ir::Value* v : g.outputs()) {
    const ConstView& cv = env.at(v);
    auto s = make_storage(v->type.bytes());
    std::memcpy(s->data(), cv.data, v->type.bytes());
    r.outputs.push_back(std::move(s));
  }
  return r;
}

}  // namespace bj::rt
