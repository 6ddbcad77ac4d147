// hybridize(): compiled calls checked against eager mode (the oracle), on
// every zoo model and batch size, on data-dependent control flow (variants,
// the cap, fallbacks), from many threads, across training steps and
// structure changes, with background compilation and failing compiles.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "examples/seed_models.h"
#include "examples/zoo.h"
#include "tests/helpers.h"

using namespace bj;
using test::check_near;
using test::Tol;

namespace {

const Tol kTol{1e-5, 1e-6};

/// Collects hybridization's log lines while alive.
struct LogCapture {
  std::vector<std::string> lines;
  std::mutex mu;
  LogCapture() {
    nn::set_log_handler([this](const std::string& l) {
      std::lock_guard lock(mu);
      lines.push_back(l);
    });
  }
  ~LogCapture() { nn::set_log_handler(nullptr); }
  int count(const std::string& needle) {
    std::lock_guard lock(mu);
    return static_cast<int>(std::count_if(lines.begin(), lines.end(),
                                          [&](const std::string& l) { return l.find(needle) != std::string::npos; }));
  }
};

/// Sets an environment variable for a scope.
struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* value) : name(n) { setenv(n, value, 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

/// How many times FixedHiddenMLP's loop halves for input x (its trace has one guard per test of the loop).
int halvings(nn::Block& net, const Tensor& x) { return trace(net, x).graph->num_guards() - 1; }

/// Inputs base * scale that need 0, 1, ..., 12 halvings (found by sweeping the scale).
std::map<int, Tensor> inputs_by_halvings(nn::Block& net, const Tensor& base) {
  std::map<int, Tensor> found;
  for (int e = -60; e <= 160 && found.size() < 13; ++e) {
    Tensor x = base * std::pow(2.0, e / 4.0);
    int k = halvings(net, x);
    if (k <= 12 && !found.count(k)) found.emplace(k, x);
  }
  return found;
}

/// A FixedHiddenMLP whose loop runs 0 times on small inputs (its shared layer scaled down).
std::shared_ptr<examples::FixedHiddenMLP> fixed_hidden_mlp() {
  auto net = std::make_shared<examples::FixedHiddenMLP>();
  net->initialize(init::uniform(0.05));
  return net;
}

}  // namespace

TEST_CASE("every zoo model hybridized equals eager on many random inputs, batch sizes making new variants") {
  for (const bool dynamic : {false, true})  // a variant per batch size, or one for every size
    for (const auto& m : examples::zoo()) {
      CAPTURE(m.name);
      CAPTURE(dynamic);
      manual_seed(11);
      auto net = m.make();
      net->initialize(init::xavier(), true);
      NoGradGuard no_grad;
      net->hybridize({.dynamic_batch = dynamic});
      int calls = 0;
      std::vector<int64_t> batches{2, 1, 2, 7, 33, 1, 2};
      for (int64_t batch : batches) {
        CAPTURE(batch);
        Shape shape = m.input;
        shape[0] = batch;
        for (int k = 0; k < 6; ++k) {
          Tensor x = uniform(-2, 2, shape);
          Tensor y = (*net)(x);
          ++calls;
          check_near(y, net->call_eager(x), kTol);
        }
      }
      nn::HybridStats s = net->stats();
      CHECK(s.calls == calls);
      if (dynamic)
        CHECK(s.dynamic_variants <= 1);
      else
        CHECK(s.variants >= 4);  // one per batch size at least
      CHECK(s.compiled_hits + s.eager_fallbacks == calls);
      CHECK(s.compiled_hits >= calls - 2 * s.traces);
      CHECK(s.compile_failures == 0);
    }
}

TEST_CASE("FixedHiddenMLP and chimera on inputs needing 0 to 12 halvings in random order: always the eager answer") {
  for (bool chimera : {false, true}) {
    CAPTURE(chimera);
    manual_seed(3);
    std::shared_ptr<nn::Block> net;
    if (chimera) {
      auto c = std::make_shared<nn::Sequential>(examples::chimera());
      c->initialize(init::xavier());
      c->forward(uniform(-1, 1, {2, 20}));  // deferred shapes
      auto& fixed = dynamic_cast<examples::FixedHiddenMLP&>(c->child("2"));
      fixed.linear.weight.set_data(fixed.linear.weight.data() * 0.05);  // so that small inputs need no halving
      net = c;
    } else {
      net = fixed_hidden_mlp();
    }
    NoGradGuard no_grad;
    Tensor base = uniform(-1, 1, {2, 20});
    net->call_eager(base);  // deferred shapes
    std::map<int, Tensor> inputs = inputs_by_halvings(*net, base);
    std::string found;
    for (const auto& [k, x] : inputs) found += std::to_string(k) + " ";
    INFO("halving counts found: " << found);
    REQUIRE(inputs.size() == 13);
    std::vector<int> order;
    for (int rep = 0; rep < 3; ++rep)
      for (int k = 0; k <= 12; ++k) order.push_back(k);
    std::shuffle(order.begin(), order.end(), std::mt19937(chimera ? 7 : 5));
    LogCapture log;
    nn::HybridizeOptions opts;
    opts.max_variants = 8;
    net->hybridize(opts);
    for (int k : order) {
      CAPTURE(k);
      check_near((*net)(inputs.at(k)), net->call_eager(inputs.at(k)), kTol);
    }
    nn::HybridStats s = net->stats();
    CHECK(s.variants == 8);  // the cap, reached: 13 paths were seen
    CHECK(s.traces == 8);
    CHECK(s.compiled_hits > 0);
    CHECK(s.eager_fallbacks > 8);  // the traced calls and, past the cap, the unseen paths
    CHECK(log.count("variants (the cap)") == 1);
    CHECK(!s.guard_failures.empty());
    for (const auto& g : s.guard_failures) {
      CHECK(g.guard.rfind("guard %", 0) == 0);
      CHECK(g.origin.path == (chimera ? "Sequential.2" : "FixedHiddenMLP"));  // the block with the loop
    }
  }
}

TEST_CASE("a block with if/else on a tensor gives the right branch after hybridize, each path a variant") {
  struct Branchy : nn::Block {
    nn::Dense& dense = add("dense", nn::Dense(8));
    Tensor forward(const Tensor& x) override {
      Tensor h = dense(x);
      if (h.sum() > 0) return relu(h) * 2;
      return h - 1;
    }
  };
  manual_seed(4);
  Branchy net;
  net.initialize();
  NoGradGuard no_grad;
  Tensor pos = uniform(-1, 1, {3, 5});
  Tensor neg = pos * -1;  // dense has zero bias: h(-x) = -h(x), so the other branch
  REQUIRE((net.call_eager(pos).sum().item() > 0) != (net.call_eager(neg).sum().item() > 0));
  net.hybridize();
  for (int i = 0; i < 6; ++i) {
    const Tensor& x = i % 2 ? neg : pos;
    check_near(net(x), net.call_eager(x), kTol);
  }
  nn::HybridStats s = net.stats();
  CHECK(s.variants == 2);
  CHECK(s.traces == 2);
  CHECK(s.compiled_hits == 4);
}

TEST_CASE("one hybridized block called from 8 threads x 1000 times with mixed inputs equals eager") {
  manual_seed(9);
  auto net = fixed_hidden_mlp();
  NoGradGuard no_grad;
  Tensor base = uniform(-1, 1, {2, 20});
  net->call_eager(base);
  std::vector<Tensor> inputs, expected;
  for (auto& [k, x] : inputs_by_halvings(*net, base))
    if (k % 3 == 0) inputs.push_back(x);  // 0, 3, 6, 9, 12 halvings
  for (int64_t batch : {1, 4}) inputs.push_back(uniform(-1, 1, {batch, 20}) * 50);
  for (const Tensor& x : inputs) expected.push_back(net->call_eager(x));
  net->hybridize();
  std::atomic<int> wrong{0}, done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      NoGradGuard thread_no_grad;  // grad mode is per thread
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < 1000; ++i) {
        size_t k = rng() % inputs.size();
        if (!test::near((*net)(inputs[k]), expected[k], kTol)) ++wrong;
        ++done;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(done == 8000);
  CHECK(wrong == 0);
  nn::HybridStats s = net->stats();
  CHECK(s.calls == 8000);
  CHECK(s.variants == static_cast<int64_t>(inputs.size()));
  CHECK(s.compiled_hits + s.eager_fallbacks == 8000);  // eager while a variant compiles (no call waits)
  CHECK(s.compiled_hits > 0);
}

TEST_CASE("training after hybridize: the next compiled call sees the updated parameters") {
  manual_seed(6);
  examples::MLP net;
  net.initialize(init::xavier());
  Tensor x = uniform(-1, 1, {4, 20}), target = uniform(-1, 1, {4, 10});
  net.hybridize();
  {
    NoGradGuard no_grad;
    net(x);  // traced
    check_near(net(x), net.call_eager(x), kTol);
  }
  optim::SGD opt(net.parameters(), {.lr = 0.5});
  Tensor before;
  {
    NoGradGuard no_grad;
    before = net(x);
  }
  for (int i = 0; i < 2; ++i) {  // grad mode is another key: traced, then compiled (forward and backward)
    opt.zero_grad();
    Tensor loss = nn::mse_loss(net(x), target);
    loss.backward();
    opt.step();
  }
  NoGradGuard no_grad;
  Tensor after = net(x);
  check_near(after, net.call_eager(x), kTol);
  CHECK(test::values(after) != test::values(before));
  nn::HybridStats s = net.stats();
  CHECK(s.traces == 2);  // inference and grad mode; the updates needed no retrace
  CHECK(s.compiled_hits == 4);
  CHECK(s.eager_reasons.size() == 1);  // the two traces ("new key")
}

TEST_CASE("a structure change (a child added) invalidates the cache, train/eval and grad mode are keys") {
  manual_seed(7);
  nn::Sequential net(nn::Dense(16, "relu"));
  net.initialize();
  NoGradGuard no_grad;
  Tensor x = uniform(-1, 1, {2, 8});
  net.hybridize();
  net(x);
  net(x);
  CHECK(net.stats().compiled_hits == 1);
  net.add(nn::Dense(3));
  net.initialize();
  Tensor y = net(x);
  CHECK(y.shape() == Shape{2, 3});
  check_near(y, net.call_eager(x), kTol);
  CHECK(net.stats().traces == 2);
  net.eval();
  check_near(net(x), net.call_eager(x), kTol);
  net.train();
  check_near(net(x), net.call_eager(x), kTol);
  CHECK(net.stats().traces == 3);  // eval was a new key; training mode was cached
  CHECK(net.stats().compiled_hits == 2);
}

TEST_CASE("background compilation: calls run eagerly until the variant is ready, then compiled") {
  manual_seed(8);
  examples::MLP net;
  net.initialize();
  NoGradGuard no_grad;
  Tensor x = uniform(-1, 1, {2, 20});
  nn::HybridizeOptions opts;
  opts.background = true;
  net.hybridize(opts);
  auto start = std::chrono::steady_clock::now();
  while (net.stats().compiled_hits == 0 && std::chrono::steady_clock::now() - start < std::chrono::seconds(60))
    check_near(net(x), net.call_eager(x), kTol);
  nn::HybridStats s = net.stats();
  CHECK(s.compiled_hits == 1);
  CHECK(s.traces == 1);
  CHECK(s.variants == 1);
}

TEST_CASE("a failing compile leaves the block eager with one warning, and untraceable forwards run eagerly") {
  manual_seed(10);
  {
    examples::MLP net;
    net.initialize();
    NoGradGuard no_grad;
    Tensor x = uniform(-1, 1, {2, 20});
    LogCapture log;
    ScopedEnv fault("BJ_FAULT", "compile");
    net.hybridize();
    for (int i = 0; i < 5; ++i) check_near(net(x), net.call_eager(x), kTol);
    nn::HybridStats s = net.stats();
    CHECK(s.compile_failures == 1);
    CHECK(s.compiled_hits == 0);
    CHECK(s.eager_fallbacks == 5);
    CHECK(log.count("warning") == 1);
    CHECK(log.count("BJ_FAULT") == 1);
  }
  {  // uniform() (numbers changed on the host after drawing): a trace would freeze them
    struct Noisy : nn::Block {
      nn::Dense& d = add("d", nn::Dense(8));
      Tensor forward(const Tensor& x) override { return d(x) + uniform(0, 1, {x.shape()[0], 8}); }
    };
    Noisy net;
    net.initialize();
    NoGradGuard no_grad;
    LogCapture log;
    net.hybridize();
    Tensor x = uniform(1, 2, {4, 4});
    Tensor a = net(x), b = net(x);
    CHECK(test::values(a) != test::values(b));  // fresh numbers: still eager
    CHECK(net.stats().variants == 0);
    CHECK(log.count("random") == 1);
  }
}

TEST_CASE("BJ_LOG=recompiles names what differed: the key or the guard and its block path") {
  auto net = fixed_hidden_mlp();
  NoGradGuard no_grad;
  Tensor base = uniform(-1, 1, {2, 20});
  net->call_eager(base);
  auto inputs = inputs_by_halvings(*net, base);
  LogCapture log;
  ScopedEnv env("BJ_LOG", "recompiles");
  net->hybridize();
  (*net)(inputs.at(2));
  (*net)(inputs.at(5));
  (*net)(uniform(-1, 1, {3, 20}));
  CHECK(log.count("first call (f32[2,20]") == 1);
  CHECK(log.count("of variant 1 (f32[2,20], training, no grad), recorded at FixedHiddenMLP (seed_models.h:60), failed") == 1);
  CHECK(log.count("new key f32[3,20]") == 1);
  std::string report = net->stats().str();
  CHECK(report.find("3 calls") != std::string::npos);
}

TEST_CASE("grad mode with compile_training off: hybridized calls run eagerly, gradients exactly eager's") {
  manual_seed(12);
  examples::MLP a;
  a.initialize();
  Tensor x = uniform(-1, 1, {2, 20});
  a.hybridize({.compile_training = false});
  a(x).sum().backward();
  a.zero_grad();
  a(x).sum().backward();
  CHECK(a.stats().eager_reasons.at(0).first == "grad mode");
  CHECK(a.stats().traces == 0);
  std::vector<Tensor> grads;
  for (auto& p : a.parameters()) grads.push_back(p.grad().clone());
  a.zero_grad();
  a.hybridize(false);
  a(x).sum().backward();
  auto ps = a.parameters();
  for (size_t i = 0; i < ps.size(); ++i) check_near(grads[i], ps[i].grad(), Tol{0, 0});
}

TEST_CASE("the benchmark's guard-chain (32 guards that hold) and its guard-free twin hybridized equal eager") {
  NoGradGuard no_grad;
  for (const char* name : {"guard-chain", "guard-chain-free"}) {
    CAPTURE(name);
    manual_seed(14);
    auto net = examples::zoo_model(name).make();
    net->hybridize();
    for (int i = 0; i < 4; ++i) {
      Tensor x = uniform(-1, 1, {2, 8});
      check_near((*net)(x), net->call_eager(x), Tol{1e-5, 1e-6});
    }
    CHECK(net->stats().variants == 1);
    CHECK(net->stats().compiled_hits == 3);
    CHECK(trace(*net, uniform(-1, 1, {2, 8})).graph->num_guards() == (std::string(name) == "guard-chain" ? 32 : 0));
  }
}

TEST_CASE("a hybridized child inside a plain parent runs compiled when the parent calls it") {
  manual_seed(15);
  struct Parent : nn::Block {
    examples::MLP& mlp = add("mlp", examples::MLP());
    Tensor forward(const Tensor& x) override { return mlp(x) * 2; }
  };
  Parent net;
  net.initialize();
  NoGradGuard no_grad;
  net.mlp.hybridize();
  for (int i = 0; i < 4; ++i) {
    Tensor x = uniform(-1, 1, {3, 20});
    Tensor want = net.mlp.call_eager(x) * 2;
    check_near(net(x), want, kTol);
  }
  CHECK(net.mlp.stats().calls == 4);
  CHECK(net.mlp.stats().compiled_hits == 3);
  CHECK(!net.is_hybridized());
}

TEST_CASE("BJ_LOG=stats prints each hybridized block's report at exit") {
  std::string cmd = std::string("BJ_LOG=stats '") + BJ_BINARY_DIR + "/bin/blockjit' bench mlp --threads 1 --json 2>&1";
  int status = -1;
  std::string out = test::run_command(cmd, &status);
  CHECK(status == 0);
  INFO(out);
  CHECK(out.find("blockjit: stats for mlp:") != std::string::npos);
  CHECK(out.find("compiled, 1 eager (new key: 1)") != std::string::npos);
}

TEST_CASE("a user error inside a hybridized forward is the eager error (typed, with the block path) and leaves the block usable") {
  manual_seed(16);
  examples::MLP net;
  net.initialize();
  NoGradGuard no_grad;
  net.hybridize();
  Tensor good = uniform(-1, 1, {2, 20});
  check_near(net(good), net.call_eager(good), kTol);  // traced and compiled for width 20
  Tensor wrong = uniform(-1, 1, {2, 7});               // the layers learned width 20
  try {
    net(wrong);
    FAIL("no error");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()).find("MLP.hidden") != std::string::npos);
  }
  CHECK_THROWS_AS(net(good.to(kI64)), DTypeError);
  check_near(net(good), net.call_eager(good), kTol);  // still compiled
  nn::HybridStats s = net.stats();
  CHECK(s.compiled_hits == 1);
  CHECK(s.variants == 1);
  CHECK(s.compile_failures == 0);
}

