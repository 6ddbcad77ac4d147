// SGD and Adam. Each step is one multi-tensor loop over every parameter with
// a gradient (runtime/optimizer.h), in place; its rounding is that of these
// formulas written as Tensor ops (tests/test_training.cpp checks bit for bit):
//   SGD:  d = g + wd * w;  v = momentum * v + d (v = d at first);  w -= lr * v
//   Adam: d = g + wd * w;  m = m * b1 + d * (1 - b1);  v = v * b2 + d * d * (1 - b2);
//         w -= (m / c1) * lr / (sqrt(v / c2) + eps),  c = 1 - b^t (bias corrections)
// step_ops() writes exactly these formulas as in-place Tensor ops, with the
// constants as one-element tensors, for nn::TrainStep to trace and compile.
#include "frontend/optim.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <map>

#include "frontend/autograd.h"
#include "frontend/creation.h"
#include "frontend/ops.h"
#include "frontend/serialize.h"
#include "runtime/allocator.h"
#include "runtime/optimizer.h"

namespace bj::optim {

namespace {
/// The storage of an f32 tensor (no host read: nothing is traced or guarded).
float* f32(const Tensor& t) { return static_cast<float*>(t.raw_data()); }
}  // namespace

Optimizer::Optimizer(std::vector<nn::Parameter> params, const char* name) : params_(std::move(params)), name_(name) {
  if (params_.empty()) throw ValueError(name, "was given no parameters to optimize");
  // A parameter given twice would be updated twice per step (and its state kept twice).
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (params_[i].same(params_[j]))
        throw ValueError(name, "was given parameter '" + params_[i].name() + "' twice (at " + std::to_string(j) + " and " +
                                   std::to_string(i) + "); pass each parameter once, e.g. net.parameters()");
}

void Optimizer::step_ops(std::span<const Tensor>) {
  throw TraceError(name_, "has no update written as Tensor ops (step_ops), so a whole step cannot compile it");
}

void Optimizer::zero_grad() {
  for (const nn::Parameter& p : params_)
    if (p.initialized()) p.data().zero_grad();
}

SGD::SGD(std::vector<nn::Parameter> params, SGDOptions options)
    : Optimizer(std::move(params), "SGD"), o_(options), velocity_(params_.size()) {
  if (o_.lr <= 0) throw ValueError("SGD", "lr must be positive");
}

namespace {
/// For step_ops(): TraceError unless every parameter with a gradient has state.
void check_state(const std::vector<nn::Parameter>& params, const std::vector<Tensor>& state, const char* name) {
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].initialized() && params[i].data().grad().defined() && !state[i].defined())
      throw TraceError(name, "parameter '" + params[i].name() + "' has a gradient but no optimizer state yet; the "
                             "first step() creates it");
}
bool has_state(const std::vector<nn::Parameter>& params, const std::vector<Tensor>& state) {
  bool any = false;
  for (size_t i = 0; i < params.size(); ++i) {
    any |= state[i].defined();
    if (params[i].initialized() && params[i].data().grad().defined() && !state[i].defined()) return false;
  }
  return any;
}
std::vector<std::pair<std::string, Tensor>> named(const char* what, const std::vector<Tensor>& state) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < state.size(); ++i)
    if (state[i].defined()) out.emplace_back(std::string(what) + "." + std::to_string(i), state[i]);
  return out;
}
}  // namespace

void Optimizer::save_state(const std::string& path) const {
  NamedTensors out = state();
  out.emplace_back("steps", tensor(std::vector<int64_t>{steps()}, {1}));
  save(path, out, {{"optimizer", name_}, {"parameters", std::to_string(params_.size())}});
}

