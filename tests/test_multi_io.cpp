// Blocks with several inputs (some optional) and several outputs: eager
// calls, hybridize (each pattern of present inputs a key of its own), traces,
// compiled training with gradients for parameters and inputs, and padding
// masks through attention. Typed errors for calls of the wrong form.
#include <doctest/doctest.h>

#include <cmath>

#include "tests/helpers.h"

using namespace bj;
using namespace bj::nn;

namespace {

/// {x, optional gate} -> {h, the row sums of h, relu(h)}, with h = Dense(x) (times sigmoid(gate)).
struct Gated : Block {
  Dense& d = add("d", Dense(4, "none", true, 3));
  Tensors forward_many(const Tensors& in) override {
    Tensor h = d(in.at(0));
    if (in.size() > 1 && in[1].defined()) h = h * sigmoid(in[1]);
    return {h, h.sum({-1}), relu(h)};
  }
};

std::shared_ptr<Gated> make_gated() {
  manual_seed(5);
  auto g = std::make_shared<Gated>();
  g->initialize(init::xavier());
  return g;
}

void check_all_close(const Tensors& got, const Tensors& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    test::check_close(got[i], want[i]);
  }
}

}  // namespace

TEST_CASE("blocks with several inputs and outputs: eager, hybridized with a key per pattern of present inputs, traced") {
  auto net = make_gated();
  const Tensor x = normal(0, 1, {2, 3}), gate = normal(0, 1, {2, 4});
  NoGradGuard no_grad;
  const Tensors want = net->call_eager({x, gate}), want_plain = net->call_eager({x, Tensor()});
  REQUIRE(want.size() == 3);
  CHECK(want[1].shape() == Shape{2});
  net->hybridize();
  for (int call = 0; call < 3; ++call) {
    check_all_close((*net)({x, gate}), want);
    check_all_close((*net)({x, Tensor()}), want_plain);
  }
  const HybridStats s = net->stats();
  CHECK(s.keys == 2);
  CHECK(s.compiled_hits == 4);
  CHECK(s.eager_fallbacks == 2);
  // The trace: present inputs are graph inputs, every output a graph output.
  net->hybridize(false);
  const Trace t = trace(*net, Tensors{x, gate});
  CHECK(t.graph->inputs().size() == 2);
  CHECK(t.graph->outputs().size() == 3);
  CHECK(trace(*net, Tensors{x, Tensor()}).graph->inputs().size() == 1);
  // Calls of the wrong form are typed errors naming the block.
  test::check_error<ValueError>([&] { (*net)(x); }, {"Gated", "returns 3 tensors", "list of inputs"});
  struct Nothing : Block {};
  Nothing nothing;
  test::check_error<ValueError>([&] { nothing(x); }, {"overrides neither forward(x) nor forward_many"});
  test::check_error<ValueError>([&] { nothing(Tensors{x}); }, {"overrides neither"});
  Dense one(2, "none", true, 3);
  one.initialize();
  test::check_error<ValueError>([&] { one({x, x}); }, {"Dense", "takes one input", "not 2"});
  test::check_error<ValueError>([&] { one(Tensors{Tensor()}); }, {"Dense", "an absent one"});
  // A one-input block called with a list of one is the same call (`one({x})` is the one-tensor call).
  check_all_close(one(Tensors{x}), {one(x)});
  one.hybridize();
  one(Tensors{x});
  check_all_close(one(Tensors{x}), {one.call_eager(x)});
  CHECK(one.stats().compiled_hits == 1);
  // forward_many must give defined tensors.
  struct Hollow : Block {
    Tensors forward_many(const Tensors&) override { return {Tensor()}; }
  };
  Hollow hollow;
  test::check_error<ValueError>([&] { hollow(Tensors{x}); }, {"undefined tensor as output 0"});
  test::check_error<ValueError>([&] { hollow(x); }, {"returned an undefined tensor"});
}

