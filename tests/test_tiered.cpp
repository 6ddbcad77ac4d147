// Tiered compilation (HybridizeOptions::tiered): a new variant runs first-tier
// code (no LLVM optimization) at once, is recompiled optimized on the
// upgrader thread and swapped in; results agree with eager mode before and
// after the swap, also while many threads call during it, and the object
// cache's optimized code skips the first tier. The adaptive fallback
// (HybridizeOptions::adaptive) serves a key eagerly when its compiled code is
// not faster, and says so.
#include <doctest/doctest.h>

#include <cstdlib>
#include <thread>

#include "examples/zoo.h"
#include "tests/helpers.h"

using namespace bj;

TEST_CASE("tiered compilation: every seed model agrees with eager mode on first-tier code and after the optimized swap") {
  for (const auto& m : examples::zoo()) {
    CAPTURE(m.name);
    manual_seed(2);
    auto net = m.make();
    const Tensor x = examples::example_input(m, m.input, 3);
    NoGradGuard no_grad;
    const Tensor want = net->call_eager(x);
    net->hybridize({.use_cache = false});  // no optimized code to find: the first tier runs
    (*net)(x);                             // traced
    const Tensor first = (*net)(x);
    net->wait_for_compiles();
    const Tensor second = (*net)(x);
    test::check_near(first, want, {1e-5, 1e-6});
    test::check_near(second, want, {1e-5, 1e-6});
    const nn::HybridStats s = net->stats();
    CHECK(s.compiled_hits == 2);
    CHECK(s.upgrades == s.variants);  // every variant now runs optimized code
    CHECK(s.upgrades_pending == 0);
    CHECK(s.str().find("upgraded") != std::string::npos);
  }
}

TEST_CASE("tiered compilation: training calls (forward and backward) upgrade too, gradients agree with eager") {
  manual_seed(4);
  auto net = examples::zoo_model("mlp").make();
  const Tensor x = uniform(-1, 1, {4, 20});
  net->call_eager(x);
  net->hybridize({.use_cache = false});
  auto grads = [&](bool compiled) {
    net->zero_grad();
    (compiled ? (*net)(x) : net->call_eager(x)).sum().backward();
    std::vector<Tensor> g;
    for (const auto& p : net->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  const auto want = grads(false);
  grads(true);  // traced
  for (int round = 0; round < 2; ++round) {
    const auto got = grads(true);
    for (size_t i = 0; i < got.size(); ++i) test::check_near(got[i], want[i], {1e-5, 1e-6});
    net->wait_for_compiles();
  }
  CHECK(net->stats().upgrades == 1);
}

TEST_CASE("tiered compilation: 8 threads calling during the swap all get eager's results") {
  manual_seed(5);
  auto net = examples::zoo_model("chimera").make();
  const Tensor x = uniform(-1, 1, {2, 20});
  NoGradGuard no_grad;
  const Tensor want = net->call_eager(x);
  net->hybridize({.use_cache = false, .adaptive = false});  // every call compiled: no eager timing samples
  (*net)(x);  // traced: the first tier runs from here, the upgrade is queued
  std::vector<std::thread> threads;
  std::vector<int> wrong(8, 0);
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      NoGradGuard inner;
      for (int i = 0; i < 100; ++i)
        if (!test::near((*net)(x), want, {1e-5, 1e-6})) ++wrong[t];
    });
  for (auto& th : threads) th.join();
  net->wait_for_compiles();
  CHECK(wrong == std::vector<int>(8, 0));
  CHECK(net->stats().upgrades == 1);
  CHECK(net->stats().compiled_hits == 800);
}

TEST_CASE("tiered compilation: optimized code in the object cache skips the first tier, and tiered=false compiles optimized at once") {
  manual_seed(6);
  auto net = examples::zoo_model("nest-mlp").make();
  const Tensor x = uniform(-1, 1, {2, 20});
  NoGradGuard no_grad;
  net->call_eager(x);
  net->hybridize();
  (*net)(x);
  net->wait_for_compiles();  // the optimized code is in the cache now
  net->hybridize();          // a fresh cache of variants
  (*net)(x);
  CHECK(net->stats().cache_hits == 1);
  CHECK(net->stats().upgrades == 0);
  CHECK(net->stats().upgrades_pending == 0);
  net->hybridize({.use_cache = false, .tiered = false});
  (*net)(x);
  CHECK(net->stats().upgrades == 0);
  CHECK(net->stats().upgrades_pending == 0);
}

TEST_CASE("adaptive fallback: a key whose compiled code is slower ends up served eagerly, reported, results eager's") {
  // The test hook makes every compiled call of a block hybridized under it wait 2 ms.
  ::setenv("BJ_FAULT", "slow-compiled", 1);
  ::setenv("BJ_LOG", "recompiles", 1);
  std::vector<std::string> log;
  nn::set_log_handler([&](const std::string& line) { log.push_back(line); });
  manual_seed(7);
  auto net = examples::zoo_model("mlp").make();
  const Tensor x = uniform(-1, 1, {2, 20});
  NoGradGuard no_grad;
  const Tensor want = net->call_eager(x);
  net->hybridize();
  ::unsetenv("BJ_FAULT");  // read when hybridizing
  (*net)(x);  // traced
  net->wait_for_compiles();
  for (int i = 0; i < 30; ++i) test::check_near((*net)(x), want, {1e-5, 1e-6});
  nn::set_log_handler(nullptr);
  ::unsetenv("BJ_LOG");
  const nn::HybridStats s = net->stats();
  CHECK(s.slower_keys == 1);
  CHECK(s.compiled_hits == 8);  // the timed calls; then 3 timed eager ones, then eager
  CHECK(s.str().find("served eagerly") != std::string::npos);
  bool reported = false, slower = false;
  for (const auto& line : log) reported |= line.find("runs eagerly: compiled code took") != std::string::npos;
  for (const auto& [why, n] : s.eager_reasons) slower |= why == "compiled slower" && n == 30 - 8 - 3;
  CHECK(reported);
  CHECK(slower);
}

TEST_CASE("adaptive fallback: a key whose compiled code is faster stays compiled after its timing calls") {
  manual_seed(8);
  auto net = examples::zoo_model("mlp").make();
  const Tensor x = uniform(-1, 1, {2, 20});
  NoGradGuard no_grad;
  const Tensor want = net->call_eager(x);
  net->hybridize();
  (*net)(x);  // traced
  net->wait_for_compiles();
  for (int i = 0; i < 30; ++i) test::check_near((*net)(x), want, {1e-5, 1e-6});
  const nn::HybridStats s = net->stats();
  CHECK(s.slower_keys == 0);
  CHECK(s.compiled_hits == 30 - 3);  // three calls ran eagerly, timed
  CHECK(s.eager_fallbacks == 1 + 3);
  // Opting out: every call compiled.
  net->hybridize({.adaptive = false});
  (*net)(x);
  for (int i = 0; i < 20; ++i) (*net)(x);
  CHECK(net->stats().compiled_hits == 20);
}
