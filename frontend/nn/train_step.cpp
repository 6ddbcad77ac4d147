// The whole-step compiler (see train_step.h): the step is traced with the
// optimizer's update written as Tensor ops (Optimizer::step_ops), so the
// compiled graph commits the new weights and optimizer state in place.
#include "frontend/nn/train_step.h"

#include <fmt/format.h>

#include <map>

#include "frontend/autograd.h"
#include "frontend/dispatch.h"
#include "frontend/creation.h"
#include "frontend/trace.h"

namespace bj::nn {

namespace {

/// One traced path of a step, compiled: inputs x, target, the optimizer's hyperparameters and the
/// loss's gradient (1); outputs the loss, then the gradients; commits the updated weights and
/// optimizer state.
struct StepVariant {
  CompiledTrace code;
  std::vector<int> gradients;  // per gradient output: index in code.trace().params
  Tensor one;                  // the loss's gradient: ones of the loss's type (f32[], f32[1], ...)
};

struct StepKey {
  Type x, target;
  bool training;
  bool operator==(const StepKey&) const = default;
};

Tensor scalar_check(const Tensor& loss) {
  if (!loss.defined() || loss.numel() != 1 || loss.dtype() != DType::kF32)
    throw AutogradError("TrainStep", "the loss must be one f32 element to run backward from, got " +
                                         (loss.defined() ? loss.type().str() : std::string("an undefined tensor")));
  return loss;
}

}  // namespace

struct TrainStep::State {
  Block& net;
  Loss loss;
  optim::Optimizer& opt;
  HybridizeOptions options;
  struct Entry {
    StepKey key;
    std::vector<std::shared_ptr<const StepVariant>> variants;
    std::string failed;  // why this key runs eagerly for good
  };
  std::vector<Entry> entries;
  HybridStats stats;
  std::map<std::string, int64_t> eager_reasons;

  Entry& entry(const StepKey& k) {
    for (Entry& e : entries)
      if (e.key == k) return e;
    if (static_cast<int>(entries.size()) >= std::max(1, options.max_keys)) entries.erase(entries.begin());
    entries.push_back({k, {}, {}});
    return entries.back();
  }

  /// The eager step: zero_grad, loss, backward, update.
  Tensor eager(const Tensor& x, const Tensor& target, const std::string& why) {
    ++stats.eager_fallbacks;
    ++eager_reasons[why];
    opt.zero_grad();
    Tensor l = scalar_check(loss(net(x), target));
    l.backward();
    opt.step();
    return l.detach();
  }

  /// The optimizer's hyperparameters for the next step as one-element tensors (reused: a step's
  /// inputs are read during the call only).
  std::vector<Tensor> hyper;
  const std::vector<Tensor>& hyperparameters() {
    const std::vector<float> h = opt.hyperparameters();
    if (hyper.size() != h.size()) {
      hyper.clear();
      for (size_t i = 0; i < h.size(); ++i) hyper.push_back(zeros({}));
    }
    for (size_t i = 0; i < h.size(); ++i) *static_cast<float*>(hyper[i].raw_data()) = h[i];
    return hyper;
  }

  /// A compiled step's inputs: x, target, the hyperparameters, the loss's gradient. Kept between
  /// calls (only x and target change; they are let go after each call).
  std::vector<Tensor> call;
  std::vector<Tensor>& call_inputs(const Tensor& x, const Tensor& target) {
    const std::vector<Tensor>& h = hyperparameters();
    if (call.size() != h.size() + 3 || (!h.empty() && call[2].impl() != h[0].impl())) {
      call.assign(2, Tensor());
      call.insert(call.end(), h.begin(), h.end());
      call.emplace_back();
    }
    call[0] = x;
    call[1] = target;
    return call;
  }

  /// Leaves the gradients in the parameters' grad(), as backward after zero_grad does.
  void set_grads(const Trace& t, const std::vector<int>& gradients, std::vector<Tensor>& grads) {
    opt.zero_grad();
    for (size_t i = 0; i < gradients.size(); ++i) {
      const Tensor& w = t.params[static_cast<size_t>(gradients[i])].data();
      autograd::set_grad(w, std::move(grads[i]));
    }
  }

