// The `blockjit` program's command line, parsed and checked before anything
// runs: a separate unit so that tests and the command-line fuzzer
// (tests/fuzz/fuzz_cli.cpp) reach every rule without running a model.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "examples/language_model.h"
#include "examples/training.h"
#include "frontend/tensor.h"
#include "ir/graph.h"
#include "passes/pipeline.h"

namespace bj::cli {

/// One command and its checked options. Every number was parsed whole and range-checked, every
/// model name exists, every choice is one of its accepted spellings.
struct Command {
  std::string name;                 ///< demo, models, train, bench, dump, export, run, aot, ir, info or help
  std::vector<std::string> models;  ///< demo: the named models (none: all); train, bench, dump: one
  std::string dump_dir;             ///< demo --dump-dir
  examples::TrainOptions train;     ///< train: --steps, --optimizer, --lr (adam's default lr is 0.01)
  std::string data;                 ///< train --data: "fashion-mnist" (else the synthetic task)
  examples::EpochOptions epochs;    ///< train --data: --epochs, --batch, --lr (0.9), the mode
  examples::LanguageModelOptions text;  ///< train of a language model (data "fortunes"): --steps, --batch, --lr
  std::optional<int64_t> batch;     ///< bench --batch, export --batch
  std::optional<int> threads;       ///< bench --threads
  bool json = false;                ///< bench --json
  bool train_step = false;          ///< bench --train: training steps instead of inference calls
  bool compile_times = false;       ///< bench --compile: hybridize-to-first-compiled-call times
  std::vector<int64_t> batches;     ///< bench --batches: dynamic against fixed-size variants per batch size
  bool exact = false;               ///< bench, export --exact: compiled code gives eager's results bit for bit
  std::string format = "text";      ///< dump --format text|dot
  std::string stage = "traced";     ///< dump --stage traced|opt|llvm|asm
  std::optional<std::string> out;   ///< dump --out; export --out (the prefix); aot --out (a folder)
  bool train_graphs = false;        ///< dump --train: the forward and backward of a training call
  passes::PipelineOptions pipeline; ///< dump --print-after-all / --print-after=...
  std::string file;                 ///< ir FILE; run and aot PREFIX
  std::optional<std::string> input; ///< run --input
  bool bench_run = false;           ///< run --bench
  std::optional<std::string> aot_name;  ///< aot --name
  std::vector<double> scales{1.0};  ///< export --scales: the default input times each
  bool run = false;                 ///< ir --run
};

/// The usage text `blockjit help` prints.
extern const char* const kUsage;

/// Parses the arguments after the program's name. ValueError (naming the command, the option and
/// what it accepts) for anything else; an unknown command's name is in its message.
Command parse(const std::vector<std::string>& args);

/// A whole-string integer in [lo, hi]: "1.5", "1e3", "3x" and "" are errors naming the option.
int64_t int_option(const char* cmd, const std::string& name, const std::string& text, int64_t lo, int64_t hi);
/// A whole-string finite number in [lo, hi] (NaN and infinities are errors).
double real_option(const char* cmd, const std::string& name, const std::string& text, double lo, double hi);
/// At most this many threads: a few per core (more only oversubscribes).
int max_threads();
/// The largest batch `bench` accepts for a model with this input: one whose input and widest
/// activations (a few times wider) fit in this machine's memory.
int64_t max_batch(const Shape& input);

/// The `ir` command's work, apart from its file. `load_ir` parses and verifies IR text
/// (ParseError with line:column, VerifyError); `run_ir` interprets a loaded graph on seeded
/// uniform(-1, 1) data for its inputs, parameters and constants, in that order.
std::unique_ptr<ir::Graph> load_ir(const std::string& text);
struct IrRun {
  std::vector<Tensor> outputs;           ///< empty when a guard failed
  std::optional<std::string> failed_guard;  ///< "guard N failed: ..." (the data took another path)
};
IrRun run_ir(const ir::Graph& g, uint64_t seed = 0);

}  // namespace bj::cli
