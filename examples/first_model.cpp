// The README's first model, kept compiling: the seed chapter's MLP as a
// custom block and as a Sequential.
#include <iostream>

#include "frontend/blockjit.h"

struct MLP : bj::nn::Block {
  bj::nn::Dense& hidden = add("hidden", bj::nn::Dense(256, "relu"));  // hidden layer
  bj::nn::Dense& out = add("out", bj::nn::Dense(10));                  // output layer
  bj::Tensor forward(const bj::Tensor& x) override { return out(hidden(x)); }
};

int main() {
  bj::manual_seed(0);
  bj::Tensor x = bj::rand({2, 20});
  MLP net;
  net.initialize();               // Gluon-style; input widths are learned on the first call
  fmt::print("{}\n", net(x));     // tensor([[...]], shape=[2, 10], dtype=f32)

  bj::nn::Sequential seq(bj::nn::Dense(256, "relu"), bj::nn::Dense(10));
  seq.initialize();
  std::cout << seq << "\n" << seq(x) << "\n";
}
