// The model zoo: the seed's programs by name, for the command-line program,
// the tests and the benchmarks.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "frontend/blockjit.h"

namespace bj::examples {

struct ZooModel {
  std::string name;         ///< "chimera"
  std::string description;  ///< one line
  Shape input;              ///< default input shape
  /// A fresh, initialized instance, named `name` (deferred shapes complete on the first call).
  std::function<std::shared_ptr<nn::Block>()> make;
  /// Language models take token ids: i64 inputs in [0, vocab). 0: f32 inputs.
  int64_t vocab = 0;
  /// A language model for another vocabulary (its tokenizer's), named `name`; null otherwise.
  std::function<std::shared_ptr<nn::Block>(int64_t vocab)> make_with_vocab = nullptr;
};

/// An input for `m` of `shape`: uniform [0, 1) floats from the global generator, or for a
/// language model ids uniform in [0, vocab) from a generator seeded with `seed`.
Tensor example_input(const ZooModel& m, const Shape& shape, uint64_t seed = 0);
inline Tensor example_input(const ZooModel& m) { return example_input(m, m.input); }

/// The seed chapter's models, in the chapter's order.
const std::vector<ZooModel>& zoo();
/// Larger models for benchmarks (`large-mlp`, `elementwise-chain`).
const std::vector<ZooModel>& perf_zoo();
/// Convolutional networks of the book's later chapters, on Fashion-MNIST-sized images:
/// `lenet`, `lenet-relu`, `resnet18` (96x96) and `resnet18-28` (28x28).
const std::vector<ZooModel>& vision_zoo();
/// Sequence models: `transformer-block` (input [batch 8, time 64, 256]) and the character
/// language models `char-lm` and `gru-lm` (ids [batch 32, time 64], 128 token ids).
const std::vector<ZooModel>& sequence_zoo();
/// The `char-lm` model for a vocabulary of `vocab` tokens: a TransformerLM with d_model 128,
/// 4 heads, feed-forward 512, 2 layers and a context of 64.
std::shared_ptr<nn::Block> char_lm(int64_t vocab);
/// The `gru-lm` model: Embedding(vocab, 64) -> GRU(256) -> Dense(vocab) on every step.
std::shared_ptr<nn::Block> gru_lm(int64_t vocab);
/// The context (longest sequence) of char_lm.
inline constexpr int64_t kCharLmContext = 64;
/// The model called `name` in any list; ValueError listing the known names otherwise.
const ZooModel& zoo_model(const std::string& name);

}  // namespace bj::examples
