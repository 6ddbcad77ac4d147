// The `blockjit` command-line program: models, demo, info.
#include <fmt/format.h>

#include <cstring>
#include <iostream>
#include <string>

#include "codegen/host.h"
#include "examples/zoo.h"
#include "runtime/kernels.h"

namespace {

constexpr const char* kUsage = R"(usage: blockjit COMMAND [ARGS]

commands:
  demo [MODEL...]   run each zoo model (or the named ones) on a 2x20 uniform
                    input under a fixed seed: block tree, parameters, output
  models            list the zoo models
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
    if (cmd == "info") return info();
    std::cerr << "blockjit: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {  // bj::Error and anything else: report, never abort
    std::cerr << "blockjit: " << e.what() << "\n";
    return 1;
  }
}
