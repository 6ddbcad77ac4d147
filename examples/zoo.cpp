// Zoo registrations.
#include "examples/zoo.h"

#include "examples/seed_models.h"

#include <random>

namespace bj::examples {

namespace {

template <class B>
std::function<std::shared_ptr<nn::Block>()> maker(const std::string& name, std::function<B()> build,
                                                  init::Init init = init::uniform()) {
  return [name, build, init] {
    auto b = std::make_shared<B>(build());
    b->set_name(name);
    b->initialize(init);
    return std::static_pointer_cast<nn::Block>(b);
  };
}
template <class B>
std::function<std::shared_ptr<nn::Block>()> maker(const std::string& name) {
  return maker<B>(name, [] { return B(); });
}

}  // namespace

const std::vector<ZooModel>& zoo() {
  static const std::vector<ZooModel> models = {
      {"mlp", "the custom MLP block: Dense(256, relu) -> Dense(10)", {2, 20}, maker<MLP>("mlp")},
      {"my-sequential", "MySequential (on the Block API) holding Dense(256, relu), Dense(10)", {2, 20},
       maker<MySequential>("my-sequential", [] { return MySequential(Dense(256, "relu"), Dense(10)); })},
      {"fixed-hidden-mlp", "constant weight, a shared layer, and `while (x.norm() > 1) x /= 2`", {2, 20},
       maker<FixedHiddenMLP>("fixed-hidden-mlp")},
      {"nest-mlp", "a Sequential nested in a custom block", {2, 20}, maker<NestMLP>("nest-mlp")},
      {"chimera", "Sequential(NestMLP, Dense(20), FixedHiddenMLP)", {2, 20}, maker<Sequential>("chimera", chimera)},
      {"parallel", "exercise: two nets on one input, outputs concatenated", {2, 20},
       maker<nn::Parallel>("parallel", parallel_net)},
      {"factory", "exercise: 3 fresh copies of an MLP block chained, then Dense(10)", {2, 20},
       maker<Sequential>("factory", factory_net)},
  };
  return models;
}

namespace {
/// relu(x * a + b) * sigmoid(x) + tanh(x) - 0.5 * x: nine elementwise ops over a large tensor.
struct ElementwiseChain : nn::Block {
  Tensor& a = add_constant("a", full({}, 1.5));
  Tensor& b = add_constant("b", full({}, -0.25));
  Tensor forward(const Tensor& x) override { return relu(x * a + b) * sigmoid(x) + tanh(x) - 0.5 * x; }
};

/// 32 steps of x = x * 0.5 + s * 0.01, each s = x.sum() and, when `Guarded`, a branch on s (always taken):
/// the two differ only by 32 guards, so their time difference is what checking guards costs.
template <bool Guarded>
struct GuardChain : nn::Block {
  static constexpr int kSteps = 32;
  Tensor forward(const Tensor& input) override {
    Tensor x = input;
    for (int i = 0; i < kSteps; ++i) {
      Tensor s = x.sum();
      if constexpr (Guarded) {
        if (s > -1e30) x = x * 0.5 + s * 0.01;
      } else {
        x = x * 0.5 + s * 0.01;
      }
    }
    return x;
  }
};
}  // namespace

const std::vector<ZooModel>& perf_zoo() {
  static const std::vector<ZooModel> models = {
      {"large-mlp", "1024 -> 4096 -> ReLU -> 4096 -> ReLU -> 1024, batch 256 (oneDNN-sized products)", {256, 1024},
       maker<Sequential>("large-mlp", [] { return Sequential(Dense(4096, "relu"), Dense(4096, "relu"), Dense(1024)); })},
      {"guard-chain", "32 steps of x = x * 0.5 + 0.01 * x.sum(), each behind `if (x.sum() > -1e30)`: 32 guards", {2, 8},
       maker<GuardChain<true>>("guard-chain")},
      {"guard-chain-free", "guard-chain without its branches: the same work and no guard", {2, 8},
       maker<GuardChain<false>>("guard-chain-free")},
      {"elementwise-chain", "relu(x*a+b)*sigmoid(x)+tanh(x)-0.5*x over 16M floats", {4096, 4096},
       maker<ElementwiseChain>("elementwise-chain")},
  };
  return models;
}

namespace {
/// The book's LeNet (sigmoid, average pooling) or its modern variant (ReLU, max pooling).
using namespace nn;

Sequential lenet(bool modern) {
  const char* act = modern ? "relu" : "sigmoid";
  Sequential net;
  auto pool = [&] { modern ? net.add(MaxPool2D(2, 2)) : net.add(AvgPool2D(2, 2)); };
  net.add(Conv2D(6, 5, 1, 2, act));
  pool();
  net.add(Conv2D(16, 5, 1, 0, act));
  pool();
  net.add(Flatten(), Dense(120, act), Dense(84, act), Dense(10));
  return net;
}

/// The book's ResNet-18 for Fashion-MNIST: a stem, four stages of two Residual blocks, global
/// pooling and Dense(10). On 96x96 the stem is the book's (7x7 stride 2, max pool 3 stride 2);
/// on 28x28 it is one 3x3 convolution, so the last stage still sees 4x4 maps.
Sequential resnet18(bool small_images) {
  Sequential net;
  if (small_images)
    net.add(Conv2D(64, 3, 1, 1, "none", {.use_bias = false}), BatchNorm(), ReLU());
  else
    net.add(Conv2D(64, 7, 2, 3, "none", {.use_bias = false}), BatchNorm(), ReLU(), MaxPool2D(3, 2, 1));
  for (auto [channels, first] : {std::pair{64, true}, {128, false}, {256, false}, {512, false}})
    net.add(Residual(channels, !first, first ? 1 : 2), Residual(channels));
  net.add(GlobalAvgPool2D(), Flatten(), Dense(10));
  return net;
}
}  // namespace

const std::vector<ZooModel>& vision_zoo() {
  static const std::vector<ZooModel> models = {
      {"lenet", "the book's LeNet: 6@5x5 pad 2 sigmoid, avg-pool, 16@5x5 sigmoid, avg-pool, 120, 84, 10",
       {2, 1, 28, 28}, maker<Sequential>("lenet", [] { return lenet(false); }, init::xavier())},
      {"lenet-relu", "LeNet with ReLU and max pooling", {2, 1, 28, 28},
       maker<Sequential>("lenet-relu", [] { return lenet(true); }, init::xavier())},
      {"resnet18", "the book's ResNet-18 on 96x96 images (Fashion-MNIST resized)", {1, 1, 96, 96},
       maker<Sequential>("resnet18", [] { return resnet18(false); }, init::xavier())},
      {"resnet18-28", "ResNet-18 on 28x28 images (a 3x3 stem)", {2, 1, 28, 28},
       maker<Sequential>("resnet18-28", [] { return resnet18(true); }, init::xavier())},
  };
  return models;
}

namespace {
/// Embedding -> GRU -> Dense on every step: logits [batch, time, vocab] for ids [batch, time].
struct GruLM : Block {
  explicit GruLM(int64_t vocab) : vocab_(vocab) {}
  int64_t vocab_;
  Embedding& tokens = add("tokens", Embedding(vocab_, 64, init::normal(0.1)));
  GRU& gru = add("gru", GRU(256, 64));
  Dense& head = add("head", Dense(vocab_, "none", true, 256));
  Tensor forward(const Tensor& ids) override {
    Tensor h = gru(tokens(ids));  // [batch, time, 256]
    return head(h.reshape({-1, 256})).reshape({ids.shape()[0], ids.shape()[1], vocab_});
  }
};
constexpr int64_t kZooVocab = 128;
}  // namespace

std::shared_ptr<nn::Block> char_lm(int64_t vocab) {
  return maker<TransformerLM>("char-lm", [vocab] { return TransformerLM(vocab, 128, 4, 512, 2, kCharLmContext); },
                              init::xavier())();
}

std::shared_ptr<nn::Block> gru_lm(int64_t vocab) {
  return maker<GruLM>("gru-lm", [vocab] { return GruLM(vocab); }, init::xavier())();
}

const std::vector<ZooModel>& sequence_zoo() {
  static const std::vector<ZooModel> models = {
      {"transformer-block", "a pre-norm Transformer encoder layer: d_model 256, 4 heads, feed-forward 1024, GELU",
       {8, 64, 256},
       maker<TransformerEncoderLayer>("transformer-block", [] { return TransformerEncoderLayer(256, 4, 1024); },
                                      init::xavier())},
      {"char-lm", "a character Transformer LM: d_model 128, 4 heads, feed-forward 512, 2 causal layers, tied weights",
       {32, kCharLmContext}, [] { return char_lm(kZooVocab); }, kZooVocab, char_lm},
      {"gru-lm", "a character GRU LM: Embedding(64) -> GRU(256) -> Dense(vocab), unrolled over time", {32, 64},
       [] { return gru_lm(kZooVocab); }, kZooVocab, gru_lm},
  };
  return models;
}

Tensor example_input(const ZooModel& m, const Shape& shape, uint64_t seed) {
  if (m.vocab == 0) return rand(shape);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> id(0, m.vocab - 1);
  std::vector<int64_t> ids(static_cast<size_t>(shape.numel()));
  for (int64_t& v : ids) v = id(rng);
  return tensor(ids, shape);
}

const ZooModel& zoo_model(const std::string& name) {
  std::string known;
  for (const auto* list : {&zoo(), &vision_zoo(), &sequence_zoo(), &perf_zoo()})
    for (const ZooModel& m : *list) {
      if (m.name == name) return m;
      known += (known.empty() ? "" : ", ") + m.name;
    }
  throw ValueError("zoo", "no model named '" + name + "' (known: " + known + ")");
}

}  // namespace bj::examples
