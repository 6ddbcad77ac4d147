// The `blockjit` program's command line (see cli.h).
#include "tools/cli.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "examples/zoo.h"
#include "frontend/creation.h"
#include "runtime/interpreter.h"

namespace bj::cli {

const char* const kUsage = R"(usage: blockjit COMMAND [ARGS]

commands:
  demo [MODEL...] [--dump-dir DIR]
                    each zoo model (or the named ones) eager and hybridized
                    on a 2x20 uniform input under seed 0: outputs and their
                    agreement, eager vs compiled time, variants, fallbacks;
                    then FixedHiddenMLP on inputs taking different paths.
                    --dump-dir writes traced/optimized IR, DOT and LLVM IR
  models            list the zoo models
  train MODEL [--steps N] [--optimizer sgd|adam] [--lr X] [--hybridize|--step] [--exact]
  train MODEL --data fashion-mnist [--epochs N] [--batch N] [--lr X] [--hybridize|--step] [--exact]
  train char-lm|gru-lm [--steps N] [--batch N] [--lr X] [--hybridize|--step] [--exact]
                    train a zoo model that returns [batch, classes] logits
                    on a synthetic separable task; prints the loss and the
                    steps per second; --hybridize compiles forward and
                    backward, --step the whole step (loss and update too),
                    and the same training is then timed eagerly for the ratio;
                    --exact makes compiled results eager's bit for bit;
                    with --data, epochs of SGD (lr 0.9, batch 256) on
                    Fashion-MNIST (package dataset-fashion-mnist): loss,
                    train and test accuracy, examples/s per epoch;
                    a language model trains with Adam (lr 0.003) on windows
                    of 64 characters (batch 32) of the fortunes text
                    (package fortunes): training and validation loss in
                    nats per character, then text sampled from the model
  bench MODEL [--batch N] [--threads T] [--json] [--train] [--exact]
                    eager vs hybridized (compiled) calls, interleaved in one
                    process after warm-up: medians, speedup, GFLOP/s or
                    GB/s, variants and fallbacks; --train times training
                    steps (forward, loss, backward, SGD update): the
                    cross-entropy for [batch, classes] logits (a language
                    model's against random next tokens), else the mean
                    squared error against a random target; --exact compiles
                    code that gives eager's results bit for bit
  bench MODEL --batches N,N,... [--json]
                    one block called at each batch size in turn, hybridized
                    with dynamic batch (one variant for every size) and
                    without (a variant per size): variants, compile time,
                    and per size the medians of eager, fixed-size and
                    dynamic calls
  bench MODEL --compile [--json]
                    hybridize to first compiled call, medians of 3: cold
                    (object cache off, optimized at once), first tier
                    (cache off, tiered: the default) and from the object
                    cache, and the second tier's compile time
  bench guard-cost [--json]
                    what checking one guard costs in compiled code
  dump MODEL [--stage traced|opt|llvm|asm] [--format text|dot] [--out FILE]
            [--batch N] [--train] [--print-after-all] [--print-after=NAME[,NAME]]
                    trace a zoo model on its default input (or one of batch N) and print (or
                    write) the graph as traced or after the optimization
                    pipeline; FILE.svg/.png renders through Graphviz;
                    --train shows the forward and backward graphs of a
                    training call instead;
                    --print-after* (or BJ_PRINT_AFTER) print the IR after passes
  export MODEL --out PREFIX [--batch N] [--scales X,Y,...] [--exact]
                    hybridize a zoo model, call it on its default input
                    (times each scale, default 1: inputs that take other
                    paths record more), inference, and write its compiled
                    paths to PREFIX.ir and its parameters to
                    PREFIX.safetensors
  run PREFIX [--input FILE.safetensors] [--bench]
                    import an exported model (no class needed) and print
                    its outputs on the file's tensors (in file order) or
                    else on seeded uniform [0, 1) inputs (ids: zeros);
                    --bench times import, first call and compiled calls
  aot PREFIX --out DIR [--name NAME]
                    compile an exported model ahead of time for this CPU:
                    DIR/libNAME.a and DIR/NAME.h with a C entry point
                    (int NAME_run(const float* in, float* out)) that links
                    only blockjit's AOT runtime, no LLVM (NAME: PREFIX's
                    base name, made a C identifier)
  ir FILE [--run]   parse a text IR file, verify it, print it back; with
                    --run, interpret it on seeded random inputs (exit
                    status 3 if a guard fails on them, 1 on an error)
  info              LLVM version, host CPU and threads
  help              this text
)";