void Optimizer::load_state(const std::string& path) {
  const SafetensorsHeader header = load_header(path);
  auto meta = [&](const char* key) {
    auto it = header.metadata.find(key);
    return it == header.metadata.end() ? std::string("(none)") : it->second;
  };
  if (meta("optimizer") != name_ || meta("parameters") != std::to_string(params_.size()))
    throw FileError(path, fmt::format("holds the state of {} over {} parameter(s); this is {} over {}", meta("optimizer"),
                                      meta("parameters"), name_, params_.size()));
  const NamedTensors file = load(path);
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [n, t] : file) by_name[n] = &t;
  // Check every tensor first: a failed load changes nothing.
  std::vector<std::pair<Tensor*, const Tensor*>> writes;
  std::vector<Tensor*> resets;  // no state for that parameter when saved: none after the load either
  size_t expected = 1;
  for (auto& [kind, list] : slots())
    for (size_t i = 0; i < list->size(); ++i) {
      auto it = by_name.find(kind + "." + std::to_string(i));
      if (it == by_name.end()) {
        resets.push_back(&(*list)[i]);
        continue;
      }
      ++expected;
      const Tensor& t = *it->second;
      const bool fits = t.dtype() == DType::kF32 && params_[i].shape_known() && t.shape() == params_[i].shape() &&
                        (!(*list)[i].defined() || (*list)[i].shape() == t.shape());
      if (!fits)
        throw FileError(path, fmt::format("'{}.{}' is {}, parameter {} is {} (nothing was loaded)", kind, i, t.type().str(), i,
                                          Type{DType::kF32, params_[i].shape()}.str()));
      writes.emplace_back(&(*list)[i], &t);
    }
  auto steps_it = by_name.find("steps");
  if (steps_it == by_name.end() || !(steps_it->second->type() == Type{DType::kI64, {1}}))
    throw FileError(path, "needs 'steps', one i64 (nothing was loaded)");
  if (file.size() != expected) throw FileError(path, fmt::format("holds {} tensors this optimizer does not know (nothing was loaded)", file.size() - expected));
  const int64_t saved_steps = static_cast<const int64_t*>(steps_it->second->raw_data())[0];
  if (saved_steps < 0) throw FileError(path, fmt::format("'steps' is {} (nothing was loaded)", saved_steps));
  for (Tensor* slot : resets) *slot = Tensor();
  for (auto& [slot, t] : writes) {
    if (slot->defined()) {  // in place: a compiled TrainStep bound to it sees the new values
      std::memcpy(slot->raw_data(), t->raw_data(), t->type().bytes());
      slot->impl()->storage->bump_version();
    } else {
      *slot = t->clone();
    }
  }
  set_steps(saved_steps);
}

std::vector<float> SGD::hyperparameters() const {
  return {static_cast<float>(o_.lr), static_cast<float>(o_.momentum), static_cast<float>(o_.weight_decay)};
}

bool SGD::ready() const { return o_.momentum == 0 || has_state(params_, velocity_); }

std::vector<std::pair<std::string, Tensor>> SGD::state() const { return named("velocity", velocity_); }

void SGD::step_ops(std::span<const Tensor> h) {  // lr, momentum, weight decay
  if (o_.momentum != 0) check_state(params_, velocity_, "SGD");
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].initialized()) continue;
    Tensor w = params_[i].data();
    Tensor d = w.grad();
    if (!d.defined()) continue;
    if (o_.weight_decay != 0) d = d + h[2] * w;
    if (o_.momentum != 0) {
      Tensor& v = velocity_[i];
      v *= h[1];
      v += d;
      d = v;
    }
    w -= h[0] * d;
  }
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
  const std::vector<float> h = hyperparameters();
  rt::sgd_step(slots, {h[0], h[1], h[2]});
  for (const Tensor& w : written) w.impl()->storage->bump_version();
}

Adam::Adam(std::vector<nn::Parameter> params, AdamOptions options)
    : Optimizer(std::move(params), "Adam"), o_(options), m_(params_.size()), v_(params_.size()) {
  if (o_.lr <= 0) throw ValueError("Adam", "lr must be positive");
}

std::vector<float> Adam::hyperparameters() const {
  const double t = static_cast<double>(t_ + 1);
  const double c1 = 1 - std::pow(o_.beta1, t), c2 = 1 - std::pow(o_.beta2, t);
  auto f = [](double v) { return static_cast<float>(v); };
  return {f(o_.lr), f(o_.beta1), f(1 - o_.beta1), f(o_.beta2), f(1 - o_.beta2), f(c1), f(c2), f(o_.eps), f(o_.weight_decay)};
}

bool Adam::ready() const { return has_state(params_, m_); }

std::vector<std::pair<std::string, Tensor>> Adam::state() const {
  auto out = named("m", m_);
  for (auto& v : named("v", v_)) out.push_back(std::move(v));
  return out;
}

void Adam::step_ops(std::span<const Tensor> h) {  // lr, b1, 1 - b1, b2, 1 - b2, c1, c2, eps, weight decay
  check_state(params_, m_, "Adam");
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].initialized()) continue;
    Tensor w = params_[i].data();
    Tensor d = w.grad();
    if (!d.defined()) continue;
    if (o_.weight_decay != 0) d = d + h[8] * w;
    m_[i] *= h[1];
    m_[i] += d * h[2];
    v_[i] *= h[3];
    v_[i] += d * d * h[4];
    w -= m_[i] / h[5] * h[0] / ((v_[i] / h[6]).sqrt() + h[7]);
  }
}

void Adam::step() {
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
  const std::vector<float> h = hyperparameters();
  rt::adam_step(slots, {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]});
  stepped();
  for (const Tensor& w : written) w.impl()->storage->bump_version();
}

}  // namespace bj::optim
