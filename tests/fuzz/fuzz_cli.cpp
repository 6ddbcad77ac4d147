// libFuzzer target: the `blockjit` command line (bj::cli::parse). The input
// is split at NUL bytes into arguments. Only bj::Error may come out, and a
// command that parses must hold what the rest of the program relies on.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tools/cli.h"

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_cli: a parsed command breaks: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      if (args.size() == 64) return 0;
      args.emplace_back();
    } else {
      args.back() += static_cast<char>(data[i]);
    }
  }
  bj::cli::Command c;
  try {
    c = bj::cli::parse(args);
  } catch (const bj::Error&) {
    return 0;
  }
  const std::string& n = c.name;
  require(n == "help" || n == "demo" || n == "models" || n == "train" || n == "bench" || n == "dump" || n == "ir" ||
              n == "info" || n == "export" || n == "run" || n == "aot",
          "an unknown command name");
  if (n == "train" || n == "bench" || n == "dump" || n == "export") require(c.models.size() == 1, "one model");
  if (n == "export" || n == "aot") require(c.out.has_value(), "--out");
  if (n == "run" || n == "aot") require(!c.file.empty() && c.file[0] != '-', "a prefix");
  if (n == "export") require(!c.scales.empty() && c.scales.size() <= 64, "one to 64 scales");
  if (c.input) require(!c.input->empty(), "a non-empty --input");
  if (n == "train") {
    require(c.train.steps >= 1 && c.train.log_every >= 1, "positive step counts");
    require(c.train.lr > 0 && c.train.lr <= 1e3, "a finite, positive learning rate");
    require(c.train.optimizer == "sgd" || c.train.optimizer == "adam", "a known optimizer");
  }
  if (c.batch) require(*c.batch >= 1, "a positive batch");
  if (c.threads) require(*c.threads >= 1 && *c.threads <= bj::cli::max_threads(), "threads within the cap");
  if (c.out) require(!c.out->empty(), "a non-empty --out");
  if (n == "ir") require(!c.file.empty(), "a file name");
  return 0;
}
