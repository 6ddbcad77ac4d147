// Character-level language modelling: next-token training on windows of a
// token sequence (Adam, the cross-entropy of every position), the validation
// loss, and sampling text from a trained model. Shared by `blockjit train
// char-lm`, the tests and the benchmarks.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "frontend/blockjit.h"
#include "frontend/text.h"

namespace bj::examples {

struct LanguageModelOptions {
  int steps = 1500;
  int64_t batch = 32;
  int64_t length = 64;  ///< tokens per window (the model's context)
  double lr = 3e-3;     ///< Adam
  int eval_every = 100;  ///< validation loss every this many steps (and after the last)
  int eval_batches = 8;  ///< validation windows: eval_batches x batch, the same ones every time
  /// "eager", "hybridize" (compiled forward and backward) or "step" (nn::TrainStep).
  std::string mode = "eager";
  /// Compiled modes give eager's results bit for bit (HybridizeOptions::exact), so the curve is
  /// eager's exactly; otherwise it follows eager's within float rounding, which training amplifies.
  bool exact = false;
  uint64_t seed = 0;  ///< the training windows' order
};

struct LanguageModelResult {
  std::vector<double> losses;                     ///< training loss per step (nats per token)
  std::vector<std::pair<int, double>> validation;  ///< (step, validation loss)
  double seconds = 0;                             ///< in the steps (compiling included, validation not)
  double median_step_seconds = 0;                 ///< the median step (compiling is in a few steps only)
  int64_t compiled_steps = 0;                     ///< steps that ran compiled code (forward and backward)
};

/// The mean cross-entropy of next-token logits [batch, time, vocab] against targets [batch, time].
Tensor next_token_loss(const Tensor& logits, const Tensor& targets);

/// The mean next-token loss of `net` (eval mode, no gradients) over `batches` windows of `windows`.
double validation_loss(nn::Block& net, data::TextWindows& windows, int batches);

/// Trains `net` (ids i64 [batch, time] -> logits [batch, time, vocab]) on `train`, reporting the
/// validation loss on `valid`. on_progress(step, steps, loss) after every step; on_eval(step,
/// training loss, validation loss) at each evaluation. ValueError for a bad option or a loss
/// that stops being finite (naming the step).
LanguageModelResult train_language_model(nn::Block& net, std::span<const int64_t> train,
                                         std::span<const int64_t> valid, const LanguageModelOptions& options,
                                         const std::function<void(int, int, double)>& on_progress = {},
                                         const std::function<void(int, double, double)>& on_eval = {});

/// `count` tokens sampled after `prompt` (eagerly, without gradients), each from the softmax of
/// the last position's logits divided by `temperature` over the last `context` tokens, with a
/// seeded generator: the same model and seed give the same text. ValueError for a temperature
/// not above 0, an empty prompt or a context below 1.
std::vector<int64_t> sample_tokens(nn::Block& net, std::vector<int64_t> prompt, int count, int64_t context,
                                   double temperature = 0.8, uint64_t seed = 0);

}  // namespace bj::examples
