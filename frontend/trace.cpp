// The tracer: a thread-local recorder that eager dispatch and host reads
// report to while bj::trace runs.
#include "frontend/trace.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "codegen/source_site.h"
#include "frontend/autograd.h"
#include "frontend/creation.h"
#include "frontend/dispatch.h"
#include "ir/infer.h"
#include "runtime/allocator.h"
#include "runtime/interpreter.h"

namespace bj {

namespace {

using detail::TensorImpl;

std::atomic<uint64_t> g_epochs{0};

class Tracer {
 public:
  Tracer(ir::Graph& g, nn::Block* block) : g_(g), block_(block), epoch_(++g_epochs) {}

  uint64_t epoch() const { return epoch_; }

  /// Binds a graph input to the tensor passed in.
  void bind_input(const Tensor& t, ir::Value* v) { map(t, v); }

  /// The graph value of `t`, binding it on first sight: a parameter, a named
  /// constant, a literal (made inside the trace) or a captured constant.
  ir::Value* value(const Tensor& t) {
    auto it = values_.find(t.impl().get());
    if (it != values_.end()) return it->second.second;
    ir::Value* v = same_storage(t);  // another handle on traced data (autograd's saved tensors, detach())
    if (!v) v = bind_new(t);
    map(t, v);
    return v;
  }

  void on_op(ir::OpKind op, const ir::OpAttrs& attrs, std::span<const Tensor> inputs, const Tensor& result) {
    std::vector<ir::Value*> ins;
    for (const Tensor& t : inputs) ins.push_back(value(t));
    map(result, g_.add_op(op, attrs, std::move(ins), result.type(), origin()));
  }

  std::vector<const void*> inplace_begin(ir::OpKind op, std::span<const Tensor> inputs) {
    std::vector<const void*> before;
    for (const Tensor& t : inputs) before.push_back(value(t));
    will_write(std::string(ir::op_name(op)) + " (in place)", inputs[0],
               static_cast<ir::Value*>(const_cast<void*>(before[0])));
    return before;
  }

  void inplace_end(ir::OpKind op, const ir::OpAttrs& attrs, const std::vector<const void*>& before, const Tensor& self) {
    std::vector<ir::Value*> ins;
    for (const void* v : before) ins.push_back(const_cast<ir::Value*>(static_cast<const ir::Value*>(v)));
    ir::OpAttrs canonical = attrs;
    std::vector<Type> types;
    for (ir::Value* v : ins) types.push_back(v->type);
    Type t = ir::infer(op, types, canonical);
    wrote(self, g_.add_op(op, canonical, std::move(ins), t, origin()));
  }

  /// `target` takes `source`'s value (no op: the graph value of `source` is the new one).
  void assign(const Tensor& target, const Tensor& source) {
    ir::Value* now = value(source);
    will_write("assign", target, value(target));
    wrote(target, now);
  }

  /// State written in place, in order of first write: the parameter or constant, its last value.
  const std::vector<std::pair<ir::Value*, ir::Value*>>& commits() const { return commits_; }

  /// Before `self` (whose graph value is `target`) is written: inputs cannot be written, state
  /// (a parameter, a constant) will be committed, and other handles on its storage are remapped.
  void will_write(const std::string& what, const Tensor& self, ir::Value* target) {
    if (target->kind == ir::ValueKind::kInput)
      throw TraceError(what, "changing " + kind_name(target->kind) + " %" + target->name + " (" + target->type.str() +
                                 ") in place inside traced code is not supported; compute a new tensor instead");
    if (target->kind != ir::ValueKind::kResult)  // state (a parameter, a constant): its last value is committed
      state_.emplace(self.impl()->storage.get(), target);
    // Other handles on the same storage: of the same type they see the new value (looked up by
    // storage again); a view of another type (reshape, flatten) cannot be traced if read later.
    const std::shared_ptr<rt::Storage>& storage = self.impl()->storage;
    for (auto it = values_.begin(); it != values_.end();) {
      if (it->first != self.impl().get() && it->second.first->storage == storage) {
        keep_.push_back(it->second.first);  // its address stays taken
        it = values_.erase(it);
      } else {
        ++it;
      }
    }
    if (auto it = by_storage_.find(storage.get()); it != by_storage_.end()) {
      std::vector<Type> views;
      for (const auto& [type, v] : it->second)
        if (!(type == self.type()) && std::find(views.begin(), views.end(), type) == views.end())
          views.push_back(type);
      for (Type& type : views) it->second.emplace_back(std::move(type), nullptr);  // stale from here on
    }
  }

