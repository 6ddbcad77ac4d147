// SGD and Adam: updates written with in-place Tensor ops under no-grad.
#include "frontend/optim.h"

#include <cmath>

#include "frontend/autograd.h"
#include "frontend/creation.h"
#include "frontend/ops.h"

namespace bj::optim {

Optimizer::Optimizer(std::vector<nn::Parameter> params, const char* name) : params_(std::move(params)) {
  if (params_.empty()) throw ValueError(name, "was given no parameters to optimize");
  // A parameter given twice would be updated twice per step (and its state kept twice).
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (params_[i].same(params_[j]))
        throw ValueError(name, "was given parameter '" + params_[i].name() + "' twice (at " + std::to_string(j) + " and " +
                                   std::to_string(i) + "); pass each parameter once, e.g. net.parameters()");
}

void Optimizer::zero_grad() {
  for (const nn::Parameter& p : params_)
    if (p.initialized()) p.data().zero_grad();
}

SGD::SGD(std::vector<nn::Parameter> params, SGDOptions options)
    : Optimizer(std::move(params), "SGD"), o_(options), velocity_(params_.size()) {
  if (o_.lr <= 0) throw ValueError("SGD", "lr must be positive");
}

void SGD::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].initialized()) continue;
    Tensor w = params_[i].data(), g = w.grad();
    if (!g.defined()) continue;
    if (o_.weight_decay != 0) g = g + o_.weight_decay * w;
    if (o_.momentum != 0) {
      velocity_[i] = velocity_[i].defined() ? velocity_[i] * o_.momentum + g : g.clone();
      g = velocity_[i];
    }
    w -= o_.lr * g;
  }
}

Adam::Adam(std::vector<nn::Parameter> params, AdamOptions options)
    : Optimizer(std::move(params), "Adam"), o_(options), m_(params_.size()), v_(params_.size()) {
  if (o_.lr <= 0) throw ValueError("Adam", "lr must be positive");
}

void Adam::step() {
  NoGradGuard no_grad;
  ++t_;
  const double c1 = 1 - std::pow(o_.beta1, double(t_)), c2 = 1 - std::pow(o_.beta2, double(t_));
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].initialized()) continue;
    Tensor w = params_[i].data(), g = w.grad();
    if (!g.defined()) continue;
    if (o_.weight_decay != 0) g = g + o_.weight_decay * w;
    if (!m_[i].defined()) {
      m_[i] = zeros_like(w);
      v_[i] = zeros_like(w);
    }
    m_[i] = m_[i] * o_.beta1 + g * (1 - o_.beta1);
    v_[i] = v_[i] * o_.beta2 + g * g * (1 - o_.beta2);
    w -= (m_[i] / c1) * o_.lr / (sqrt(v_[i] / c2) + o_.eps);
  }
}

}  // namespace bj::optim
