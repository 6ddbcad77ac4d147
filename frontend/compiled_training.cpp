// Compiled training calls (see compiled_training.h).
#include "frontend/compiled_training.h"

#include <fmt/format.h>

#include "frontend/autograd.h"
#include "frontend/creation.h"
#include "frontend/dispatch.h"
#include "frontend/ops.h"

namespace bj {

namespace {

/// A handle on t's storage without its autograd state, and the storage's version now.
std::pair<Tensor, uint64_t> keep(const Tensor& t) {
  return {detail::tensor_over(t.impl()->storage, t.type()), t.impl()->storage->version()};
}

}  // namespace

/// The autograd node of one compiled call: what its backward reads, kept with the versions
/// they had, so that a change in place between forward and backward is eager's AutogradError.
class CompiledBackwardNode final : public autograd::Node {
 public:
  std::shared_ptr<const CompiledBackward> code;
  std::vector<std::pair<Tensor, uint64_t>> saved, params;
  std::vector<Tensor> consts;  // by reference, as the forward read them
  /// With several outputs: each one's gradient, as its OutputGradNode handed it on.
  std::vector<Tensor> slots;

  std::string name() const override { return "compiled_backward(" + code->name_ + ")"; }

  void apply(const Tensor& grad, std::vector<Tensor>& input_grads) override {
    std::vector<const void*> data;
    if (slots.empty()) {
      data.push_back(grad.raw_data());
    } else {
      for (size_t i = 0; i < slots.size(); ++i) {
        if (!slots[i].defined()) slots[i] = zeros(code->grad_types_[i].shape);  // that output was not used
        data.push_back(slots[i].raw_data());
      }
    }
    auto check = [&](const std::pair<Tensor, uint64_t>& s, const std::string& what) {
      const uint64_t now = s.first.impl()->storage->version();
      if (now != s.second)
        throw AutogradError(name(), fmt::format("{} ({}) was modified in place after the forward saved it (version "
                                                "{}, saved at {}); backward needs its old value: use an out-of-place "
                                                "op instead",
                                                what, s.first.type().str(), now, s.second));
      data.push_back(s.first.raw_data());
    };
    for (size_t i = 0; i < saved.size(); ++i) {
      const auto& from = code->saved_[i];
      check(saved[i], from.from == ir::BackwardSplit::Saved::From::kForwardInput ? "the input"
                      : from.index == 0                                        ? "the output"
                                                                               : "a value");
    }
    std::vector<uint64_t> versions;
    for (size_t i = 0; i < params.size(); ++i) {
      check(params[i], "parameter '" + code->exe_->graph().params()[i]->name + "'");
      versions.push_back(params[i].second);
    }
    for (const Tensor& c : consts) data.push_back(c.raw_data());
    std::vector<std::shared_ptr<rt::Storage>> outputs;
    if (code->exe_->run(data, versions, outputs) >= 0)
      throw Error(name(), "the compiled backward has no guards, yet one failed (internal error)");
    for (size_t i = 0; i < outputs.size(); ++i)
      input_grads[i] = detail::tensor_over(std::move(outputs[i]), code->output_types_[i]);
    for (Tensor& s : slots) s = Tensor();
  }
};

/// The grad_fn of one of several outputs: puts its gradient in the call's node's slot and sends
/// that node a token, so that autograd runs it after every output's gradient has arrived.
class OutputGradNode final : public autograd::Node {
 public:
  OutputGradNode(std::shared_ptr<CompiledBackwardNode> call, size_t slot) : call_(std::move(call)), slot_(slot) {
    next.push_back(call_);
  }
  std::string name() const override { return call_->name() + "[" + std::to_string(slot_) + "]"; }
  void apply(const Tensor& grad, std::vector<Tensor>& input_grads) override {
    call_->slots[slot_] = call_->slots[slot_].defined() ? call_->slots[slot_] + grad : grad;
    input_grads[0] = zeros({});
  }

