// Losses, written with Tensor ops (so they are differentiated and traced like any code).
#include "frontend/nn/loss.h"

#include "frontend/creation.h"
#include "frontend/ops.h"

namespace bj::nn {

namespace {
void same_shape(const char* op, const Tensor& pred, const Tensor& target) {
  if (!pred.defined() || !target.defined()) throw ValueError(op, "an input is undefined");
  if (!(pred.shape() == target.shape()))
    throw ShapeError(op, "prediction " + pred.type().str() + " and target " + target.type().str() + " differ in shape");
}
}  // namespace

Tensor mse_loss(const Tensor& pred, const Tensor& target) {
  same_shape("mse_loss", pred, target);
  Tensor d = pred - target;
  return mean(d * d);
}

Tensor l1_loss(const Tensor& pred, const Tensor& target) {
  same_shape("l1_loss", pred, target);
  return mean(abs(pred - target));
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets) {
  if (!logits.defined() || !targets.defined()) throw ValueError("cross_entropy", "an input is undefined");
  if (logits.dim() != 2 || targets.dim() != 1 || targets.shape()[0] != logits.shape()[0])
    throw ShapeError("cross_entropy", "expects logits [N, C] and targets [N], got " + logits.type().str() + " and " +
                                          targets.type().str());
  if (targets.dtype() != kI64)
    throw DTypeError("cross_entropy", "targets must be i64 class indices, got " + targets.type().str());
  const int64_t n = logits.shape()[0], classes = logits.shape()[1];
  // Compared as tensors: traced, these are guards that every valid batch passes (reading the
  // exact minimum and maximum would make each distinct pair another compiled path).
  if (n > 0 && (min(targets).item() < 0 || max(targets).item() >= static_cast<double>(classes))) {
    const int64_t lo = min(targets).item().to<int64_t>(), hi = max(targets).item().to<int64_t>();
    throw IndexError("cross_entropy", "target class " + std::to_string(lo < 0 ? lo : hi) + " is outside [0, " +
                                          std::to_string(classes) + ") for logits " + logits.type().str());
  }
  // -log softmax(logits)[i, target_i], picked with a one-hot mask.
  Tensor one_hot = cast(eq(reshape(targets, {n, 1}), arange(classes, kI64)), kF32);
  Tensor picked = sum(logits * one_hot, {1});
  return mean(logsumexp(logits, 1) - picked);
}

}  // namespace bj::nn
