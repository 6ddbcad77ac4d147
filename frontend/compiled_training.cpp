// Compiled training calls (see compiled_training.h).
#include "frontend/compiled_training.h"

#include <fmt/format.h>

#include "frontend/autograd.h"
#include "frontend/dispatch.h"

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

  std::string name() const override { return "compiled_backward(" + code->name_ + ")"; }

  void apply(const Tensor& grad, std::vector<Tensor>& input_grads) override {
    std::vector<const void*> data{grad.raw_data()};
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
  }
};

CompiledBackward::CompiledBackward(const TrainingTrace& t, ir::BackwardSplit split,
                                   const codegen::CompileOptions& options)
    : name_(t.trace.graph->name()),
      saved_(std::move(split.saved)),
      params_(std::move(split.backward_params)),
      consts_(std::move(split.backward_consts)),
      gradients_(t.gradients) {
  const ir::Graph& b = *split.backward;
  for (size_t i = 0; i < saved_.size(); ++i) saved_types_.push_back(b.inputs()[1 + i]->type);
  for (const ir::Value* v : b.outputs()) output_types_.push_back(v->type);
  exe_ = codegen::compile(b, options);
}

void CompiledBackward::attach(Tensor& out, const Tensor& x, const Trace& forward,
                              std::vector<std::shared_ptr<rt::Storage>>& outputs) const {
  auto node = std::make_shared<CompiledBackwardNode>();
  node->code = shared_from_this();
  for (size_t i = 0; i < saved_.size(); ++i) {
    const ir::BackwardSplit::Saved& s = saved_[i];
    if (s.from == ir::BackwardSplit::Saved::From::kForwardInput)
      node->saved.push_back(keep(x));  // the only forward input
    else if (s.index == 0)
      node->saved.push_back(keep(out));  // the caller's output: changes to it in place are seen
    else
      node->saved.push_back(keep(detail::tensor_over(outputs[static_cast<size_t>(s.index)], saved_types_[i])));
  }
  for (int p : params_) node->params.push_back(keep(forward.params[static_cast<size_t>(p)].data()));
  for (int c : consts_) node->consts.push_back(forward.consts[static_cast<size_t>(c)]);
  for (int g : gradients_)  // -1: the only input
    node->next.push_back(autograd::gradient_edge(g < 0 ? x : forward.params[static_cast<size_t>(g)].data()));
  autograd::set_grad_fn(out, std::move(node));
}

int CompiledTraining::try_run(const Tensor& x, Tensor& out) const {
  thread_local std::vector<std::shared_ptr<rt::Storage>> outputs;
  const int failed = forward.try_run(x, outputs);
  if (failed >= 0) return failed;
  out = detail::tensor_over(outputs[0], forward.executable().graph().outputs()[0]->type);
  if (backward) backward->attach(out, x, forward.trace(), outputs);
  outputs.clear();
  return -1;
}

CompiledTraining compile_training(const TrainingTrace& t, const codegen::CompileOptions& given) {
  if (!t.backward) return {compile(t.trace, given), nullptr};
  codegen::CompileOptions options = given;
  options.training = true;  // an optimizer changes the parameters between calls
  ir::BackwardSplit split = ir::split_backward(*t.trace.graph, 1, 1);
  for (const auto& s : split.saved)  // x is input 0; the generator's state is never differentiated through
    if (s.from == ir::BackwardSplit::Saved::From::kForwardInput && s.index != 0)
      throw Error("compile_training", "the backward reads forward input " + std::to_string(s.index) +
                                          " (only the block's input is kept for it)");
  Trace forward = t.trace;
  forward.graph = std::move(split.forward);
  auto backward = std::make_shared<const CompiledBackward>(t, std::move(split), options);
  return {compile(forward, options), std::move(backward)};
}

}  // namespace bj