 private:
  std::shared_ptr<CompiledBackwardNode> call_;
  size_t slot_;
};

CompiledBackward::CompiledBackward(const TrainingTrace& t, ir::BackwardSplit split,
                                   const codegen::CompileOptions& options)
    : name_(t.trace.graph->name()),
      saved_(std::move(split.saved)),
      params_(std::move(split.backward_params)),
      consts_(std::move(split.backward_consts)),
      gradients_(t.gradients),
      grad_outputs_(t.grad_outputs) {
  const ir::Graph& b = *split.backward;
  const size_t g = grad_outputs_.size();
  for (size_t i = 0; i < g; ++i) grad_types_.push_back(b.inputs()[i]->type);
  for (size_t i = 0; i < saved_.size(); ++i) saved_types_.push_back(b.inputs()[g + i]->type);
  for (const ir::Value* v : b.outputs()) output_types_.push_back(v->type);
  exe_ = codegen::compile(b, options);
}

void CompiledBackward::attach(std::span<Tensor> outs, std::span<const Tensor> inputs, const Trace& forward,
                              std::vector<std::shared_ptr<rt::Storage>>& outputs) const {
  auto node = std::make_shared<CompiledBackwardNode>();
  node->code = shared_from_this();
  for (size_t i = 0; i < saved_.size(); ++i) {
    const ir::BackwardSplit::Saved& s = saved_[i];
    const auto k = static_cast<size_t>(s.index);
    if (s.from == ir::BackwardSplit::Saved::From::kForwardInput)
      node->saved.push_back(keep(inputs[k]));
    else if (k < outs.size())
      node->saved.push_back(keep(outs[k]));  // the caller's output: changes to it in place are seen
    else
      node->saved.push_back(keep(detail::tensor_over(outputs[k], saved_types_[i])));
  }
  for (int p : params_) node->params.push_back(keep(forward.params[static_cast<size_t>(p)].data()));
  for (int c : consts_) node->consts.push_back(forward.consts[static_cast<size_t>(c)]);
  for (int g : gradients_)  // -1 - i: input i
    node->next.push_back(autograd::gradient_edge(g < 0 ? inputs[static_cast<size_t>(-1 - g)]
                                                       : forward.params[static_cast<size_t>(g)].data()));
  if (grad_outputs_.size() == 1) {
    autograd::set_grad_fn(outs[static_cast<size_t>(grad_outputs_[0])], std::move(node));
    return;
  }
  node->slots.resize(grad_outputs_.size());
  for (size_t i = 0; i < grad_outputs_.size(); ++i)
    autograd::set_grad_fn(outs[static_cast<size_t>(grad_outputs_[i])], std::make_shared<OutputGradNode>(node, i));
}

int CompiledTraining::try_run(const Tensor& x, Tensor& out) const {
  thread_local std::vector<std::shared_ptr<rt::Storage>> outputs;
  const int failed = forward.try_run(x, outputs);
  if (failed >= 0) return failed;
  out = detail::tensor_over(outputs[0], forward.output_type(0, {&x, 1}));
  if (backward) backward->attach({&out, 1}, {&x, 1}, forward.trace(), outputs);
  outputs.clear();
  return -1;
}

int CompiledTraining::try_run(std::span<const Tensor> inputs, Tensors& outs) const {
  std::vector<std::shared_ptr<rt::Storage>> storages;
  const int failed = forward.try_run(inputs, storages);
  if (failed >= 0) return failed;
  outs.clear();
  for (size_t i = 0; i < static_cast<size_t>(outputs); ++i)
    outs.push_back(detail::tensor_over(storages[i], forward.output_type(i, inputs)));
  if (backward) backward->attach(outs, inputs, forward.trace(), storages);
  return -1;
}

CompiledTraining compile_training(const TrainingTrace& t, const codegen::CompileOptions& given) {
  if (!t.backward) return {compile(t.trace, given), nullptr, t.forward_outputs};
  codegen::CompileOptions options = given;
  options.training = true;  // an optimizer changes the parameters between calls
  ir::BackwardSplit split =
      ir::split_backward(*t.trace.graph, t.forward_outputs, static_cast<int>(t.grad_outputs.size()));
  for (const auto& s : split.saved)  // the generator's state is an input, but never differentiated through
    if (s.from == ir::BackwardSplit::Saved::From::kForwardInput && s.index == t.trace.rng_input)
      throw Error("compile_training", "the backward reads the random generator's state (internal error)");
  Trace forward = t.trace;
  forward.graph = std::move(split.forward);
  auto backward = std::make_shared<const CompiledBackward>(t, std::move(split), options);
  return {compile(forward, options), std::move(backward), t.forward_outputs};
}

}  // namespace bj
