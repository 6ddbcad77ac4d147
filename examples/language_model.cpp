// Character-level language modelling (see language_model.h).
#include "examples/language_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

namespace bj::examples {

namespace {
/// The validation windows: the same ones at every evaluation (and in every mode).
constexpr uint64_t kValidationSeed = 0x5eed;
}  // namespace

Tensor next_token_loss(const Tensor& logits, const Tensor& targets) {
  if (logits.dim() != 3 || targets.dim() != 2 || logits.shape()[0] != targets.shape()[0] ||
      logits.shape()[1] != targets.shape()[1])
    throw ShapeError("next_token_loss", fmt::format("expects logits [batch, time, vocab] and targets [batch, time], "
                                                    "got {} and {}",
                                                    logits.type().str(), targets.type().str()));
  const int64_t rows = logits.shape()[0] * logits.shape()[1];
  return nn::cross_entropy(logits.reshape({rows, logits.shape()[2]}), targets.reshape({rows}));
}

double validation_loss(nn::Block& net, data::TextWindows& windows, int batches) {
  if (batches < 1) throw ValueError("validation_loss", fmt::format("batches must be at least 1, got {}", batches));
  const bool was_training = net.is_training();
  net.eval();
  NoGradGuard no_grad;
  double sum = 0;
  for (int i = 0; i < batches; ++i) {
    const data::TextBatch b = windows.next();
    sum += next_token_loss(net(b.x), b.y).item();
  }
  net.train(was_training);
  return sum / batches;
}

LanguageModelResult train_language_model(nn::Block& net, std::span<const int64_t> train,
                                         std::span<const int64_t> valid, const LanguageModelOptions& o,
                                         const std::function<void(int, int, double)>& on_progress,
                                         const std::function<void(int, double, double)>& on_eval) {
  if (o.mode != "eager" && o.mode != "hybridize" && o.mode != "step")
    throw ValueError("train", "unknown mode '" + o.mode + "' (expected eager, hybridize or step)");
  if (o.steps < 1 || o.eval_every < 1 || o.eval_batches < 1)
    throw ValueError("train", fmt::format("steps, eval_every and eval_batches must be at least 1, got {}, {} and {}",
                                          o.steps, o.eval_every, o.eval_batches));
  if (!(o.lr > 0) || !std::isfinite(o.lr)) throw ValueError("train", fmt::format("the learning rate must be a positive number, got {}", o.lr));
  data::TextWindows windows({train.begin(), train.end()}, {.batch = o.batch, .length = o.length, .seed = o.seed});
  const std::vector<int64_t> valid_tokens(valid.begin(), valid.end());
  auto validate = [&] {
    data::TextWindows w(valid_tokens, {.batch = o.batch, .length = o.length, .seed = kValidationSeed});
    return validation_loss(net, w, o.eval_batches);
  };
  {  // completes deferred shapes before the optimizer sees the parameters
    NoGradGuard no_grad;
    data::TextWindows probe(valid_tokens, {.batch = 1, .length = o.length, .seed = kValidationSeed});
    const data::TextBatch b = probe.next();
    next_token_loss(net.call_eager(b.x), b.y);
  }
  optim::Adam opt(net.parameters(), {.lr = o.lr});
  const nn::HybridizeOptions compiled{.exact = o.exact};
  if (o.mode == "hybridize") net.hybridize(compiled);
  nn::TrainStep whole(net, next_token_loss, opt, compiled);
  LanguageModelResult r;
  std::vector<double> step_seconds;
  for (int step = 1; step <= o.steps; ++step) {
    const data::TextBatch b = windows.next();
    const auto t0 = std::chrono::steady_clock::now();
    Tensor loss;
    if (o.mode == "step") {
      const int64_t before = whole.stats().compiled_hits;
      loss = whole(b.x, b.y);
      r.compiled_steps += whole.stats().compiled_hits - before;
    } else {
      opt.zero_grad();
      const int64_t before = o.mode == "hybridize" ? net.stats().compiled_hits : 0;
      loss = next_token_loss(net(b.x), b.y);
      if (o.mode == "hybridize") r.compiled_steps += net.stats().compiled_hits - before;
    }
    const double l = loss.item();
    if (!std::isfinite(l))
      throw ValueError("train", fmt::format("the loss is {} at step {} (Adam, lr {}): training diverged; try a smaller "
                                            "learning rate", l, step, o.lr));
    if (o.mode != "step") {
      loss.backward();
      opt.step();
    }
    step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    r.seconds += step_seconds.back();
    r.losses.push_back(l);
    if (on_progress) on_progress(step, o.steps, l);
    if (step % o.eval_every == 0 || step == o.steps) {
      const double v = validate();
      r.validation.emplace_back(step, v);
      if (on_eval) on_eval(step, l, v);
    }
  }
  std::nth_element(step_seconds.begin(), step_seconds.begin() + static_cast<std::ptrdiff_t>(step_seconds.size() / 2),
                   step_seconds.end());
  r.median_step_seconds = step_seconds[step_seconds.size() / 2];
  if (o.mode == "hybridize") net.hybridize(false);
  return r;
}

std::vector<int64_t> sample_tokens(nn::Block& net, std::vector<int64_t> tokens, int count, int64_t context,
                                   double temperature, uint64_t seed) {
  if (!(temperature > 0) || !std::isfinite(temperature))
    throw ValueError("sample", fmt::format("the temperature must be a positive number, got {}", temperature));
  if (tokens.empty()) throw ValueError("sample", "the prompt is empty: give at least one token");
  if (context < 1) throw ValueError("sample", fmt::format("the context must be at least 1 token, got {}", context));
  const bool was_training = net.is_training();
  net.eval();
  NoGradGuard no_grad;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0, 1);
  const size_t prompt = tokens.size();
  std::vector<double> p;
  for (int i = 0; i < count; ++i) {
    const int64_t n = std::min<int64_t>(context, static_cast<int64_t>(tokens.size()));
    const Tensor x = tensor(std::vector<int64_t>(tokens.end() - n, tokens.end()), {1, n});
    const Tensor logits = net.call_eager(x);  // eagerly: each length would be another compiled key
    const int64_t vocab = logits.shape().back();
    const float* last = logits.data<float>() + (n - 1) * vocab;
    p.assign(static_cast<size_t>(vocab), 0.0);
    double top = -INFINITY, sum = 0;
    for (int64_t v = 0; v < vocab; ++v) top = std::max(top, static_cast<double>(last[v]));
    if (!std::isfinite(top))
      throw ValueError("sample", fmt::format("the model's logits after {} tokens are not finite", tokens.size()));
    for (int64_t v = 0; v < vocab; ++v) sum += p[v] = std::exp((last[v] - top) / temperature);
    double u = uniform(rng) * sum;
    int64_t pick = vocab - 1;
    for (int64_t v = 0; v < vocab; ++v)
      if ((u -= p[v]) < 0) {
        pick = v;
        break;
      }
    tokens.push_back(pick);
  }
  net.train(was_training);
  return {tokens.begin() + static_cast<std::ptrdiff_t>(prompt), tokens.end()};
}

}  // namespace bj::examples
