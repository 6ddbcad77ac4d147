// A synthetic classification task and a full-batch training loop, shared by
// examples/train_mlp, `blockjit train` and the tests.
#pragma once

#include <functional>
#include <string>

#include "frontend/blockjit.h"

namespace bj::examples {

/// Points uniform in [-1, 1]^features labelled by a random linear teacher
/// (argmax of x·T): separable by construction.
struct ClassificationTask {
  Tensor x;  ///< f32[n, features]
  Tensor y;  ///< i64[n]
  int64_t classes;
};
ClassificationTask make_classification_task(int64_t n, int64_t features, int64_t classes, uint64_t seed);

struct TrainOptions {
  int steps = 100;
  std::string optimizer = "sgd";  ///< "sgd" (momentum 0.9) or "adam"
  double lr = 0.1;
  int log_every = 10;  ///< calls on_log every this many steps (and at the last)
  /// How steps run: "eager", "hybridize" (the net hybridized: compiled forward and backward,
  /// eager loss and optimizer) or "step" (nn::TrainStep: the whole step compiled).
  std::string mode = "eager";
};

struct TrainResult {
  double first_loss = 0, final_loss = 0;
  double accuracy = 0;  ///< on the training set, after the last step
  double seconds = 0;   ///< in the steps (compiling included)
  int64_t compiled_steps = 0;  ///< steps whose forward and backward ran compiled code
};

/// Trains `net` with cross-entropy on `task`. ValueError if the optimizer is
/// unknown or the loss stops being finite (naming the step and the value,
/// checked before that step's update); ShapeError if the net's output
/// is not [n, classes].
TrainResult train_classifier(nn::Block& net, const ClassificationTask& task, const TrainOptions& options,
                             const std::function<void(int step, double loss)>& on_log = {});

/// Fraction of rows of `logits` whose largest entry is at the label.
double accuracy(const Tensor& logits, const Tensor& labels);

}  // namespace bj::examples
