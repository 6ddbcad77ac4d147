// Loss functions (as torch.nn.functional's): each returns a one-element tensor.
#pragma once

#include "frontend/tensor.h"

namespace bj::nn {

/// Mean of (pred - target)^2; the shapes must be equal.
Tensor mse_loss(const Tensor& pred, const Tensor& target);
/// Mean of |pred - target|; the shapes must be equal.
Tensor l1_loss(const Tensor& pred, const Tensor& target);
/// Softmax cross-entropy from logits [N, C] and integer class targets i64[N]
/// in [0, C), averaged over N; computed with log-sum-exp.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets);

}  // namespace bj::nn
