// Sequence-model building blocks: the embedding op and its checked form,
// LayerNorm and GELU against their formulas, hybridized and compiled
// training equal to eager, typed errors naming the block and the ids.
#include <doctest/doctest.h>

#include <cmath>

#include "tests/gradcheck.h"
#include "tests/helpers.h"

using namespace bj;
using namespace bj::nn;
using V = std::vector<Tensor>;

namespace {
/// Twin nets trained side by side, one eagerly and one hybridized, then compared.
struct Twins {
  std::shared_ptr<Block> eager, hybrid;
  optim::SGD eager_opt, hybrid_opt;
  Twins(std::shared_ptr<Block> e, std::shared_ptr<Block> h, double lr)
      : eager(std::move(e)), hybrid(std::move(h)), eager_opt(eager->parameters(), {.lr = lr}),
        hybrid_opt(hybrid->parameters(), {.lr = lr}) {
    hybrid->hybridize();
  }
  /// One SGD step on each: loss(net(x), y).backward().
  template <class Loss>
  void step(const Tensor& x, const Tensor& y, Loss loss) {
    for (auto [net, opt] : {std::pair{eager.get(), &eager_opt}, std::pair{hybrid.get(), &hybrid_opt}}) {
      opt->zero_grad();
      loss(net == eager.get() ? net->call_eager(x) : (*net)(x), y).backward();
      opt->step();
    }
  }
  void check_same_parameters() const {
    const auto want = eager->named_parameters(), got = hybrid->named_parameters();
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      CAPTURE(want[i].first);
      test::check_close(got[i].second.data(), want[i].second.data(), 1e-5, 1e-6);
    }
  }
};
}  // namespace

TEST_CASE("embedding looks rows up, its gradient adds rows back, an id out of range is NaN and never read") {
  Tensor table = tensor({{0.5, -1.0}, {2.0, 3.0}, {-4.0, 0.25}});
  Tensor ids = tensor(std::vector<int64_t>{2, 0, 2, 1}, {2, 2});
  Tensor rows = embedding(table, ids);
  CHECK(rows.shape() == Shape{2, 2, 2});
  test::check_close(rows, {-4.0, 0.25, 0.5, -1.0, -4.0, 0.25, 2.0, 3.0}, 0, 0);
  Tensor gy = tensor({1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}).reshape({2, 2, 2});
  // Row 2 is used twice: its gradient is the sum of both positions' gradients.
  test::check_close(embedding_grad(gy, ids, table.shape()), {3.0, 4.0, 7.0, 8.0, 6.0, 8.0}, 0, 0);
  // A 0-d id gives one row; no ids give no rows.
  CHECK(embedding(table, tensor(std::vector<int64_t>{1}, {})).shape() == Shape{2});
  CHECK(embedding(table, tensor(std::vector<int64_t>{}, {0})).shape() == Shape{0, 2});
  // The unchecked op with hostile ids: NaN rows and an all-NaN gradient, no out-of-bounds read.
  Tensor bad = tensor(std::vector<int64_t>{1, -1, 3, int64_t{1} << 62}, {4});
  const auto looked = test::values(embedding_unchecked(table, bad));
  CHECK(looked[0] == 2.0);
  for (size_t i = 2; i < looked.size(); ++i) CHECK(std::isnan(looked[i]));
  for (double g : test::values(embedding_grad(ones({4, 2}), bad, table.shape()))) CHECK(std::isnan(g));
}

