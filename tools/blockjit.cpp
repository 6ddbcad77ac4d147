// The `blockjit` command-line program: models, demo, info.
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cctype>
#include <functional>
#include <map>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <iostream>
#include <string>
#include <utility>

#include "codegen/aot.h"
#include "codegen/host.h"
#include "codegen/optimize.h"
#include "examples/seed_models.h"
#include "examples/language_model.h"
#include "examples/training.h"
#include "examples/zoo.h"
#include "ir/split.h"
#include "runtime/kernels.h"
#include "tools/cli.h"

namespace {

/// Median of `rounds` timings (microseconds per call) of f, each over enough calls to last ~10 ms.
struct Timer {
  static int calls_for(const std::function<void()>& f, double budget_us = 10000) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    return std::clamp(static_cast<int>(budget_us / std::max(us, 0.01)), 1, 100000);
  }
  static double once(const std::function<void()>& f, int calls) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) f();
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / calls;
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string fmt_us(double us) { return us < 1000 ? fmt::format("{:.2f} us", us) : fmt::format("{:.2f} ms", us / 1000); }

/// Writes `text` to `path`; a full disk or an unwritable file is an error (checked after closing).
void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (f.fail()) throw bj::ValueError("dump", "cannot write " + path + ": " + std::strerror(errno));
}