  /// Per output of `v`: the storage of the gradient it replaces where no one else can see that
  /// gradient (the loss, output 0, is always new).
  std::vector<rt::Storage*> reuse;
  void find_reusable(const StepVariant& v) {
    const ir::Graph& g = v.code.executable().graph();
    reuse.assign(g.outputs().size(), nullptr);
    for (size_t i = 0; i < v.gradients.size(); ++i)
      reuse[i + 1] = autograd::sole_grad_storage(v.code.trace().params[static_cast<size_t>(v.gradients[i])].data(),
                                                 g.outputs()[i + 1]->type);
  }
};

TrainStep::TrainStep(Block& net, Loss loss, optim::Optimizer& optimizer, HybridizeOptions options)
    : s_(std::make_unique<State>(State{net, std::move(loss), optimizer, options, {}, {}, {}, {}, {}, {}})) {
  if (!s_->loss) throw ValueError("TrainStep", "needs a loss function");
}

TrainStep::~TrainStep() = default;

Tensor TrainStep::operator()(const Tensor& x, const Tensor& target) {
  State& s = *s_;
  if (!x.defined() || !target.defined()) throw ValueError("TrainStep", "the input and the target must be defined");
  ++s.stats.calls;
  if (!is_grad_enabled()) return s.eager(x, target, "no grad mode");  // backward() will say what is wrong
  const StepKey key{x.type(), target.type(), s.net.is_training()};
  State::Entry& e = s.entry(key);
  if (!e.failed.empty()) return s.eager(x, target, "not compilable");
  // The first step creates the optimizer's state, which compiled steps then update in place.
  if (!s.opt.ready()) return s.eager(x, target, "optimizer state");
  thread_local std::vector<std::shared_ptr<rt::Storage>> outputs;
  std::vector<Tensor>& inputs = s.call_inputs(x, target);
  const std::vector<Tensor>& hyper = s.hyper;
  auto let_go = [&] { inputs[0] = inputs[1] = Tensor(); };
  for (size_t i = 0; i < e.variants.size(); ++i) {
    const StepVariant& v = *e.variants[i];
    if (inputs.back().impl() != v.one.impl()) inputs.back() = v.one;  // the types match the key's
    s.find_reusable(v);
    if (v.code.try_run(inputs, outputs, s.reuse) >= 0) continue;
    ++s.stats.compiled_hits;
    const ir::Graph& g = v.code.executable().graph();
    // A gradient written over the old one stays the parameter's grad(); the others are new tensors.
    thread_local std::vector<Tensor> grads;
    grads.clear();
    for (size_t k = 1; k < outputs.size(); ++k) {
      const Tensor& w = v.code.trace().params[static_cast<size_t>(v.gradients[k - 1])].data();
      grads.push_back(outputs[k] ? bj::detail::tensor_over(std::move(outputs[k]), g.outputs()[k]->type)
                                 : autograd::take_grad(w));
    }
    Tensor loss = bj::detail::tensor_over(std::move(outputs[0]), g.outputs()[0]->type);
    outputs.clear();
    let_go();
    s.reuse.clear();
    s.set_grads(v.code.trace(), v.gradients, grads);
    grads.clear();
    s.opt.stepped();  // the weights and the optimizer's state were committed by the compiled step
    if (i > 0) std::swap(e.variants[i], e.variants[i - 1]);  // the path taken moves ahead
    return loss;
  }
  let_go();
  s.reuse.clear();
  if (static_cast<int>(e.variants.size()) >= s.options.max_variants) return s.eager(x, target, "variant cap");
  // A new path: run the step eagerly while recording forward, loss, backward and update.
  ++s.stats.traces;
  ++s.stats.eager_fallbacks;
  ++s.eager_reasons[e.variants.empty() ? "new key" : "new path"];
  TrainingTrace t;
  std::vector<Tensor> traced_inputs{x, target};
  traced_inputs.insert(traced_inputs.end(), hyper.begin(), hyper.end());
  AfterBackward update;
  update.state = s.opt.state();
  update.run = [&](const std::vector<nn::Parameter>& params, const std::vector<int>& which,
                   const std::vector<Tensor>& grads) {
    for (int g : which)
      if (g < 0) throw TraceError("TrainStep", "the input or the target requires grad");
    Trace bound;
    bound.params = params;
    std::vector<Tensor> given = grads;
    s.set_grads(bound, which, given);
    NoGradGuard no_grad;
    s.opt.step_ops(hyper);
  };
  try {
    t = trace_training(
        s.net, traced_inputs,
        [&](const std::vector<Tensor>& in) { return Tensors{scalar_check(s.loss(s.net(in[0]), in[1]))}; }, update);
  } catch (const TraceError& err) {
    e.failed = err.what();
    --s.stats.eager_fallbacks;
    return s.eager(x, target, "not compilable");
  }
  Tensor loss = t.trace.outputs[0];
  if (!t.backward) throw AutogradError("TrainStep", "the loss does not require grad (no parameter reaches it)");
  s.opt.stepped();  // the traced update ran eagerly
  const std::vector<int> gradients = t.gradients;  // parameters only (the update checked)
  if (t.trace.random_frozen) {
    e.failed = "the step draws random numbers that host code changes (uniform, normal), which compiled code would "
               "repeat";
  } else {
    try {
      codegen::CompileOptions co;
      co.use_cache = s.options.use_cache;
      co.exact = s.options.exact;
      co.training = true;
      t.trace.outputs.clear();
      auto v = std::make_shared<StepVariant>(StepVariant{compile(t.trace, co), gradients, ones(loss.shape())});
      s.stats.compile_ms += v->code.executable().compile_ms();
      s.stats.cache_hits += v->code.executable().from_cache();
      e.variants.push_back(std::move(v));
    } catch (const std::exception& err) {
      ++s.stats.compile_failures;
      e.failed = err.what();
    }
  }
  return loss.detach();
}

HybridStats TrainStep::stats() const {
  HybridStats out = s_->stats;
  out.keys = static_cast<int64_t>(s_->entries.size());
  out.variants = 0;
  for (const auto& e : s_->entries) out.variants += static_cast<int64_t>(e.variants.size());
  out.eager_reasons.assign(s_->eager_reasons.begin(), s_->eager_reasons.end());
  return out;
}

std::string TrainStep::graphs() const {
  std::string text;
  for (const auto& e : s_->entries)
    for (const auto& v : e.variants) text += (text.empty() ? "" : "\n") + ir::print(v->code.executable().graph());
  return text;
}

std::vector<std::shared_ptr<const ir::Graph>> TrainStep::traced_graphs() const {
  std::vector<std::shared_ptr<const ir::Graph>> out;
  for (const auto& e : s_->entries)
    for (const auto& v : e.variants) out.push_back(v->code.trace().graph);
  return out;
}

}  // namespace bj::nn
