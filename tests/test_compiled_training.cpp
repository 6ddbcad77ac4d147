// Compiled training: hybridized calls in grad mode run a compiled forward
// whose output carries one autograd node running the compiled backward.
// Every gradient is checked against eager mode (the oracle).
#include <doctest/doctest.h>

#include <cmath>
#include <atomic>
#include <memory>
#include <thread>

#include "examples/seed_models.h"
#include "examples/training.h"
#include "examples/zoo.h"
#include "ir/split.h"
#include "tests/helpers.h"
#include "tests/random_program.h"

using namespace bj;

namespace {

/// ||got - want|| <= rtol ||want|| + atol (L2 over the tensor), both defined or both not.
void check_l2(const Tensor& got, const Tensor& want, const std::string& what, double rtol = 1e-5, double atol = 1e-7) {
  INFO(what);
  REQUIRE(got.defined() == want.defined());
  if (!want.defined()) return;
  REQUIRE(got.type() == want.type());
  auto g = test::values(got), w = test::values(want);
  double diff = 0, norm = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    diff += (g[i] - w[i]) * (g[i] - w[i]);
    norm += w[i] * w[i];
  }
  INFO("|got - want| = " << std::sqrt(diff) << ", |want| = " << std::sqrt(norm));
  CHECK(std::sqrt(diff) <= rtol * std::sqrt(norm) + atol);
}

struct Grads {
  Tensor out, input;
  std::vector<Tensor> params;
};

/// One training call: zero_grad, out = net(x), (out * weight).sum().backward(), the gradients.
Grads step(nn::Block& net, const Tensor& x, const Tensor& weight, bool eager) {
  net.zero_grad();
  if (x.requires_grad()) x.zero_grad();
  Grads g;
  g.out = eager ? net.call_eager(x) : net(x);
  (g.out * weight).sum().backward();
  for (const nn::Parameter& p : net.parameters()) g.params.push_back(p.grad().defined() ? p.grad().clone() : Tensor());
  if (x.requires_grad()) g.input = x.grad().clone();
  return g;
}

void check_same(const Grads& got, const Grads& want, double rtol = 1e-5) {
  check_l2(got.out, want.out, "output", rtol);
  check_l2(got.input, want.input, "input gradient", rtol);
  REQUIRE(got.params.size() == want.params.size());
  for (size_t i = 0; i < got.params.size(); ++i)
    check_l2(got.params[i], want.params[i], "parameter " + std::to_string(i), rtol);
}

}  // namespace

TEST_CASE("compiled training: every zoo model's parameter and input gradients equal eager's") {
  std::vector<examples::ZooModel> models = examples::zoo();
  for (const auto& m : examples::vision_zoo())  // resnet18-28 has the 96x96 model's every block, 9x less work
    if (m.name != "resnet18") models.push_back(m);
  for (const auto& m : models) {
    for (bool input_grad : {false, true}) {
      CAPTURE(m.name);
      CAPTURE(input_grad);
      manual_seed(21);
      auto net = m.make();
      Tensor x0 = uniform(-1, 1, m.input);
      net->call_eager(x0);  // completes deferred shapes
      // ResNet in training mode is badly conditioned at initialization (BatchNorm over 2 images of
      // channels with little variance): moving the input by 1e-6 moves eager's own gradients by
      // 1e-5 to 2e-2 relative (measured), so any other rounding order fails 1e-5. Its gradients
      // are compared in eval mode (BatchNorm's running statistics; the batch statistics' compiled
      // gradients are tested on a small network in test_cnn.cpp).
      if (m.name == "resnet18-28") net->eval();
      Tensor weight = uniform(-1, 1, net->call_eager(x0).shape());
      net->hybridize();
      for (int call = 0; call < 4; ++call) {  // the first is traced, the rest run compiled
        Tensor x = uniform(-1, 1, m.input);
        if (input_grad) x.set_requires_grad();
        Grads want = step(*net, x, weight, true);
        Grads got = step(*net, x, weight, false);
        check_same(got, want);
      }
      nn::HybridStats s = net->stats();
      CHECK(s.compiled_hits >= 1);
      CHECK(s.compile_failures == 0);
    }
  }
}

