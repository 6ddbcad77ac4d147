// The seed chapter's programs: shapes, determinism under a seed, and what
// each one is about (equivalent MLPs, the halving loop, sharing, nesting).
#include <map>

#include "examples/seed_models.h"
#include "examples/zoo.h"
#include "tests/helpers.h"

using namespace bj;
using namespace bj::examples;
using bj::test::check_close;
using bj::test::values;

namespace {
Tensor run_zoo(const std::string& name, uint64_t seed = 0) {
  manual_seed(seed);
  const ZooModel& m = zoo_model(name);
  auto net = m.make();
  return (*net)(rand(m.input));
}
}  // namespace

TEST_CASE("every zoo model: expected output shape, same output twice under one seed") {
  const std::map<std::string, Shape> shapes = {{"mlp", {2, 10}},         {"my-sequential", {2, 10}},
                                               {"fixed-hidden-mlp", {}}, {"nest-mlp", {2, 16}},
                                               {"chimera", {}},          {"parallel", {2, 16}},
                                               {"factory", {2, 10}}};
  CHECK(zoo().size() == shapes.size());
  for (const ZooModel& m : zoo()) {
    CAPTURE(m.name);
    Tensor a = run_zoo(m.name), b = run_zoo(m.name);
    CHECK(a.shape() == shapes.at(m.name));
    CHECK(values(a) == values(b));
    for (double v : values(a)) CHECK(std::isfinite(v));
    CHECK(values(run_zoo(m.name, 1)) != values(a));
  }
  CHECK_THROWS_AS(zoo_model("resnet"), ValueError);
}

TEST_CASE("Sequential, MLP and MySequential compute the same function from the same parameters") {
  Tensor x = uniform(0, 1, {2, 20});
  manual_seed(4);
  Sequential seq = sequential_mlp();
  seq.initialize();
  Tensor y1 = seq(x);
  manual_seed(4);
  MLP mlp;
  mlp.initialize();
  mlp(x);  // completes deferred shapes, drawing the same numbers in the same order
  manual_seed(4);
  MySequential my(Dense(256, "relu"), Dense(10));
  my.initialize();
  Tensor y3 = my(x);
  check_close(mlp(x), y1);
  check_close(y3, y1);
  // And against the formula: out(relu(x W1^T + b1)) W2^T + b2.
  auto& h = mlp.hidden;
  auto& o = mlp.out;
  Tensor ref = matmul(relu(matmul(x, h.weight.data(), false, true) + h.bias.data()), o.weight.data(), false, true) +
               o.bias.data();
  check_close(y1, ref);
}

TEST_CASE("FixedHiddenMLP: halves until the norm is at most 1, then sums") {
  manual_seed(0);
  FixedHiddenMLP net;
  net.initialize(init::uniform(0.5));
  std::vector<int> counts;
  for (double scale : {1.0, 20.0, 1000.0}) {
    CAPTURE(scale);
    Tensor x = uniform(0, 1, {2, 20}) * scale;
    Tensor y = net(x);
    CHECK(y.dim() == 0);
    // The same computation by hand, counting the halvings.
    Tensor h = matmul(x, net.linear.weight.data(), false, true) + net.linear.bias.data();
    h = relu(matmul(h, net.rand_weight) + 1);
    h = matmul(h, net.linear.weight.data(), false, true) + net.linear.bias.data();
    double n = h.norm().item();
    int halvings = 0;
    while (n > 1) n /= 2, ++halvings;
    check_close(y, {h.sum().item() / std::pow(2.0, halvings)}, 1e-5, 1e-6);
    counts.push_back(halvings);
  }
  CHECK(counts[0] < counts[1]);  // larger inputs take more halvings: the control flow depends on the data
  CHECK(counts[1] < counts[2]);
}

TEST_CASE("FixedHiddenMLP's shared linear layer: one parameter set, used twice") {
  FixedHiddenMLP net;
  net.initialize();
  CHECK(net.parameters().size() == 2);
  Tensor x = rand({2, 20});
  Tensor before = net(x);
  net.linear.weight.set_data(net.linear.weight.data() * 3);
  CHECK(values(net(x)) != values(before));
}

TEST_CASE("chimera nests NestMLP, Dense and FixedHiddenMLP") {
  manual_seed(0);
  Sequential chim = chimera();
  chim.initialize();
  Tensor x = rand({2, 20});
  Tensor y = chim(x);
  // The same result by calling the parts in order.
  Tensor z = chim[2](chim[1](chim[0](x)));
  check_close(y, z);
  CHECK(chim.named_constants().at(0).first == "2.rand_weight");
}

TEST_CASE("the exercises: parallel and factory") {
  manual_seed(0);
  nn::Parallel p = parallel_net();
  p.initialize();
  Tensor x = rand({2, 20});
  Tensor y = p(x);
  CHECK(y.shape() == Shape{2, 16});
  check_close(y, concat({p.child("0")(x), p.child("1")(x)}, 1));
  Sequential f = factory_net();
  f.initialize();
  CHECK(f.size() == 4);
  CHECK(f(x).shape() == Shape{2, 10});
  CHECK(&f[0] != &f[1]);
}