  /// `self` now holds `now`; written state commits its last value.
  void wrote(const Tensor& self, ir::Value* now) {
    map(self, now);
    if (auto s = state_.find(self.impl()->storage.get()); s != state_.end()) {
      auto c = std::find_if(commits_.begin(), commits_.end(), [&](const auto& w) { return w.first == s->second; });
      if (c == commits_.end())
        commits_.emplace_back(s->second, now);
      else
        c->second = now;
    }
  }

  /// Binds `t` as the named constant `name` (state the traced code reads or writes, like an
  /// optimizer's moments), unless it is bound already.
  void bind_const(const std::string& name, const Tensor& t) {
    if (values_.count(t.impl().get())) return;
    consts.push_back(t);
    map(t, g_.add_const(name, t.type()));
  }

  /// rand() inside the trace: rand_uniform of the generator state, `start` blocks after the
  /// trace's first draw. Draws must be contiguous (another thread drawing in between, or
  /// manual_seed inside forward, breaks that: then the numbers are frozen like other randoms).
  void random(const Tensor& t, const detail::RandomDraw& d) {
    if (!rng_) {
      rng_ = g_.add_input("rng", {DType::kI64, {2}});
      first_draw_ = d;
      first_draw_.blocks = 0;
    }
    if (d.seed != first_draw_.seed || d.base != first_draw_.base + blocks_) return created(t, true);
    ir::OpAttrs a;
    a.dims = t.shape();
    a.start = static_cast<int64_t>(blocks_);
    blocks_ += d.blocks;
    map(t, g_.add_op(ir::OpKind::RandUniform, a, {rng_}, t.type(), origin()));
  }

  /// The state input (null if forward drew nothing) and the counter blocks a run reserves for it.
  ir::Value* rng() const { return rng_; }
  uint64_t random_blocks() const { return blocks_; }

  void created(const Tensor& t, bool random) {
    created_.insert(t.impl().get());
    keep_.push_back(t.impl());
    if (random) random_.insert(t.impl().get());
  }

  /// `if (t)` / `while (t)`: the truth of a one-element tensor.
  void truth(const Tensor& t, bool outcome, const void* return_address) {
    ir::Origin at = origin();
    if (auto site = codegen::source_site(return_address)) {
      at.file = site->file;
      at.line = site->line;
    }
    truth_at(t, outcome, at);
  }

  /// A guard of a recorded graph, replayed: it keeps the file:line where it was first recorded.
  void replayed_truth(const Tensor& t, bool outcome, const ir::Origin& recorded) {
    ir::Origin at = origin();
    if (!recorded.file.empty()) {
      at.file = recorded.file;
      at.line = recorded.line;
    }
    truth_at(t, outcome, at);
  }

  void truth_at(const Tensor& t, bool outcome, const ir::Origin& at) {
    ir::Value* v = value(t);
    if (v->type.dtype == DType::kBool) {
      g_.add_guard(v, outcome, at);
    } else {  // nonzero is true: guard on eq(t, 0) being the opposite
      g_.add_guard(compare(ir::OpKind::Eq, v, literal_scalar(0.0, v->type.dtype)), !outcome, at);
    }
  }

  /// Raw data reads: the host may do anything with the values, so guard on all of them.
  void raw_read(const Tensor& t, const std::source_location& where) {
    ir::Value* v = value(t);
    ir::Value* same = compare(ir::OpKind::Eq, v, literal_bytes(t));
    if (v->type.numel() != 1) {  // all equal: min over cast(eq) > 0.5
      ir::Value* f = op(ir::OpKind::Cast, {same}, attrs_dtype(DType::kF32));
      ir::OpAttrs all;
      for (int i = 0; i < v->type.shape.size(); ++i) all.dims.push_back(i);
      same = compare(ir::OpKind::Gt, op(ir::OpKind::Min, {f}, all), literal_scalar(0.5, DType::kF32));
    }
    g_.add_guard(same, true, origin(where));
  }

