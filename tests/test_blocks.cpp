// Blocks: layers, naming through nesting, deferred initialization, sharing,
// constants, modes, the exercises' blocks.
#include "examples/seed_models.h"
#include "tests/helpers.h"

using namespace bj;
using namespace bj::nn;
using bj::test::check_close;
using bj::test::values;

namespace {
std::vector<std::string> names(const Block& b) {
  std::vector<std::string> out;
  for (auto& [n, p] : b.named_parameters()) out.push_back(n);
  return out;
}
}  // namespace

TEST_CASE("Dense computes activation(x W^T + b) with weight [units, in]") {
  Dense d(3, "relu", true, 2);
  d.initialize();
  CHECK(d.weight.shape() == Shape{3, 2});
  d.weight.set_data(tensor({{1, 0}, {0, 1}, {1, -1}}));
  d.bias.set_data(tensor({0.5, -5, 0}));
  check_close(d(tensor({{2, 3}})), {2.5, 0, 0});
  Dense lin(2, "none", false, 2);
  lin.initialize(init::ones());
  CHECK_FALSE(lin.bias.defined());
  check_close(lin(tensor({{1, 2}, {3, 4}})), {3, 3, 7, 7});
  Dense batched(4);
  batched.initialize();
  CHECK(batched(ones({2, 3, 5})).shape() == Shape{2, 3, 4});  // over the last axis
  CHECK_THROWS_AS(Dense(4, "rleu"), ValueError);
  CHECK_THROWS_AS(Dense(0), ValueError);
}

TEST_CASE("deferred initialization: Dense(256) learns its input width on the first call") {
  Dense d(256);
  d.initialize();
  CHECK(d.weight.shape() == Shape{256, 0});
  CHECK_FALSE(d.weight.initialized());
  Tensor y = d(ones({2, 20}));
  CHECK(y.shape() == Shape{2, 256});
  CHECK(d.weight.shape() == Shape{256, 20});
  CHECK(d.weight.initialized());
  CHECK(d.bias.initialized());
  check_close(d.bias.data(), std::vector<double>(256, 0.0));  // biases keep their zeros
  for (double w : values(d.weight.data())) CHECK(std::fabs(w) <= 0.07);
  CHECK(d.repr() == "Dense(20 -> 256)");
}

TEST_CASE("initializers") {
  Dense d(50, "none", true, 40);
  d.initialize(init::constant(0.25));
  check_close(d.weight.data(), std::vector<double>(2000, 0.25));
  d.initialize(init::normal(1.0));  // no force: unchanged
  check_close(d.weight.data(), std::vector<double>(2000, 0.25));
  d.initialize(init::xavier(), true);
  double c = std::sqrt(6.0 / 90);
  double maxabs = 0;
  for (double w : values(d.weight.data())) maxabs = std::max(maxabs, std::fabs(w));
  CHECK(maxabs <= c);
  CHECK(maxabs > 0.9 * c);
  d.initialize(init::normal(2.0), true);
  auto v = values(d.weight.data());
  double var = 0;
  for (double w : v) var += w * w / v.size();
  CHECK(std::sqrt(var) == doctest::Approx(2.0).epsilon(0.1));
  d.initialize(init::zeros(), true);
  check_close(d.weight.data(), std::vector<double>(2000, 0.0));
}

TEST_CASE("parameter names follow the nesting") {
  examples::NestMLP nest;
  CHECK(names(nest) == std::vector<std::string>{"net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias",
                                                 "dense.weight", "dense.bias"});
  Sequential chim = examples::chimera();
  auto n = names(chim);
  CHECK(n.front() == "0.net.0.weight");
  CHECK(n.back() == "2.linear.bias");
  CHECK(n.size() == 10);
  CHECK(chim.parameters().size() == 10);
}

TEST_CASE("sharing: one child used twice has one parameter set") {
  Sequential net;
  Dense& shared = net.add(Dense(8, "relu", true, 8)).at<Dense>(0);
  net.add(ReLU());
  net.add(shared);  // the same block again
  net.initialize();
  CHECK(net.size() == 3);
  CHECK(&net[2] == &net[0]);
  CHECK(names(net) == std::vector<std::string>{"0.weight", "0.bias"});
  Tensor x = ones({1, 8});
  Tensor before = net(x);
  // An update is visible through both uses.
  shared.weight.set_data(shared.weight.data() * 2);
  Tensor after = net(x);
  Tensor h = relu(relu(matmul(x, shared.weight.data(), false, true) + shared.bias.data()));
  check_close(after, relu(matmul(h, shared.weight.data(), false, true) + shared.bias.data()));
  CHECK(values(before) != values(after));

  // A parameter registered in two blocks.
  struct Tied : Block {
    Dense& a = add("a", Dense(4, "none", false, 4));
    Dense& b = add("b", Dense(4, "none", false, 4));
    Tied() { b.weight = a.weight; }
    Tensor forward(const Tensor& x) override { return b(a(x)); }
  };
  Tied t;
  CHECK(t.a.weight.same(t.b.weight));
  CHECK(names(t) == std::vector<std::string>{"a.weight"});
  t.initialize();
  CHECK(t.b.weight.initialized());
}