TEST_CASE("compiled training: random blocks with data-dependent control flow, each path's gradients equal eager's") {
  int64_t compiled = 0;
  for (uint32_t seed = 0; seed < 16; ++seed) {
    CAPTURE(seed);
    manual_seed(100 + seed);
    test::RandomProgram net(seed);
    net.initialize(init::xavier());
    const int64_t width = 4 + seed % 5;
    Tensor probe = net.call_eager(uniform(-1, 1, {2, width}));
    Tensor weight = uniform(-1, 1, probe.shape());
    net.hybridize();
    for (int call = 0; call < 12; ++call) {
      CAPTURE(call);
      Tensor x = uniform(-1, 1, {2, width}) * static_cast<float>(std::pow(10.0, call % 4 - 1));
      if (call % 3 == 0 || net.layers.empty()) x.set_requires_grad();  // else nothing would need a gradient
      Grads want = step(net, x, weight, true);
      const std::string eager_path = net.path;
      Grads got = step(net, x, weight, false);
      CAPTURE(eager_path);
      // Inputs up to 100 through random layers and tanh/exp amplify the forward's rounding
      // differences (other summation orders) to about 2e-5; a wrong path differs by order 1.
      check_same(got, want, 1e-4);
    }
    compiled += net.stats().compiled_hits;
    CHECK(net.stats().compile_failures == 0);
  }
  MESSAGE(compiled << " of 192 training calls ran compiled code");
  CHECK(compiled >= 48);
}

TEST_CASE("compiled training saves less: IEEE elementwise work is redone in the backward, gradients unchanged") {
  // Dense -> LayerNorm -> GELU -> Dense -> max-centring guarded by the max: the backward redoes
  // LayerNorm's scale and shift and GELU's arithmetic from what it keeps, but not tanh (the
  // forward computes the guard's cone exactly, the backward approximately, and the max's
  // gradient compares values with the saved max for equality).
  struct Net : nn::Block {
    nn::Dense& d1 = add("d1", nn::Dense(16));
    nn::LayerNorm& norm = add("norm", nn::LayerNorm(16));
    nn::Dense& d2 = add("d2", nn::Dense(8));
    Tensor forward(const Tensor& x) override {
      Tensor h = d2(nn::gelu(norm(d1(x))));
      Tensor t = tanh(h) * 2 + 1;
      return t.max() > 0.5f ? t - t.max() : t * 3;
    }
  };
  manual_seed(31);
  Net net;
  net.initialize();
  Tensor x0 = uniform(-1, 1, {5, 12});
  net.call_eager(x0);
  TrainingTrace t = trace_training(net, x0);
  const ir::BackwardSplit split =
      ir::split_backward(*t.trace.graph, t.forward_outputs, static_cast<int>(t.grad_outputs.size()));
  int hidden_saved = 0;  // kept only for the backward, of the hidden width
  for (const auto& sv : split.saved)
    if (sv.from == ir::BackwardSplit::Saved::From::kForwardOutput && sv.index > 0)
      hidden_saved += split.forward->outputs()[static_cast<size_t>(sv.index)]->type.shape == Shape{5, 16};
  // Of the hidden width: LayerNorm's centred input and tanh. The normalized values, GELU's input
  // and its other factors come back from those, the standard deviation and the parameters
  // (saved without recomputation: eight tensors of that width).
  CHECK(hidden_saved == 2);
  for (bool exact : {false, true}) {
    CAPTURE(exact);
    manual_seed(31);
    Net twin;
    twin.initialize();
    twin.call_eager(x0);
    Tensor weight = uniform(-1, 1, {5, 8});
    twin.hybridize({.exact = exact});
    for (int call = 0; call < 4; ++call) {
      Tensor x = uniform(-1, 1, {5, 12}) * static_cast<float>(call + 1);
      x.set_requires_grad();
      Grads want = step(twin, x, weight, true);
      Grads got = step(twin, x, weight, false);
      if (exact) {  // bit for bit
        check_l2(got.input, want.input, "input gradient", 0, 0);
        for (size_t i = 0; i < got.params.size(); ++i) check_l2(got.params[i], want.params[i], "parameter", 0, 0);
      } else {
        check_same(got, want);
      }
    }
    CHECK(twin.stats().compiled_hits >= 3);
  }
}