TEST_CASE("embedding's checks: ids out of range, of the wrong dtype, a table that is not 2-D") {
  Tensor table = uniform(-1, 1, {5, 3});
  test::check_error<IndexError>([&] { embedding(table, tensor(std::vector<int64_t>{0, 5}, {2})); },
                                {"embedding", "token id 5", "[0, 5)", "f32[5,3]"});
  test::check_error<IndexError>([&] { embedding(table, tensor(std::vector<int64_t>{-2, 1}, {2})); },
                                {"token id -2"});
  test::check_error<DTypeError>([&] { embedding(table, tensor({0.0, 1.0})); }, {"embedding", "i64", "f32[2]"});
  test::check_error<ShapeError>([&] { embedding(uniform(-1, 1, {5}), tensor(std::vector<int64_t>{0}, {1})); },
                                {"[vocab, dim]"});
  // Through a block, the error names the block's path.
  Sequential net(Embedding(5, 3), Dense(2));
  net.set_name("net");
  net.initialize();
  test::check_error<IndexError>([&] { net(tensor(std::vector<int64_t>{7}, {1, 1})); }, {"net.0", "token id 7"});
  test::check_error<ValueError>([] { Embedding(0, 3); }, {"Embedding", "vocab"});
  test::check_error<ValueError>([] { LayerNorm(-1); }, {"LayerNorm", "dim"});
  test::check_error<ValueError>([] { LayerNorm(4, 0.0); }, {"eps"});
}

TEST_CASE("LayerNorm and GELU equal their formulas, and their gradients equal finite differences") {
  manual_seed(61);
  LayerNorm ln;  // the width comes from the first input
  ln.initialize();
  Tensor x = uniform(-2, 2, {3, 5});
  CHECK(ln.gamma.shape() == Shape{0});
  ln(x);  // fixes the width
  CHECK(ln.gamma.shape() == Shape{5});
  ln.gamma.set_data(uniform(0.5, 1.5, {5}));
  ln.beta.set_data(uniform(-0.5, 0.5, {5}));
  const Tensor y = ln(x);
  const auto xv = test::values(x), g = test::values(ln.gamma.data()), b = test::values(ln.beta.data());
  std::vector<double> want;
  for (int i = 0; i < 3; ++i) {
    double mean = 0, var = 0;
    for (int j = 0; j < 5; ++j) mean += xv[i * 5 + j] / 5;
    for (int j = 0; j < 5; ++j) var += (xv[i * 5 + j] - mean) * (xv[i * 5 + j] - mean) / 5;
    for (int j = 0; j < 5; ++j) want.push_back((xv[i * 5 + j] - mean) / std::sqrt(var + 1e-5) * g[j] + b[j]);
  }
  test::check_close(y, want, 1e-5, 1e-6);
  test::check_error<ShapeError>([&] { ln(uniform(-1, 1, {3, 4})); }, {"LayerNorm", "4 features", "normalizes 5"});
  LayerNorm ln4(4);
  ln4.initialize();
  ln4.gamma.set_data(uniform(0.5, 1.5, {4}));
  test::gradcheck([&](const V& v) { return ln4(v[0]); }, {uniform(-1, 1, {2, 3, 4})});
  Tensor z = tensor({-3.0, -0.5, 0.0, 0.7, 2.5});
  std::vector<double> erf_form;
  for (double v : test::values(z)) erf_form.push_back(0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
  test::check_close(gelu(z), erf_form, 0, 1e-3);
  test::gradcheck([](const V& v) { return gelu(v[0]); }, {uniform(-3, 3, {7})});
}

TEST_CASE("an embedding model hybridized: calls and training steps equal eager, a bad id in compiled code is an IndexError") {
  auto make = [] {
    manual_seed(62);
    auto net = std::make_shared<Sequential>(Embedding(11, 6), LayerNorm(), GELU(), Flatten(1), Dense(4));
    net->initialize(init::xavier());
    net->call_eager(tensor(std::vector<int64_t>(8, 0), {2, 4}));
    return net;
  };
  Twins twins(make(), make(), 0.1);
  manual_seed(63);
  for (int step = 0; step < 5; ++step) {
    std::vector<int64_t> ids;
    for (int i = 0; i < 8; ++i) ids.push_back((step * 7 + i * 3) % 11);  // repeats within a batch
    twins.step(tensor(ids, {2, 4}), tensor(std::vector<int64_t>{step % 4, (step + 1) % 4}, {2}), cross_entropy);
  }
  const auto& hybrid = twins.hybrid;
  CHECK(hybrid->stats().compiled_hits >= 3);
  twins.check_same_parameters();
  {
    NoGradGuard no_grad;
    Tensor x = tensor(std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 10}, {2, 4});
    for (int call = 0; call < 3; ++call) test::check_close((*hybrid)(x), hybrid->call_eager(x), 1e-5, 1e-6);
    const int64_t hits = hybrid->stats().compiled_hits;
    CHECK(hits >= 2);
    // The range guards fail on a bad id: the call runs eagerly and raises what eager mode raises.
    test::check_error<IndexError>([&] { (*hybrid)(tensor(std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 11}, {2, 4})); },
                                  {"token id 11"});
    test::check_error<IndexError>([&] { (*hybrid)(tensor(std::vector<int64_t>{-1, 2, 3, 4, 5, 6, 7, 8}, {2, 4})); },
                                  {"token id -1"});
    test::check_close((*hybrid)(x), hybrid->call_eager(x), 1e-5, 1e-6);
    CHECK(hybrid->stats().compiled_hits == hits + 1);
  }
}