  /// A read scalar compared with a number on the host.
  void scalar_compared(ir::Value* v, ir::Cmp cmp, double rhs, bool outcome, double value_seen,
                       const std::source_location& where) {
    ir::Value* x = v->type.dtype == DType::kF32 ? v : op(ir::OpKind::Cast, {v}, attrs_dtype(DType::kF32));
    // The graph compares in f32; if that would disagree with the host's double comparison, guard the exact value.
    float a = static_cast<float>(value_seen), b = static_cast<float>(rhs);
    const bool in_f32 = ir::holds(cmp, a, b);
    if (in_f32 != outcome) return scalar_escaped(v, value_seen, where);
    g_.add_guard(compare(ir::comparison_op(cmp), x, literal_scalar(rhs, DType::kF32)), outcome, origin(where));
  }

  /// A read scalar used as a plain number: guard on its exact value.
  void scalar_escaped(ir::Value* v, double value_seen, const std::source_location& where) {
    g_.add_guard(compare(ir::OpKind::Eq, v, literal_scalar(value_seen, v->type.dtype)), true, origin(where));
  }

  std::vector<nn::Parameter> params;
  std::vector<Tensor> consts;
  std::vector<std::string> notes;
  bool random_frozen = false;

 private:
  static std::string kind_name(ir::ValueKind k) {
    switch (k) {
      case ir::ValueKind::kInput: return "the graph input";
      case ir::ValueKind::kParam: return "the parameter";
      case ir::ValueKind::kConst: return "the constant";
      case ir::ValueKind::kResult: break;
    }
    return "the value";
  }

  void map(const Tensor& t, ir::Value* v) {
    values_[t.impl().get()] = {t.impl(), v};
    if (t.impl()->storage) by_storage_[t.impl()->storage.get()].emplace_back(v->type, v);
  }

  /// The latest value of t's type mapped to t's storage (a view of another type is another value).
  ir::Value* same_storage(const Tensor& t) const {
    auto it = t.impl()->storage ? by_storage_.find(t.impl()->storage.get()) : by_storage_.end();
    if (it == by_storage_.end()) return nullptr;
    for (auto v = it->second.rbegin(); v != it->second.rend(); ++v) {
      if (!(v->first == t.type())) continue;
      if (!v->second)
        throw TraceError("trace", "a view " + t.type().str() +
                                      " (reshape/flatten) of a tensor changed in place is read after the change; "
                                      "in-place changes through views cannot be traced");
      return v->second;
    }
    return nullptr;
  }

  ir::Value* bind_new(const Tensor& t) {
    const TensorImpl* impl = t.impl().get();
    if (block_) {
      for (const auto& [name, p] : block_->named_parameters())
        if (p.initialized() && p.data().impl().get() == impl) {
          params.push_back(p);
          return g_.add_param(name, t.type());
        }
      for (const auto& [name, c] : block_->named_constants())
        if (c.impl().get() == impl) {
          consts.push_back(c);
          return g_.add_const(name, t.type());
        }
    }
    if (created_.count(impl)) {
      if (random_.count(impl)) {
        random_frozen = true;
        notes.push_back("a random tensor " + t.type().str() + " made at " + where() +
                        " was frozen into the graph as a literal; later runs reuse the same numbers");
      }
      return literal_bytes(t);
    }
    std::string name = "captured" + std::to_string(consts.size());
    notes.push_back("a tensor " + t.type().str() + " captured from outside the traced code at " + where() +
                    " became constant %" + name + " (bound by reference: later changes to it are seen)");
    consts.push_back(t);
    return g_.add_const(name, t.type());
  }

  std::string where() const { return origin().str(); }

  /// The block path, and the line of `read` (a host read of data) or else of the block's call.
  ir::Origin origin(std::optional<std::source_location> read = std::nullopt) const {
    ir::Origin o;
    o.path = nn::current_block_path();
    for (auto site : {read, nn::current_call_site()}) {
      std::string file = site ? site->file_name() : "";
      if (site && site->line() && file.find("/frontend/") == std::string::npos) {  // a user's line, not our plumbing
        o.file = file.substr(file.rfind('/') + 1);
        o.line = static_cast<int>(site->line());
        break;
      }
    }
    return o;
  }

  ir::Value* literal_bytes(const Tensor& t) {
    std::vector<std::byte> data(t.type().bytes());
    if (!data.empty()) std::memcpy(data.data(), t.raw_data(), data.size());
    return g_.add_literal(t.type(), std::move(data), origin());
  }