TEST_CASE("compiled training: a Dense used three times sums its gradient, calls accumulate until zero_grad") {
  struct Thrice : nn::Block {
    nn::Dense* d = &add("d", nn::Dense(6, "tanh"));
    Tensor forward(const Tensor& x) override { return (*d)((*d)((*d)(x))); }
  };
  manual_seed(22);
  Thrice net;
  net.initialize();
  Tensor x = uniform(-1, 1, {3, 6});
  net.call_eager(x);
  net.hybridize();
  net(x).sum().backward();  // traced
  net.zero_grad();
  net(x).sum().backward();  // compiled
  net(x).sum().backward();  // compiled again: accumulates
  CHECK(net.stats().compiled_hits == 2);
  std::vector<Tensor> compiled;
  for (const auto& p : net.parameters()) compiled.push_back(p.grad().clone());
  net.zero_grad();
  net.call_eager(x).sum().backward();
  net.call_eager(x).sum().backward();
  auto ps = net.parameters();
  for (size_t i = 0; i < ps.size(); ++i) check_l2(compiled[i], ps[i].grad(), "parameter " + std::to_string(i));
}

TEST_CASE("compiled training: FixedHiddenMLP on inputs taking different paths, each variant's backward") {
  manual_seed(23);
  examples::FixedHiddenMLP net;
  net.initialize();
  Tensor w = uniform(-1, 1, {});
  net.hybridize();
  for (int round = 0; round < 3; ++round)
    for (float scale : {0.01f, 1.0f, 10.0f, 100.0f, 1000.0f}) {
      CAPTURE(scale);
      Tensor x = uniform(-1, 1, {2, 20}) * scale;
      Grads want = step(net, x, w, true);
      Grads got = step(net, x, w, false);
      check_same(got, want);
    }
  nn::HybridStats s = net.stats();
  CHECK(s.variants >= 3);
  CHECK(s.compiled_hits >= 5);
}

TEST_CASE("compiled training: a saved tensor changed in place before backward is eager's AutogradError") {
  manual_seed(24);
  nn::Sequential net(nn::Dense(8, "relu"), nn::Dense(4));
  net.initialize();
  Tensor x = uniform(-1, 1, {2, 5});
  net.call_eager(x);
  net.hybridize();
  net(x).sum().backward();  // traced
  SUBCASE("the input") {
    x.set_requires_grad();
    net(x);  // a new key (the input requires grad): traced
    Tensor y = net(x);
    CHECK(net.stats().compiled_hits == 1);
    {
      NoGradGuard no_grad;
      x += 1.0;
    }
    CHECK_THROWS_AS(y.sum().backward(), AutogradError);
  }
  SUBCASE("a parameter, by an optimizer step") {
    optim::SGD opt(net.parameters(), {.lr = 0.1f});
    Tensor y = net(x);
    CHECK(net.stats().compiled_hits == 1);
    opt.step();
    CHECK_THROWS_WITH_AS(y.sum().backward(), doctest::Contains("parameter '1.weight' (f32[4,8]) was modified in place"),
                         AutogradError);
    Tensor y2 = net(x);  // the next call sees the new values
    y2.sum().backward();
  }
}

TEST_CASE("compiled training: backward twice through one compiled call accumulates twice, as eager") {
  manual_seed(25);
  examples::MLP net;
  net.initialize();
  Tensor x = uniform(-1, 1, {2, 20});
  net.hybridize();
  net(x);
  net.zero_grad();
  Tensor y = net(x);
  CHECK(net.stats().compiled_hits == 1);
  y.sum().backward();
  y.sum().backward();
  std::vector<Tensor> compiled;
  for (const auto& p : net.parameters()) compiled.push_back(p.grad().clone());
  net.zero_grad();
  Tensor e = net.call_eager(x);
  e.sum().backward();
  e.sum().backward();
  auto ps = net.parameters();
  for (size_t i = 0; i < ps.size(); ++i) check_l2(compiled[i], ps[i].grad(), "parameter " + std::to_string(i));
}

