// A user's program against an installed blockjit: its own block class,
// hybridized and trained a step, saved and exported, then an exported model
// (argv[1], made by `blockjit export`) imported and run without its class.
// Exit status 0 when every compiled result agrees with eager mode.
#include <blockjit/blockjit.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

struct TwoLayer : bj::nn::Block {
  bj::nn::Dense& hidden = add("hidden", bj::nn::Dense(32, "relu"));
  bj::nn::Dense& out = add("out", bj::nn::Dense(4));
  bj::Tensor forward(const bj::Tensor& x) override { return out(hidden(x)); }
};

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer PREFIX (an exported model)\n");
    return 2;
  }
  bj::set_num_threads(1);
  bj::manual_seed(0);
  auto net = std::make_shared<TwoLayer>();
  net->initialize();
  const bj::Tensor x = bj::uniform(-1, 1, {8, 16});
  net->hybridize();
  bj::optim::SGD opt(net->parameters(), {.lr = 0.1});
  for (int step = 0; step < 3; ++step) {  // the second and third steps run compiled
    opt.zero_grad();
    bj::Tensor loss = (*net)(x).sum();
    loss.backward();
    opt.step();
  }
  bj::NoGradGuard no_grad;
  const bool trained_ok = bj::allclose((*net)(x), net->call_eager(x), 1e-5, 1e-6);
  const std::string stem =
      (std::filesystem::temp_directory_path() / ("consumer-two-layer-" + std::to_string(::getpid()))).string();
  net->save_parameters(stem + ".safetensors");
  net->export_model(stem);
  auto again = bj::nn::SymbolBlock::imports(stem);
  const bool roundtrip_ok = bj::max_abs_diff((*again)(x), (*net)(x)) == 0.0;

  auto model = bj::nn::SymbolBlock::imports(argv[1]);
  const bj::Type in = model->paths().at(0).inputs.at(0).value();
  const bj::Tensor y = bj::uniform(0, 1, in.shape);
  const bj::Tensor compiled = (*model)(y), eager = model->call_eager(y);
  const bool imported_ok = bj::allclose(compiled, eager, 1e-5, 1e-6) && model->stats().compiled_hits == 1;
  std::printf("consumer: trained %s, exported %s, %s imported: %s, max |compiled - eager| %.3g\n",
              trained_ok ? "ok" : "WRONG", roundtrip_ok ? "ok" : "WRONG", argv[1], imported_ok ? "ok" : "WRONG",
              bj::max_abs_diff(compiled, eager));
  for (const char* suffix : {".safetensors", ".ir"}) std::filesystem::remove(stem + suffix);
  return trained_ok && roundtrip_ok && imported_ok ? 0 : 1;
}