TEST_CASE("compiled training through several inputs and outputs: parameter and input gradients equal eager's") {
  const Tensor x0 = normal(0, 1, {2, 3}), gate0 = normal(0, 1, {2, 4}), w = normal(0, 1, {2, 4});
  // Each loss uses a different subset of the outputs (an unused output's gradient is zero).
  const std::vector<std::function<Tensor(const Tensors&)>> losses = {
      [&](const Tensors& o) { return (o[0] * w).sum() + o[1].sum() * 0.5; },
      [&](const Tensors& o) { return (o[2] * o[2]).sum(); },
      [&](const Tensors& o) { return o[1].sum() + (o[2] * w).sum() + o[0].mean(); },
  };
  for (size_t which = 0; which < losses.size(); ++which) {
    CAPTURE(which);
    auto eager = make_gated(), hybrid = make_gated();
    hybrid->hybridize();
    for (int step = 0; step < 3; ++step) {
      std::vector<Tensors> grads;
      for (Block* net : {static_cast<Block*>(eager.get()), static_cast<Block*>(hybrid.get())}) {
        Tensor x = x0.clone(), gate = gate0.clone();
        x.set_requires_grad();
        gate.set_requires_grad();
        net->zero_grad();
        const Tensors out = net == eager.get() ? net->call_eager({x, gate}) : (*net)({x, gate});
        losses[which](out).backward();
        Tensors g{x.grad(), gate.grad()};
        for (const Parameter& p : net->parameters()) g.push_back(p.grad());
        grads.push_back(g);
      }
      check_all_close(grads[1], grads[0]);
    }
    CHECK(hybrid->stats().compiled_hits == 2);
  }
}

TEST_CASE("padding masks: masked keys are ignored, hybridized and trained equal to eager, bad masks are typed errors") {
  manual_seed(8);
  MultiHeadAttention attention(8, 2);
  attention.initialize(init::xavier());
  const Tensor x = normal(0, 1, {2, 5, 8});
  // Batch 0 pads its last two positions, batch 1 none.
  const Tensor mask = gt(tensor({{0, 0, 0, 1, 1}, {0, 0, 0, 0, 0}}), full({}, 0.5));
  NoGradGuard no_grad;
  const Tensor y = attention({x, mask})[0];
  // What sits at a padded position never reaches another position's output.
  Tensor other = x.clone();
  for (int64_t i = 3 * 8; i < 5 * 8; ++i) other.mutable_data<float>()[i] = 7.0f;  // batch 0, positions 3 and 4
  const Tensor y2 = attention({other, mask})[0];
  test::check_close(y2.slice(0, 0, 1).slice(1, 0, 3), y.slice(0, 0, 1).slice(1, 0, 3), 0, 0);
  test::check_close(y2.slice(0, 1, 2), y.slice(0, 1, 2), 0, 0);
  // Without the mask it does.
  CHECK(max(abs(attention(other) - attention(x)).slice(0, 0, 1).slice(1, 0, 3)).item().to<double>() > 1e-3);
  // No mask equals the one-input call; a mask of [1, time] broadcasts over the batch.
  test::check_close(attention({x, Tensor()})[0], attention(x), 0, 0);
  const Tensor row = gt(tensor({{0, 1, 0, 0, 0}}), full({}, 0.5));
  test::check_close(attention({x, row})[0].slice(0, 1, 2),
                    attention({x.slice(0, 1, 2), row})[0], 1e-6, 1e-6);
  // Hybridized: equal to eager.
  attention.hybridize();
  for (int call = 0; call < 2; ++call) test::check_close(attention({x, mask})[0], y, 1e-5, 1e-6);
  CHECK(attention.stats().compiled_hits == 1);
  // Errors name the block, the mask and the shapes, in compiled calls too.
  test::check_error<ShapeError>([&] { attention({x, gt(zeros({2, 4}), full({}, 0.5))}); },
                                {"MultiHeadAttention", "padding mask bool[2,4]", "f32[2,5,8]", "bool[2, 5]"});
  test::check_error<DTypeError>([&] { attention({x, zeros({2, 5})}); }, {"MultiHeadAttention", "must be bool", "f32[2,5]"});
  test::check_error<ValueError>([&] { attention({x, mask, mask}); }, {"optional padding mask", "3 inputs"});
  test::check_error<ValueError>([&] { attention({Tensor(), mask}); }, {"without x"});
  // A row whose every key is padding gets NaN, as in PyTorch.
  const Tensor all = gt(ones({2, 5}), full({}, 0.5));
  CHECK(std::isnan(attention.call_eager({x, all})[0].slice(0, 0, 1).sum().item().to<double>()));
}