TEST_CASE("compiled training: 200 steps of SGD with momentum and of Adam, eager, hybridized and whole-step losses agree") {
  for (const char* optimizer : {"sgd", "adam"}) {
    CAPTURE(optimizer);
    auto task = examples::make_classification_task(64, 20, 10, 3);
    const double lr = std::string(optimizer) == "sgd" ? 0.1 : 0.01;
    std::vector<double> losses[3];
    std::vector<int64_t> hits(3);
    for (int mode = 0; mode < 3; ++mode) {  // eager, hybridized, TrainStep
      manual_seed(26);
      examples::MLP net;
      net.initialize(init::xavier());
      net(task.x);
      std::unique_ptr<optim::Optimizer> opt;
      if (std::string(optimizer) == "sgd")
        opt = std::make_unique<optim::SGD>(net.parameters(), optim::SGDOptions{.lr = lr, .momentum = 0.9});
      else
        opt = std::make_unique<optim::Adam>(net.parameters(), optim::AdamOptions{.lr = lr});
      if (mode == 1) net.hybridize();
      nn::TrainStep step(net, nn::cross_entropy, *opt);
      for (int i = 0; i < 200; ++i) {
        if (mode == 2) {
          losses[mode].push_back(step(task.x, task.y).item());
        } else {
          opt->zero_grad();
          Tensor loss = nn::cross_entropy(net(task.x), task.y);
          losses[mode].push_back(loss.item());
          loss.backward();
          opt->step();
        }
      }
      hits[static_cast<size_t>(mode)] = mode == 2 ? step.stats().compiled_hits : net.stats().compiled_hits;
    }
    for (int mode = 1; mode < 3; ++mode)
      for (size_t i = 0; i < losses[0].size(); ++i) {
        CAPTURE(mode);
        CAPTURE(i);
        CHECK(std::fabs(losses[mode][i] - losses[0][i]) <= 1e-4 * std::fabs(losses[0][i]));
      }
    CHECK(losses[0].back() < 0.5 * losses[0].front());  // it learned
    CHECK(hits[1] >= 199);                              // and the other runs were compiled
    CHECK(hits[2] == 198);  // the first step creates the optimizer's state, the second is traced
  }
}

TEST_CASE("whole-step training: the compiled update equals step() on the same gradients bit for bit (SGD, Adam)") {
  manual_seed(31);
  for (int which = 0; which < 3; ++which) {
    CAPTURE(which);  // SGD with momentum, SGD with momentum and weight decay, Adam with weight decay
    examples::MLP net, twin;
    net.initialize();
    twin.initialize();
    Tensor x = uniform(-1, 1, {3, 20}), y = tensor(std::vector<int64_t>{1, 4, 7}, {3});
    net.call_eager(x);
    twin.call_eager(x);
    auto pn = net.parameters(), pt = twin.parameters();
    for (size_t i = 0; i < pn.size(); ++i) pt[i].set_data(pn[i].data().clone());
    auto make = [&](std::vector<nn::Parameter> ps) -> std::unique_ptr<optim::Optimizer> {
      if (which == 2) return std::make_unique<optim::Adam>(ps, optim::AdamOptions{.lr = 0.01, .weight_decay = 0.01});
      return std::make_unique<optim::SGD>(ps, optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = which * 0.01});
    };
    auto on = make(pn), ot = make(pt);
    nn::TrainStep step(net, nn::cross_entropy, *on);
    for (int i = 0; i < 6; ++i) {
      CAPTURE(i);
      step(x, y);
      // The twin's eager multi-tensor step from the gradients the (compiled) step left in grad().
      ot->zero_grad();
      for (size_t k = 0; k < pn.size(); ++k) autograd::set_grad(pt[k].data(), pn[k].data().grad().clone());
      ot->step();
      for (size_t k = 0; k < pn.size(); ++k) CHECK(test::values(pn[k].data()) == test::values(pt[k].data()));
    }
    CHECK(step.stats().compiled_hits == 4);  // the first step creates the state, the second is traced
    CHECK(step.graphs().find("commit %out.weight = %") != std::string::npos);
    // Every weight and state tensor is written by its update's loop, after the guards: no copies.
    codegen::CompileOptions co;
    co.use_cache = false;
    co.training = true;
    const auto plan = codegen::compile(*step.traced_graphs().at(0), co)->plan();
    CHECK(plan.commit_in_place.size() == (which == 2 ? 12 : 8));
    CHECK(plan.commit_order.empty());
  }
}