  ir::Value* literal_scalar(double v, DType dtype) {
    std::vector<std::byte> data(element_size(dtype));
    if (dtype == DType::kF32) {
      float f = static_cast<float>(v);
      std::memcpy(data.data(), &f, 4);
    } else if (dtype == DType::kI64) {
      int64_t i = static_cast<int64_t>(v);
      std::memcpy(data.data(), &i, 8);
    } else {
      data[0] = static_cast<std::byte>(v != 0);
    }
    return g_.add_literal({dtype, {}}, std::move(data), origin());
  }

  static ir::OpAttrs attrs_dtype(DType t) {
    ir::OpAttrs a;
    a.dtype = t;
    return a;
  }

  ir::Value* op(ir::OpKind k, std::vector<ir::Value*> ins, ir::OpAttrs a = {}) {
    std::vector<Type> types;
    for (ir::Value* v : ins) types.push_back(v->type);
    Type t = ir::infer(k, types, a);
    return g_.add_op(k, a, std::move(ins), t, origin());
  }
  ir::Value* compare(ir::OpKind k, ir::Value* a, ir::Value* b) { return op(k, {a, b}); }

  ir::Graph& g_;
  nn::Block* block_;
  uint64_t epoch_;
  // Every tensor seen, kept alive so that its address is not reused during the trace.
  std::unordered_map<const TensorImpl*, std::pair<std::shared_ptr<TensorImpl>, ir::Value*>> values_;
  // Values mapped to each storage, with their types, in order; a null value marks a view made
  // stale by an in-place change of the storage through a handle of another type.
  std::unordered_map<const rt::Storage*, std::vector<std::pair<Type, ir::Value*>>> by_storage_;
  ir::Value* rng_ = nullptr;
  detail::RandomDraw first_draw_;
  uint64_t blocks_ = 0;
  std::unordered_set<const TensorImpl*> created_, random_;
  std::unordered_map<const rt::Storage*, ir::Value*> state_;  // storage written in place -> its parameter or constant
  std::vector<std::pair<ir::Value*, ir::Value*>> commits_;
  std::vector<std::shared_ptr<TensorImpl>> keep_;
};

thread_local Tracer* t_tracer = nullptr;

struct TracerScope {
  explicit TracerScope(Tracer* t) {
    if (t_tracer) throw TraceError("trace", "a trace is already being recorded on this thread");
    t_tracer = t;
  }
  ~TracerScope() { t_tracer = nullptr; }
};

Tracer* active(const Scalar& s) {
  return t_tracer && s.traced_value() && s.trace_epoch() == t_tracer->epoch() ? t_tracer : nullptr;
}

Trace finish(Tracer& tr, std::shared_ptr<ir::Graph> g, std::vector<Tensor> outputs) {
  for (const Tensor& o : outputs) {
    if (!o.defined()) throw TraceError("trace", "the traced code returned an undefined tensor");
    g->add_output(tr.value(o));
  }
  for (const auto& [state, value] : tr.commits()) g->add_commit(state, value);
  Trace t{std::move(g), std::move(outputs), std::move(tr.params), std::move(tr.consts), std::move(tr.notes),
          tr.random_frozen};
  if (ir::Value* rng = tr.rng()) {
    for (size_t i = 0; i < t.graph->inputs().size(); ++i)
      if (t.graph->inputs()[i] == rng) t.rng_input = static_cast<int>(i);
    t.random_blocks = tr.random_blocks();
  }
  return t;
}

}  // namespace

bool is_tracing() { return t_tracer != nullptr; }

Trace trace(nn::Block& block, const Tensor& input, std::source_location where) {
  if (!input.defined()) throw ValueError("trace", "the input is undefined");
  auto g = std::make_shared<ir::Graph>(block.name());
  Tracer tr(*g, &block);
  TracerScope scope(&tr);
  tr.bind_input(input, g->add_input("x", input.type()));
  Tensor out = block(input, where);
  return finish(tr, std::move(g), {out});
}

Trace trace(nn::Block& block, const Tensors& inputs, std::source_location where) {
  auto g = std::make_shared<ir::Graph>(block.name());
  Tracer tr(*g, &block);
  TracerScope scope(&tr);
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined()) tr.bind_input(inputs[i], g->add_input("x" + std::to_string(i), inputs[i].type()));
  Tensors outs = block(inputs, where);
  return finish(tr, std::move(g), std::move(outs));
}

