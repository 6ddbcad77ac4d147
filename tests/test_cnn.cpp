// Convolutional layers and models: typed errors naming the block, hybridized
// calls equal to eager ones, BatchNorm's running statistics written by
// compiled training as eager writes them, and LeNet learning Fashion-MNIST.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "examples/training.h"
#include "examples/zoo.h"
#include "tests/helpers.h"

using namespace bj;
using namespace bj::nn;

namespace {

template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("no error of the expected type");
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("convolutional layers: bad input and settings are typed errors naming the block, op and shapes") {
  Sequential net(Conv2D(4, 3), BatchNorm(), MaxPool2D(2));
  net.set_name("net");
  net.initialize();
  std::string m = error_of<ShapeError>([&] { net(uniform(0, 1, {2, 3, 8})); });
  CHECK(contains(m, "Conv2D"));
  CHECK(contains(m, "net.0"));  // the block path
  CHECK(contains(m, "f32[2,3,8]"));
  net(uniform(0, 1, {2, 3, 8, 8}));  // fixes in_channels = 3
  m = error_of<ShapeError>([&] { net(uniform(0, 1, {2, 5, 8, 8})); });
  CHECK(contains(m, "5 channels"));
  CHECK(contains(m, "expects 3"));
  m = error_of<ShapeError>([&] { net(uniform(0, 1, {2, 3, 2, 8})); });  // 2 rows for a 3x3 kernel
  CHECK(contains(m, "too small"));
  m = error_of<ShapeError>([&] { net(uniform(0, 1, {2, 3, 3, 3})); });   // 1x1 after the conv: no pooling output
  CHECK(contains(m, "max_pool2d"));
  CHECK_THROWS_AS(Conv2D(0, 3), ValueError);
  CHECK_THROWS_AS(Conv2D(4, 3, 0), ValueError);
  CHECK_THROWS_AS(Conv2D(4, {3, 3}, 1, -1), ValueError);
  CHECK_THROWS_AS(Conv2D(6, 3, 1, 0, "none", {.groups = 4}), ValueError);
  CHECK_THROWS_AS(MaxPool2D(2, 2, 2), ValueError);  // padding beyond half the window
  CHECK_THROWS_AS(conv2d(uniform(0, 1, {1, 2, 5, 5}), uniform(0, 1, {3, 2, 3, 3}), {0, 1}), ValueError);
  CHECK_THROWS_AS(conv2d(uniform(0, 1, {1, 2, 5, 5}), uniform(0, 1, {3, 2, 3, 3}), {1, 1}, {1, 1}, {1, 1}, 2),
                  ShapeError);
  BatchNorm bn;
  bn.initialize();
  m = error_of<ValueError>([&] { bn(uniform(0, 1, {1, 3})); });
  CHECK(contains(m, "more than one value per channel"));
  bn.eval();
  CHECK(bn(uniform(0, 1, {1, 3})).shape() == Shape{1, 3});  // eval mode needs no batch statistics
}

TEST_CASE("the vision zoo hybridized: inference calls equal eager ones, in training and eval mode") {
  for (const auto& m : examples::vision_zoo()) {
    CAPTURE(m.name);
    manual_seed(8);
    auto net = m.make();
    Tensor x = uniform(0, 1, m.input);
    net->call_eager(x);
    net->hybridize();
    NoGradGuard no_grad;
    for (bool training : {true, false}) {
      net->train(training);
      for (int call = 0; call < 3; ++call) {
        Tensor xi = uniform(0, 1, m.input);
        test::check_close(net->operator()(xi), net->call_eager(xi), 1e-4, 1e-5);
      }
    }
    CHECK(net->stats().compiled_hits >= 4);
    CHECK(net->stats().compile_failures == 0);
  }
}

TEST_CASE("BatchNorm: running statistics after compiled training steps equal eager's, and eval mode uses them") {
  auto make = [] {
    manual_seed(12);
    auto net = std::make_shared<Sequential>(Conv2D(4, 3, 1, 1), BatchNorm(), ReLU(), GlobalAvgPool2D(), Flatten(),
                                            Dense(3), BatchNorm(0, 0.8));
    net->initialize(init::xavier());
    net->call_eager(uniform(0, 1, {5, 2, 6, 6}));
    return net;
  };
  auto eager = make(), hybrid = make();
  hybrid->hybridize();
  optim::SGD eager_opt(eager->parameters(), {.lr = 0.05, .momentum = 0.9});
  optim::SGD hybrid_opt(hybrid->parameters(), {.lr = 0.05, .momentum = 0.9});
  auto whole_net = make();
  optim::SGD whole_opt(whole_net->parameters(), {.lr = 0.05, .momentum = 0.9});
  TrainStep whole(*whole_net, cross_entropy, whole_opt);
  manual_seed(13);
  for (int step = 0; step < 8; ++step) {
    Tensor x = uniform(0, 1, {5, 2, 6, 6}), y = tensor(std::vector<int64_t>{0, 1, 2, 1, 0}, {5});
    for (auto [net, opt] : {std::pair{eager.get(), &eager_opt}, std::pair{hybrid.get(), &hybrid_opt}}) {
      opt->zero_grad();
      Tensor loss = cross_entropy(net == eager.get() ? net->call_eager(x) : (*net)(x), y);
      loss.backward();
      opt->step();
    }
    whole(x, y);
  }
  CHECK(hybrid->stats().compiled_hits >= 6);
  CHECK(whole.stats().compiled_hits >= 6);
  for (const auto* other : {hybrid.get(), whole_net.get()}) {
    const auto want = eager->named_constants(), got = other->named_constants();
    REQUIRE(want.size() == 4);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      CAPTURE(want[i].first);
      test::check_close(got[i].second, want[i].second, 1e-4, 1e-6);
    }
    // The weights after 8 updates: the compiled gradients through BatchNorm's batch statistics.
    const auto want_p = eager->named_parameters(), got_p = other->named_parameters();
    REQUIRE(got_p.size() == want_p.size());
    for (size_t i = 0; i < want_p.size(); ++i) {
      CAPTURE(want_p[i].first);
      test::check_close(got_p[i].second.data(), want_p[i].second.data(), 1e-4, 1e-6);
    }
  }
  // Eval mode normalizes with the running statistics: the same outputs hybridized and eager.
  eager->eval();
  hybrid->eval();
  NoGradGuard no_grad;
  Tensor x = uniform(0, 1, {3, 2, 6, 6});
  test::check_close((*hybrid)(x), eager->call_eager(x), 1e-4, 1e-5);
}

