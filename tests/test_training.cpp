// Gradients of the seed models against finite differences (every
// parameter), FixedHiddenMLP's halvings and shared layer, and training the
// MLP to a stated loss with SGD and with Adam.
#include "examples/seed_models.h"
#include "examples/training.h"
#include "examples/zoo.h"
#include "tests/gradcheck.h"

using namespace bj;
using namespace bj::examples;
using bj::test::values;
using bj::test::weighted_sum;

namespace {

std::vector<double> fixed_weights(int64_t n) {
  std::vector<double> r(n);
  for (int64_t i = 0; i < n; ++i) r[i] = 0.5 + 0.37 * double((i * 7919) % 13) / 13.0;
  return r;
}

/// For every parameter P of `net`: d/dP of L = sum(net(x) * R) by autograd
/// against central differences on up to 12 sampled elements of P, as the
/// relative L2 error over the samples. f32 limits what finite differences
/// can resolve: a small step drowns in rounding, a large one crosses ReLU
/// kinks. A sample whose differences with steps eps and eps/2 disagree sits
/// near a kink and is skipped (at most a third may be).
void check_parameter_gradients(nn::Block& net, const Tensor& x, double eps = 1e-3, double rel = 0.05) {
  Tensor out = net(x);  // completes deferred shapes
  const auto r = fixed_weights(out.numel());
  std::vector<float> rf(r.begin(), r.end());
  net.zero_grad();
  (net(x) * tensor(rf, out.shape())).sum().backward();
  for (auto& [name, p] : net.named_parameters()) {
    CAPTURE(name);
    REQUIRE(p.grad().defined());
    auto g = values(p.grad());
    Tensor w = p.data();
    const int64_t n = w.numel(), samples = std::min<int64_t>(n, 12);
    int64_t skipped = 0;
    double err = 0, norm = 0;
    for (int64_t s = 0; s < samples; ++s) {
      const int64_t j = (s * 7919 + 13) % n;
      auto loss_at = [&](double d) {
        NoGradGuard no_grad;
        float* pw = w.mutable_data<float>();
        const float old = pw[j];
        pw[j] = static_cast<float>(old + d);
        double l = weighted_sum(net(x), r);
        w.mutable_data<float>()[j] = old;
        return l;
      };
      auto diff = [&](double e) { return (loss_at(e) - loss_at(-e)) / (2 * e); };
      double coarse = diff(eps), fine = diff(eps / 2);
      if (std::fabs(coarse - fine) > 1e-2 * (std::fabs(coarse) + std::fabs(fine)) + 1e-4) {
        ++skipped;
        continue;
      }
      err += (g[j] - fine) * (g[j] - fine);
      norm += fine * fine;
    }
    INFO("relative L2 error " << std::sqrt(err / std::max(norm, 1e-30)) << " (" << skipped << " of " << samples
                              << " samples skipped near kinks)");
    CHECK(std::sqrt(err) <= rel * std::sqrt(norm) + 1e-4);
    CHECK(skipped <= samples / 3);
  }
}

}  // namespace

TEST_CASE("every parameter of every seed model: autograd equals finite differences") {
  for (const ZooModel& m : zoo()) {
    CAPTURE(m.name);
    manual_seed(3);
    auto net = m.make();
    net->initialize(init::xavier(), true);  // signals of a useful size through every layer
    Tensor x = uniform(-1, 1, m.input);
    check_parameter_gradients(*net, x);
  }
}

TEST_CASE("FixedHiddenMLP: gradients flow through the halvings and the shared layer sums both uses") {
  manual_seed(4);
  FixedHiddenMLP net;
  net.initialize(init::uniform(0.5));
  Tensor x = uniform(0, 1, {2, 20}) * 20;  // needs several halvings
  Tensor y = net(x);
  // Count the halvings the forward took, by hand.
  Tensor w = net.linear.weight.data().detach(), b = net.linear.bias.data().detach();
  Tensor h = matmul(relu(matmul(matmul(x, w, false, true) + b, net.rand_weight) + 1), w, false, true) + b;
  int halvings = 0;
  for (double n = h.norm().item(); n > 1; n /= 2) ++halvings;
  REQUIRE(halvings >= 3);

  net.zero_grad();
  y.backward();
  // The same function with the two uses of `linear` as separate leaves.
  Tensor w1 = w.clone().set_requires_grad(), w2 = w.clone().set_requires_grad();
  Tensor b1 = b.clone().set_requires_grad(), b2 = b.clone().set_requires_grad();
  Tensor h1 = relu(matmul(matmul(x, w1, false, true) + b1, net.rand_weight) + 1);
  Tensor out = (matmul(h1, w2, false, true) + b2).sum() / std::pow(2.0, halvings);
  out.backward();
  test::check_close(net.linear.weight.grad(), w1.grad() + w2.grad(), 1e-4, 1e-6);
  test::check_close(net.linear.bias.grad(), b1.grad() + b2.grad(), 1e-4, 1e-6);
  CHECK(values(w1.grad()) != values(w2.grad()));  // both uses contribute, differently
  // And against finite differences, element by element for the bias.
  auto g = values(net.linear.bias.grad());
  for (int64_t j = 0; j < 20; ++j) {
    auto at = [&](double d) {
      NoGradGuard no_grad;
      Tensor bias = net.linear.bias.data();
      bias.mutable_data<float>()[j] += static_cast<float>(d);
      double l = weighted_sum(net(x), {1.0});
      bias.mutable_data<float>()[j] -= static_cast<float>(d);
      return l;
    };
    double numeric = (at(1e-2) - at(-1e-2)) / 2e-2;
    CHECK(g[j] == doctest::Approx(numeric).epsilon(2e-2).scale(1e-3));
  }
}