TrainingTrace trace_training(nn::Block& block, const std::vector<Tensor>& inputs,
                             const std::function<Tensors(const std::vector<Tensor>&)>& fn, const AfterBackward& after) {
  if (!is_grad_enabled()) throw ValueError("trace", "a training trace needs grad mode");
  auto g = std::make_shared<ir::Graph>(block.name());
  Tracer tr(*g, &block);
  TracerScope scope(&tr);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) throw ValueError("trace", "input " + std::to_string(i) + " is undefined");
    tr.bind_input(inputs[i], g->add_input(inputs.size() == 1 ? "x" : "x" + std::to_string(i), inputs[i].type()));
  }
  for (const auto& [name, t] : after.state) tr.bind_const(name, t);
  const size_t own_consts = tr.consts.size();
  Tensors outs = fn(inputs);
  if (outs.empty()) throw TraceError("trace", "the traced code returned no tensor");
  for (const Tensor& out : outs)
    if (!out.defined()) throw TraceError("trace", "the traced code returned an undefined tensor");
  for (size_t i = own_consts; i < tr.consts.size(); ++i) {
    const Tensor& c = tr.consts[i];
    if (c.requires_grad())  // its gradient would have to leave the graph
      throw TraceError("trace", "forward reads a tensor " + c.type().str() +
                                    " from outside the block that requires grad; its gradient cannot be compiled");
  }
  TrainingTrace tt;
  tt.forward_outputs = static_cast<int>(outs.size());
  std::vector<Tensor> outputs = outs;
  std::vector<Tensor> roots, root_grads;
  for (size_t i = 0; i < outs.size(); ++i)
    if (outs[i].requires_grad()) {
      tt.grad_outputs.push_back(static_cast<int>(i));
      roots.push_back(outs[i]);
    }
  if (!roots.empty()) {
    // The backward, recorded like any other code: autograd's formulas are Tensor ops.
    const int guards = g->num_guards();
    for (const Tensor& r : roots) {
      root_grads.push_back(ones(r.shape()));
      const std::string name = outs.size() == 1 ? "grad" : "grad" + std::to_string(tt.grad_outputs[root_grads.size() - 1]);
      tr.bind_input(root_grads.back(), g->add_input(name, r.type()));
    }
    std::vector<Tensor> wrt;
    for (const nn::Parameter& p : tr.params) wrt.push_back(p.data());
    std::vector<int> wrt_inputs;  // the index among `inputs` of each input in wrt
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].requires_grad()) {
        wrt.push_back(inputs[i]);
        wrt_inputs.push_back(static_cast<int>(i));
      }
    std::vector<Tensor> grads;
    try {
      grads = autograd::grad(roots, root_grads, wrt);
    } catch (const AutogradError& e) {
      throw TraceError("backward", e.what());
    }
    if (g->num_guards() != guards)
      throw TraceError("backward", "the backward read tensor data on the host (a guard), which compiled code cannot "
                                   "repeat");
    for (size_t i = 0; i < grads.size(); ++i)
      if (grads[i].defined()) {
        tt.gradients.push_back(i < tr.params.size() ? static_cast<int>(i) : -1 - wrt_inputs[i - tr.params.size()]);
        outputs.push_back(grads[i]);
      }
    tt.backward = true;
    if (after.run) {
      // Frees the autograd graph and the handles it saved on the parameters.
      for (size_t i = 0; i < outs.size(); ++i) outputs[i] = outs[i].detach();
      outs.clear();
      roots.clear();
      after.run(tr.params, tt.gradients, std::vector<Tensor>(outputs.begin() + tt.forward_outputs, outputs.end()));
    }
  }
  tt.trace = finish(tr, std::move(g), std::move(outputs));
  return tt;
}

TrainingTrace trace_training(nn::Block& block, const Tensor& input, std::source_location where) {
  return trace_training(block, {input}, [&](const std::vector<Tensor>& in) { return Tensors{block(in[0], where)}; });
}

Trace trace(const std::string& name, const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
            const std::vector<Tensor>& inputs) {
  auto g = std::make_shared<ir::Graph>(name);
  Tracer tr(*g, nullptr);
  TracerScope scope(&tr);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) throw ValueError("trace", "input " + std::to_string(i) + " is undefined");
    tr.bind_input(inputs[i], g->add_input(inputs.size() == 1 ? "x" : "x" + std::to_string(i), inputs[i].type()));
  }
  std::vector<Tensor> outs = fn(inputs);
  return finish(tr, std::move(g), std::move(outs));
}