TEST_CASE("whole-step training: a gradient no one else holds is written over, one a user kept is not") {
  manual_seed(37);
  examples::MLP net, twin;
  net.initialize();
  twin.initialize();
  Tensor x = uniform(-1, 1, {2, 20}), y = tensor(std::vector<int64_t>{3, 8}, {2});
  net.call_eager(x);
  twin.call_eager(x);
  auto pn = net.parameters(), pt = twin.parameters();
  for (size_t i = 0; i < pn.size(); ++i) pt[i].set_data(pn[i].data().clone());
  optim::SGD on(pn, {.lr = 0.1}), ot(pt, {.lr = 0.1});
  nn::TrainStep step(net, nn::cross_entropy, on);
  auto eager_step = [&] {
    ot.zero_grad();
    nn::cross_entropy(twin.call_eager(x), y).backward();
    ot.step();
  };
  for (int i = 0; i < 3; ++i) {  // traced, then compiled
    step(x, y);
    eager_step();
  }
  REQUIRE(step.stats().compiled_hits == 2);
  const Tensor& w = pn[0].data();
  const void* where = w.grad().raw_data();
  const uint64_t version = w.grad().impl()->storage->version();
  // Nobody holds the gradient: the next step writes the new one into the same storage, and its
  // version moves (what compiled code that packed it would look at).
  step(x, y);
  eager_step();
  CHECK(w.grad().raw_data() == where);
  CHECK(w.grad().impl()->storage->version() != version);
  for (size_t k = 0; k < pn.size(); ++k) check_l2(pn[k].data().grad(), pt[k].data().grad(), "gradient " + std::to_string(k));
  // A gradient the user kept (or a view sharing its storage) keeps its values: the step makes a
  // new one, as eager's zero_grad and backward would.
  Tensor kept = w.grad();
  Tensor bias_view = pn[1].data().grad().detach();
  const std::vector<double> kept_values = test::values(kept), bias_values = test::values(bias_view);
  for (int i = 0; i < 2; ++i) {
    step(x, y);
    eager_step();
  }
  CHECK(test::values(kept) == kept_values);
  CHECK(test::values(bias_view) == bias_values);
  CHECK(w.grad().raw_data() != kept.raw_data());
  CHECK(pn[1].data().grad().raw_data() != bias_view.raw_data());
  for (size_t k = 0; k < pn.size(); ++k) {
    check_l2(pn[k].data().grad(), pt[k].data().grad(), "gradient " + std::to_string(k));
    check_l2(pn[k].data(), pt[k].data(), "parameter " + std::to_string(k));
  }
  // A gradient of another type (set by hand) is not written over either.
  autograd::set_grad(w, zeros({1}));
  step(x, y);
  eager_step();
  CHECK(w.grad().type() == pt[0].data().grad().type());
  check_l2(w.grad(), pt[0].data().grad(), "gradient after a foreign one");
  CHECK(step.stats().compiled_hits == 6);
}