TEST_CASE("training the seed MLP on a separable task reaches a stated loss: SGD and Adam") {
  auto task = make_classification_task(512, 20, 10, 1);
  for (std::string optimizer : {"sgd", "adam"}) {
    CAPTURE(optimizer);
    manual_seed(0);
    MLP net;
    net.initialize(init::xavier());
    TrainOptions o;
    o.steps = 150;
    o.optimizer = optimizer;
    o.lr = optimizer == "adam" ? 0.01 : 0.1;
    TrainResult r = train_classifier(net, task, o);
    CHECK(r.first_loss > 2.0);   // about ln 10 at the start
    CHECK(r.final_loss < 0.1);   // stated: below 0.1 within 150 full-batch steps
    CHECK(r.accuracy > 0.97);
  }
}

TEST_CASE("Block::zero_grad, shared parameters accumulate, constants get no gradient") {
  FixedHiddenMLP net;
  net.initialize();
  net(rand({2, 20})).backward();
  CHECK(net.linear.weight.grad().defined());
  CHECK_FALSE(net.rand_weight.requires_grad());
  CHECK_FALSE(net.rand_weight.grad().defined());
  net.zero_grad();
  CHECK_FALSE(net.linear.weight.grad().defined());
}

TEST_CASE("optimizers: SGD with momentum and weight decay, Adam, against hand computation") {
  nn::Parameter p({2}, init::ones());
  p.initialize(init::ones());
  p.set_data(tensor({1, -2}));
  optim::SGD sgd({p}, {.lr = 0.1, .momentum = 0.5, .weight_decay = 0.1});
  for (int i = 0; i < 2; ++i) {
    sgd.zero_grad();
    (p.data() * p.data()).sum().backward();  // grad 2w
    sgd.step();
  }
  // step 1: g = 2w + 0.1w = 2.1w, v = g, w -= 0.1 v -> w * (1 - 0.21) = 0.79 w
  // step 2: g = 2.1 * 0.79 w, v = 0.5 * 2.1 w + g = 2.1 w (0.5 + 0.79), w = 0.79 w - 0.1 * 2.1 * 1.29 w
  double k = 0.79 - 0.21 * 1.29;
  test::check_close(p.data().detach(), {k, -2 * k}, 1e-5);

  nn::Parameter q({1}, init::ones());
  q.initialize(init::ones());
  optim::Adam adam({q}, {.lr = 0.1});
  adam.zero_grad();
  (q.data() * 3).sum().backward();
  adam.step();
  // First Adam step moves by lr * sign(g) (bias-corrected m / sqrt(v) = g / |g|).
  test::check_close(q.data().detach(), {0.9}, 1e-5);
  CHECK_THROWS_AS(optim::SGD({}, {}), ValueError);
  CHECK_THROWS_AS(optim::Adam({}, {}), ValueError);
  // The same parameter twice would be updated twice per step.
  nn::Parameter r({1}, init::ones());
  test::check_error<ValueError>([&] { optim::SGD({p, r, p}, {}); }, {"SGD", "twice", "at 0 and 2"});
  test::check_error<ValueError>([&] { optim::Adam({q, q}, {}); }, {"Adam", "twice"});
}

TEST_CASE("training that diverges stops with a typed error naming the step and the loss") {
  manual_seed(1);
  examples::MLP net;
  net.initialize();
  auto task = examples::make_classification_task(64, 20, 10, 1);
  examples::TrainOptions o;
  o.steps = 200;
  o.lr = 1e3;  // the CLI's largest: SGD with momentum diverges within a few steps
  std::string what;
  try {
    examples::train_classifier(net, task, o);
  } catch (const ValueError& e) {
    what = e.what();
  }
  CAPTURE(what);
  CHECK(what.find("train: the loss is") != std::string::npos);
  CHECK(what.find("at step") != std::string::npos);
  CHECK(what.find("training diverged") != std::string::npos);
}