TEST_CASE("the README's embedding program runs as written") {
  using namespace bj::nn;
  Sequential net(Embedding(11, 6), LayerNorm(), GELU(), Flatten(1), Dense(4));
  net.initialize(bj::init::xavier());
  net.hybridize();
  bj::Tensor logits = net(bj::tensor(std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 10}, {2, 4}));
  CHECK(logits.shape() == Shape{2, 4});
  test::check_close(net(bj::tensor(std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 10}, {2, 4})), logits, 1e-5, 1e-6);
  CHECK(net.stats().compiled_hits == 1);
}

namespace {
/// Self-attention written head by head with 2-D products (the layer batches heads with permutes).
Tensor attention_by_heads(MultiHeadAttention& a, const Tensor& x, int64_t heads, bool causal) {
  const int64_t b = x.size(0), t = x.size(1), d = x.size(2), dh = d / heads;
  const Tensor w = a.qkv.weight.data(), bias = a.qkv.bias.data();
  std::vector<Tensor> batch_out;
  for (int64_t n = 0; n < b; ++n) {
    Tensor xn = x.slice(0, n, n + 1).reshape({t, d});
    std::vector<Tensor> head_out;
    for (int64_t h = 0; h < heads; ++h) {
      auto project = [&](int64_t which) {  // rows of the qkv weight for this head's q, k or v
        const int64_t r0 = which * d + h * dh;
        return matmul(xn, w.slice(0, r0, r0 + dh), false, true) + bias.slice(0, r0, r0 + dh);
      };
      Tensor scores = matmul(project(0), project(1), false, true) / std::sqrt(static_cast<double>(dh));
      if (causal) {
        std::vector<float> mask;
        for (int64_t i = 0; i < t; ++i)
          for (int64_t j = 0; j < t; ++j) mask.push_back(j <= i ? 0.0f : -1e30f);
        scores = scores + tensor(mask, {t, t});
      }
      head_out.push_back(matmul(softmax(scores, 1), project(2)));
    }
    batch_out.push_back(a.out(concat(head_out, 1)));
  }
  return stack(batch_out, 0);
}
}  // namespace

TEST_CASE("multi-head attention equals attention written head by head, causal attention ignores the future") {
  manual_seed(64);
  for (bool causal : {false, true}) {
    CAPTURE(causal);
    MultiHeadAttention a(8, 2, causal);
    a.initialize(init::xavier());
    a.qkv.bias.set_data(uniform(-0.5, 0.5, {24}));
    Tensor x = uniform(-1, 1, {2, 5, 8});
    test::check_close(a(x), attention_by_heads(a, x, 2, causal), 1e-5, 1e-6);
    // Changing the last position changes every output under full attention, none before it
    // under causal attention.
    Tensor x2 = concat({x.slice(1, 0, 4), x.slice(1, 4, 5) * 3.0}, 1);
    const auto y = test::values(a(x)), y2 = test::values(a(x2));
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t t = 0; t < 4; ++t) {
        double diff = 0;
        for (int64_t j = 0; j < 8; ++j) diff += std::fabs(y[(n * 5 + t) * 8 + j] - y2[(n * 5 + t) * 8 + j]);
        CHECK((diff == 0) == causal);
      }
  }
  MultiHeadAttention small(4, 2, true);
  small.initialize(init::xavier());
  test::gradcheck([&](const V& v) { return small(v[0]); }, {uniform(-1, 1, {2, 3, 4})});
  test::check_error<ValueError>([] { MultiHeadAttention(10, 3); }, {"3 heads", "width 10"});
  test::check_error<ShapeError>([&] { small(uniform(-1, 1, {2, 3, 5})); }, {"MultiHeadAttention", "[batch, time, 4]"});
  test::check_error<ShapeError>([&] { small(uniform(-1, 1, {3, 4})); }, {"f32[3,4]"});
}

