// Character language models end to end: next-token training eagerly,
// hybridized and as whole compiled steps (exact compiled code follows eager's
// curve bit for bit; the default follows it within rounding), validation,
// seeded sampling, the zoo's token inputs, and `hybridize({.exact = true})`
// on the ops whose default compiled form differs from eager in the last bits.
#include <doctest/doctest.h>

#include <cmath>

#include "examples/language_model.h"
#include "examples/zoo.h"
#include "tests/helpers.h"

using namespace bj;
using namespace bj::nn;

namespace {

std::string repeated_text() {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "the cat sat on the mat; the dog sat on the log. ";
  return text;
}

std::shared_ptr<Block> small_lm(int64_t vocab) {
  manual_seed(3);
  auto lm = std::make_shared<TransformerLM>(vocab, 16, 2, 32, 2, 12);
  lm->initialize(init::xavier());
  return lm;
}

}  // namespace

TEST_CASE("a character LM trained eagerly, hybridized and as whole steps: exact compiled code follows eager's curve bit for bit") {
  const data::CharTokenizer tok(repeated_text());
  const auto [train, valid] = data::split_tokens(tok.encode(repeated_text()), 0.2);
  examples::LanguageModelOptions o;
  o.steps = 12;
  o.batch = 4;
  o.length = 12;
  o.eval_every = 6;
  o.eval_batches = 2;
  o.lr = 1e-2;
  auto run = [&](const std::string& mode, bool exact) {
    auto lm = small_lm(tok.size());
    o.mode = mode;
    o.exact = exact;
    return examples::train_language_model(*lm, train, valid, o);
  };
  const examples::LanguageModelResult eager = run("eager", false);
  REQUIRE(eager.losses.size() == 12);
  CHECK(eager.losses.back() < 0.9 * eager.losses.front());  // it learns
  REQUIRE(eager.validation.size() == 2);
  CHECK(eager.validation[0].first == 6);
  CHECK(eager.validation[1].first == 12);
  CHECK(eager.compiled_steps == 0);
  for (const char* mode : {"hybridize", "step"}) {
    CAPTURE(mode);
    // hybridize: the first step is traced; step: the optimizer's first step runs eagerly, the second is traced.
    const int64_t compiled = std::string(mode) == "hybridize" ? 11 : 10;
    const examples::LanguageModelResult exact = run(mode, true);
    CHECK(exact.compiled_steps == compiled);
    for (size_t i = 0; i < eager.losses.size(); ++i) {
      CAPTURE(i);
      CHECK(exact.losses[i] == eager.losses[i]);
    }
    REQUIRE(exact.validation.size() == 2);
    CHECK(exact.validation[1].second == eager.validation[1].second);
    const examples::LanguageModelResult fast = run(mode, false);
    CHECK(fast.compiled_steps == compiled);
    for (size_t i = 0; i < eager.losses.size(); ++i) {
      CAPTURE(i);
      CHECK(std::abs(fast.losses[i] / eager.losses[i] - 1) <= 1e-4);
    }
  }
}

TEST_CASE("language-model training checks its options, and a diverging loss names the step") {
  const data::CharTokenizer tok(repeated_text());
  const std::vector<int64_t> tokens = tok.encode(repeated_text());
  auto lm = small_lm(tok.size());
  examples::LanguageModelOptions o;
  o.length = 12;
  o.mode = "jit";
  test::check_error<ValueError>([&] { examples::train_language_model(*lm, tokens, tokens, o); }, {"unknown mode 'jit'"});
  o.mode = "eager";
  o.steps = 0;
  test::check_error<ValueError>([&] { examples::train_language_model(*lm, tokens, tokens, o); }, {"steps"});
  o.steps = 3;
  o.lr = -1;
  test::check_error<ValueError>([&] { examples::train_language_model(*lm, tokens, tokens, o); }, {"learning rate"});
  o.lr = 3e-3;
  o.length = 13;  // longer than the model's position table
  test::check_error<ShapeError>([&] { examples::train_language_model(*lm, tokens, tokens, o); },
                                {"13 tokens", "position table (12)"});
  o.length = 12;
  o.lr = 1e30;  // Adam's first step moves every weight by lr: the next loss is not finite
  test::check_error<ValueError>([&] { examples::train_language_model(*lm, tokens, tokens, o); },
                                {"at step 2", "training diverged"});
  test::check_error<ShapeError>([] { examples::next_token_loss(zeros({4, 7}), zeros({4}, kI64)); },
                                {"[batch, time, vocab]", "f32[4,7]", "i64[4]"});
}

