// A synthetic classification task and a full-batch training loop, shared by
// examples/train_mlp, `blockjit train` and the tests.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "frontend/blockjit.h"
#include "frontend/data.h"

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
  bool exact = false;  ///< compiled modes give eager's results bit for bit (HybridizeOptions::exact)
};

struct TrainResult {
  double first_loss = 0, final_loss = 0;
  double accuracy = 0;  ///< on the training set, after the last step
  double seconds = 0;   ///< in the steps (compiling included)
  double median_step_seconds = 0;  ///< the median step (steady state: tracing and compiling are in a few steps)
  int64_t compiled_steps = 0;  ///< steps whose forward and backward ran compiled code
  double compile_ms = 0;       ///< of `seconds`, the time spent optimizing and in LLVM
};

/// Trains `net` with cross-entropy on `task`. ValueError if the optimizer is
/// unknown or the loss stops being finite (naming the step and the value,
/// checked before that step's update); ShapeError if the net's output
/// is not [n, classes].
TrainResult train_classifier(nn::Block& net, const ClassificationTask& task, const TrainOptions& options,
                             const std::function<void(int step, double loss)>& on_log = {});

/// Training on a data set in epochs (`blockjit train lenet --data fashion-mnist`).
struct EpochOptions {
  int epochs = 10;
  int64_t batch = 256;
  double lr = 0.9;                ///< plain SGD, as the book trains LeNet
  std::string mode = "eager";     ///< "eager", "hybridize" or "step", as TrainOptions::mode
  bool exact = false;             ///< as TrainOptions::exact
  std::optional<int64_t> resize;  ///< images resized to resize x resize (96 for resnet18)
  uint64_t seed = 0;              ///< shuffling
};

struct EpochResult {
  int epoch = 0;
  double loss = 0;            ///< mean training loss over the epoch's batches
  double train_accuracy = 0;  ///< on the epoch's batches, as they were trained
  double test_accuracy = 0;   ///< on the test set, in eval mode, after the epoch
  double seconds = 0;         ///< training (not testing) time
  double examples_per_second = 0;
  int64_t compiled_steps = 0;
};

/// Trains `net` with cross-entropy and SGD on `train`, testing on `test` after each epoch.
/// on_progress(batch, batches, running loss) is called after every batch (for a progress
/// bar), on_epoch after each epoch. ValueError if the loss stops being finite (naming the
/// epoch, batch and value).
std::vector<EpochResult> train_epochs(nn::Block& net, const data::Dataset& train, const data::Dataset& test,
                                      const EpochOptions& options,
                                      const std::function<void(int64_t, int64_t, double)>& on_progress = {},
                                      const std::function<void(const EpochResult&)>& on_epoch = {});

/// Accuracy of `net` (in eval mode, without gradients) on a data set, in batches of `batch`.
double evaluate(nn::Block& net, const data::Dataset& set, int64_t batch = 1024,
                std::optional<int64_t> resize = std::nullopt);

/// Fraction of rows of `logits` whose largest entry is at the label.
double accuracy(const Tensor& logits, const Tensor& labels);

}  // namespace bj::examples
