// bj::nn::TrainStep: a whole training step (forward, loss, backward and the
// optimizer's update) as one compiled function, for the fastest loops.
//
//   bj::optim::SGD opt(net.parameters(), {.lr = 0.1, .momentum = 0.9});
//   bj::nn::TrainStep step(net, bj::nn::cross_entropy, opt);
//   for (...) { bj::Tensor loss = step(x, labels); }
//
// A step is what `opt.zero_grad(); loss_fn(net(x), target).backward();
// opt.step();` does eagerly, with the same results (gradients are left in
// grad() as backward would leave them). The optimizer's first step runs
// eagerly (it creates the optimizer's state); the next step of an input type
// and mode runs eagerly while the tracer records forward, loss, backward and
// the optimizer's update (Optimizer::step_ops) as one graph; later steps run
// it compiled, and the new weights and optimizer state (velocities, moments)
// are written in place only once every guard held. The optimizer's
// hyperparameters are inputs of the graph (Adam's bias corrections change
// every step). A step whose data takes a
// path no variant recorded runs eagerly and is traced as one more variant, as
// hybridize() does for calls. One TrainStep runs one step at a time (call it
// from one thread, as an optimizer's step() is).
#pragma once

#include <functional>
#include <memory>

#include "frontend/nn/block.h"
#include "frontend/optim.h"

namespace bj::nn {

class TrainStep {
 public:
  using Loss = std::function<Tensor(const Tensor& output, const Tensor& target)>;
  /// `net`, `loss` and `optimizer` are used by reference and must outlive the step.
  TrainStep(Block& net, Loss loss, optim::Optimizer& optimizer, HybridizeOptions options = {});
  ~TrainStep();
  TrainStep(const TrainStep&) = delete;
  TrainStep& operator=(const TrainStep&) = delete;

  /// One step on a batch; returns the loss (a one-element tensor, detached). AutogradError if
  /// the loss has more than one element; the net's and the loss's own errors as in eager mode.
  Tensor operator()(const Tensor& x, const Tensor& target);

  HybridStats stats() const;
  /// The compiled whole-step graphs (optimized), one per variant, as IR text.
  std::string graphs() const;
  /// The traced whole-step graphs (before optimization), one per variant.
  std::vector<std::shared_ptr<const ir::Graph>> traced_graphs() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace bj::nn