int64_t int_option(const char* cmd, const std::string& name, const std::string& text, int64_t lo, int64_t hi) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc::result_out_of_range || (ec == std::errc() && end == text.data() + text.size() && (v < lo || v > hi)))
    throw ValueError(cmd, fmt::format("{} must be between {} and {}, got {}", name, lo, hi, text));
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    throw ValueError(cmd, fmt::format("{} needs a whole number, got '{}'", name, text));
  return v;
}

double real_option(const char* cmd, const std::string& name, const std::string& text, double lo, double hi) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty())
    throw ValueError(cmd, fmt::format("{} needs a number, got '{}'", name, text));
  if (!std::isfinite(v) || v < lo || v > hi)
    throw ValueError(cmd, fmt::format("{} must be a finite number between {} and {}, got {}", name, lo, hi, text));
  return v;
}

int max_threads() { return 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

/// A comma-separated list of at most `most` items, each parsed by `item`.
template <class F>
auto list_option(const char* cmd, const std::string& name, std::string_view text, size_t most, F&& item) {
  std::vector<decltype(item(std::string()))> out;
  while (true) {
    const size_t comma = text.find(',');
    out.push_back(item(std::string(text.substr(0, comma))));
    if (out.size() > most) throw ValueError(cmd, fmt::format("{} takes at most {} values", name, most));
    if (comma == std::string_view::npos) return out;
    text = text.substr(comma + 1);
  }
}

int64_t max_batch(const Shape& input) {
  const int64_t per_row = std::max<int64_t>(1, input.numel() / std::max<int64_t>(1, input[0])) * 4 * 64;
  const int64_t memory = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
  return std::max<int64_t>(1, memory / 4 / per_row);
}

namespace {

/// Options of the form `--name value` (known) or `--name` (flags), each at most once.
std::map<std::string, std::string> options(std::span<const std::string> args, const std::set<std::string>& known,
                                           const std::set<std::string>& flags, const char* cmd) {
  std::map<std::string, std::string> o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!flags.count(a) && !known.count(a)) throw ValueError(cmd, "unknown option '" + a + "'");
    if (o.count(a)) throw ValueError(cmd, "option " + a + " given twice");
    if (flags.count(a)) {
      o[a] = "1";
    } else {
      if (i + 1 >= args.size()) throw ValueError(cmd, "option " + a + " needs a value");
      o[a] = args[++i];
    }
  }
  return o;
}

/// The model named by the command's first argument (ValueError listing the choices otherwise).
const examples::ZooModel& model_argument(std::span<const std::string> args, const char* cmd) {
  if (args.empty()) throw ValueError(cmd, "needs a model name (see `blockjit models`)");
  return examples::zoo_model(args[0]);
}

