// Synthetic task and training loop (see training.h).
#include "examples/training.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <memory>

namespace bj::examples {

namespace {
int64_t argmax_row(const float* row, int64_t n) {
  int64_t best = 0;
  for (int64_t j = 1; j < n; ++j)
    if (row[j] > row[best]) best = j;
  return best;
}
}  // namespace

ClassificationTask make_classification_task(int64_t n, int64_t features, int64_t classes, uint64_t seed) {
  manual_seed(seed);
  Tensor x = uniform(-1, 1, {n, features});
  Tensor teacher = normal(0, 1, {features, classes});
  Tensor scores = matmul(x, teacher);
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = argmax_row(scores.data<float>() + i * classes, classes);
  return {x, tensor(labels, {n}), classes};
}

double accuracy(const Tensor& logits, const Tensor& labels) {
  const int64_t n = logits.shape()[0], c = logits.shape()[1];
  const float* p = logits.data<float>();
  const int64_t* y = labels.data<int64_t>();
  int64_t hit = 0;
  for (int64_t i = 0; i < n; ++i) hit += argmax_row(p + i * c, c) == y[i];
  return n ? double(hit) / double(n) : 0;
}

TrainResult train_classifier(nn::Block& net, const ClassificationTask& task, const TrainOptions& o,
                             const std::function<void(int, double)>& on_log) {
  Tensor probe = net(task.x);  // completes deferred shapes before the optimizer sees the parameters
  if (probe.dim() != 2 || probe.shape()[1] != task.classes)
    throw ShapeError("train", net.name() + " returns " + probe.type().str() + "; training needs [batch, " +
                                  std::to_string(task.classes) + "] logits");
  std::unique_ptr<optim::Optimizer> opt;
  if (o.optimizer == "sgd")
    opt = std::make_unique<optim::SGD>(net.parameters(), optim::SGDOptions{.lr = o.lr, .momentum = 0.9});
  else if (o.optimizer == "adam")
    opt = std::make_unique<optim::Adam>(net.parameters(), optim::AdamOptions{.lr = o.lr});
  else
    throw ValueError("train", "unknown optimizer '" + o.optimizer + "' (expected sgd or adam)");
  if (o.mode != "eager" && o.mode != "hybridize" && o.mode != "step")
    throw ValueError("train", "unknown mode '" + o.mode + "' (expected eager, hybridize or step)");
  const nn::HybridizeOptions compiled{.exact = o.exact};
  if (o.mode == "hybridize") net.hybridize(compiled);
  nn::TrainStep whole(net, nn::cross_entropy, *opt, compiled);
  TrainResult r;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<double> step_seconds;
  for (int step = 1; step <= o.steps; ++step) {
    const auto s0 = std::chrono::steady_clock::now();
    Tensor loss;
    if (o.mode == "step") {
      loss = whole(task.x, task.y);
    } else {
      opt->zero_grad();
      loss = nn::cross_entropy(net(task.x), task.y);
    }
    const double l = loss.item();
    if (!std::isfinite(l))  // checked before this step's update (a whole step has made it: reported all the same)
      throw ValueError("train", fmt::format("the loss is {} at step {} ({}, lr {}): training diverged; try a smaller "
                                            "learning rate", std::isnan(l) ? "nan" : fmt::format("{}", l), step,
                                            o.optimizer, o.lr));
    if (o.mode != "step") {
      loss.backward();
      opt->step();
    }
    step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count());
    if (step == 1) r.first_loss = l;
    r.final_loss = l;
    if (on_log && (step % o.log_every == 0 || step == o.steps || step == 1)) on_log(step, l);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!step_seconds.empty()) {
    std::nth_element(step_seconds.begin(), step_seconds.begin() + step_seconds.size() / 2, step_seconds.end());
    r.median_step_seconds = step_seconds[step_seconds.size() / 2];
  }
  r.compiled_steps = o.mode == "step" ? whole.stats().compiled_hits : o.mode == "hybridize" ? net.stats().compiled_hits : 0;
  r.compile_ms = o.mode == "step" ? whole.stats().compile_ms : o.mode == "hybridize" ? net.stats().compile_ms : 0;
  if (o.mode == "hybridize") net.hybridize(false);
  NoGradGuard no_grad;
  Tensor logits = net(task.x);
  r.final_loss = nn::cross_entropy(logits, task.y).item();
  r.accuracy = accuracy(logits, task.y);
  return r;
}

