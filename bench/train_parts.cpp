// Where a training step's time goes, for the seed MLP at batch 2 (or
// --batch N; one thread, or --threads T): the eager step, the hybridized step, and the parts
// of the hybridized one, with plain SGD as `blockjit bench --train` times it.
// Medians of interleaved rounds; run on a quiet machine.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "codegen/executable.h"
#include "examples/seed_models.h"
#include "frontend/blockjit.h"
#include "ir/graph.h"
#include "runtime/kernels.h"

using namespace bj;

namespace {

double once(const std::function<void()>& f, int calls) {
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) f();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / calls;
}

}  // namespace

int main(int argc, char** argv) {
  // --only K: time part K alone (for a profiler), 100x longer. --batch N: the batch size. --threads T.
  int only = -1;
  int64_t batch = 2;
  int threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--only") only = std::stoi(argv[i + 1]);
    if (std::string(argv[i]) == "--batch") batch = std::stoll(argv[i + 1]);
    if (std::string(argv[i]) == "--threads") threads = std::stoi(argv[i + 1]);
  }
  rt::set_num_threads(threads);
  manual_seed(0);
  examples::MLP net;
  net.initialize();
  Tensor x = uniform(-1, 1, {batch, 20});
  std::vector<int64_t> classes(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) classes[static_cast<size_t>(i)] = (i + 1) % 10;
  Tensor labels = tensor(classes, {batch});
  optim::SGD opt(net.parameters(), {.lr = 1e-4});
  examples::MLP twin;  // the same model for the whole-step graph
  twin.initialize();
  optim::SGD twin_opt(twin.parameters(), {.lr = 1e-4});
  nn::TrainStep whole(twin, nn::cross_entropy, twin_opt);
  whole(x, labels);  // traced
  net.hybridize();
  nn::cross_entropy(net(x), labels).backward();  // traced
  net.wait_for_compiles();
  // The step's loss loops by themselves: cross-entropy and its gradient on [batch, 10] logits.
  const auto loss_loops = codegen::compile(*ir::parse(fmt::format(
      "graph @loss(%z: f32[{0},10], %t: i64[{0}], %g: f32[]) -> (f32[], f32[{0},10]) {{\n"
      "  %0: f32[] = cross_entropy(%z, %t)\n"
      "  %1: f32[{0},10] = cross_entropy_grad(%z, %t, %g)\n"
      "  return %0, %1\n}}\n", batch)));
  const Tensor logits = uniform(-3, 3, {batch, 10}), one = ones({});
  const rt::ConstView loss_in[] = {{logits.raw_data(), logits.type()}, {labels.raw_data(), labels.type()},
                                   {one.raw_data(), one.type()}};
  std::vector<std::pair<const char*, std::function<void()>>> parts = {
      {"eager step (zero_grad, forward, cross-entropy, backward, SGD)",
       [&] {
         opt.zero_grad();
         nn::cross_entropy(net.call_eager(x), labels).backward();
         opt.step();
       }},
      {"hybridized step", [&] {
         opt.zero_grad();
         nn::cross_entropy(net(x), labels).backward();
         opt.step();
       }},
      {"whole-step (TrainStep)", [&] { whole(x, labels); }},
      {"  zero_grad", [&] { opt.zero_grad(); }},
      {"  compiled forward (grad mode)", [&] { net(x); }},
      {"  compiled forward + cross-entropy", [&] { nn::cross_entropy(net(x), labels); }},
      {"  compiled forward + cross-entropy + backward", [&] {
         opt.zero_grad();
         nn::cross_entropy(net(x), labels).backward();
       }},
      {"  SGD step (multi-tensor)", [&] { opt.step(); }},
      {"  compiled cross-entropy and its gradient alone", [&] {
         const auto r = loss_loops->run(loss_in, {}, {});
         if (r.failed_guard >= 0) std::abort();
       }},
  };
  std::vector<std::vector<double>> times(parts.size());
  for (int round = 0; round < 15; ++round)
    for (size_t i = 0; i < parts.size(); ++i)
      if (only < 0 || static_cast<size_t>(only) == i) times[i].push_back(once(parts[i].second, std::max<int>(1, static_cast<int>((only < 0 ? 4000 : 400000) / batch))));
  for (size_t i = 0; i < parts.size(); ++i) {
    if (times[i].empty()) continue;
    std::sort(times[i].begin(), times[i].end());
    fmt::print("{:<50} {:8.2f} us\n", parts[i].first, times[i][times[i].size() / 2]);
  }
  fmt::print("hybridized: {}\nwhole step: {}\n", net.stats().str(), whole.stats().str());
}