void parse_train(Command& c, std::span<const std::string> args) {
  const examples::ZooModel& m = model_argument(args, "train");
  c.models = {m.name};
  auto o = options(args.subspan(1), {"--steps", "--optimizer", "--lr", "--data", "--epochs", "--batch"},
                   {"--hybridize", "--step", "--exact"}, "train");
  if (o.count("--hybridize") && o.count("--step")) throw ValueError("train", "--hybridize and --step exclude each other");
  c.train.mode = o.count("--step") ? "step" : o.count("--hybridize") ? "hybridize" : "eager";
  const bool exact = o.count("--exact") > 0;
  if (exact && c.train.mode == "eager") throw ValueError("train", "--exact is for compiled training: add --hybridize or --step");
  c.train.exact = c.epochs.exact = c.text.exact = exact;
  if (m.vocab > 0) {  // a language model: next-token training on the fortunes text
    if (o.count("--data") && o["--data"] != "fortunes")
      throw ValueError("train", m.name + " trains on text: --data is fortunes (the default), got '" + o["--data"] + "'");
    for (const char* other : {"--optimizer", "--epochs"})
      if (o.count(other))
        throw ValueError("train", std::string(other) + " is not an option of a language model (Adam, --steps)");
    c.data = "fortunes";
    c.text.mode = c.train.mode;
    if (o.count("--steps")) c.text.steps = static_cast<int>(int_option("train", "--steps", o["--steps"], 1, 10'000'000));
    if (o.count("--batch")) c.text.batch = int_option("train", "--batch", o["--batch"], 1, 4096);
    if (o.count("--lr")) c.text.lr = real_option("train", "--lr", o["--lr"], 1e-12, 1e3);
    c.text.eval_every = std::max(1, std::min(100, c.text.steps / 5));
    return;
  }
  if (o.count("--data")) {
    if (o["--data"] != "fashion-mnist")
      throw ValueError("train", "--data names a data set: fashion-mnist (for the vision models), got '" +
                                    o["--data"] + "'");
    for (const char* synthetic : {"--steps", "--optimizer"})
      if (o.count(synthetic))
        throw ValueError("train", std::string(synthetic) + " is for the synthetic task; with --data, use --epochs");
    c.data = o["--data"];
    c.epochs.mode = c.train.mode;
    if (o.count("--epochs")) c.epochs.epochs = static_cast<int>(int_option("train", "--epochs", o["--epochs"], 1, 100'000));
    if (o.count("--batch")) c.epochs.batch = int_option("train", "--batch", o["--batch"], 1, 60'000);
    if (o.count("--lr")) c.epochs.lr = real_option("train", "--lr", o["--lr"], 1e-12, 1e3);
    if (c.models[0].rfind("resnet18", 0) == 0 && c.models[0] != "resnet18-28") c.epochs.resize = 96;
    return;
  }
  for (const char* real_data : {"--epochs", "--batch"})
    if (o.count(real_data)) throw ValueError("train", std::string(real_data) + " needs --data fashion-mnist");
  if (o.count("--steps")) c.train.steps = static_cast<int>(int_option("train", "--steps", o["--steps"], 1, 10'000'000));
  if (o.count("--optimizer")) c.train.optimizer = o["--optimizer"];
  if (c.train.optimizer != "sgd" && c.train.optimizer != "adam")
    throw ValueError("train", "--optimizer is sgd or adam, got '" + c.train.optimizer + "'");
  if (o.count("--lr"))
    c.train.lr = real_option("train", "--lr", o["--lr"], 1e-12, 1e3);
  else if (c.train.optimizer == "adam")
    c.train.lr = 0.01;
  c.train.log_every = std::max(1, c.train.steps / 10);
}

void parse_bench(Command& c, std::span<const std::string> args) {
  if (!args.empty() && args[0] == "guard-cost") {
    c.models = {"guard-cost"};
    c.json = options(args.subspan(1), {}, {"--json"}, "bench").count("--json") > 0;
    return;
  }
  const examples::ZooModel& m = model_argument(args, "bench");
  c.models = {m.name};
  auto o = options(args.subspan(1), {"--batch", "--threads", "--batches"}, {"--json", "--train", "--exact", "--compile"},
                   "bench");
  c.train_step = o.count("--train") > 0;
  c.compile_times = o.count("--compile") > 0;
  if (o.count("--batches"))
    c.batches = list_option("bench", "--batches", o["--batches"], 256, [&](const std::string& x) {
      return int_option("bench", "--batches", x, 0, max_batch(m.input));
    });
  if (c.train_step + c.compile_times + !c.batches.empty() > 1)
    throw ValueError("bench", "--train, --compile and --batches exclude each other");
  c.exact = o.count("--exact") > 0;
  if (o.count("--batch")) c.batch = int_option("bench", "--batch", o["--batch"], 1, max_batch(m.input));
  if (o.count("--threads"))
    c.threads = static_cast<int>(int_option("bench", "--threads", o["--threads"], 1, max_threads()));
  c.json = o.count("--json") > 0;
}

void parse_dump(Command& c, std::span<const std::string> args) {
  c.models = {model_argument(args, "dump").name};
  c.pipeline = passes::PipelineOptions::from_env();
  std::vector<std::string> rest;
  for (const std::string& a : args.subspan(1))
    if (!c.pipeline.parse_flag(a)) rest.push_back(a);
  auto o = options(rest, {"--format", "--out", "--stage", "--batch"}, {"--train"}, "dump");
  c.train_graphs = o.count("--train") > 0;
  if (o.count("--batch"))
    c.batch = int_option("dump", "--batch", o["--batch"], 1, max_batch(examples::zoo_model(c.models[0]).input));
  if (o.count("--format")) c.format = o["--format"];
  if (c.format != "text" && c.format != "dot") throw ValueError("dump", "--format is text or dot, got '" + c.format + "'");
  if (o.count("--stage")) c.stage = o["--stage"];
  if (c.stage != "traced" && c.stage != "opt" && c.stage != "llvm" && c.stage != "asm")
    throw ValueError("dump", "--stage is traced, opt, llvm or asm, got '" + c.stage + "'");
  if (o.count("--out")) {
    if (o["--out"].empty()) throw ValueError("dump", "--out needs a file name");
    c.out = o["--out"];
  }
}

}  // namespace

Command parse(const std::vector<std::string>& all) {
  Command c;
  if (all.empty() || all[0] == "help" || all[0] == "--help" || all[0] == "-h") {
    c.name = "help";
    return c;
  }
  c.name = all[0];
  std::span<const std::string> args(all.data() + 1, all.size() - 1);
  if (c.name == "demo") {
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i] == "--dump-dir") {
        if (i + 1 >= args.size() || args[i + 1].empty()) throw ValueError("demo", "--dump-dir needs a directory");
        c.dump_dir = args[++i];
      } else if (args[i].starts_with("-")) {
        throw ValueError("demo", "unknown option '" + args[i] + "'");
      } else {
        c.models.push_back(examples::zoo_model(args[i]).name);
      }
    }
  } else if (c.name == "models" || c.name == "info") {
    options(args, {}, {}, c.name.c_str());
  } else if (c.name == "train") {
    parse_train(c, args);
  } else if (c.name == "bench") {
    parse_bench(c, args);
  } else if (c.name == "dump") {
    parse_dump(c, args);
  } else if (c.name == "export") {
    c.models = {model_argument(args, "export").name};
    auto o = options(args.subspan(1), {"--out", "--batch", "--scales"}, {"--exact"}, "export");
    if (o.count("--scales"))
      c.scales = list_option("export", "--scales", o["--scales"], 64,
                             [](const std::string& x) { return real_option("export", "--scales", x, -1e30, 1e30); });
    if (!o.count("--out") || o["--out"].empty()) throw ValueError("export", "needs --out PREFIX (writes PREFIX.ir and PREFIX.safetensors)");
    c.out = o["--out"];
    c.exact = o.count("--exact") > 0;
    if (o.count("--batch"))
      c.batch = int_option("export", "--batch", o["--batch"], 1, max_batch(examples::zoo_model(c.models[0]).input));
  } else if (c.name == "run") {
    if (args.empty() || args[0].empty() || args[0].starts_with("-"))
      throw ValueError("run", "needs the PREFIX of an exported model (PREFIX.ir and PREFIX.safetensors)");
    c.file = args[0];
    auto o = options(args.subspan(1), {"--input"}, {"--bench"}, "run");
    if (o.count("--input")) {
      if (o["--input"].empty()) throw ValueError("run", "--input needs a safetensors file");
      c.input = o["--input"];
    }
    c.bench_run = o.count("--bench") > 0;
  } else if (c.name == "aot") {
    if (args.empty() || args[0].empty() || args[0].starts_with("-"))
      throw ValueError("aot", "needs the PREFIX of an exported model (PREFIX.ir and PREFIX.safetensors)");
    c.file = args[0];
    auto o = options(args.subspan(1), {"--out", "--name"}, {}, "aot");
    if (!o.count("--out") || o["--out"].empty()) throw ValueError("aot", "needs --out DIR (for libNAME.a and NAME.h)");
    c.out = o["--out"];
    if (o.count("--name")) c.aot_name = o["--name"];
  } else if (c.name == "ir") {
    if (args.empty() || args[0].empty()) throw ValueError("ir", "needs a file");
    c.file = args[0];
    c.run = options(args.subspan(1), {}, {"--run"}, "ir").count("--run") > 0;
  } else {
    throw ValueError("blockjit", "unknown command '" + c.name + "' (see `blockjit help`)");
  }
  return c;
}