TEST_CASE("sampling from a language model: seeded, within the vocabulary, eager even when hybridized, typed errors") {
  auto lm = small_lm(7);
  lm->hybridize();
  const std::vector<int64_t> prompt{0, 1, 2};
  const auto a = examples::sample_tokens(*lm, prompt, 30, 12, 0.8, 5);
  REQUIRE(a.size() == 30);
  for (int64_t id : a) CHECK((id >= 0 && id < 7));
  CHECK(examples::sample_tokens(*lm, prompt, 30, 12, 0.8, 5) == a);
  CHECK(examples::sample_tokens(*lm, prompt, 30, 12, 0.8, 6) != a);
  CHECK(lm->stats().calls == 0);  // sampling runs eagerly: no key per prompt length
  CHECK(lm->is_training());       // the mode is restored
  // A prompt longer than the context uses its last tokens.
  CHECK(examples::sample_tokens(*lm, std::vector<int64_t>(40, 3), 2, 12).size() == 2);
  test::check_error<ValueError>([&] { examples::sample_tokens(*lm, prompt, 3, 12, 0.0); }, {"temperature"});
  test::check_error<ValueError>([&] { examples::sample_tokens(*lm, prompt, 3, 12, NAN); }, {"temperature"});
  test::check_error<ValueError>([&] { examples::sample_tokens(*lm, {}, 3, 12); }, {"prompt is empty"});
  test::check_error<ValueError>([&] { examples::sample_tokens(*lm, prompt, 3, 0); }, {"context"});
  test::check_error<IndexError>([&] { examples::sample_tokens(*lm, {9}, 3, 12); }, {"token id 9"});
}

TEST_CASE("the zoo's language models take token ids: example inputs in range, training and compiled calls") {
  for (const char* name : {"char-lm", "gru-lm"}) {
    CAPTURE(name);
    const examples::ZooModel& m = examples::zoo_model(name);
    REQUIRE(m.vocab == 128);
    REQUIRE(m.make_with_vocab);
    const Tensor ids = examples::example_input(m, {2, 6}, 4);
    CHECK(ids.type() == Type{kI64, {2, 6}});
    for (int64_t i = 0; i < ids.numel(); ++i) CHECK((ids.data<int64_t>()[i] >= 0 && ids.data<int64_t>()[i] < 128));
    test::check_close(examples::example_input(m, {2, 6}, 4), ids, 0, 0);
    auto net = m.make_with_vocab(11);
    CHECK(net->name() == name);
    const Tensor small = examples::example_input(examples::ZooModel{"", "", {}, nullptr, 11}, {2, 6}, 4);
    NoGradGuard no_grad;
    const Tensor want = net->call_eager(small);
    CHECK(want.shape() == Shape{2, 6, 11});
    net->hybridize({.exact = true});
    (*net)(small);
    test::check_close((*net)(small), want, 0, 0);
    CHECK(net->stats().compiled_hits == 1);
  }
  CHECK(examples::example_input(examples::zoo_model("mlp"), {2, 3}).dtype() == kF32);
}

TEST_CASE("hybridize with exact: compiled calls equal eager bit for bit where the default compiled code rounds differently") {
  struct Mix : Block {
    LayerNorm& norm = add("norm", LayerNorm(24));
    Tensor forward(const Tensor& x) override {
      Tensor h = gelu(norm(x));
      return softmax(h, -1) + exp(h) * 0.25 + tanh(h) + sigmoid(h) + log(abs(h) + 1.0) + h.mean({-1}, true);
    }
  };
  struct Vision : Block {
    Sequential& net = add("net", Sequential(Conv2D(4, 3, 1, 1), BatchNorm(), ReLU(), GlobalAvgPool2D(), Flatten(),
                                            Dense(3)));
    Tensor forward(const Tensor& x) override { return net(x); }
  };
  manual_seed(11);
  Mix mix;
  mix.initialize(init::xavier());
  Vision vision;
  vision.initialize(init::xavier());
  const Tensor x = normal(0, 2, {3, 5, 24});
  const Tensor img = normal(0, 1, {2, 1, 6, 6});
  vision(img);  // BatchNorm's running statistics move off their start
  vision.eval();  // eval mode: the default pipeline folds BatchNorm into the convolution
  for (bool grad : {false, true}) {
    CAPTURE(grad);
    std::optional<NoGradGuard> no_grad;
    if (!grad) no_grad.emplace();
    mix.hybridize({.exact = true});
    vision.hybridize({.exact = true});
    const Tensor want = mix.call_eager(x), want_img = vision.call_eager(img);
    for (int call = 0; call < 2; ++call) {
      test::check_close(mix(x), want, 0, 0);
      test::check_close(vision(img), want_img, 0, 0);
    }
    CHECK(mix.stats().compiled_hits == 1);
    CHECK(vision.stats().compiled_hits == 1);
  }
}