namespace {

/// Views of a call's data in the graph's order; ShapeError if the inputs do not fit the trace.
/// A trace that draws random numbers gets the generator's state as one more input, its counters
/// reserved here (`draw`: give them back if a guard fails).
struct Bound {
  std::vector<rt::ConstView> inputs, params, consts;
  std::vector<uint64_t> param_versions;  // each parameter's storage write count
  Tensor state;                          // i64[2]: seed, first counter
  detail::RandomDraw draw;
};
Bound bind(const Trace& t, const std::vector<Tensor>& given) {
  const ir::Graph& g = *t.graph;
  const size_t expected = g.inputs().size() - (t.rng_input >= 0 ? 1 : 0);
  if (given.size() != expected)
    throw ValueError("run", "the trace of " + g.name() + " takes " + std::to_string(expected) + " inputs, got " +
                                std::to_string(given.size()));
  Bound b;
  std::vector<Tensor> inputs = given;
  if (t.rng_input >= 0) {
    b.draw = detail::reserve_random(t.random_blocks);
    b.state = tensor(std::vector<int64_t>{static_cast<int64_t>(b.draw.seed), static_cast<int64_t>(b.draw.base)}, {2});
    inputs.insert(inputs.begin() + t.rng_input, b.state);
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || !(inputs[i].type() == g.inputs()[i]->type))
      throw ShapeError("run", "input " + std::to_string(i) + " is " +
                                  (inputs[i].defined() ? inputs[i].type().str() : std::string("undefined")) +
                                  ", the trace of " + g.name() + " was made for " + g.inputs()[i]->type.str());
    b.inputs.push_back({inputs[i].raw_data(), inputs[i].type()});
  }
  for (const nn::Parameter& p : t.params) {
    b.params.push_back({p.data().raw_data(), p.data().type()});
    b.param_versions.push_back(p.data().impl()->storage->version());
  }
  for (const Tensor& c : t.consts) b.consts.push_back({c.raw_data(), c.type()});
  return b;
}

std::vector<Tensor> wrap(std::vector<std::shared_ptr<rt::Storage>> storages, const ir::Graph& g) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < storages.size(); ++i)
    out.push_back(detail::tensor_over(std::move(storages[i]), g.outputs()[i]->type));
  return out;
}

GraphRun failed(const ir::Graph& g, const ir::Node& guard, int index) {
  GraphRun out;
  out.guards_hold = false;
  out.failed_guard = index;
  out.guard = ir::describe(g, guard);
  out.origin = guard.origin;
  return out;
}

/// The index-th guard of g, in program order.
const ir::Node& guard_at(const ir::Graph& g, int index) {
  const ir::Node* found = nullptr;
  int k = 0;
  ir::for_each_node(g.nodes(), [&](const ir::Node& n) {
    if (n.kind == ir::NodeKind::kGuard && k++ == index) found = &n;
  });
  if (!found) throw Error("run", "guard " + std::to_string(index) + " does not exist");
  return *found;
}

/// What `g` commits: parameter i as i, constant i as -1 - i.
std::vector<int> commit_targets(const ir::Graph& g) {
  std::vector<int> out;
  for (const ir::Commit& c : g.commits()) {
    const auto& ps = g.params();
    const auto& cs = g.consts();
    if (auto p = std::find(ps.begin(), ps.end(), c.target); p != ps.end())
      out.push_back(static_cast<int>(p - ps.begin()));
    else
      out.push_back(-1 - static_cast<int>(std::find(cs.begin(), cs.end(), c.target) - cs.begin()));
  }
  return out;
}

/// After a run that committed: the written tensors' versions move (autograd's checks, packed weights).
void bump_written(const Trace& t, const std::vector<int>& written) {
  for (int w : written) {
    const Tensor& x = w >= 0 ? t.params[static_cast<size_t>(w)].data() : t.consts[static_cast<size_t>(-1 - w)];
    x.impl()->storage->bump_version();
  }
}

}  // namespace

