// Multi-tensor optimizer steps: one pass over each parameter's elements that
// reads the weight, its gradient and its state once, where the same update
// written as Tensor ops makes a new tensor per op. Every multiply and add is
// rounded on its own, in the order optim.cpp's formulas give (this file is
// built without fused multiply-adds), so results equal those formulas bit for
// bit.
#include <cmath>

#include "runtime/kernel_impl.h"
#include "runtime/optimizer.h"

namespace bj::rt {

namespace {

// The loops, with their options hoisted out and no aliasing, so that they vectorize (built for
// the widest vectors the CPU has, chosen at load time).
#define BJ_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

BJ_VECTOR_CLONES
void sgd_range(float* __restrict w, const float* __restrict g, float* __restrict v, int64_t n, bool first,
               SgdConstants c) {
  if (!v) {
    if (c.weight_decay != 0)
      for (int64_t i = 0; i < n; ++i) w[i] = w[i] - c.lr * (g[i] + c.weight_decay * w[i]);
    else
      for (int64_t i = 0; i < n; ++i) w[i] = w[i] - c.lr * g[i];
  } else if (first) {
    for (int64_t i = 0; i < n; ++i) {
      v[i] = c.weight_decay != 0 ? g[i] + c.weight_decay * w[i] : g[i];
      w[i] = w[i] - c.lr * v[i];
    }
  } else if (c.weight_decay != 0) {
    for (int64_t i = 0; i < n; ++i) {
      v[i] = v[i] * c.momentum + (g[i] + c.weight_decay * w[i]);
      w[i] = w[i] - c.lr * v[i];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      v[i] = v[i] * c.momentum + g[i];
      w[i] = w[i] - c.lr * v[i];
    }
  }
}

BJ_VECTOR_CLONES
void adam_range(float* __restrict w, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
                AdamConstants c) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = c.weight_decay != 0 ? g[i] + c.weight_decay * w[i] : g[i];
    m[i] = m[i] * c.beta1 + d * c.one_minus_beta1;
    v[i] = v[i] * c.beta2 + d * d * c.one_minus_beta2;
    w[i] = w[i] - m[i] / c.correction1 * c.lr / (std::sqrt(v[i] / c.correction2) + c.eps);
  }
}

}  // namespace

void sgd_step(std::span<const SgdSlot> slots, const SgdConstants& c) {
  for (const SgdSlot& s : slots)
    parallel_range(s.n, [&](int64_t begin, int64_t end) {
      sgd_range(s.weight + begin, s.grad + begin, s.velocity ? s.velocity + begin : nullptr, end - begin, s.first, c);
    });
}

void adam_step(std::span<const AdamSlot> slots, const AdamConstants& c) {
  for (const AdamSlot& s : slots)
    parallel_range(s.n, [&](int64_t begin, int64_t end) {
      adam_range(s.weight + begin, s.grad + begin, s.m + begin, s.v + begin, end - begin, c);
    });
}

}  // namespace bj::rt