double evaluate(nn::Block& net, const data::Dataset& set, int64_t batch, std::optional<int64_t> resize) {
  const bool was_training = net.is_training();
  net.eval();
  NoGradGuard no_grad;
  data::Loader loader(set, {.batch = batch, .shuffle = false, .resize = resize});
  double hits = 0;
  for (const data::Batch& b : loader) hits += accuracy(net(b.x), b.y) * static_cast<double>(b.y.shape()[0]);
  net.train(was_training);
  return set.size() ? hits / static_cast<double>(set.size()) : 0;
}

std::vector<EpochResult> train_epochs(nn::Block& net, const data::Dataset& train, const data::Dataset& test,
                                      const EpochOptions& o, const std::function<void(int64_t, int64_t, double)>& on_progress,
                                      const std::function<void(const EpochResult&)>& on_epoch) {
  if (o.mode != "eager" && o.mode != "hybridize" && o.mode != "step")
    throw ValueError("train", "unknown mode '" + o.mode + "' (expected eager, hybridize or step)");
  if (o.epochs < 1) throw ValueError("train", "epochs must be at least 1, got " + std::to_string(o.epochs));
  data::Loader loader(train, {.batch = o.batch, .shuffle = true, .seed = o.seed, .resize = o.resize});
  {  // completes deferred shapes before the optimizer sees the parameters
    NoGradGuard no_grad;
    const Tensor x = loader.batch(0).x.slice(0, 0, 1);
    const Tensor probe = net.call_eager(x);
    const int64_t classes = max(train.labels).item().to<int64_t>() + 1;
    if (probe.dim() != 2 || probe.shape()[1] != classes)
      throw ShapeError("train", net.name() + " returns " + probe.type().str() + " for images " + x.type().str() +
                                    "; training needs [batch, " + std::to_string(classes) +
                                    "] logits (the vision zoo's models take these images)");
  }
  optim::SGD opt(net.parameters(), {.lr = o.lr});
  const nn::HybridizeOptions compiled{.exact = o.exact};
  if (o.mode == "hybridize") net.hybridize(compiled);
  nn::TrainStep whole(net, nn::cross_entropy, opt, compiled);
  std::vector<EpochResult> results;
  int64_t compiled_before = 0;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    net.train();
    EpochResult r;
    r.epoch = epoch;
    double loss_sum = 0, hits = 0;
    int64_t seen = 0, batches = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (const data::Batch& b : loader) {
      Tensor loss, logits;
      if (o.mode == "step") {
        loss = whole(b.x, b.y);
      } else {
        opt.zero_grad();
        logits = net(b.x);
        loss = nn::cross_entropy(logits, b.y);
      }
      const double l = loss.item();
      if (!std::isfinite(l))
        throw ValueError("train", fmt::format("the loss is {} in epoch {}, batch {} (lr {}): training diverged; try a "
                                              "smaller learning rate", l, epoch, batches + 1, o.lr));
      if (o.mode != "step") {
        loss.backward();
        opt.step();
        hits += accuracy(logits.detach(), b.y) * static_cast<double>(b.y.shape()[0]);
      }
      const int64_t n = b.y.shape()[0];
      loss_sum += l * static_cast<double>(n);
      seen += n;
      ++batches;
      if (on_progress) on_progress(batches, loader.size(), loss_sum / static_cast<double>(seen));
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t compiled = o.mode == "step" ? whole.stats().compiled_hits
                             : o.mode == "hybridize" ? net.stats().compiled_hits : 0;
    r.compiled_steps = compiled - compiled_before;
    r.loss = seen ? loss_sum / static_cast<double>(seen) : 0;
    r.examples_per_second = static_cast<double>(seen) / r.seconds;
    // The whole step returns only the loss: its training accuracy is measured after the epoch.
    r.train_accuracy = o.mode == "step" ? evaluate(net, train, 1024, o.resize) : hits / static_cast<double>(seen);
    r.test_accuracy = evaluate(net, test, 1024, o.resize);
    compiled_before = o.mode == "hybridize" ? net.stats().compiled_hits : compiled;  // evaluation's calls too
    results.push_back(r);
    if (on_epoch) on_epoch(r);
  }
  if (o.mode == "hybridize") net.hybridize(false);
  return results;
}

}  // namespace bj::examples
