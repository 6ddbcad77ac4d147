// The programs of the seed chapter ("Layers and Blocks"), in C++. Each reads
// like its Python original; the chapter's comments are kept where they help.
#pragma once

#include "frontend/blockjit.h"

namespace bj::examples {

using bj::Tensor;
using bj::nn::Block;
using bj::nn::Dense;
using bj::nn::Sequential;

/// 5.1: net = nn.Sequential(); net.add(nn.Dense(256, activation='relu')); net.add(nn.Dense(10))
inline Sequential sequential_mlp() { return Sequential(Dense(256, "relu"), Dense(10)); }

/// 5.1.1 A Custom Block: one hidden layer of 256 units and a 10-unit output layer.
struct MLP : Block {
  // Declare two fully connected layers.
  Dense& hidden = add("hidden", Dense(256, "relu"));  // hidden layer
  Dense& out = add("out", Dense(10));                  // output layer

  // The forward computation: the model output for the input x.
  Tensor forward(const Tensor& x) override { return out(hidden(x)); }
};

/// 5.1.2 The Sequential Block, written on the Block API: children are kept
/// in registration order, so forward chains them in the order they were added.
struct MySequential : Block {
  template <nn::BlockType... Bs>
  explicit MySequential(Bs&&... blocks) {
    (add(std::forward<Bs>(blocks)), ...);
  }
  template <nn::BlockType B>
  MySequential& add(B&& block) {
    Block::add(std::to_string(children().size()), std::forward<B>(block));
    return *this;
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = x;
    for (auto& [name, block] : children()) y = (*block)(y);
    return y;
  }
};

/// 5.1.3 Executing Code in the forward Method: a constant (untrained) weight,
/// a layer used twice (shared parameters), and data-dependent control flow.
struct FixedHiddenMLP : Block {
  // A random weight that is not trained: a constant of the block.
  Tensor& rand_weight = add_constant("rand_weight", bj::rand({20, 20}));
  Dense& linear = add("linear", Dense(20));

  Tensor forward(const Tensor& input) override {
    Tensor x = linear(input);
    // Use the constant weight, as well as the relu and matmul functions.
    x = bj::relu(bj::matmul(x, rand_weight) + 1);
    // Reuse the fully connected layer: both uses share its parameters.
    x = linear(x);
    // Control flow on the data: halve until the norm is at most 1.
    while (x.norm() > 1) x /= 2;
    return x.sum();
  }
};

/// Blocks nested in blocks.
struct NestMLP : Block {
  Sequential& net = add("net", Sequential(Dense(64, "relu"), Dense(32, "relu")));
  Dense& dense = add("dense", Dense(16, "relu"));

  Tensor forward(const Tensor& x) override { return dense(net(x)); }
};

/// chimera = nn.Sequential(); chimera.add(NestMLP(), nn.Dense(20), FixedHiddenMLP())
inline Sequential chimera() { return Sequential(NestMLP(), Dense(20), FixedHiddenMLP()); }

/// Exercise: a block that runs two blocks on one input and concatenates their outputs.
inline nn::Parallel parallel_net() {
  return nn::Parallel(Sequential(Dense(64, "relu"), Dense(10)), Sequential(Dense(32, "tanh"), Dense(6)));
}

/// Exercise: a factory of fresh instances of one block, chained into a larger network.
inline Sequential factory_net() {
  Sequential net = nn::repeat(3, [] { return Sequential(Dense(64, "relu"), Dense(20)); });
  net.add(Dense(10));
  return net;
}

}  // namespace bj::examples