TEST_CASE("whole-step training: FixedHiddenMLP's paths, parameters replaced between steps, bad losses") {
  manual_seed(27);
  SUBCASE("each path a variant, the parameters after every step equal an eager twin's") {
    examples::FixedHiddenMLP a, b;
    a.initialize();
    b.initialize();
    a.call_eager(zeros({2, 20}));  // deferred shapes
    b.call_eager(zeros({2, 20}));
    b.rand_weight = a.rand_weight.clone();
    auto pa = a.parameters(), pb = b.parameters();
    for (size_t i = 0; i < pa.size(); ++i) pb[i].set_data(pa[i].data().clone());
    optim::SGD oa(pa, {.lr = 0.01, .momentum = 0.9}), ob(pb, {.lr = 0.01, .momentum = 0.9});
    auto loss = [](const Tensor& out, const Tensor& t) { return (out - t) * (out - t); };
    nn::TrainStep step(a, loss, oa);
    for (int round = 0; round < 3; ++round)
      for (float scale : {0.01f, 1.0f, 100.0f, 1000.0f}) {
        Tensor x = uniform(-1, 1, {2, 20}) * scale, t = uniform(-1, 1, {});
        Tensor la = step(x, t);
        ob.zero_grad();
        Tensor lb = loss(b(x), t);
        lb.backward();
        ob.step();
        check_l2(la, lb.detach(), "loss", 1e-4, 1e-5);  // (out - t)^2 cancels: the parameters are the test
        for (size_t i = 0; i < pa.size(); ++i) check_l2(pa[i].data(), pb[i].data(), "parameter " + std::to_string(i));
      }
    CHECK(step.stats().variants >= 3);
    CHECK(step.stats().compiled_hits >= 2);
  }
  SUBCASE("set_data and initialize(force_reinit) between steps are seen by the next compiled step") {
    examples::MLP net;
    net.initialize();
    Tensor x = uniform(-1, 1, {4, 20}), y = tensor(std::vector<int64_t>{0, 1, 2, 3}, {4});
    optim::SGD opt(net.parameters(), {.lr = 0.1});
    nn::TrainStep step(net, nn::cross_entropy, opt);
    step(x, y);
    step(x, y);
    for (int change = 0; change < 2; ++change) {
      if (change == 0)
        net.parameters()[0].set_data(uniform(-1, 1, net.parameters()[0].shape()));
      else
        net.initialize(init::xavier(), true);
      std::vector<Tensor> before;
      for (const auto& p : net.parameters()) before.push_back(p.data().clone());
      double want = 0;
      {
        NoGradGuard no_grad;
        want = nn::cross_entropy(net.call_eager(x), y).item();
      }
      CHECK(step(x, y).item() == doctest::Approx(want).epsilon(1e-5));
    }
    CHECK(step.stats().traces == 1);
  }
  SUBCASE("a one-element loss of shape [1] compiles as a scalar does") {
    examples::MLP net;
    net.initialize();
    optim::SGD opt(net.parameters(), {.lr = 0.1});
    Tensor x = uniform(-1, 1, {4, 20}), y = tensor(std::vector<int64_t>{0, 1, 2, 3}, {4});
    nn::TrainStep step(net, [](const Tensor& out, const Tensor& t) { return nn::cross_entropy(out, t).reshape({1}); }, opt);
    const double first = step(x, y).item();
    double last = first;
    for (int i = 0; i < 20; ++i) last = step(x, y).item();
    CHECK(step.stats().compiled_hits == 20);
    CHECK(last < first);
  }
  SUBCASE("a loss of several elements is eager's AutogradError, on the first step and on compiled ones") {
    examples::MLP net;
    net.initialize();
    optim::SGD opt(net.parameters(), {.lr = 0.1});
    nn::TrainStep step(net, [](const Tensor& out, const Tensor&) { return out; }, opt);
    CHECK_THROWS_AS(step(uniform(-1, 1, {2, 20}), zeros({})), AutogradError);
    CHECK_THROWS_AS(step(uniform(-1, 1, {2, 20}), zeros({})), AutogradError);
    nn::TrainStep labels(net, nn::cross_entropy, opt);
    Tensor x = uniform(-1, 1, {2, 20});
    CHECK_THROWS_AS(labels(x, tensor(std::vector<int64_t>{0, 10}, {2})), IndexError);  // while tracing
    labels(x, tensor(std::vector<int64_t>{0, 9}, {2}));
    labels(x, tensor(std::vector<int64_t>{3, 1}, {2}));  // compiled: the label checks are guards
    CHECK(labels.stats().compiled_hits == 1);
    std::vector<Tensor> before;
    for (const auto& p : net.parameters()) before.push_back(p.data().clone());
    CHECK_THROWS_AS(labels(x, tensor(std::vector<int64_t>{-1, 1}, {2})), IndexError);  // a guard fails: eager's error
    CHECK_THROWS_AS(labels(x, tensor(std::vector<int64_t>{0, 10}, {2})), IndexError);
    CHECK_THROWS_AS(labels(x, tensor(std::vector<float>{0, 1}, {2})), DTypeError);
    auto ps = net.parameters();
    for (size_t i = 0; i < ps.size(); ++i) CHECK(test::values(ps[i].data()) == test::values(before[i]));  // no update
  }
}

