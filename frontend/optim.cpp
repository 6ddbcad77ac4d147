// SGD and Adam. Each step is one multi-tensor loop over every parameter with
// a gradient (runtime/optimizer.h), in place; its rounding is that of these
// formulas written as Tensor ops (tests/test_training.cpp checks bit for bit):
//   SGD:  d = g + wd * w;  v = momentum * v + d (v = d at first);  w -= lr * v
//   Adam: d = g + wd * w;  m = m * b1 + d * (1 - b1);  v = v * b2 + d * d * (1 - b2);
//         w -= (m / c1) * lr / (sqrt(v / c2) + eps),  c = 1 - b^t (bias corrections)
#include "frontend/optim.h"

#include <cmath>

#include "frontend/autograd.h"
#include "frontend/creation.h"
#include "frontend/ops.h"
#include "runtime/allocator.h"
#include "runtime/optimizer.h"

namespace bj::optim {

namespace {
/// The storage of an f32 tensor (no host read: nothing is traced or guarded).
float* f32(const Tensor& t) { return static_cast<float*>(t.raw_data()); }
}  // namespace

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
  std::vector<rt::SgdSlot> slots;
  std::vector<Tensor> written;  // weights and velocities, whose versions move
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].initialized()) continue;
    const Tensor& w = params_[i].data();
    Tensor g = w.grad();
    if (!g.defined()) continue;
    const bool first = o_.momentum != 0 && !velocity_[i].defined();
    if (first) velocity_[i] = zeros_like(w);
    slots.push_back({f32(w), f32(g), o_.momentum != 0 ? f32(velocity_[i]) : nullptr, first, w.numel()});
    written.push_back(w);
  }
  rt::sgd_step(slots, {static_cast<float>(o_.lr), static_cast<float>(o_.momentum), static_cast<float>(o_.weight_decay)});
  for (const Tensor& w : written) w.impl()->storage->bump_version();
}

Adam::Adam(std::vector<nn::Parameter> params, AdamOptions options)
    : Optimizer(std::move(params), "Adam"), o_(options), m_(params_.size()), v_(params_.size()) {
  if (o_.lr <= 0) throw ValueError("Adam", "lr must be positive");
}

void Adam::step() {
  ++t_;
  std::vector<rt::AdamSlot> slots;
  std::vector<Tensor> written;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].initialized()) continue;
    const Tensor& w = params_[i].data();
    Tensor g = w.grad();
    if (!g.defined()) continue;
    if (!m_[i].defined()) {
      m_[i] = zeros_like(w);
      v_[i] = zeros_like(w);
    }
    slots.push_back({f32(w), f32(g), f32(m_[i]), f32(v_[i]), w.numel()});
    written.push_back(w);
  }
  const double c1 = 1 - std::pow(o_.beta1, double(t_)), c2 = 1 - std::pow(o_.beta2, double(t_));
  auto f = [](double v) { return static_cast<float>(v); };
  rt::adam_step(slots, {f(o_.lr), f(o_.beta1), f(1 - o_.beta1), f(o_.beta2), f(1 - o_.beta2), f(c1), f(c2), f(o_.eps),
                        f(o_.weight_decay)});
  for (const Tensor& w : written) w.impl()->storage->bump_version();
}

}  // namespace bj::optim
