// The `blockjit` command-line program: models, demo, info.
#include <fmt/format.h>

#include <cstring>
#include <iostream>
#include <string>

#include "codegen/host.h"
#include "examples/training.h"
#include "examples/zoo.h"
#include "runtime/kernels.h"

namespace {

constexpr const char* kUsage = R"(usage: blockjit COMMAND [ARGS]

commands:
  demo [MODEL...]   run each zoo model (or the named ones) on a 2x20 uniform
                    input under a fixed seed: block tree, parameters, output
  models            list the zoo models
  train MODEL [--steps N] [--optimizer sgd|adam] [--lr X]
                    train a zoo model that returns [batch, classes] logits
                    on a synthetic separable task; prints the loss
  info              LLVM version, host CPU and threads
  help              this text
)";

void print_model(const bj::examples::ZooModel& m) {
  bj::manual_seed(0);
  auto net = m.make();
  bj::Tensor x = bj::rand(m.input);
  bj::Tensor y = (*net)(x);  // the first call also completes deferred shapes
  fmt::print("== {}: {}\n", m.name, m.description);
  fmt::print("{}\n", net->repr());
  fmt::print("parameters:\n");
  for (const auto& [name, p] : net->named_parameters()) fmt::print("  {:<24} {}\n", name, bj::Type{bj::kF32, p.shape()}.str());
  auto constants = net->named_constants();
  if (!constants.empty()) {
    fmt::print("constants:\n");
    for (const auto& [name, t] : constants) fmt::print("  {:<24} {}\n", name, t.type().str());
  }
  fmt::print("input  {}\noutput {}\n\n", x.type().str(), y);
}

int demo(int argc, char** argv) {
  if (argc == 0) {
    for (const auto& m : bj::examples::zoo()) print_model(m);
  } else {
    for (int i = 0; i < argc; ++i) print_model(bj::examples::zoo_model(argv[i]));
  }
  return 0;
}

int train(int argc, char** argv) {
  if (argc < 1) throw bj::ValueError("train", "needs a model name (see `blockjit models`)");
  const auto& m = bj::examples::zoo_model(argv[0]);
  bj::examples::TrainOptions o;
  bool lr_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) throw bj::ValueError("train", "option " + a + " needs a value");
    std::string v = argv[++i];
    try {
      if (a == "--steps")
        o.steps = std::stoi(v);
      else if (a == "--optimizer")
        o.optimizer = v;
      else if (a == "--lr")
        o.lr = std::stod(v), lr_given = true;
      else
        throw bj::ValueError("train", "unknown option " + a);
    } catch (const std::logic_error&) {  // std::stoi/stod on a non-number
      throw bj::ValueError("train", "option " + a + " needs a number, got '" + v + "'");
    }
  }
  if (o.steps <= 0) throw bj::ValueError("train", "--steps must be positive");
  if (!lr_given && o.optimizer == "adam") o.lr = 0.01;
  o.log_every = std::max(1, o.steps / 10);
  bj::manual_seed(0);
  auto net = m.make();
  bj::Tensor probe = (*net)(bj::rand(m.input));
  if (probe.dim() != 2)
    throw bj::ShapeError("train", m.name + " returns " + probe.type().str() +
                                      ", not [batch, classes] logits; it cannot be trained as a classifier");
  auto task = bj::examples::make_classification_task(512, m.input.back(), probe.shape()[1], 1);
  fmt::print("training {} on {} points, {} classes: {} steps of {} (lr {})\n", m.name, task.x.shape()[0],
             task.classes, o.steps, o.optimizer, o.lr);
  auto r = bj::examples::train_classifier(*net, task, o, [](int step, double loss) {
    fmt::print("step {:5d}  loss {:.4f}\n", step, loss);
  });
  fmt::print("final loss {:.4f}, training accuracy {:.1f}%\n", r.final_loss, 100 * r.accuracy);
  return 0;
}

int models() {
  for (const auto& m : bj::examples::zoo()) fmt::print("{:<18} {}\n", m.name, m.description);
  return 0;
}

int info() {
  const auto& h = bj::codegen::host_info();
  fmt::print("LLVM {}\nhost CPU {}\nthreads {}\nfeatures {}\n", h.llvm_version, h.cpu, bj::rt::num_threads(), h.features);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  try {
    if (cmd == "demo") return demo(argc - 2, argv + 2);
    if (cmd == "models") return models();
    if (cmd == "train") return train(argc - 2, argv + 2);
    if (cmd == "info") return info();
    std::cerr << "blockjit: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {  // bj::Error and anything else: report, never abort
    std::cerr << "blockjit: " << e.what() << "\n";
    return 1;
  }
}