/// Runs a program with these arguments (no shell: nothing in them is interpreted) and waits for
/// it; -1 if it could not be started (not installed).
int run_program(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// DIR/MODEL.traced.ir, .traced.dot, .opt.ir, .opt.dot and .ll for a trace of `net` on x.
void dump_model(const std::string& dir, const std::string& name, bj::nn::Block& net, const bj::Tensor& x) {
  std::filesystem::create_directories(dir);
  bj::Trace t = bj::trace(net, x);
  const std::string base = dir + "/" + name;
  write_file(base + ".traced.ir", bj::ir::print(*t.graph));
  write_file(base + ".traced.dot", bj::ir::to_dot(*t.graph));
  bj::codegen::CompileOptions co;
  co.keep_ir = true;
  auto exe = bj::codegen::compile(*t.graph, co);
  write_file(base + ".opt.ir", bj::ir::print(exe->graph()));
  write_file(base + ".opt.dot", bj::ir::to_dot(exe->graph()));
  write_file(base + ".ll", exe->llvm_ir());
}

struct DemoResult {
  std::string model;
  double eager_us, compiled_us, diff;
  bool match;
};

/// One zoo model, eager and hybridized: outputs, agreement, times, variants and fallbacks.
DemoResult demo_model(const bj::examples::ZooModel& m, const std::string& dump_dir) {
  bj::manual_seed(0);
  auto net = m.make();
  bj::Tensor x = bj::examples::example_input(m);
  bj::NoGradGuard no_grad;  // inference: compiled calls need no autograd graph
  bj::Tensor ye = net->call_eager(x);  // the first call also completes deferred shapes
  fmt::print("== {}: {}\n{}\n", m.name, m.description, net->repr());
  net->hybridize();
  (*net)(x);  // traced, optimized, compiled
  net->wait_for_compiles();  // the times below are the optimized code's
  bj::Tensor yh = (*net)(x);
  const double diff = bj::max(bj::abs(ye - yh)).item();
  const double scale = std::max(1.0, static_cast<double>(bj::max(bj::abs(ye)).item()));
  std::ostringstream eo, ho;
  eo << ye;
  ho << yh;
  fmt::print("input      {}\neager      {}\nhybridized {}\n", x.type().str(), eo.str(), ho.str());
  const bool match = diff <= 1e-5 * scale;
  fmt::print("agreement  max |eager - hybridized| = {:.3g}: {}\n", diff, match ? "match" : "MISMATCH");
  auto eager = [&] { net->call_eager(x); };
  auto compiled = [&] { (*net)(x); };
  const int ce = Timer::calls_for(eager, 2000), cc = Timer::calls_for(compiled, 2000);
  std::vector<double> te, tc;
  for (int round = 0; round < 9; ++round) {
    te.push_back(Timer::once(eager, ce));
    tc.push_back(Timer::once(compiled, cc));
  }
  const double e = median(te), c = median(tc);
  const bj::nn::HybridStats s = net->stats();
  fmt::print("time       eager {}, compiled {} per call: {:.2f}x\n", fmt_us(e), fmt_us(c), e / c);
  fmt::print("hybridize  {} variant{}, {} eager fallback{} (the traced first call), {:.1f} ms compiling\n\n",
             s.variants, s.variants == 1 ? "" : "s", s.eager_fallbacks, s.eager_fallbacks == 1 ? "" : "s",
             s.compile_ms);
  if (!dump_dir.empty()) dump_model(dump_dir, m.name, *net, x);
  return {m.name, e, c, diff, match};
}

/// FixedHiddenMLP on inputs whose halving loop runs different numbers of times; false on a mismatch.
bool demo_divergence() {
  fmt::print("== FixedHiddenMLP on data-dependent control flow: `while (x.norm() > 1) x /= 2`\n");
  fmt::print("Each call's answer is checked against eager mode. A path no variant recorded\n"
             "fails a guard, runs eagerly and is traced as a new variant (at most 4 here).\n\n");
  bj::manual_seed(0);
  bj::examples::FixedHiddenMLP net;
  net.initialize(bj::init::uniform(0.05));
  bj::NoGradGuard no_grad;
  bj::Tensor base = bj::uniform(-1, 1, {2, 20});
  net.call_eager(base);
  bj::nn::HybridizeOptions opts;
  opts.max_variants = 4;
  net.hybridize(opts);
  std::vector<std::string> log;
  bj::nn::set_log_handler([&](const std::string& line) { log.push_back(line); });
  fmt::print("{:>8}  {:>8}  {:>14}  {:>14}  {}\n", "scale", "halvings", "eager", "hybridized", "how it ran");
  bool all_match = true;
  for (double scale : {1.0, 64.0, 1.0, 4096.0, 64.0, 2.0, 1e6, 4096.0, 1e9, 1e6, 1.0}) {
    bj::Tensor x = base * scale;
    const int halvings = bj::trace(net, x).graph->num_guards() - 1;
    const bj::nn::HybridStats before = net.stats();
    const double h = (net)(x).item(), e = net.call_eager(x).item();
    const bj::nn::HybridStats after = net.stats();
    std::string how = after.compiled_hits > before.compiled_hits ? "compiled"
                      : after.traces > before.traces            ? "eager, traced as variant " + std::to_string(after.traces)
                                                                : "eager (variant cap reached)";
    const bool match = std::fabs(h - e) <= 1e-5 * std::max(1.0, std::fabs(e));
    all_match &= match;
    fmt::print("{:>8g}  {:>8}  {:>14.7g}  {:>14.7g}  {}{}\n", scale, halvings, e, h, how, match ? "" : "  MISMATCH");
  }
  bj::nn::set_log_handler(nullptr);
  for (const std::string& line : log) fmt::print("log: {}\n", line);
  fmt::print("stats: {}\n\n", net.stats().str());
  return all_match;
}

int demo(const bj::cli::Command& c) {
  const std::string& dump_dir = c.dump_dir;
  const std::vector<std::string>& names = c.models;
  fmt::print("blockjit demo: each zoo model eager and hybridized (compiled by LLVM), on a 2x20 uniform input,\n"
             "seed 0, {} thread{}; times are medians of interleaved runs.\n\n",
             bj::rt::num_threads(), bj::rt::num_threads() == 1 ? "" : "s");
  std::vector<DemoResult> results;
  if (names.empty())
    for (const auto& m : bj::examples::zoo()) results.push_back(demo_model(m, dump_dir));
  for (const std::string& n : names) results.push_back(demo_model(bj::examples::zoo_model(n), dump_dir));
  bool ok = names.empty() ? demo_divergence() : true;
  fmt::print("== summary (per call, medians)\n{:<18} {:>10} {:>10} {:>8}  {}\n", "model", "eager", "compiled",
             "speedup", "eager == hybridized");
  for (const DemoResult& r : results)
    fmt::print("{:<18} {:>10} {:>10} {:>7.2f}x  {} (max |diff| {:.2g})\n", r.model, fmt_us(r.eager_us),
               fmt_us(r.compiled_us), r.eager_us / r.compiled_us, r.match ? "yes" : "NO", r.diff);
  for (const DemoResult& r : results) ok &= r.match;
  if (!dump_dir.empty()) fmt::print("dumps (traced/opt IR, DOT, LLVM IR) written to {}\n", dump_dir);
  if (!ok) fmt::print(stderr, "blockjit demo: a hybridized result differs from eager mode (a bug: please report it)\n");
  return ok ? 0 : 1;
}

/// A progress bar on stderr, redrawn in place (only on a terminal; cleared when done).
class ProgressBar {
 public:
  ProgressBar() : on_(isatty(2)) {}
  void update(int64_t done, int64_t total, double loss) {
    if (!on_ || (done % 4 != 0 && done != total)) return;
    const int width = 30, filled = static_cast<int>(width * done / total);
    fmt::print(stderr, "\r  [{}{}] {}/{} loss {:.4f}", std::string(static_cast<size_t>(filled), '#'),
               std::string(static_cast<size_t>(width - filled), '.'), done, total, loss);
    if (done == total) clear();
  }
  /// Clears the bar's line (before printing a line of results in the middle of the work).
  void clear() {
    if (on_) fmt::print(stderr, "\r{}\r", std::string(80, ' '));
  }

 private:
  bool on_;
};

/// `train char-lm|gru-lm`: next-token training on the fortunes text, the validation loss as it
/// goes, then text sampled from the model; compiled modes also time a few eager steps.
int train_text(const bj::cli::Command& c) {
  const auto& m = bj::examples::zoo_model(c.models[0]);
  const bj::examples::LanguageModelOptions& o = c.text;
  const std::string text = bj::data::fortunes_text();
  const bj::data::CharTokenizer tok(text);
  const auto [train_tokens, valid_tokens] = bj::data::split_tokens(tok.encode(text), 0.1);
  const char* how = o.mode == "step" ? "the whole step compiled" : o.mode == "hybridize" ? "hybridized" : "eagerly";
  fmt::print("training {} on the fortunes text ({} characters, {} distinct; {} for training, {} for validation): "
             "{} steps of Adam (lr {}), batch {} x {} characters, {}{}\n",
             m.name, text.size(), tok.size(), train_tokens.size(), valid_tokens.size(), o.steps, o.lr, o.batch,
             o.length, how, o.exact && o.mode != "eager" ? " (exact: eager's results bit for bit)" : "");
  fmt::print("losses are nats per character (uniform guessing: {:.2f})\n", std::log(static_cast<double>(tok.size())));
  bj::manual_seed(0);
  auto net = m.make_with_vocab(tok.size());
  ProgressBar bar;
  bool header = false;
  const auto t0 = std::chrono::steady_clock::now();
  auto on_eval = [&](int step, double loss, double valid) {
    bar.clear();
    if (!std::exchange(header, true)) fmt::print(" step  train loss  valid loss  elapsed\n");
    fmt::print("{:5d}  {:10.4f}  {:10.4f}  {:6.1f} s\n", step, loss, valid,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    std::fflush(stdout);
  };
  const auto r = bj::examples::train_language_model(*net, train_tokens, valid_tokens, o,
                                                     [&](int s, int n, double l) { bar.update(s, n, l); }, on_eval);
  const double ms = 1e3 * r.median_step_seconds;
  fmt::print("{:.1f} s training: {:.1f} ms per step (median), {:.0f} characters/s ({}{})\n", r.seconds, ms,
             static_cast<double>(o.batch * o.length) * 1e3 / ms, how,
             o.mode == "eager" ? "" : fmt::format(", {} of {} steps compiled", r.compiled_steps, o.steps));
  if (o.mode != "eager") {  // a few eager steps of a fresh copy, for the ratio
    bj::manual_seed(0);
    auto twin = m.make_with_vocab(tok.size());
    bj::examples::LanguageModelOptions eager = o;
    eager.mode = "eager";
    eager.steps = std::min(o.steps, 20);
    eager.eval_every = eager.steps;
    eager.eval_batches = 1;
    const auto e = bj::examples::train_language_model(*twin, train_tokens, valid_tokens, eager);
    const double eager_ms = 1e3 * e.median_step_seconds;
    fmt::print("eager: {:.1f} ms per step (median of {} steps of a fresh copy); compiled/eager speed: {:.2f}x\n",
               eager_ms, eager.steps, eager_ms / ms);
  }
  const std::string prompt = "The ";
  const auto sampled = bj::examples::sample_tokens(*net, tok.encode(prompt), 400, bj::examples::kCharLmContext);
  fmt::print("\nsampled (temperature 0.8, seed 0):\n{}{}\n", prompt, tok.decode(sampled));
  return 0;
}

/// `train MODEL --data fashion-mnist`: epochs on the real data set, then one eager epoch for the ratio.
int train_data(const bj::cli::Command& c) {
  const auto& m = bj::examples::zoo_model(c.models[0]);
  const bj::examples::EpochOptions& o = c.epochs;
  const bj::data::Dataset train_set = bj::data::fashion_mnist(true), test_set = bj::data::fashion_mnist(false);
  const char* how = o.mode == "step" ? "the whole step compiled" : o.mode == "hybridize" ? "hybridized" : "eagerly";
  fmt::print("training {} on Fashion-MNIST ({} training, {} test images{}): {} epochs of SGD, batch {}, lr {}, {}\n",
             m.name, train_set.size(), test_set.size(),
             o.resize ? fmt::format(", resized to {}x{}", *o.resize, *o.resize) : std::string(), o.epochs, o.batch,
             o.lr, how);
  ProgressBar bar;
  auto progress = [&](int64_t batch, int64_t batches, double loss) { bar.update(batch, batches, loss); };
  bool header = false;
  auto on_epoch = [&header](const bj::examples::EpochResult& r) {
    if (!std::exchange(header, true)) fmt::print("epoch  loss    train acc  test acc  examples/s\n");
    fmt::print("{:5d}  {:.4f}  {:8.3f}  {:8.3f}  {:10.0f}\n", r.epoch, r.loss, r.train_accuracy, r.test_accuracy,
               r.examples_per_second);
    std::fflush(stdout);
  };
  bj::manual_seed(0);
  auto net = m.make();
  auto results = bj::examples::train_epochs(*net, train_set, test_set, o, progress, on_epoch);
  double total = 0;
  for (const auto& r : results) total += r.seconds;
  const double per_epoch = total / static_cast<double>(results.size());
  fmt::print("{:.2f} s per epoch ({})\n", per_epoch, how);
  if (o.mode != "eager") {  // one eager epoch of a fresh copy, for the ratio
    bj::manual_seed(0);
    auto twin = m.make();
    bj::examples::EpochOptions eager = o;
    eager.mode = "eager";
    eager.epochs = 1;
    auto e = bj::examples::train_epochs(*twin, train_set, test_set, eager, progress);
    fmt::print("eager: {:.2f} s per epoch; compiled/eager speed: {:.2f}x\n", e[0].seconds, e[0].seconds / per_epoch);
  }
  return 0;
}

int train(const bj::cli::Command& c) {
  if (c.data == "fortunes") return train_text(c);
  if (!c.data.empty()) return train_data(c);
  const auto& m = bj::examples::zoo_model(c.models[0]);
  const bj::examples::TrainOptions& o = c.train;
  auto fresh = [&] {
    bj::manual_seed(0);
    auto net = m.make();
    bj::Tensor probe = net->call_eager(bj::rand(m.input));
    if (probe.dim() != 2)
      throw bj::ShapeError("train", m.name + " returns " + probe.type().str() +
                                        ", not [batch, classes] logits; it cannot be trained as a classifier");
    return std::make_pair(net, probe.shape()[1]);
  };
  auto [net, classes] = fresh();
  auto task = bj::examples::make_classification_task(512, m.input.back(), classes, 1);
  if (o.mode != "eager") {  // one untimed eager step of a throwaway copy: oneDNN's kernels for these
    auto [warm, unused] = fresh();  // shapes are made once per process, so neither timed run pays for them
    bj::examples::TrainOptions once = o;
    once.mode = "eager";
    once.steps = 1;
    bj::examples::train_classifier(*warm, task, once);
  }
  const char* how = o.mode == "step" ? "the whole step compiled (TrainStep)"
                    : o.mode == "hybridize" ? "hybridized (compiled forward and backward)"
                                            : "eagerly";
  fmt::print("training {} on {} points, {} classes: {} steps of {} (lr {}), {}\n", m.name, task.x.shape()[0],
             task.classes, o.steps, o.optimizer, o.lr, how);
  auto r = bj::examples::train_classifier(*net, task, o, [](int step, double loss) {
    fmt::print("step {:5d}  loss {:.4f}\n", step, loss);
  });
  fmt::print("final loss {:.4f}, training accuracy {:.1f}%\n", r.final_loss, 100 * r.accuracy);
  fmt::print("{:.1f} steps/s ({:.1f} ms in all{})\n", o.steps / r.seconds, 1e3 * r.seconds,
             o.mode == "eager" ? ""
                               : fmt::format(", {:.1f} ms of it compiling, {} of {} steps compiled", r.compile_ms,
                                             r.compiled_steps, o.steps));
  if (o.mode != "eager") {  // the same training eagerly, for the ratio (and the losses' agreement)
    auto [twin, unused] = fresh();
    bj::examples::TrainOptions eager = o;
    eager.mode = "eager";
    auto e = bj::examples::train_classifier(*twin, task, eager);
    // Short runs are dominated by tracing and compiling, which take a few steps: the ratio of the
    // median steps too (the steady state).
    fmt::print("eager: {:.1f} steps/s, final loss {:.4f}; compiled/eager speed: {:.2f}x in all, {:.2f}x per step "
               "(medians: eager {:.1f} us, compiled {:.1f} us)\n",
               o.steps / e.seconds, e.final_loss, e.seconds / r.seconds,
               e.median_step_seconds / std::max(r.median_step_seconds, 1e-12), 1e6 * e.median_step_seconds,
               1e6 * r.median_step_seconds);
  }
  return 0;
}

int dump(const bj::cli::Command& c) {
  const auto& m = bj::examples::zoo_model(c.models[0]);
  bj::passes::PipelineOptions pipeline = c.pipeline;
  const std::string &format = c.format, &stage = c.stage;
  bj::manual_seed(0);
  auto net = m.make();
  bj::Shape shape = m.input;
  if (c.batch) shape[0] = *c.batch;
  const bj::Tensor x = bj::examples::example_input(m, shape);
  // The graphs to show: the inference trace, or with --train the forward and backward of a
  // training call (the split of the joint trace, as hybridize compiles them).
  std::vector<std::pair<std::string, std::shared_ptr<bj::ir::Graph>>> graphs;
  if (c.train_graphs) {
    net->call_eager(x);  // deferred shapes
    bj::TrainingTrace t = bj::trace_training(*net, x);
    for (const std::string& n : t.trace.notes) std::cerr << "note: " << n << "\n";
    if (!t.backward) throw bj::ValueError("dump", m.name + "'s output does not require grad: no backward");
    bj::ir::BackwardSplit split =
        bj::ir::split_backward(*t.trace.graph, t.forward_outputs, static_cast<int>(t.grad_outputs.size()));
    size_t kept_bytes = 0;  // results kept only for the backward (the input, parameters and output exist anyway)
    for (const auto& sv : split.saved)
      if (sv.from == bj::ir::BackwardSplit::Saved::From::kForwardOutput && sv.index > 0)
        kept_bytes += split.forward->outputs()[static_cast<size_t>(sv.index)]->type.bytes();
    std::cerr << fmt::format("training trace of {}: the backward reads {} value(s) of the forward; {} bytes per call "
                             "are kept only for it\n",
                             m.name, split.saved.size(), kept_bytes);
    graphs = {{"forward", std::move(split.forward)}, {"backward", std::move(split.backward)}};
    // The whole step as TrainStep traces it: forward, cross-entropy on labels, backward and the
    // update of SGD with momentum (its first step creates the velocities, the second is traced).
    bj::Tensor probe = net->call_eager(x);
    if (probe.dim() == 2) {
      std::vector<int64_t> labels(static_cast<size_t>(probe.shape()[0]));
      for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>(i) % probe.shape()[1];
      const bj::Tensor y = bj::tensor(labels, {probe.shape()[0]});
      bj::optim::SGD opt(net->parameters(), {.lr = 0.1, .momentum = 0.9});
      bj::nn::TrainStep step(*net, bj::nn::cross_entropy, opt);
      for (int i = 0; i < 2; ++i) step(x, y);
      const auto traced = step.traced_graphs();
      if (traced.empty()) throw bj::Error("dump", "the whole step of " + m.name + " did not compile: " + step.stats().str());
      auto whole = bj::ir::parse(bj::ir::print(*traced.front()));
      whole->set_name(m.name + ".step");
      graphs.emplace_back("whole step", std::move(whole));
    }
  } else {
    bj::Trace t = bj::trace(*net, x);
    for (const std::string& n : t.notes) std::cerr << "note: " << n << "\n";
    graphs = {{"", t.graph}};
  }
  std::string text;
  for (auto& [label, g] : graphs) {
    if (stage != "traced" || pipeline.print_after_all || !pipeline.print_after.empty()) {
      pipeline.out = &std::cerr;
      auto report = bj::codegen::optimize(*g, pipeline);
      std::string line = label.empty() ? "passes:" : label + " passes:";
      for (const auto& r : report.runs) line += fmt::format(" {} {:.3f} ms{},", r.name, r.ms, r.changed ? "" : " (unchanged)");
      line.back() = '\n';
      std::cerr << line
                << fmt::format("arena: {} bytes for {} bytes of intermediates\n", report.arena_bytes,
                               report.intermediate_bytes);
    }
    std::string part = format == "text" ? bj::ir::print(*g) : bj::ir::to_dot(*g);
    if (stage == "llvm" || stage == "asm") {
      bj::codegen::CompileOptions co;
      co.keep_ir = stage == "llvm";
      co.keep_asm = stage == "asm";
      co.training = c.train_graphs;  // as compiled training compiles them: the parameters change between calls
      auto exe = bj::codegen::compile(*g, co);
      part = stage == "llvm" ? exe->llvm_ir() : exe->assembly();
    }
    if (!text.empty()) text += "\n";
    text += part;
  }
  if (!c.out) {
    std::cout << text;
    return 0;
  }
  const std::string& out = *c.out;
  std::string ext = out.size() > 4 ? out.substr(out.size() - 4) : "";
  if (format == "dot" && (ext == ".svg" || ext == ".png" || ext == ".pdf")) {
    std::string dot_file = out + ".dot";
    write_file(dot_file, text);
    // One picture per graph (a forward and a backward are laid out side by side).
    int rc = run_program({"dot", "-T" + ext.substr(1), "-o", out, "--", dot_file});  // no shell
    std::remove(dot_file.c_str());
    if (rc < 0)
      throw bj::ValueError("dump", "rendering " + out + " needs Graphviz's `dot`, which is not installed "
                                   "(apt-get install graphviz), or write the DOT text with --out FILE.dot");
    if (rc != 0) throw bj::ValueError("dump", "Graphviz failed to render " + out);
  } else {
    write_file(out, text);
  }
  std::cerr << "wrote " << out << "\n";
  return 0;
}

int ir_command(const bj::cli::Command& c) {
  const char* file = c.file.c_str();
  // Read at most kMaxIrBytes: a device or a giant file is an error, not an endless read.
  constexpr size_t kMaxIrBytes = size_t{256} << 20;
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) throw bj::ValueError("ir", std::string(file) + " is a directory");
  std::ifstream f(file, std::ios::binary);
  if (!f) throw bj::ValueError("ir", std::string("cannot read ") + file + ": " + std::strerror(errno));
  std::string text;
  char chunk[1 << 16];
  while (f.read(chunk, sizeof chunk) || f.gcount() > 0) {
    text.append(chunk, static_cast<size_t>(f.gcount()));
    if (text.size() > kMaxIrBytes) throw bj::ValueError("ir", std::string(file) + " is larger than 256 MiB");
  }
  std::unique_ptr<bj::ir::Graph> g;
  try {
    g = bj::cli::load_ir(text);
  } catch (const bj::ParseError& e) {  // file:line:col, as compilers print it
    throw bj::ParseError(std::string(file) + ":" + e.op(), e.detail());
  }
  std::cout << bj::ir::print(*g);
  if (!c.run) return 0;
  bj::cli::IrRun r = bj::cli::run_ir(*g);
  if (r.failed_guard) {  // not an error: the data took another path (exit status 3, documented)
    std::cout << *r.failed_guard << "\n";
    return 3;
  }
  for (size_t i = 0; i < r.outputs.size(); ++i) std::cout << "output " << i << ": " << r.outputs[i] << "\n";
  return 0;
}

/// Multiply-adds x2 of every matrix product and convolution in g.
double graph_flops(const bj::ir::Graph& g) {
  double flops = 0;
  bj::ir::for_each_node(g.nodes(), [&](const bj::ir::Node& n) {
    if (n.kind != bj::ir::NodeKind::kOp) return;
    const bj::Shape& a = n.inputs[0]->type.shape;
    const auto out = static_cast<double>(n.result->type.numel());
    if (n.op == bj::ir::OpKind::Matmul) {
      flops += 2.0 * out * static_cast<double>(n.attrs.transpose_a ? a.back(-2) : a.back(-1));
    } else if (n.op == bj::ir::OpKind::Conv2d) {  // each output sums (C / groups) x KH x KW products
      const bj::Shape& w = n.inputs[1]->type.shape;
      flops += 2.0 * out * static_cast<double>(w[1] * w[2] * w[3]);
    }
  });
  return flops;
}

/// What a guard costs in compiled code: guard-chain (32 guards) against guard-chain-free (the same
/// work without them), both hybridized, interleaved.
int guard_cost(bool json) {
  bj::NoGradGuard no_grad;
  bj::manual_seed(0);
  bj::Tensor x = bj::rand(bj::examples::zoo_model("guard-chain").input);
  std::shared_ptr<bj::nn::Block> nets[2];
  for (int i = 0; i < 2; ++i) {
    nets[i] = bj::examples::zoo_model(i == 0 ? "guard-chain" : "guard-chain-free").make();
    nets[i]->hybridize({.adaptive = false});  // timed as compiled, always
    (*nets[i])(x);
    nets[i]->wait_for_compiles();
    (*nets[i])(x);
    if (nets[i]->stats().compiled_hits != 1) throw bj::Error("bench", "guard-chain did not run compiled code");
  }
  const int guards = bj::trace(*nets[0], x).graph->num_guards();
  auto guarded = [&] { (*nets[0])(x); };
  auto free = [&] { (*nets[1])(x); };
  const int cg = Timer::calls_for(guarded), cf = Timer::calls_for(free);
  std::vector<double> tg, tf;
  for (int round = 0; round < 15; ++round) {
    tg.push_back(Timer::once(guarded, cg));
    tf.push_back(Timer::once(free, cf));
  }
  const double g = median(tg), f = median(tf), per_guard_ns = (g - f) * 1000 / guards;
  if (json)
    fmt::print("{{\"model\": \"guard-cost\", \"guards\": {}, \"guarded_us\": {:.3f}, \"unguarded_us\": {:.3f}, "
               "\"ns_per_guard\": {:.2f}}}\n",
               guards, g, f, per_guard_ns);
  else
    fmt::print("guard-cost: {} guards: {:.3f} us guarded, {:.3f} us without: {:.2f} ns per guard\n", guards, g, f,
               per_guard_ns);
  return 0;
}

/// `bench MODEL --train`: training steps (forward, the loss, backward, SGD update), eager against
/// hybridized (compiled forward and backward), interleaved. The loss: cross-entropy on fixed
/// labels for [batch, classes] logits, the mean squared error against a random target otherwise.
int bench_train(const bj::cli::Command& cmd, const bj::examples::ZooModel& m, bj::Shape input, int threads) {
  bj::manual_seed(0);
  auto net = m.make();
  bj::Tensor x = bj::examples::example_input(m, input);
  bj::Tensor probe = net->call_eager(x);  // deferred shapes
  // Logits [batch, classes] train against labels with the cross-entropy; other outputs (a
  // sequence model's [batch, time, width]) against a random target of their shape with the MSE.
  // A language model's logits [batch, time, vocab] train against random next tokens.
  const bool logits = probe.dim() == 2, lm = m.vocab > 0;
  bj::nn::TrainStep::Loss loss_fn = lm       ? bj::nn::TrainStep::Loss(bj::examples::next_token_loss)
                                    : logits ? bj::nn::TrainStep::Loss(bj::nn::cross_entropy)
                                             : bj::nn::TrainStep::Loss(bj::nn::mse_loss);
  bj::Tensor labels;
  if (lm) {
    labels = bj::examples::example_input(m, {probe.shape()[0], probe.shape()[1]}, 1);
  } else if (logits) {
    std::vector<int64_t> labels_data(static_cast<size_t>(input[0]));
    for (size_t i = 0; i < labels_data.size(); ++i) labels_data[i] = static_cast<int64_t>(i) % probe.shape()[1];
    labels = bj::tensor(labels_data, {input[0]});
  } else {
    labels = bj::uniform(-1, 1, probe.shape());
  }
  bj::optim::SGD opt(net->parameters(), {.lr = 1e-4});
  net->hybridize({.exact = cmd.exact, .adaptive = false});  // timed as compiled, always
  auto step = [&](bool compiled) {
    opt.zero_grad();
    bj::Tensor loss = loss_fn(compiled ? (*net)(x) : net->call_eager(x), labels);
    loss.backward();
    opt.step();
  };
  // Agreement first: the gradients of one step, eager against compiled (after the traced call).
  step(true);
  net->wait_for_compiles();
  auto grads = [&](bool compiled) {
    opt.zero_grad();
    loss_fn(compiled ? (*net)(x) : net->call_eager(x), labels).backward();
    std::vector<bj::Tensor> g;
    for (const auto& p : net->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  auto ge = grads(false), gc = grads(true);
  double diff = 0, norm = 0;
  for (size_t i = 0; i < ge.size(); ++i) {
    diff = std::max<double>(diff, bj::max(bj::abs(gc[i] - ge[i])).item());
    norm = std::max<double>(norm, bj::max(bj::abs(ge[i])).item());
  }
  if (net->stats().compiled_hits != 1) throw bj::Error("bench", "the hybridized step did not run compiled code");
  // The whole step compiled (TrainStep) on a twin with the same parameters and its own optimizer.
  bj::manual_seed(0);
  auto twin = m.make();
  twin->call_eager(x);
  bj::optim::SGD twin_opt(twin->parameters(), {.lr = 1e-4});
  bj::nn::TrainStep whole_step(*twin, loss_fn, twin_opt, {.exact = cmd.exact});
  whole_step(x, labels);  // traced
  auto eager = [&] { step(false); };
  auto compiled = [&] { step(true); };
  auto whole = [&] { whole_step(x, labels); };
  for (int i = 0; i < 3; ++i) eager(), compiled(), whole();
  const int ce = Timer::calls_for(eager), cc = Timer::calls_for(compiled), cw = Timer::calls_for(whole);
  std::vector<double> te, tc, tw;
  for (int round = 0; round < 15; ++round) {
    te.push_back(Timer::once(eager, ce));
    tc.push_back(Timer::once(compiled, cc));
    tw.push_back(Timer::once(whole, cw));
  }
  const double eager_us = median(te), compiled_us = median(tc), whole_us = median(tw);
  const bj::nn::HybridStats stats = net->stats(), wstats = whole_step.stats();
  if (wstats.compiled_hits < 1) throw bj::Error("bench", "the whole step did not run compiled code");
  double flops = 0;
  {
    bj::NoGradGuard no_grad;
    flops = 3 * graph_flops(bj::compile(bj::trace(*net, x)).executable().graph());  // forward + two products back
  }
  if (cmd.json) {
    fmt::print("{{\"model\": \"{}\", \"batch\": {}, \"threads\": {}, \"eager_step_us\": {:.3f}, "
               "\"compiled_step_us\": {:.3f}, \"speedup\": {:.2f}, \"gflops\": {:.1f}, \"whole_step_us\": {:.3f}, "
               "\"whole_step_speedup\": {:.2f}, \"whole_step_gflops\": {:.1f}, \"max_abs_grad_diff\": {:.3g}, "
               "\"variants\": {}, \"fallbacks\": {}, \"compiled_hits\": {}, \"compile_ms\": {:.1f}}}\n",
               m.name, input[0], threads, eager_us, compiled_us, eager_us / compiled_us, flops / compiled_us / 1e3,
               whole_us, eager_us / whole_us, flops / whole_us / 1e3, diff, stats.variants + wstats.variants,
               stats.eager_fallbacks + wstats.eager_fallbacks, stats.compiled_hits + wstats.compiled_hits,
               stats.compile_ms + wstats.compile_ms);
    return 0;
  }
  fmt::print("{} training step (batch {}, {} thread{}; forward, {}, backward, SGD):\n", m.name, input[0],
             threads, threads == 1 ? "" : "s", lm || logits ? "cross-entropy" : "mean squared error");
  fmt::print("  eager {}, hybridized {} ({:.2f}x), whole step {} ({:.2f}x)\n", fmt_us(eager_us), fmt_us(compiled_us),
             eager_us / compiled_us, fmt_us(whole_us), eager_us / whole_us);
  if (flops > 0)
    fmt::print("  GFLOP/s (3x the forward's FLOPs): eager {:.1f}, hybridized {:.1f}, whole step {:.1f}\n",
               flops / eager_us / 1e3, flops / compiled_us / 1e3, flops / whole_us / 1e3);
  fmt::print("  gradients hybridized vs eager: max |diff| {:.3g} (max |eager| {:.3g})\n", diff, norm);
  fmt::print("  hybridized: {}\n  whole step: {}\n", stats.str(), wstats.str());
  return 0;
}

/// Hybridize to the end of the first call that ran compiled code (the traced call, then one more).
int bench_compile(const bj::cli::Command& cmd, const bj::examples::ZooModel& m, const bj::Shape& input) {
  double tier2_ms = 0;
  auto measure = [&](const bj::nn::HybridizeOptions& o) {
    std::vector<double> t;
    for (int round = 0; round < 3; ++round) {
      bj::manual_seed(0);
      auto net = m.make();
      bj::Tensor x = bj::examples::example_input(m, input);
      bj::NoGradGuard no_grad;
      net->call_eager(x);  // deferred shapes
      const auto t0 = std::chrono::steady_clock::now();
      net->hybridize(o);
      (*net)(x);
      (*net)(x);
      t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      const double first_ms = net->stats().compile_ms;
      if (net->stats().compiled_hits != 1) throw bj::Error("bench", "the second call did not run compiled code");
      net->wait_for_compiles();
      if (net->stats().upgrades > 0) tier2_ms = net->stats().compile_ms - first_ms;
    }
    return median(t);
  };
  const double cold = measure({.use_cache = false, .tiered = false});
  const double tier1 = measure({.use_cache = false});
  measure({});  // the optimized code reaches the object cache
  const double cached = measure({});
  if (cmd.json) {
    fmt::print("{{\"model\": \"{}\", \"batch\": {}, \"cold_ms\": {:.2f}, \"tier1_ms\": {:.2f}, \"cached_ms\": {:.2f}, "
               "\"tier2_compile_ms\": {:.2f}}}\n",
               m.name, input[0], cold, tier1, cached, tier2_ms);
    return 0;
  }
  fmt::print("{} (batch {}, CPU {}): hybridize to first compiled call, median of 3\n"
             "  cold (object cache off, optimized at once) {:8.2f} ms\n"
             "  first tier (cache off, tiered)             {:8.2f} ms  (then {:.1f} ms optimizing in the background)\n"
             "  from the object cache                      {:8.2f} ms\n",
             m.name, input[0], bj::codegen::host_info().cpu, cold, tier1, tier2_ms, cached);
  return 0;
}

/// bench MODEL --batches: one block called at each size in turn, with dynamic batch and without.
int bench_batches(const bj::cli::Command& cmd, const bj::examples::ZooModel& m) {
  bj::NoGradGuard no_grad;
  auto at = [&](int64_t n) {
    bj::Shape s = m.input;
    s[0] = n;
    return bj::examples::example_input(m, s, static_cast<uint64_t>(n) + 1);
  };
  // Two copies with the same weights: the default (dynamic batch) and a variant per size.
  auto make = [&] {
    bj::manual_seed(0);
    auto net = m.make();
    net->call_eager(at(cmd.batches[0]));  // deferred shapes
    return net;
  };
  auto dynamic = make(), fixed = make();
  // The object cache off: neither finds code the other compiled.
  dynamic->hybridize({.use_cache = false, .adaptive = false});
  fixed->hybridize({.max_keys = static_cast<int>(cmd.batches.size()) + 1, .use_cache = false, .adaptive = false,
                    .dynamic_batch = false});
  struct Size {
    int64_t batch;
    bj::Tensor x;
    double eager_us = 0, fixed_us = 0, dynamic_us = 0;
  };
  std::vector<Size> sizes;
  double worst = 0;
  // Every size in turn (traced, compiled or adopted), then checked against eager mode.
  auto first_calls = [&](bj::nn::Block& net) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t n : cmd.batches) {
      const bj::Tensor x = at(n);
      net(x);
      net.wait_for_compiles();
    }
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  const double dynamic_ms = first_calls(*dynamic), fixed_ms = first_calls(*fixed);
  for (int64_t n : cmd.batches) {
    Size sz{n, at(n)};
    const bj::Tensor want = dynamic->call_eager(sz.x);
    for (auto* net : {dynamic.get(), fixed.get()}) {
      const bj::Tensor got = (*net)(sz.x);
      if (want.numel() > 0)
        worst = std::max(worst, static_cast<double>(bj::max(bj::abs(got - want)).item()) /
                                     std::max(1.0, static_cast<double>(bj::max(bj::abs(want)).item())));
    }
    sizes.push_back(std::move(sz));
  }
  for (Size& sz : sizes) {  // interleaved per size, so the three see the same machine
    auto eager = [&] { dynamic->call_eager(sz.x); };
    auto fix = [&] { (*fixed)(sz.x); };
    auto dyn = [&] { (*dynamic)(sz.x); };
    const int ce = Timer::calls_for(eager, 3000), cf = Timer::calls_for(fix, 3000), cd = Timer::calls_for(dyn, 3000);
    std::vector<double> te, tf, td;
    for (int round = 0; round < 5; ++round) {
      te.push_back(Timer::once(eager, ce));
      tf.push_back(Timer::once(fix, cf));
      td.push_back(Timer::once(dyn, cd));
    }
    sz.eager_us = median(te);
    sz.fixed_us = median(tf);
    sz.dynamic_us = median(td);
  }
  const bj::nn::HybridStats ds = dynamic->stats(), fs = fixed->stats();
  if (cmd.json) {
    std::string rows;
    for (const Size& sz : sizes)
      rows += fmt::format("{}{{\"batch\": {}, \"eager_us\": {:.3f}, \"fixed_us\": {:.3f}, \"dynamic_us\": {:.3f}}}",
                          rows.empty() ? "" : ", ", sz.batch, sz.eager_us, sz.fixed_us, sz.dynamic_us);
    fmt::print("{{\"model\": \"{}\", \"cpu\": \"{}\", \"variants\": {}, \"dynamic_sizes\": {}, \"compile_ms\": {:.1f}, "
               "\"first_calls_ms\": {:.1f}, \"fixed_variants\": {}, \"fixed_compile_ms\": {:.1f}, "
               "\"fixed_first_calls_ms\": {:.1f}, \"max_rel_diff\": {:.3g}, \"sizes\": [{}]}}\n",
               m.name, bj::codegen::host_info().cpu, ds.variants, ds.dynamic_sizes, ds.compile_ms, dynamic_ms,
               fs.variants, fs.compile_ms, fixed_ms, worst, rows);
    return 0;
  }
  fmt::print("{} at {} batch sizes (CPU {}), both checked against eager mode (largest difference {:.2g}):\n"
             "  dynamic batch  {:3} variant(s), {:8.1f} ms compiling, first calls of every size {:8.1f} ms\n"
             "  fixed sizes    {:3} variant(s), {:8.1f} ms compiling, first calls of every size {:8.1f} ms\n"
             "  {:>6} {:>12} {:>12} {:>12} {:>16}\n",
             m.name, sizes.size(), bj::codegen::host_info().cpu, worst, ds.variants, ds.compile_ms, dynamic_ms,
             fs.variants, fs.compile_ms, fixed_ms, "batch", "eager", "fixed size", "dynamic", "dynamic / fixed");
  for (const Size& sz : sizes)
    fmt::print("  {:>6} {:>12} {:>12} {:>12} {:>15.2f}x\n", sz.batch, fmt_us(sz.eager_us), fmt_us(sz.fixed_us),
               fmt_us(sz.dynamic_us), sz.dynamic_us / sz.fixed_us);
  return 0;
}

int bench(const bj::cli::Command& cmd) {
  if (cmd.models[0] == "guard-cost") return guard_cost(cmd.json);
  const auto& m = bj::examples::zoo_model(cmd.models[0]);
  bj::Shape input = m.input;
  if (cmd.batch) input[0] = *cmd.batch;
  const int threads = cmd.threads ? *cmd.threads : bj::rt::num_threads();
  bj::rt::set_num_threads(threads);
  if (cmd.train_step) return bench_train(cmd, m, input, threads);
  if (cmd.compile_times) return bench_compile(cmd, m, input);
  if (!cmd.batches.empty()) return bench_batches(cmd, m);
  bj::manual_seed(0);
  auto net = m.make();
  bj::Tensor x = bj::examples::example_input(m, input);
  bj::NoGradGuard no_grad;  // inference on both sides
  net->call_eager(x);       // deferred shapes
  net->hybridize({.exact = cmd.exact, .adaptive = false});  // timed as compiled, always
  bj::Tensor ye = net->call_eager(x);
  (*net)(x);  // traced and compiled
  net->wait_for_compiles();
  bj::Tensor yc = (*net)(x);
  if (net->stats().compiled_hits != 1) throw bj::Error("bench", "the hybridized call did not run compiled code");
  // The same variant outside hybridize (its graph gives the FLOPs; its direct run, the lookup's cost).
  bj::CompiledTrace c = bj::compile(bj::trace(*net, x));
  bj::Tensor yd;
  auto eager = [&] { net->call_eager(x); };
  auto compiled = [&] { (*net)(x); };
  auto direct = [&] { c.try_run(x, yd); };
  // Agreement first: a benchmark of wrong code measures nothing.
  double max_diff = bj::max(bj::abs(ye - yc)).item(), scale = bj::max(bj::abs(ye)).item();
  for (int i = 0; i < 3; ++i) eager(), compiled(), direct();  // warm-up: caches, allocator, primitives
  const int ce = Timer::calls_for(eager), cc = Timer::calls_for(compiled), cd = Timer::calls_for(direct);
  std::vector<double> te, tc, td;
  for (int round = 0; round < 15; ++round) {  // interleaved, so all see the same machine
    te.push_back(Timer::once(eager, ce));
    tc.push_back(Timer::once(compiled, cc));
    td.push_back(Timer::once(direct, cd));
  }
  const double eager_us = median(te), compiled_us = median(tc), direct_us = median(td);
  const bj::nn::HybridStats stats = net->stats();
  const double flops = graph_flops(c.executable().graph());
  const double bytes = static_cast<double>(x.type().bytes() + ye.type().bytes());
  std::string rate = flops > 0 ? fmt::format("\"gflops\": {:.1f}", flops / compiled_us / 1e3)
                               : fmt::format("\"gbps\": {:.1f}", bytes / compiled_us / 1e3);
  if (cmd.json) {
    fmt::print("{{\"model\": \"{}\", \"batch\": {}, \"threads\": {}, \"eager_us\": {:.3f}, \"compiled_us\": {:.3f}, "
               "\"speedup\": {:.2f}, {}, \"max_abs_diff\": {:.3g}, \"variants\": {}, \"fallbacks\": {}, "
               "\"compiled_hits\": {}, \"direct_us\": {:.3f}, \"compile_ms\": {:.1f}, \"from_cache\": {}}}\n",
               m.name, input[0], threads, eager_us, compiled_us, eager_us / compiled_us, rate, max_diff, stats.variants,
               stats.eager_fallbacks, stats.compiled_hits, direct_us, stats.compile_ms,
               stats.cache_hits > 0 ? "true" : "false");
    return 0;
  }
  fmt::print("{} (batch {}, {} thread{}): eager {:.3f} us, compiled {:.3f} us, speedup {:.2f}x\n", m.name, input[0],
             threads, threads == 1 ? "" : "s", eager_us, compiled_us, eager_us / compiled_us);
  if (flops > 0)
    fmt::print("  {:.1f} GFLOP/s compiled ({:.1f} eager)\n", flops / compiled_us / 1e3, flops / eager_us / 1e3);
  else
    fmt::print("  {:.1f} GB/s compiled ({:.1f} eager)\n", bytes / compiled_us / 1e3, bytes / eager_us / 1e3);
  fmt::print("  compiled vs eager: max |diff| {:.3g} (max |eager| {:.3g})\n", max_diff, scale);
  fmt::print("  the same code run directly (no variant lookup): {:.3f} us\n", direct_us);
  fmt::print("  hybridized: {}\n", stats.str());
  return 0;
}

int export_command(const bj::cli::Command& c) {
  const auto& m = bj::examples::zoo_model(c.models[0]);
  bj::Shape input = m.input;
  if (c.batch) input[0] = *c.batch;
  bj::manual_seed(0);
  auto net = m.make();
  bj::Tensor x = bj::examples::example_input(m, input);
  bj::NoGradGuard no_grad;  // an inference path
  net->call_eager(x);       // deferred shapes
  net->eval();
  net->hybridize({.exact = c.exact});
  for (double scale : c.scales) (*net)(m.vocab ? x : x * scale);  // ids are not scaled
  net->export_model(*c.out);
  const auto paths = net->stats().variants;
  std::error_code ec;
  fmt::print("{}: {} path{} to {}.ir ({} bytes), {} parameters and constants to {}.safetensors ({} bytes)\n", m.name,
             paths, paths == 1 ? "" : "s", *c.out, std::filesystem::file_size(*c.out + ".ir", ec),
             net->named_parameters().size() + net->named_constants().size(), *c.out,
             std::filesystem::file_size(*c.out + ".safetensors", ec));
  return 0;
}

int run_command(const bj::cli::Command& c) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto net = bj::nn::SymbolBlock::imports(c.file, {.adaptive = !c.bench_run});  // --bench times compiled calls
  const double import_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  const auto paths = net->paths();
  bj::Tensors inputs;
  if (c.input) {
    for (auto& [name, t] : bj::load(*c.input)) inputs.push_back(t);
  } else {  // the first path's input types, filled from seed 0
    bj::manual_seed(0);
    for (const auto& type : paths[0].inputs) {
      if (!type) {
        inputs.emplace_back();
      } else if (type->dtype == bj::DType::kF32) {
        inputs.push_back(bj::uniform(0, 1, type->shape));
      } else {
        inputs.push_back(bj::zeros(type->shape).to(type->dtype));
      }
    }
  }
  bj::NoGradGuard no_grad;
  const auto t1 = clock::now();
  bj::Tensors outs = (*net)(inputs);
  const double first_ms = std::chrono::duration<double, std::milli>(clock::now() - t1).count();
  for (size_t i = 0; i < outs.size(); ++i) std::cout << (outs.size() > 1 ? fmt::format("output {}: ", i) : "") << outs[i] << "\n";
  if (!c.bench_run) return 0;
  const bj::nn::HybridStats s = net->stats();
  fmt::print("imported {} ({} path{}, {} from the object cache) in {:.2f} ms; first call {:.3f} ms ({})\n", c.file,
             paths.size(), paths.size() == 1 ? "" : "s", s.cache_hits, import_ms, first_ms,
             s.compiled_hits == 1 ? "compiled" : "eager");
  auto compiled = [&] { (*net)(inputs); };
  auto replay = [&] { net->call_eager(inputs); };
  for (int i = 0; i < 3; ++i) compiled(), replay();
  const int cc = Timer::calls_for(compiled), ce = Timer::calls_for(replay);
  std::vector<double> tc, te;
  for (int round = 0; round < 11; ++round) {
    tc.push_back(Timer::once(compiled, cc));
    te.push_back(Timer::once(replay, ce));
  }
  fmt::print("compiled call {} (median of 11), eager replay {}: {:.2f}x\n", fmt_us(median(tc)), fmt_us(median(te)),
             median(te) / median(tc));
  return 0;
}

int aot_command(const bj::cli::Command& c) {
  auto net = bj::nn::SymbolBlock::imports(c.file, {.hybridize = false});
  bj::codegen::AotModel m;
  if (c.aot_name) {
    m.name = *c.aot_name;
  } else {  // the prefix's base name as a C identifier
    for (char ch : std::filesystem::path(c.file).filename().string())
      m.name += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
    if (m.name.empty() || std::isdigit(static_cast<unsigned char>(m.name[0]))) m.name = "m_" + m.name;
    m.name = m.name.substr(0, 64);
  }
  m.source = c.file;
  m.exact = net->exact();
  std::map<std::string, bj::Tensor> tensors;
  for (const auto& [name, p] : net->named_parameters()) tensors[name] = p.data();
  for (const auto& [name, t] : net->named_constants()) tensors[name] = t;
  std::map<std::string, uint64_t> placed;
  auto place = [&](const std::string& name) {
    auto [it, fresh] = placed.emplace(name, 0);
    if (fresh) {
      m.blob.resize((m.blob.size() + 63) / 64 * 64);
      it->second = m.blob.size();
      const bj::Tensor& t = tensors.at(name);
      m.blob.append(static_cast<const char*>(t.raw_data()), t.type().bytes());
    }
    return it->second;
  };
  for (const auto& p : net->paths()) {
    bj::codegen::AotPath ap;
    ap.graph = p.graph;
    for (const auto* list : {&p.graph->params(), &p.graph->consts()})
      for (const bj::ir::Value* v : *list) ap.offsets.push_back(place(v->name));
    m.paths.push_back(std::move(ap));
  }
  const auto t0 = std::chrono::steady_clock::now();
  const bj::codegen::AotFiles files = bj::codegen::write_aot_library(m, *c.out);
  std::error_code ec;
  fmt::print("{}: {} path{} compiled for {} in {:.0f} ms: {} ({} bytes) and {}\n", m.name, m.paths.size(),
             m.paths.size() == 1 ? "" : "s", bj::codegen::host_info().cpu,
             std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(), files.library,
             std::filesystem::file_size(files.library, ec), files.header);
  return 0;
}

int models() {
  for (const auto& m : bj::examples::zoo()) fmt::print("{:<18} {}\n", m.name, m.description);
  for (const auto* list : {&bj::examples::vision_zoo(), &bj::examples::sequence_zoo()})
    for (const auto& m : *list)
      fmt::print("{:<18} {} (input {}{})\n", m.name, m.description, m.vocab ? "i64" : "f32", m.input.str());
  for (const auto& m : bj::examples::perf_zoo()) fmt::print("{:<18} {} (benchmarks)\n", m.name, m.description);
  return 0;
}

int info() {
  const auto& h = bj::codegen::host_info();
  fmt::print("LLVM {}\nhost CPU {}\nthreads {}\nfeatures {}\n", h.llvm_version, h.cpu, bj::rt::num_threads(), h.features);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cout << bj::cli::kUsage;
    return 2;
  }
  bj::cli::Command c;
  try {
    c = bj::cli::parse(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {  // bad usage: an unknown command or option, a bad value
    std::cerr << "blockjit: " << e.what() << "\n";
    return 2;
  }
  try {
    if (c.name == "help") {
      std::cout << bj::cli::kUsage;
      return 0;
    }
    if (c.name == "demo") return demo(c);
    if (c.name == "models") return models();
    if (c.name == "train") return train(c);
    if (c.name == "dump") return dump(c);
    if (c.name == "bench") return bench(c);
    if (c.name == "ir") return ir_command(c);
    if (c.name == "export") return export_command(c);
    if (c.name == "run") return run_command(c);
    if (c.name == "aot") return aot_command(c);
    return info();
  } catch (const std::exception& e) {  // bj::Error and anything else: report, never abort
    std::cerr << "blockjit: " << e.what() << "\n";
    return 1;
  }
}