TEST_CASE("losses: values and errors") {
  Tensor p = tensor({{1, 2}, {3, 4}}), t = tensor({{1, 0}, {0, 4}});
  test::check_close(nn::mse_loss(p, t), {(0 + 4 + 9 + 0) / 4.0});
  test::check_close(nn::l1_loss(p, t), {(0 + 2 + 3 + 0) / 4.0});
  Tensor logits = tensor({{2, 0, -1}, {0, 0, 0}});
  Tensor y = tensor({0, 2}, kI64);
  double l0 = std::log(std::exp(2) + 1 + std::exp(-1)) - 2, l1 = std::log(3.0);
  test::check_close(nn::cross_entropy(logits, y), {(l0 + l1) / 2});
  test::check_close(nn::cross_entropy(tensor({{1000, 0}}), tensor({0}, kI64)), {0.0}, 1e-6, 1e-6);  // stable
  test::check_error<ShapeError>([&] { nn::mse_loss(p, ones({2})); }, {"mse_loss", "f32[2,2]", "f32[2]"});
  test::check_error<IndexError>([&] { nn::cross_entropy(logits, tensor({0, 3}, kI64)); }, {"cross_entropy", "3"});
  test::check_error<DTypeError>([&] { nn::cross_entropy(logits, tensor({0, 1})); }, {"i64"});
  test::check_error<ShapeError>([&] { nn::cross_entropy(logits, tensor({0}, kI64)); }, {"[N, C]"});
}

TEST_CASE("multi-tensor optimizer steps equal the Tensor-op formulas bit for bit, over many steps") {
  // The reference: the update written as Tensor ops (what optim.cpp's comment states).
  struct Reference {
    std::vector<Tensor> w, v, m;
    void sgd(const std::vector<Tensor>& g, double lr, double mom, double wd, bool first) {
      for (size_t i = 0; i < w.size(); ++i) {
        Tensor d = wd != 0 ? g[i] + wd * w[i] : g[i];
        if (mom != 0) {
          v[i] = first ? d.clone() : v[i] * mom + d;
          d = v[i];
        }
        w[i] = w[i] - lr * d;
      }
    }
    void adam(const std::vector<Tensor>& g, const optim::AdamOptions& o, int t) {
      const double c1 = 1 - std::pow(o.beta1, t), c2 = 1 - std::pow(o.beta2, t);
      for (size_t i = 0; i < w.size(); ++i) {
        Tensor d = o.weight_decay != 0 ? g[i] + o.weight_decay * w[i] : g[i];
        m[i] = m[i] * o.beta1 + d * (1 - o.beta1);
        v[i] = v[i] * o.beta2 + d * d * (1 - o.beta2);
        w[i] = w[i] - (m[i] / c1) * o.lr / (sqrt(v[i] / c2) + o.eps);
      }
    }
  };
  NoGradGuard no_grad;
  for (int which = 0; which < 4; ++which) {
    CAPTURE(which);
    manual_seed(40 + static_cast<uint64_t>(which));
    std::vector<nn::Parameter> ps;
    Reference ref;
    for (Shape s : {Shape{300, 7}, Shape{1}, Shape{200000}}) {  // the last one runs on several threads
      nn::Parameter p(s);
      p.initialize(init::uniform(1));
      ps.push_back(p);
      ref.w.push_back(p.data().clone());
      ref.v.push_back(zeros(s));
      ref.m.push_back(zeros(s));
    }
    optim::SGDOptions so{.lr = 0.05, .momentum = which == 1 ? 0.0 : 0.9, .weight_decay = which == 2 ? 0.01 : 0.0};
    optim::AdamOptions ao{.lr = 0.01, .weight_decay = which == 3 ? 0.02 : 0.0};
    std::unique_ptr<optim::Optimizer> opt;
    if (which < 3)
      opt = std::make_unique<optim::SGD>(ps, so);
    else
      opt = std::make_unique<optim::Adam>(ps, ao);
    for (int step = 1; step <= 5; ++step) {
      std::vector<Tensor> grads;
      for (auto& p : ps) {
        Tensor g = normal(0, 1, p.shape());
        p.data().zero_grad();
        grads.push_back(g);
        {
          bj::set_grad_enabled(true);
          (p.data() * g).sum().backward();  // grad() = g
          bj::set_grad_enabled(false);
        }
      }
      opt->step();
      if (which < 3)
        ref.sgd(grads, so.lr, so.momentum, so.weight_decay, step == 1);
      else
        ref.adam(grads, ao, step);
      for (size_t i = 0; i < ps.size(); ++i) CHECK(test::values(ps[i].data()) == test::values(ref.w[i]));
    }
  }
}
