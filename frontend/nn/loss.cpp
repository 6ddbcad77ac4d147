// Losses: mse and l1 written with Tensor ops, cross-entropy one op of the table after its checks
// (all differentiated and traced like any code).
#include "frontend/nn/loss.h"


#include "frontend/creation.h"
#include "frontend/nn/ids.h"
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
  const int64_t classes = logits.shape()[1];
  if (const auto bad = ids_outside(targets, classes))
    throw IndexError("cross_entropy", "target class " + std::to_string(bad->first < 0 ? bad->first : bad->second) +
                                          " is outside [0, " + std::to_string(classes) + ") for logits " +
                                          logits.type().str());
  return cross_entropy_unchecked(logits, targets);
}

}  // namespace bj::nn
