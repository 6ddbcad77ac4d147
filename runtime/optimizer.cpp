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

// The loops, with their options hoisted out and no aliasing, so that they vectorize. Each is built
// three times, for AVX-512, AVX2 and the baseline, and the widest the CPU has is picked once (by
// hand: ifunc-based target_clones run before sanitizer runtimes start and crash them).

[[gnu::always_inline]] inline void sgd_body(float* __restrict w, const float* __restrict g, float* __restrict v,
                                            int64_t n, bool first, const SgdConstants& c) {
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

[[gnu::always_inline]] inline void adam_body(float* __restrict w, const float* __restrict g, float* __restrict m,
                                             float* __restrict v, int64_t n, const AdamConstants& c) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = c.weight_decay != 0 ? g[i] + c.weight_decay * w[i] : g[i];
    m[i] = m[i] * c.beta1 + d * c.one_minus_beta1;
    v[i] = v[i] * c.beta2 + d * d * c.one_minus_beta2;
    w[i] = w[i] - m[i] / c.correction1 * c.lr / (std::sqrt(v[i] / c.correction2) + c.eps);
  }
}

using SgdRange = void (*)(float*, const float*, float*, int64_t, bool, const SgdConstants&);
using AdamRange = void (*)(float*, const float*, float*, float*, int64_t, const AdamConstants&);

#define BJ_OPTIMIZER_LOOPS(suffix, target)                                                                   \
  target void sgd_##suffix(float* w, const float* g, float* v, int64_t n, bool first, const SgdConstants& c) { \
    sgd_body(w, g, v, n, first, c);                                                                          \
  }                                                                                                          \
  target void adam_##suffix(float* w, const float* g, float* m, float* v, int64_t n, const AdamConstants& c) { \
    adam_body(w, g, m, v, n, c);                                                                             \
  }
BJ_OPTIMIZER_LOOPS(avx512, [[gnu::target("avx512f")]])
BJ_OPTIMIZER_LOOPS(avx2, [[gnu::target("avx2")]])
BJ_OPTIMIZER_LOOPS(baseline, )
#undef BJ_OPTIMIZER_LOOPS

int widest() {
  static const int level = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
  return level;
}
SgdRange sgd_range() {
  const SgdRange loops[] = {sgd_baseline, sgd_avx2, sgd_avx512};
  return loops[widest()];
}
AdamRange adam_range() {
  const AdamRange loops[] = {adam_baseline, adam_avx2, adam_avx512};
  return loops[widest()];
}

}  // namespace

void sgd_step(std::span<const SgdSlot> slots, const SgdConstants& c) {
  const SgdRange range = sgd_range();
  for (const SgdSlot& s : slots)
    parallel_range(s.n, [&](int64_t begin, int64_t end) {
      range(s.weight + begin, s.grad + begin, s.velocity ? s.velocity + begin : nullptr, end - begin, s.first, c);
    });
}

void adam_step(std::span<const AdamSlot> slots, const AdamConstants& c) {
  const AdamRange range = adam_range();
  for (const AdamSlot& s : slots)
    parallel_range(s.n, [&](int64_t begin, int64_t end) {
      range(s.weight + begin, s.grad + begin, s.m + begin, s.v + begin, end - begin, c);
    });
}

}  // namespace bj::rt