GraphRun run(const Trace& t, const std::vector<Tensor>& inputs) {
  Bound b = bind(t, inputs);
  rt::InterpretResult r = rt::interpret(*t.graph, b.inputs, b.params, b.consts);
  if (r.failed_guard) {
    if (t.rng_input >= 0) detail::return_random(b.draw);
    return failed(*t.graph, *r.failed_guard, r.failed_guard_index);
  }
  bump_written(t, commit_targets(*t.graph));
  GraphRun out;
  out.outputs = wrap(std::move(r.outputs), *t.graph);
  return out;
}

CompiledTrace::CompiledTrace(Trace t, std::shared_ptr<codegen::Executable> exe)
    : trace_(std::move(t)), exe_(std::move(exe)), written_(commit_targets(exe_->graph())) {}

CompiledTrace compile(const Trace& t, const codegen::CompileOptions& options) {
  return CompiledTrace(t, codegen::compile(*t.graph, options));
}

GraphRun CompiledTrace::run(const std::vector<Tensor>& inputs) const {
  Bound b = bind(trace_, inputs);
  auto r = exe_->run(b.inputs, b.params, b.consts, b.param_versions);
  const ir::Graph& g = exe_->graph();
  if (r.failed_guard >= 0) {
    if (trace_.rng_input >= 0) detail::return_random(b.draw);
    return failed(g, guard_at(g, r.failed_guard), r.failed_guard);
  }
  bump_written(trace_, written_);
  GraphRun out;
  if (exe_->dynamic()) {
    for (size_t i = 0; i < r.outputs.size(); ++i)
      out.outputs.push_back(detail::tensor_over(std::move(r.outputs[i]), output_type(i, inputs)));
  } else {
    out.outputs = wrap(std::move(r.outputs), g);
  }
  return out;
}

namespace {
/// The batch size of a call of code for every batch size on `inputs` (0 for code for one size).
int64_t batch_of(const codegen::Executable& exe, std::span<const Tensor> inputs) {
  if (!exe.dynamic()) return 0;
  int64_t dim0[64];
  const size_t n = std::min<size_t>(inputs.size(), 64);
  for (size_t i = 0; i < n; ++i) dim0[i] = inputs[i].dim() > 0 ? inputs[i].shape()[0] : 0;
  const int64_t batch = exe.batch_of({dim0, n});
  if (batch < 0) throw ShapeError(exe.graph().name(), "the inputs disagree on the batch size");
  return batch;
}
}  // namespace

int CompiledTrace::try_run(std::span<const Tensor> inputs, std::vector<std::shared_ptr<rt::Storage>>& outputs,
                           std::span<rt::Storage* const> reuse) const {
  const bool random = trace_.rng_input >= 0;  // then the generator's state is one more input
  const size_t n = inputs.size() + random + trace_.params.size() + trace_.consts.size();
  const void* small[32];
  uint64_t versions[32];
  std::vector<const void*> large_data(n > 32 ? n : 0);
  std::vector<uint64_t> large_versions(n > 32 ? n : 0);
  const void** data = n > 32 ? large_data.data() : small;
  uint64_t* ver = n > 32 ? large_versions.data() : versions;
  size_t k = 0;
  detail::RandomDraw draw;
  int64_t state[2];
  for (size_t i = 0; i <= inputs.size(); ++i) {
    if (random && static_cast<int>(i) == trace_.rng_input) {
      draw = detail::reserve_random(trace_.random_blocks);
      state[0] = static_cast<int64_t>(draw.seed);
      state[1] = static_cast<int64_t>(draw.base);
      data[k++] = state;
    }
    if (i < inputs.size()) data[k++] = inputs[i].raw_data();
  }
  for (size_t i = 0; i < trace_.params.size(); ++i) {
    const Tensor& p = trace_.params[i].data();
    data[k++] = p.raw_data();
    ver[i] = p.impl()->storage->version();
  }
  for (const Tensor& c : trace_.consts) data[k++] = c.raw_data();
  const int failed = exe_->run({data, n}, {ver, trace_.params.size()}, outputs, batch_of(*exe_, inputs), reuse);
  if (failed >= 0 && random) detail::return_random(draw);  // the eager call that follows draws these
  if (failed < 0) bump_written(trace_, written_);
  return failed;
}

int CompiledTrace::try_run(const Tensor& x, std::vector<std::shared_ptr<rt::Storage>>& outputs) const {
  return try_run(std::span<const Tensor>(&x, 1), outputs);
}