TEST_CASE("a Transformer layer with a padding mask trains hybridized as it trains eagerly") {
  auto make = [] {
    manual_seed(13);
    auto layer = std::make_shared<TransformerEncoderLayer>(8, 2, 16);
    layer->initialize(init::xavier());
    return layer;
  };
  auto eager = make(), hybrid = make();
  optim::SGD eager_opt(eager->parameters(), {.lr = 0.05}), hybrid_opt(hybrid->parameters(), {.lr = 0.05});
  hybrid->hybridize();
  const Tensor x = normal(0, 1, {2, 5, 8}), target = normal(0, 1, {2, 5, 8});
  const Tensor mask = gt(tensor({{0, 0, 0, 0, 1}, {0, 0, 1, 1, 1}}), full({}, 0.5));
  for (int step = 0; step < 5; ++step) {
    for (auto [net, opt] : {std::pair{eager.get(), &eager_opt}, std::pair{hybrid.get(), &hybrid_opt}}) {
      opt->zero_grad();
      const Tensor y = net == eager.get() ? net->call_eager({x, mask})[0] : (*net)({x, mask})[0];
      mse_loss(y, target).backward();
      opt->step();
    }
  }
  const auto want = eager->named_parameters(), got = hybrid->named_parameters();
  for (size_t i = 0; i < want.size(); ++i) {
    CAPTURE(want[i].first);
    test::check_close(got[i].second.data(), want[i].second.data(), 1e-5, 1e-6);
  }
  CHECK(hybrid->stats().compiled_hits == 4);
}

TEST_CASE("the README's several-input program runs as written") {
  struct Gated : bj::nn::Block {
    bj::nn::Dense& d = add("d", bj::nn::Dense(4));
    bj::Tensors forward_many(const bj::Tensors& in) override {  // {x, optional gate}
      bj::Tensor h = d(in.at(0));
      if (in.size() > 1 && in[1].defined()) h = h * bj::sigmoid(in[1]);
      return {h, h.sum({-1})};
    }
  };
  Gated gated;
  gated.initialize();
  gated.hybridize();
  const Tensor x = rand({2, 3}), gate = rand({2, 4});
  bj::Tensors out = gated({x, gate});          // both outputs
  out = gated({x, bj::Tensor()});              // without the gate: another key
  REQUIRE(out.size() == 2);
  test::check_close(out[1], out[0].sum({-1}));
  out = gated({x, gate});
  test::check_close(out[0], gated.call_eager({x, gate})[0]);
  CHECK(gated.stats().keys == 2);
  CHECK(gated.stats().compiled_hits == 1);
  test::check_error<ValueError>([&] { gated(x); }, {"returns 2 tensors"});
}

TEST_CASE("keys of list calls read as the inputs given: types, absences, which require grad") {
  struct Branchy : Block {
    Dense& d = add("d", Dense(2, "none", true, 3));
    Tensors forward_many(const Tensors& in) override {
      Tensor h = d(in.at(0));
      if (in[0].sum() > 0) h = h * 2.0;  // a guard
      if (in.size() > 2 && in[2].defined()) h = h + in[2];
      return {h};
    }
  };
  manual_seed(2);
  Branchy net;
  net.initialize();
  net.hybridize();
  const Tensor pos = ones({2, 3}), neg = -ones({2, 3});
  {
    NoGradGuard no_grad;
    net({pos, Tensor()});
    net({neg, Tensor()});  // fails the variant's guard
  }
  HybridStats s = net.stats();
  REQUIRE(s.guard_failures.size() == 1);
  CHECK(s.guard_failures[0].key == "(f32[2,3], absent), training, no grad");
  Tensor x = pos.clone(), extra = ones({2, 2});
  x.set_requires_grad();
  extra.set_requires_grad();
  net({x, Tensor(), extra});
  Tensor y = neg.clone();
  y.set_requires_grad();
  net({y, Tensor(), extra});
  s = net.stats();
  REQUIRE(s.guard_failures.size() == 2);
  CHECK(s.guard_failures[1].key == "(f32[2,3], absent, f32[2,2]), training, grad, inputs 0, 2 require grad");
}