TEST_CASE("Transformer encoder layers hybridized (pre- and post-norm, causal): calls and training equal eager") {
  for (auto [pre_norm, causal] : {std::pair{true, false}, std::pair{false, true}}) {
    CAPTURE(pre_norm);
    auto make = [pre = pre_norm, c = causal] {
      manual_seed(65);
      auto net = std::make_shared<TransformerEncoderLayer>(16, 4, 32, pre, c);
      net->initialize(init::xavier());
      return net;
    };
    Twins twins(make(), make(), 0.05);
    manual_seed(66);
    for (int step = 0; step < 4; ++step)
      twins.step(uniform(-1, 1, {3, 7, 16}), uniform(-1, 1, {3, 7, 16}), mse_loss);
    const auto& hybrid = twins.hybrid;
    CHECK(hybrid->stats().compiled_hits >= 2);
    twins.check_same_parameters();
    NoGradGuard no_grad;
    Tensor x = uniform(-1, 1, {2, 7, 16});
    for (int call = 0; call < 2; ++call) test::check_close((*hybrid)(x), hybrid->call_eager(x), 1e-5, 1e-6);
  }
}

TEST_CASE("GRU: PyTorch's gates step by step, gradients, and hybridized at three lengths (three keys) equal to eager") {
  manual_seed(67);
  GRU gru(3, 2);
  gru.initialize(init::xavier());
  gru.i2h.bias.set_data(uniform(-0.5, 0.5, {9}));
  gru.h2h.bias.set_data(uniform(-0.5, 0.5, {9}));
  Tensor x = uniform(-1, 1, {2, 4, 2});
  // The gates written out with the weights' rows, one step at a time.
  const Tensor wi = gru.i2h.weight.data(), bi = gru.i2h.bias.data(), wh = gru.h2h.weight.data(), bh = gru.h2h.bias.data();
  auto part = [](const Tensor& w, const Tensor& b, const Tensor& v, int64_t k) {
    return matmul(v, w.slice(0, 3 * k, 3 * k + 3), false, true) + b.slice(0, 3 * k, 3 * k + 3);
  };
  Tensor h = zeros({2, 3});
  std::vector<Tensor> want;
  for (int64_t t = 0; t < 4; ++t) {
    Tensor xt = x.slice(1, t, t + 1).reshape({2, 2});
    Tensor r = sigmoid(part(wi, bi, xt, 0) + part(wh, bh, h, 0));
    Tensor z = sigmoid(part(wi, bi, xt, 1) + part(wh, bh, h, 1));
    Tensor n = tanh(part(wi, bi, xt, 2) + r * part(wh, bh, h, 2));
    h = (1.0 - z) * n + z * h;
    want.push_back(h);
  }
  test::check_close(gru(x), stack(want, 1), 1e-5, 1e-6);
  test::check_close(gru.step(x.slice(1, 0, 1).reshape({2, 2}), zeros({2, 3})), want[0], 1e-5, 1e-6);
  CHECK(gru(uniform(-1, 1, {2, 0, 2})).shape() == Shape{2, 0, 3});
  test::gradcheck([&](const V& v) { return gru(v[0]); }, {uniform(-1, 1, {2, 3, 2})});
  test::check_error<ShapeError>([&] { gru(uniform(-1, 1, {2, 2})); }, {"GRU", "[batch, time, inputs]"});
  test::check_error<ShapeError>([&] { gru.step(uniform(-1, 1, {2, 2}), zeros({2, 4})); }, {"GRU", "h [batch, 3]"});
  // Hybridized: each length is a key of its own; every call equals eager, and training too.
  auto make = [] {
    manual_seed(68);
    auto net = std::make_shared<Sequential>(GRU(5, 3), Flatten(1));
    net->initialize(init::xavier());
    net->call_eager(uniform(-1, 1, {2, 1, 3}));
    return net;
  };
  Twins twins(make(), make(), 0.1);
  for (int64_t len : {2, 5, 9})
    for (int rep = 0; rep < 2; ++rep) {
      CAPTURE(len);
      Tensor xs = uniform(-1, 1, {2, len, 3});
      twins.step(xs, uniform(-1, 1, {2, len * 5}), mse_loss);
    }
  CHECK(twins.hybrid->stats().compiled_hits >= 3);  // the second step at each length
  twins.check_same_parameters();
  NoGradGuard no_grad;
  for (int64_t len : {2, 5, 9}) {
    Tensor xs = uniform(-1, 1, {2, len, 3});
    test::check_close((*twins.hybrid)(xs), twins.hybrid->call_eager(xs), 1e-5, 1e-6);
  }
  CHECK(twins.hybrid->stats().keys >= 3);
}