int CompiledTrace::try_run(const Tensor& x, Tensor& out) const {
  thread_local std::vector<std::shared_ptr<rt::Storage>> outputs;
  int failed = try_run(x, outputs);
  if (failed < 0) out = detail::tensor_over(std::move(outputs[0]), output_type(0, {&x, 1}));
  return failed;
}

Type CompiledTrace::output_type(size_t i, std::span<const Tensor> inputs) const {
  return exe_->output_type(i, batch_of(*exe_, inputs));
}

bool CompiledTrace::guard_reads_exact_value(int index) const {
  // The shapes scalar_escaped() and raw_read() record: eq(v, literal) == true, or for a
  // tensor gt(min(cast(eq(v, literal))), 0.5) == true.
  const ir::Node& g = guard_at(exe_->graph(), index);
  auto op = [](const ir::Value* v, ir::OpKind k) {
    return v && v->def && v->def->kind == ir::NodeKind::kOp && v->def->op == k ? v->def : nullptr;
  };
  const ir::Node* p = op(g.inputs[0], ir::OpKind::Gt);
  if (const ir::Node* m = p ? op(p->inputs[0], ir::OpKind::Min) : nullptr)
    if (const ir::Node* c = op(m->inputs[0], ir::OpKind::Cast)) p = c;
  const ir::Node* eq = p ? op(p->inputs[0], ir::OpKind::Eq) : op(g.inputs[0], ir::OpKind::Eq);
  return g.expect && eq &&
         std::any_of(eq->inputs.begin(), eq->inputs.end(), [](const ir::Value* v) {
           return v->def && v->def->kind == ir::NodeKind::kLiteral;
         });
}

std::string CompiledTrace::describe_guard(int index, ir::Origin* origin) const {
  const ir::Node& n = guard_at(exe_->graph(), index);
  if (origin) *origin = n.origin;
  return ir::describe(exe_->graph(), n);
}

namespace detail {

void trace_op(ir::OpKind op, const ir::OpAttrs& attrs, std::span<const Tensor> inputs, const Tensor& result) {
  if (t_tracer) t_tracer->on_op(op, attrs, inputs, result);
}
std::vector<const void*> trace_inplace_begin(ir::OpKind op, std::span<const Tensor> inputs) {
  return t_tracer ? t_tracer->inplace_begin(op, inputs) : std::vector<const void*>{};
}
void trace_inplace_end(ir::OpKind op, const ir::OpAttrs& attrs, const std::vector<const void*>& before,
                       const Tensor& self) {
  if (t_tracer && !before.empty()) t_tracer->inplace_end(op, attrs, before, self);
}
void trace_created(const Tensor& t, bool random) {
  if (t_tracer) t_tracer->created(t, random);
}
void trace_random(const Tensor& t, const RandomDraw& draw) {
  if (t_tracer) t_tracer->random(t, draw);
}
void trace_truth(const Tensor& t, bool outcome, const void* return_address) {
  if (t_tracer) t_tracer->truth(t, outcome, return_address);
}
void trace_replayed_guard(const Tensor& t, bool outcome, const ir::Origin& recorded) {
  if (t_tracer) t_tracer->replayed_truth(t, outcome, recorded);
}
void trace_assign(const Tensor& target, const Tensor& value) {
  if (t_tracer) t_tracer->assign(target, value);
}
void trace_raw_read(const Tensor& t, const std::source_location& where) {
  if (t_tracer) t_tracer->raw_read(t, where);
}
std::pair<const void*, uint64_t> trace_scalar_source(const Tensor& t) {
  if (!t_tracer) return {nullptr, 0};
  return {t_tracer->value(t), t_tracer->epoch()};
}

void scalar_compared(const Scalar& s, ir::Cmp cmp, double rhs, bool outcome) {
  if (Tracer* tr = active(s))
    tr->scalar_compared(const_cast<ir::Value*>(static_cast<const ir::Value*>(s.traced_value())), cmp, rhs, outcome,
                        s.peek(), s.site());
}
void scalar_escaped(const Scalar& s) {
  if (Tracer* tr = active(s))
    tr->scalar_escaped(const_cast<ir::Value*>(static_cast<const ir::Value*>(s.traced_value())), s.peek(), s.site());
}

}  // namespace detail

}  // namespace bj