std::unique_ptr<ir::Graph> load_ir(const std::string& text) {
  std::unique_ptr<ir::Graph> g = ir::parse(text);
  ir::verify(*g);
  return g;
}

IrRun run_ir(const ir::Graph& g, uint64_t seed) {
  manual_seed(seed);
  std::vector<Tensor> keep;
  std::vector<rt::ConstView> in, params, consts;
  auto fill = [&](const std::vector<ir::Value*>& vs, std::vector<rt::ConstView>& views) {
    for (const ir::Value* v : vs) {
      Tensor t = uniform(-1, 1, v->type.shape);
      if (v->type.dtype != kF32) t = t.to(v->type.dtype);
      keep.push_back(t);
      views.push_back({t.raw_data(), t.type()});
    }
  };
  fill(g.inputs(), in);
  fill(g.params(), params);
  fill(g.consts(), consts);
  rt::InterpretResult r = rt::interpret(g, in, params, consts);
  IrRun run;
  if (r.failed_guard) {
    run.failed_guard = fmt::format("guard {} failed: {}", r.failed_guard_index, ir::describe(g, *r.failed_guard));
    return run;
  }
  for (size_t i = 0; i < r.outputs.size(); ++i)
    run.outputs.emplace_back(
        std::make_shared<detail::TensorImpl>(detail::TensorImpl{r.outputs[i], g.outputs()[i]->type, nullptr}));
  return run;
}

}  // namespace bj::cli
