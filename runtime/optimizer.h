// Multi-tensor optimizer steps (SGD with momentum, Adam): one loop over all
// parameters, in place, rounding as the Tensor-op formulas of
// frontend/optim.cpp do. Constants are f32, as a Tensor op would see them.
#pragma once

#include <cstdint>
#include <span>

namespace bj::rt {

struct SgdSlot {
  float* weight;
  const float* grad;
  float* velocity;  ///< null without momentum
  bool first;       ///< the velocity starts as the (decayed) gradient
  int64_t n;
};
struct SgdConstants {
  float lr, momentum, weight_decay;
};
/// d = g + wd * w; v = first ? d : v * momentum + d (with momentum); w = w - lr * (v or d).
void sgd_step(std::span<const SgdSlot> slots, const SgdConstants& c);

struct AdamSlot {
  float* weight;
  const float* grad;
  float *m, *v;
  int64_t n;
};
struct AdamConstants {
  float lr, beta1, one_minus_beta1, beta2, one_minus_beta2, correction1, correction2, eps, weight_decay;
};
/// d = g + wd * w; m = m * b1 + d * (1 - b1); v = v * b2 + d * d * (1 - b2);
/// w = w - m / c1 * lr / (sqrt(v / c2) + eps).
void adam_step(std::span<const AdamSlot> slots, const AdamConstants& c);

}  // namespace bj::rt