TEST_CASE("LeNet with ReLU learns Fashion-MNIST: one hybridized epoch on 12000 images (when the package is installed)") {
  if (!std::filesystem::exists(data::fashion_mnist_dir() + "/train-labels-idx1-ubyte.gz")) {
    MESSAGE("dataset-fashion-mnist is not installed; skipped");
    return;
  }
  data::Dataset train = data::fashion_mnist(true), test = data::fashion_mnist(false);
  train.images = train.images.slice(0, 0, 12000);
  train.labels = train.labels.slice(0, 0, 12000);
  manual_seed(0);
  auto net = examples::zoo_model("lenet-relu").make();
  auto r = examples::train_epochs(*net, train, test, {.epochs = 1, .batch = 128, .lr = 0.1, .mode = "hybridize", .resize = std::nullopt, .seed = 0});
  REQUIRE(r.size() == 1);
  INFO("loss " << r[0].loss << ", test accuracy " << r[0].test_accuracy);
  // One epoch at lr 0.1 is chaotic: the last bits of the code's rounding (first-tier code before
  // the optimized swap, or optimized code from the object cache at once) move this seed's test
  // accuracy between 0.59 and 0.71. Chance is 0.1.
  CHECK(r[0].test_accuracy >= 0.5);
  CHECK(r[0].compiled_steps >= 90);
}

namespace {
/// BatchNorm, then a branch on the normalized data: the guard comes after the statistics' update.
struct NormThenBranch : Block {
  BatchNorm& bn = add("bn", BatchNorm(3));
  Tensor forward(const Tensor& x) override {
    Tensor y = bn(x);
    if (y.max() > 1.5) return y * 2;  // a guard on the normalized values
    return y - 1;
  }
};
}  // namespace

TEST_CASE("BatchNorm: a compiled call whose guard fails leaves the running statistics as one eager update would") {
  NormThenBranch eager, hybrid;
  eager.initialize();
  hybrid.initialize();
  hybrid.hybridize();
  manual_seed(3);
  // Small spread: the largest normalized value stays near 1.2 (no branch); a far outlier goes past 1.5.
  Tensor calm = tensor({{0.0, 1.0, 2.0}, {0.1, 1.1, 2.1}, {0.2, 1.2, 2.2}, {0.3, 1.3, 2.3}});
  Tensor outlier = tensor({{0.0, 1.0, 2.0}, {0.0, 1.0, 2.0}, {0.0, 1.0, 2.0}, {9.0, 1.0, 2.0}});
  NoGradGuard no_grad;
  for (const Tensor& x : {calm, calm, calm, outlier, calm, outlier, outlier}) {
    test::check_close(hybrid(x), eager(x), 1e-5, 1e-6);
    test::check_close(hybrid.bn.running_mean, eager.bn.running_mean, 1e-6, 1e-7);
    test::check_close(hybrid.bn.running_var, eager.bn.running_var, 1e-6, 1e-7);
  }
  const HybridStats s = hybrid.stats();
  CHECK(s.compiled_hits >= 3);
  CHECK(s.variants == 2);  // both paths compiled; the outlier's first call failed the calm path's guard
}

