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
};

/// The seed chapter's models, in the chapter's order.
const std::vector<ZooModel>& zoo();
/// Larger models for benchmarks (`large-mlp`, `elementwise-chain`).
const std::vector<ZooModel>& perf_zoo();
/// Convolutional networks of the book's later chapters, on Fashion-MNIST-sized images:
/// `lenet`, `lenet-relu`, `resnet18` (96x96) and `resnet18-28` (28x28).
const std::vector<ZooModel>& vision_zoo();
/// Sequence models: `transformer-block` (input [batch 8, time 64, 256]).
const std::vector<ZooModel>& sequence_zoo();
/// The model called `name` in any list; ValueError listing the known names otherwise.
const ZooModel& zoo_model(const std::string& name);

}  // namespace bj::examples