TEST_CASE("blockjit demo: every model's hybridized output matches eager, FixedHiddenMLP's paths, --dump-dir writes the dumps") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("bj-demo-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  int status = -1;
  std::string out = test::run_command("'" + std::string(BJ_BINARY_DIR) + "/bin/blockjit' demo --dump-dir '" +
                                          dir.string() + "' 2>&1",
                                      &status);
  INFO(out);
  CHECK(status == 0);
  CHECK(out.find("MISMATCH") == std::string::npos);
  for (const auto& m : examples::zoo()) {
    CHECK(out.find("== " + m.name + ":") != std::string::npos);
    for (const char* ext : {".traced.ir", ".traced.dot", ".opt.ir", ".opt.dot", ".ll"})
      CHECK(fs::file_size(dir / (m.name + ext)) > 0);
  }
  CHECK(out.find("eager, traced as variant 4") != std::string::npos);
  CHECK(out.find("eager (variant cap reached)") != std::string::npos);
  CHECK(out.find("compiled") != std::string::npos);
  CHECK(out.find("== summary") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("keys are bounded: past max_keys the least recently used key is dropped, and bad inputs leave none") {
  NoGradGuard no_grad;
  manual_seed(41);
  examples::MLP net;
  net.initialize();
  net(uniform(-1, 1, {1, 20}));
  net.hybridize({.max_keys = 4});
  Tensor keep = uniform(-1, 1, {2, 20});
  for (int64_t batch = 1; batch <= 20; ++batch) {
    Tensor x = uniform(-1, 1, {batch, 20});
    net(x);
    check_near(net(x), net.call_eager(x), kTol);  // compiled
    net(keep);                                      // the often used key stays
    CHECK(net.stats().keys <= 4);
  }
  const int64_t traces = net.stats().traces;
  net(keep);
  CHECK(net.stats().traces == traces);  // still cached
  const int64_t keys = net.stats().keys;
  for (int i = 0; i < 5; ++i) CHECK_THROWS_AS(net(uniform(-1, 1, {3, 7})), ShapeError);  // wrong width
  CHECK(net.stats().keys == keys);  // no empty entry left behind
  CHECK(net.stats().variants <= 4);
}