TEST_CASE("TransformerLM: causal logits through tied weights, hybridized training equal to eager, and it learns") {
  auto make = [] {
    manual_seed(69);
    auto lm = std::make_shared<TransformerLM>(7, 16, 2, 32, 2, 12);
    lm->initialize(init::xavier());
    return lm;
  };
  auto lm = make();
  // Tied: the logits are the final states against the token table.
  CHECK(lm->named_parameters().size() == 1 + 1 + 2 * 12 + 2);  // tokens, positions, 2 layers x 12, norm
  Tensor ids = tensor(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1}, {2, 8});
  Tensor logits = lm->call_eager(ids);
  CHECK(logits.shape() == Shape{2, 8, 7});
  // Causal: the last token never moves an earlier position's logits.
  Tensor other = tensor(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 6, 1, 2, 3, 4, 5, 6, 0, 5}, {2, 8});
  test::check_close(lm->call_eager(other).slice(1, 0, 7), logits.slice(1, 0, 7), 0, 0);
  test::check_error<ShapeError>([&] { lm->call_eager(tensor(std::vector<int64_t>(13, 0), {1, 13})); },
                                {"13 tokens", "position table (12)"});
  test::check_error<IndexError>([&] { lm->call_eager(tensor(std::vector<int64_t>{7}, {1, 1})); }, {"token id 7"});
  // Next-token prediction on a repeating sequence: hybridized equals eager, and the loss falls.
  auto loss = [](const Tensor& out, const Tensor& y) {
    return cross_entropy(out.reshape({-1, out.shape()[2]}), y.reshape({-1}));
  };
  Twins twins(make(), make(), 0.05);
  Tensor x = ids.slice(1, 0, 7), y = ids.slice(1, 1, 8);
  const double first = loss(twins.eager->call_eager(x), y).item();
  for (int step = 0; step < 30; ++step) twins.step(x, y, loss);
  twins.check_same_parameters();
  CHECK(twins.hybrid->stats().compiled_hits >= 25);
  const double last = loss(twins.eager->call_eager(x), y).item();
  CHECK(last < 0.5 * first);
}

TEST_CASE("the traced backward of a GRU over 32 steps holds no large literal: slice gradients pad with a broadcast zero") {
  manual_seed(12);
  GRU gru(16, 8);  // 16 hidden units, 8 input features
  gru.initialize();
  TrainingTrace t = trace_training(gru, uniform(-1, 1, {4, 32, 8}));
  REQUIRE(t.backward);
  size_t largest = 0, expands = 0;
  ir::for_each_node(t.trace.graph->nodes(), [&](const ir::Node& n) {
    if (n.kind == ir::NodeKind::kLiteral) largest = std::max(largest, n.data.size());
    expands += n.kind == ir::NodeKind::kOp && n.op == ir::OpKind::Expand;
  });
  CHECK(largest <= 4 * 16 * 3 * 4);  // nothing near a [4, t, 48] block of zeros (up to 24 KB each)
  CHECK(expands > 0);
}