TEST_CASE("compiled training: an input computed with grad (not a leaf) passes its gradient on, as eager") {
  manual_seed(28);
  examples::MLP net;
  net.initialize();
  Tensor a = uniform(-1, 1, {2, 20}).set_requires_grad();
  net.hybridize();
  for (int call = 0; call < 3; ++call) {  // traced, then compiled
    a.zero_grad();
    net((a * 2).tanh()).sum().backward();
    Tensor compiled = a.grad().clone();
    a.zero_grad();
    net.call_eager((a * 2).tanh()).sum().backward();
    check_l2(compiled, a.grad(), "the leaf's gradient through the compiled call");
  }
  CHECK(net.stats().compiled_hits == 2);
}

TEST_CASE("Dropout compiles: a compiled call draws the masks eager draws from the same generator state") {
  manual_seed(29);
  nn::Sequential net(nn::Dense(16, "relu"), nn::Dropout(0.5), nn::Dense(4));
  net.initialize();
  Tensor x = uniform(-1, 1, {3, 10});
  net.call_eager(x);
  Tensor weight = uniform(-1, 1, {3, 4});
  net.hybridize();
  SUBCASE("inference in training mode") {
    NoGradGuard no_grad;
    for (int call = 0; call < 4; ++call) {
      manual_seed(1000 + call);
      Tensor got = net(x);
      manual_seed(1000 + call);
      Tensor want = net.call_eager(x);
      test::check_near(got, want, test::Tol{1e-6, 1e-6});
    }
    CHECK(net.stats().compiled_hits == 3);
    CHECK(net.stats().variants == 1);
    manual_seed(5);
    Tensor a = net(x), b = net(x);  // the generator moves on: fresh masks each call
    CHECK(test::values(a) != test::values(b));
  }
  SUBCASE("training: gradients with the same masks") {
    for (int call = 0; call < 4; ++call) {
      manual_seed(2000 + call);
      Grads got = step(net, x, weight, false);
      manual_seed(2000 + call);
      Grads want = step(net, x, weight, true);
      check_same(got, want);
    }
    CHECK(net.stats().compiled_hits == 3);
  }
  SUBCASE("the whole step, 50 steps against an eager twin") {
    nn::Sequential twin(nn::Dense(16, "relu"), nn::Dropout(0.5), nn::Dense(4));
    twin.initialize();
    twin.call_eager(x);
    auto pn = net.parameters(), pt = twin.parameters();
    for (size_t i = 0; i < pn.size(); ++i) pt[i].set_data(pn[i].data().clone());
    optim::SGD on(pn, {.lr = 0.05, .momentum = 0.9}), ot(pt, {.lr = 0.05, .momentum = 0.9});
    Tensor y = tensor(std::vector<int64_t>{0, 1, 3}, {3});
    nn::TrainStep whole(net, nn::cross_entropy, on);
    for (int i = 0; i < 50; ++i) {
      manual_seed(3000 + static_cast<uint64_t>(i));
      const double got = whole(x, y).item();
      manual_seed(3000 + static_cast<uint64_t>(i));
      ot.zero_grad();
      Tensor loss = nn::cross_entropy(twin(x), y);
      loss.backward();
      ot.step();
      CHECK(got == doctest::Approx(loss.item()).epsilon(1e-5));
    }
    CHECK(whole.stats().compiled_hits == 48);  // after the optimizer's first step and the traced one
    for (size_t i = 0; i < pn.size(); ++i) check_l2(pn[i].data(), pt[i].data(), "parameter " + std::to_string(i), 1e-4);
  }
}

