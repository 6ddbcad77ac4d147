// Optimizers over a block's parameters: SGD (momentum, weight decay) and
// Adam. Parameters whose shapes are still deferred are picked up once the
// first call has initialized them.
//   bj::optim::SGD opt(net.parameters(), {.lr = 0.1, .momentum = 0.9});
//   loss.backward(); opt.step(); opt.zero_grad();
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "frontend/nn/parameter.h"

namespace bj::optim {

class Optimizer {
 public:
  /// ValueError if `params` is empty.
  Optimizer(std::vector<nn::Parameter> params, const char* name);
  virtual ~Optimizer() = default;
  /// Updates every parameter that has a gradient (under no-grad).
  virtual void step() = 0;
  /// Forgets every parameter's gradient.
  void zero_grad();
  const std::vector<nn::Parameter>& parameters() const { return params_; }
  const std::string& name() const { return name_; }

  // ---- For nn::TrainStep, which compiles the update into its step. ----
  /// The constants the next step() would use (learning rate, ...), in f32 as step() rounds them.
  virtual std::vector<float> hyperparameters() const { return {}; }
  /// What step() computes, as Tensor ops writing the weights and the state in place (so a trace
  /// records it), from `hyper` (hyperparameters() as one-element tensors) and the gradients in
  /// grad(). Rounds as step() does. Does not count the step: stepped() does. TraceError if a
  /// parameter with a gradient has no state yet (see ready()). An optimizer that does not
  /// override it raises TraceError, and TrainStep then runs its steps eagerly.
  virtual void step_ops(std::span<const Tensor> hyper);
  /// Counts a step that step_ops() (traced or compiled) did.
  virtual void stepped() {}
  /// True if every parameter with a gradient has its state (velocities, moments), which the
  /// first step() creates: only then does step_ops() compute what step() would.
  virtual bool ready() const { return true; }
  /// The state tensors, named ("velocity.0"), for a trace to bind.
  virtual std::vector<std::pair<std::string, Tensor>> state() const { return {}; }

  /// Writes the optimizer's state (SGD's velocities, Adam's moments and step count) to `path` as
  /// safetensors, so that training can resume: save the block's parameters beside it.
  void save_state(const std::string& path) const;
  /// Reads what save_state wrote, for an optimizer of the same kind over parameters of the same
  /// shapes. A FileError says what does not fit, and then nothing has changed. State the
  /// optimizer already has is overwritten in place (a compiled TrainStep sees it).
  void load_state(const std::string& path);

 protected:
  std::vector<nn::Parameter> params_;
  std::string name_;

 private:
  /// The step count saved with the state (Adam's t), and setting it back.
  virtual int64_t steps() const { return 0; }
  virtual void set_steps(int64_t) {}
  /// The state slots by kind ("velocity" -> one per parameter).
  virtual std::vector<std::pair<std::string, std::vector<Tensor>*>> slots() { return {}; }
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double weight_decay = 0;
};

/// w -= lr * v, with v = momentum * v + (g + weight_decay * w).
class SGD : public Optimizer {
 public:
  SGD(std::vector<nn::Parameter> params, SGDOptions options = {});
  void step() override;
  std::vector<float> hyperparameters() const override;
  void step_ops(std::span<const Tensor> hyper) override;
  bool ready() const override;
  std::vector<std::pair<std::string, Tensor>> state() const override;

 private:
  std::vector<std::pair<std::string, std::vector<Tensor>*>> slots() override { return {{"velocity", &velocity_}}; }
  SGDOptions o_;
  std::vector<Tensor> velocity_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
};

/// Adam (Kingma & Ba), with bias correction; weight decay added to the gradient.
class Adam : public Optimizer {
 public:
  Adam(std::vector<nn::Parameter> params, AdamOptions options = {});
  void step() override;
  std::vector<float> hyperparameters() const override;
  void step_ops(std::span<const Tensor> hyper) override;
  void stepped() override { ++t_; }
  bool ready() const override;
  std::vector<std::pair<std::string, Tensor>> state() const override;

 private:
  int64_t steps() const override { return t_; }
  void set_steps(int64_t t) override { t_ = t; }
  std::vector<std::pair<std::string, std::vector<Tensor>*>> slots() override { return {{"m", &m_}, {"v", &v_}}; }
  AdamOptions o_;
  int64_t t_ = 0;
  std::vector<Tensor> m_, v_;
};

}  // namespace bj::optim