TEST_CASE("BatchNorm in eval mode folds into the convolution: compiled equals eager, new parameters are used") {
  manual_seed(31);
  Sequential net(Conv2D(4, 3, 1, 1), BatchNorm(), ReLU(), Conv2D(3, 3, 1, 1, "none", {.use_bias = false}),
                 BatchNorm());
  net.initialize(init::xavier());
  Tensor x = uniform(0, 1, {8, 2, 6, 6});  // a batch whose activations outweigh the weights: folded
  {
    NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) net(uniform(-1, 2, {8, 2, 6, 6}));  // running statistics move off 0 and 1
  }
  net.eval();
  // The optimized graph normalizes no activations: no division of an [8, C, 6, 6] value is left.
  const CompiledTrace compiled = compile(trace(net, x));
  const ir::Graph& g = compiled.executable().graph();
  int divisions = 0;
  ir::for_each_node(g.nodes(), [&](const ir::Node& n) {
    divisions += n.kind == ir::NodeKind::kOp && n.op == ir::OpKind::Div && n.result->type.shape.size() == 4 &&
                 n.result->type.shape[0] == 8;
  });
  CHECK(divisions == 0);
  net.hybridize();
  NoGradGuard no_grad;
  for (int call = 0; call < 3; ++call) test::check_close(net(x), net.call_eager(x), 1e-5, 1e-6);
  // New values of a BatchNorm's parameters and statistics are used by the next compiled call.
  net.at<BatchNorm>(1).gamma.set_data(full({4}, 2.5));
  net.at<BatchNorm>(4).running_var *= 3.0;
  test::check_close(net(x), net.call_eager(x), 1e-5, 1e-6);
  CHECK(net.stats().compiled_hits >= 3);
  CHECK(net.stats().variants == 1);
}

TEST_CASE("LeNet and a ResNet block hybridized, called from 4 threads at once: every output equals eager's") {
  for (const std::string name : {"lenet-relu", "residual"}) {
    CAPTURE(name);
    manual_seed(40);
    std::shared_ptr<Block> net;
    Shape input;
    if (name == "residual") {
      net = std::make_shared<Residual>(8, true, 2);
      net->initialize(init::xavier());
      input = {3, 4, 8, 8};
    } else {
      net = examples::zoo_model(name).make();
      input = {3, 1, 28, 28};
    }
    net->eval();  // BatchNorm's statistics stay put, so every thread's eager call is the reference
    std::vector<Tensor> xs;
    for (int i = 0; i < 4; ++i) xs.push_back(uniform(0, 1, input));
    std::vector<Tensor> want;
    {
      NoGradGuard no_grad;
      for (const Tensor& x : xs) want.push_back(net->call_eager(x));
    }
    net->hybridize();
    std::atomic<int> mismatches{0};
    std::mutex first_mu;
    std::string first;  // the first mismatch: which input, which element, the two values
    const int calls = std::getenv("BJ_STRESS_CALLS") ? std::atoi(std::getenv("BJ_STRESS_CALLS")) : 20;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        NoGradGuard no_grad;
        for (int call = 0; call < calls; ++call) {
          const size_t i = static_cast<size_t>((t + call) % 4);
          std::string why;
          if (!test::near((*net)(xs[i]), want[i], test::Tol{1e-5, 1e-6}, &why) && mismatches++ == 0) {
            std::lock_guard lock(first_mu);
            first = fmt::format("input {} on thread {}, call {}: {}", i, t, call, why);
          }
        }
      });
    for (auto& th : threads) th.join();
    CAPTURE(first);
    CHECK(mismatches == 0);
    CHECK(net->stats().compiled_hits > 0);
  }
}

TEST_CASE("the README's LeNet program builds, hybridizes and trains (on a few batches of stand-in images)") {
  using namespace bj::nn;
  manual_seed(5);
  Sequential net(Conv2D(6, 5, 1, 2, "sigmoid"), AvgPool2D(2, 2), Conv2D(16, 5, 1, 0, "sigmoid"), AvgPool2D(2, 2),
                 Flatten(), Dense(120, "sigmoid"), Dense(84, "sigmoid"), Dense(10));
  net.initialize(bj::init::xavier());
  net(bj::zeros({1, 1, 28, 28}));
  net.hybridize();
  bj::optim::SGD opt(net.parameters(), {.lr = 0.9});
  data::Dataset images{uniform(0, 1, {96, 1, 28, 28}), tensor(std::vector<int64_t>(96, 3), {96})};
  bj::data::Loader batches(images, {.batch = 32});
  double first = 0, last = 0;
  for (int epoch = 0; epoch < 3; ++epoch)
    for (const bj::data::Batch& b : batches) {
      opt.zero_grad();
      Tensor loss = bj::nn::cross_entropy(net(b.x), b.y);
      loss.backward();
      opt.step();
      last = loss.item().to<double>();
      if (first == 0) first = last;
    }
  CHECK(net.stats().compiled_hits >= 6);
  CHECK(last < first);  // one class for every image: the loss falls
}