TEST_CASE("a compiled call whose guard fails gives its random counters back: the eager rerun draws eager's numbers") {
  struct DropThenBranch : nn::Block {
    nn::Dropout& drop = add("drop", nn::Dropout(0.3));
    Tensor forward(const Tensor& x) override {
      Tensor y = drop(x);
      if (y.sum() > 0) return y * 2;
      return y - 1;
    }
  };
  DropThenBranch net;
  NoGradGuard no_grad;
  net.hybridize({.max_variants = 1});  // the second path stays eager: its calls fail the guard
  Tensor pos = uniform(0.5, 1, {4, 8}), neg = uniform(-1, -0.5, {4, 8});
  net(pos);  // traced: the positive path
  for (int i = 0; i < 3; ++i)
    for (const Tensor& x : {pos, neg}) {
      manual_seed(4000 + static_cast<uint64_t>(i));
      Tensor got = net(x);
      Tensor after = rand({1});  // where the generator stands after the call
      manual_seed(4000 + static_cast<uint64_t>(i));
      Tensor want = net.call_eager(x);
      Tensor after_eager = rand({1});
      test::check_near(got, want, test::Tol{0, 0});
      CHECK(test::values(after) == test::values(after_eager));
    }
  CHECK(net.stats().compiled_hits == 3);
}

TEST_CASE("compiled training next to compiled inference from 4 threads: gradients and outputs equal eager's") {
  manual_seed(30);
  examples::MLP shared;  // inference from two threads
  shared.initialize();
  shared.eval();
  Tensor x = uniform(-1, 1, {2, 20});
  shared.call_eager(x);
  shared.hybridize({.adaptive = false});  // every call compiled: no eager timing samples
  {
    NoGradGuard no_grad;
    shared(x);  // traced and compiled before the threads start
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&] {
      NoGradGuard no_grad;
      for (int i = 0; i < 200; ++i)
        if (!test::near(shared(x), shared.call_eager(x), test::Tol{1e-5, 1e-6})) ++mismatches;
    });
  std::vector<std::unique_ptr<examples::MLP>> trained;
  for (int t = 0; t < 2; ++t) {  // training, each thread its own net and optimizer
    trained.push_back(std::make_unique<examples::MLP>());
    trained.back()->initialize();
    trained.back()->call_eager(x);
  }
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      examples::MLP& net = *trained[static_cast<size_t>(t)];
      optim::SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9});
      net.hybridize();
      Tensor w = ones({2, 10});
      for (int i = 0; i < 50; ++i) {
        Grads want = step(net, x, w, true);
        Grads got = step(net, x, w, false);
        for (size_t k = 0; k < got.params.size(); ++k)
          if (!test::near(got.params[k], want.params[k], test::Tol{1e-5, 1e-6})) ++mismatches;
        opt.step();
      }
    });
  for (auto& th : threads) th.join();
  CHECK(mismatches == 0);
  CHECK(shared.stats().compiled_hits == 400);
  for (const auto& net : trained) CHECK(net->stats().compiled_hits >= 49);
}

TEST_CASE("whole-step training: an optimizer without a traceable update runs every step eagerly, correctly") {
  // A user's optimizer that implements step() only.
  struct Plain : optim::Optimizer {
    explicit Plain(std::vector<nn::Parameter> ps) : Optimizer(std::move(ps), "Plain") {}
    void step() override {
      NoGradGuard no_grad;
      for (const auto& p : parameters())
        if (p.data().grad().defined()) {
          Tensor w = p.data();
          w -= p.data().grad() * 0.1;
        }
    }
  };
  manual_seed(41);
  examples::MLP net, twin;
  net.initialize();
  twin.initialize();
  Tensor x = uniform(-1, 1, {3, 20}), y = tensor(std::vector<int64_t>{1, 4, 7}, {3});
  net.call_eager(x);
  twin.call_eager(x);
  auto pn = net.parameters(), pt = twin.parameters();
  for (size_t i = 0; i < pn.size(); ++i) pt[i].set_data(pn[i].data().clone());
  Plain on(pn), ot(pt);
  nn::TrainStep step(net, nn::cross_entropy, on);
  for (int i = 0; i < 4; ++i) {
    const double got = step(x, y).item();
    ot.zero_grad();
    Tensor loss = nn::cross_entropy(twin(x), y);
    loss.backward();
    ot.step();
    CHECK(got == loss.item());
    for (size_t k = 0; k < pn.size(); ++k) CHECK(test::values(pn[k].data()) == test::values(pt[k].data()));
  }
  CHECK(step.stats().compiled_hits == 0);
  CHECK(step.stats().traces == 1);  // tried once; the key then runs eagerly for good
}
