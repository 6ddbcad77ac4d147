// The seed chapter "Layers and Blocks", section by section, as one program.
#include <iostream>

#include "examples/seed_models.h"

using namespace bj::examples;

int main() {
  bj::manual_seed(0);
  bj::Tensor x = bj::rand({2, 20});

  std::cout << "# 5.1 A Sequential MLP\n";
  Sequential net = sequential_mlp();
  net.initialize();
  std::cout << net(x) << "\n\n";

  std::cout << "# 5.1.1 A custom block\n";
  MLP mlp;
  mlp.initialize();
  std::cout << mlp(x) << "\n\n";

  std::cout << "# 5.1.2 MySequential\n";
  MySequential myseq(Dense(256, "relu"), Dense(10));
  myseq.initialize();
  std::cout << myseq(x) << "\n\n";

  std::cout << "# 5.1.3 Code in forward: FixedHiddenMLP\n";
  FixedHiddenMLP fixed;
  fixed.initialize();
  std::cout << fixed(x) << "\n\n";

  std::cout << "# Nesting: chimera\n";
  Sequential chim = chimera();
  chim.initialize();
  std::cout << chim << "\n" << chim(x) << "\n\n";

  std::cout << "# Exercise: a parallel block\n";
  bj::nn::Parallel par = parallel_net();
  par.initialize();
  std::cout << par(x) << "\n\n";

  std::cout << "# Exercise: a factory of blocks\n";
  Sequential fac = factory_net();
  fac.initialize();
  std::cout << fac(x) << "\n";
}