TEST_CASE("a block passed by reference must already be in a tree") {
  Dense loose(4);
  Sequential net;
  CHECK_THROWS_AS(net.add(loose), ValueError);
  net.add("x", Dense(2));
  CHECK_THROWS_AS(net.add("x", Dense(3)), ValueError);  // names are unique among siblings
}

TEST_CASE("constants are listed apart from parameters and never trained") {
  examples::FixedHiddenMLP m;
  auto params = names(m);
  CHECK(params == std::vector<std::string>{"linear.weight", "linear.bias"});
  auto consts = m.named_constants();
  REQUIRE(consts.size() == 1);
  CHECK(consts[0].first == "rand_weight");
  CHECK(consts[0].second.shares_storage(m.rand_weight));
  m.initialize(init::zeros(), true);
  CHECK(m.rand_weight.sum().item() > 0);  // not touched by initialize
}

TEST_CASE("train and eval apply to the whole tree and Dropout follows") {
  Sequential net(Dense(16, "none", true, 16), Dropout(0.5));
  net.initialize(init::constant(0.1));
  CHECK(net[1].is_training());
  net.eval();
  CHECK_FALSE(net.is_training());
  CHECK_FALSE(net[1].is_training());
  Tensor x = ones({4, 16});
  check_close(net(x), net(x));
  net.train();
  manual_seed(5);
  auto y = values(net(ones({200, 16})));
  size_t zeros_n = 0;
  for (double v : y) {
    if (v == 0)
      ++zeros_n;
    else
      CHECK(v == doctest::Approx(2 * 1.6));  // 16 inputs x 0.1 (bias 0), kept values scaled by 1/(1-p)
  }
  CHECK(zeros_n > y.size() * 0.4);
  CHECK(zeros_n < y.size() * 0.6);
  CHECK_THROWS_AS(Dropout(1.0), ValueError);
}

TEST_CASE("Parallel concatenates its children's outputs") {
  Parallel p(Dense(3, "none", true, 2), Dense(5, "tanh", true, 2));
  p.initialize();
  Tensor x = uniform(0, 1, {4, 2});
  Tensor y = p(x);
  CHECK(y.shape() == Shape{4, 8});
  check_close(y.slice(1, 0, 3), p.child("0")(x));
  check_close(y.slice(1, 3, 8), p.child("1")(x));
}

TEST_CASE("repeat() makes fresh instances, each with its own parameters") {
  Sequential s = repeat(3, [] { return Dense(5, "relu", true, 5); });
  CHECK(s.size() == 3);
  CHECK(names(s).size() == 6);
  CHECK(&s[0] != &s[1]);
  s.initialize();
  CHECK(values(s.at<Dense>(0).weight.data()) != values(s.at<Dense>(1).weight.data()));
  CHECK(s(ones({2, 5})).shape() == Shape{2, 5});
}

TEST_CASE("Sequential: indexing, iteration, activation blocks, Flatten") {
  Sequential net(Flatten(), Dense(4), Sigmoid(), Dense(2), Tanh());
  net.initialize();
  int count = 0;
  for (Block& b : net) {
    (void)b;
    ++count;
  }
  CHECK(count == 5);
  CHECK(net[2].type_name() == "Sigmoid");
  CHECK_THROWS_AS(net[5], IndexError);
  CHECK_THROWS_AS(net.at<Dense>(0), ValueError);
  Tensor y = net(ones({3, 2, 3}));
  CHECK(y.shape() == Shape{3, 2});
  for (double v : values(y)) CHECK(std::fabs(v) < 1);
}

TEST_CASE("the block tree prints like PyTorch's module repr") {
  Sequential chim = examples::chimera();
  chim.initialize();
  chim(ones({2, 20}));
  CHECK(chim.repr() ==
        "Sequential(\n"
        "  (0): NestMLP(\n"
        "    (net): Sequential(\n"
        "      (0): Dense(20 -> 64, relu)\n"
        "      (1): Dense(64 -> 32, relu)\n"
        "    )\n"
        "    (dense): Dense(32 -> 16, relu)\n"
        "  )\n"
        "  (1): Dense(16 -> 20)\n"
        "  (2): FixedHiddenMLP(\n"
        "    (linear): Dense(20 -> 20)\n"
        "  )\n"
        ")");
}
