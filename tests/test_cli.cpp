// The `blockjit` program as a hostile user drives it: numbers parsed
// strictly (whole string, range-checked, the option named in the error),
// file names never reaching a shell, write errors reported, distinct exit
// statuses for a failed guard and an error.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/helpers.h"
#include "tools/cli.h"

namespace {

struct Result {
  int status;
  std::string out;
};

/// Runs blockjit with arguments (each single-quoted for the test's own shell) in `dir`, with
/// `env` (NAME=VALUE, quoted the same way) in its environment.
Result blockjit(const std::vector<std::string>& args, const std::filesystem::path& dir = std::filesystem::temp_directory_path(),
                const std::string& env = "") {
  std::string cmd = "cd '" + dir.string() + "' && " + env + " '" + std::string(BJ_BINARY_DIR) + "/bin/blockjit'";
  for (const std::string& a : args) {
    std::string quoted;
    for (char c : a) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    cmd += " '" + quoted + "'";
  }
  int status = 0;
  std::string out = bj::test::run_command(cmd + " 2>&1", &status);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("the command line is parsed and checked before anything runs") {
  using bj::cli::parse;
  bj::cli::Command c = parse({"bench", "mlp", "--batch", "8", "--json", "--threads", "1"});
  CHECK(c.name == "bench");
  CHECK(c.models == std::vector<std::string>{"mlp"});
  CHECK(c.batch == 8);
  CHECK(c.threads == 1);
  CHECK(c.json);
  c = parse({"train", "mlp", "--optimizer", "adam"});
  CHECK(c.train.optimizer == "adam");
  CHECK(c.train.lr == 0.01);  // adam's default
  CHECK(parse({"train", "mlp", "--optimizer", "adam", "--lr", "0.5"}).train.lr == 0.5);
  c = parse({"dump", "mlp", "--print-after=dce", "--stage", "opt", "--out", "g.ir"});
  CHECK(c.stage == "opt");
  CHECK(c.out == "g.ir");
  CHECK(c.pipeline.print_after.count("dce") == 1);
  c = parse({"ir", "g.ir", "--run"});
  CHECK(c.file == "g.ir");
  CHECK(c.run);
  CHECK(parse({}).name == "help");
  CHECK(parse({"demo"}).models.empty());
  CHECK_THROWS_WITH_AS(parse({"frobnicate"}), doctest::Contains("unknown command 'frobnicate'"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"bench", "mlp", "--json", "--json"}), doctest::Contains("--json given twice"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"bench", "mlp", "--batch"}), doctest::Contains("--batch needs a value"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"bench", "nosuchmodel"}), doctest::Contains("nosuchmodel"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"bench"}), doctest::Contains("needs a model name"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"demo", "--dump-dir"}), doctest::Contains("--dump-dir needs a directory"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"demo", "--fast"}), doctest::Contains("unknown option '--fast'"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"dump", "mlp", "--out", ""}), doctest::Contains("--out needs a file name"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"dump", "mlp", "--print-after=nosuchpass"}), doctest::Contains("nosuchpass"), bj::Error);
  CHECK_THROWS_WITH_AS(parse({"info", "extra"}), doctest::Contains("unknown option 'extra'"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"ir"}), doctest::Contains("needs a file"), bj::ValueError);
  CHECK(parse({"train", "mlp", "--hybridize"}).train.mode == "hybridize");
  CHECK(parse({"train", "mlp", "--step"}).train.mode == "step");
  CHECK(parse({"train", "mlp"}).train.mode == "eager");
  CHECK_THROWS_WITH_AS(parse({"train", "mlp", "--step", "--hybridize"}), doctest::Contains("exclude each other"),
                       bj::ValueError);
  CHECK(parse({"bench", "mlp", "--train"}).train_step);
  CHECK(parse({"dump", "mlp", "--train"}).train_graphs);
}

TEST_CASE("blockjit train --hybridize and --step train through compiled code, and dump --train shows the graphs") {
  for (const char* mode : {"--hybridize", "--step"}) {
    CAPTURE(mode);
    Result r = blockjit({"train", "mlp", "--steps", "20", mode});
    CHECK(r.status == 0);
    // TrainStep runs the optimizer's first step eagerly (it creates the velocities), then traces.
    CHECK(contains(r.out, std::string(mode) == "--step" ? "18 of 20 steps compiled" : "19 of 20 steps compiled"));
    CHECK(contains(r.out, "compiled/eager speed"));
    CHECK(contains(r.out, "x in all, "));  // short runs: the ratio with compile time and of the median steps
    CHECK(contains(r.out, "x per step (medians: eager "));
    CHECK(contains(r.out, "ms of it compiling"));
    CHECK(contains(r.out, "final loss"));
  }
  Result d = blockjit({"dump", "mlp", "--train"});
  CHECK(d.status == 0);
  CHECK(contains(d.out, "graph @mlp("));
  CHECK(contains(d.out, "graph @mlp.backward(%grad: f32[2,10], %saved0: f32[2,256]"));
  CHECK(contains(d.out, "graph @mlp.step("));
  CHECK(contains(d.out, "commit %hidden.weight = %"));  // the update writes the weights and velocities
  CHECK(contains(d.out, "commit %velocity.0 = %"));
  Result d512 = blockjit({"dump", "mlp", "--train", "--batch", "512"});  // the graphs `bench --batch 512` runs
  CHECK(d512.status == 0);
  CHECK(contains(d512.out, "graph @mlp.backward(%grad: f32[512,10], %saved0: f32[512,256]"));
  CHECK(blockjit({"dump", "mlp", "--batch", "0"}).status != 0);
  Result b = blockjit({"bench", "mlp", "--train", "--json", "--threads", "1"});
  CHECK(b.status == 0);
  for (const char* key : {"\"eager_step_us\"", "\"compiled_step_us\"", "\"speedup\"", "\"gflops\"", "\"variants\"",
                          "\"fallbacks\"", "\"whole_step_us\""})
    CHECK(contains(b.out, key));
}

TEST_CASE("blockjit bench --batches: one variant for every batch size against a variant per size, in JSON") {
  // 1 compiles a variant of its own; 5 unifies with it; 0 and 8 are that program at their sizes.
  Result r = blockjit({"bench", "mlp", "--batches", "1,5,0,8", "--json", "--threads", "1"});
  REQUIRE(r.status == 0);
  for (const char* key : {"\"variants\": 2", "\"fixed_variants\": 4", "\"dynamic_sizes\": 4", "\"sizes\": [",
                          "\"batch\": 0", "\"batch\": 8", "\"fixed_us\"", "\"dynamic_us\"", "\"eager_us\""})
    CHECK(contains(r.out, key));
}

TEST_CASE("blockjit parses numbers strictly: whole string, in range, the option named in the error") {
  struct Case {
    std::vector<std::string> args;
    const char* says;
  };
  const Case cases[] = {
      {{"bench", "mlp", "--batch", "4611686018427387904"}, "--batch must be between 1 and"},
      {{"bench", "mlp", "--batch", "1.5"}, "--batch needs a whole number, got '1.5'"},
      {{"bench", "mlp", "--batch", "abc"}, "--batch needs a whole number, got 'abc'"},
      {{"bench", "mlp", "--batch", "0"}, "--batch must be between 1 and"},
      {{"bench", "mlp", "--batch", "-3"}, "--batch must be between 1 and"},
      {{"bench", "mlp", "--batch", ""}, "--batch needs a whole number"},
      {{"bench", "mlp", "--threads", "9999"}, "--threads must be between 1 and"},
      {{"bench", "mlp", "--threads", "2x"}, "--threads needs a whole number, got '2x'"},
      {{"bench", "mlp", "--batches", "1,,2"}, "--batches needs a whole number, got ''"},
      {{"bench", "mlp", "--batches", "1,-2"}, "--batches must be between 0 and"},
      {{"bench", "mlp", "--batches", "3", "--compile"}, "--train, --compile and --batches exclude each other"},
      {{"train", "mlp", "--steps", "1e3"}, "--steps needs a whole number, got '1e3'"},
      {{"train", "mlp", "--steps", "3x"}, "--steps needs a whole number, got '3x'"},
      {{"train", "mlp", "--steps", "99999999999999999999"}, "--steps must be between 1 and"},
      {{"train", "mlp", "--lr", "nan"}, "--lr must be a finite number"},
      {{"train", "mlp", "--lr", "inf"}, "--lr must be a finite number"},
      {{"train", "mlp", "--lr", "-1"}, "--lr must be a finite number"},
      {{"train", "mlp", "--lr", "0.1abc"}, "--lr needs a number, got '0.1abc'"},
      {{"train", "mlp", "--optimizer", "rmsprop"}, "--optimizer is sgd or adam"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.says);
    Result r = blockjit(c.args);
    CHECK(r.status == 2);  // bad usage
    CHECK(contains(r.out, c.says));
  }
}

TEST_CASE("blockjit train reports a diverging loss (step and value) and exits 1 instead of training on") {
  Result r = blockjit({"train", "mlp", "--lr", "1000", "--steps", "100"});
  CHECK(r.status == 1);
  CHECK(contains(r.out, "blockjit: train: the loss is "));
  CHECK(contains(r.out, "training diverged"));
  CHECK(!contains(r.out, "final loss"));
}

TEST_CASE("blockjit dump never hands a file name to a shell, and reports a failed write") {
  auto dir = std::filesystem::temp_directory_path() / ("bj_cli_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  Result r = blockjit({"dump", "mlp", "--format", "dot", "--out", "a';touch INJECTED;'.svg"}, dir);
  CHECK(!std::filesystem::exists(dir / "INJECTED"));
  CHECK(!std::filesystem::exists(dir / "a';touch INJECTED;'.svg.dot"));  // the temporary DOT file is removed
  (void)r;  // rendered if Graphviz is installed, else an error naming it
  r = blockjit({"dump", "mlp", "--out", "/dev/full"}, dir);
  CHECK(r.status == 1);
  CHECK(contains(r.out, "cannot write /dev/full"));
  CHECK(!contains(r.out, "wrote"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("blockjit ir --run: exit status 3 for a failed guard, 1 for an error, 0 for outputs") {
  auto dir = std::filesystem::temp_directory_path() / ("bj_cli_ir_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "g.ir").string();
  auto write = [&](const std::string& text) { std::ofstream(path) << text; };
  write("graph @g(%x: f32[4]) -> (f32[]) {\n  %0: f32[] = sum(%x) {axes=[0]}\n  %1: f32[] = literal 100\n"
        "  %2: bool[] = gt(%0, %1)\n  guard %2 == true\n  return %0\n}\n");
  CHECK(blockjit({"ir", path, "--run"}).status == 3);  // uniform(-1, 1) data never sums above 100
  write("graph @g(%x: f32[4]) -> (f32[]) {\n  %0: f32[] = sum(%x) {axes=[0]}\n  return %0\n}\n");
  CHECK(blockjit({"ir", path, "--run"}).status == 0);
  write("graph @g(%x: f32[4]) -> (f32[]) {\n  %0: f32[] = sum(%y) {axes=[0]}\n  return %0\n}\n");
  CHECK(blockjit({"ir", path, "--run"}).status == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("environment variables with values that are not valid are ignored with one warning naming them") {
  const std::pair<const char*, const char*> cases[] = {
      {"BJ_NUM_THREADS='abc'", "BJ_NUM_THREADS='abc' is ignored: expected a whole number of threads from 1 to"},
      {"BJ_NUM_THREADS='-3'", "BJ_NUM_THREADS='-3' is ignored"},
      {"BJ_NUM_THREADS='0'", "BJ_NUM_THREADS='0' is ignored"},
      {"BJ_NUM_THREADS='2x'", "BJ_NUM_THREADS='2x' is ignored"},
      {"BJ_ALLOC_CACHE_MB='-5'", "BJ_ALLOC_CACHE_MB='-5' is ignored: expected a whole number of MiB"},
      {"BJ_ALLOC_CACHE_MB='abc'", "BJ_ALLOC_CACHE_MB='abc' is ignored"},
      {"BJ_VERIFY='yes'", "BJ_VERIFY='yes' is ignored: expected 0 or 1"},
      {"BJ_CACHE='garbage'", "BJ_CACHE='garbage' is ignored: expected 0 or 1"},
      {"BJ_LOG='garbage'", "BJ_LOG='garbage' is ignored: expected stats, recompiles or all"},
      {"BJ_CACHE_DIR=''", "BJ_CACHE_DIR='' is ignored: expected a directory"},
      {"BJ_CACHE_MB='0'", "BJ_CACHE_MB='0' is ignored"},
  };
  for (const auto& [env, says] : cases) {
    CAPTURE(std::string(env));
    Result r = blockjit({"bench", "mlp", "--threads", "1"}, std::filesystem::temp_directory_path(), env);
    CHECK(r.status == 0);
    CHECK(contains(r.out, std::string("blockjit: warning: ") + says));
    const size_t first = r.out.find("warning: ");
    CHECK(r.out.find("warning: ", first + 1) == std::string::npos);  // once
  }
}

TEST_CASE("blockjit ir reads a bounded amount: a directory and an endless device are errors") {
  Result r = blockjit({"ir", std::filesystem::temp_directory_path().string()});
  CHECK(r.status == 1);
  CHECK(contains(r.out, "is a directory"));
  r = blockjit({"ir", "/dev/zero"});
  CHECK(r.status == 1);
  CHECK(contains(r.out, "larger than 256 MiB"));
}

TEST_CASE("blockjit train --data: options checked, a missing data set names the package, a model that cannot take images says so") {
  using bj::cli::parse;
  bj::cli::Command c = parse({"train", "lenet", "--data", "fashion-mnist", "--epochs", "3", "--batch", "64", "--step"});
  CHECK(c.data == "fashion-mnist");
  CHECK(c.epochs.epochs == 3);
  CHECK(c.epochs.batch == 64);
  CHECK(c.epochs.lr == 0.9);  // the book's LeNet rate
  CHECK(c.epochs.mode == "step");
  CHECK(!c.epochs.resize);
  CHECK(parse({"train", "resnet18", "--data", "fashion-mnist"}).epochs.resize == 96);
  CHECK(!parse({"train", "resnet18-28", "--data", "fashion-mnist"}).epochs.resize);
  CHECK_THROWS_WITH_AS(parse({"train", "lenet", "--data", "mnist"}), doctest::Contains("fashion-mnist"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"train", "lenet", "--epochs", "2"}), doctest::Contains("needs --data"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"train", "lenet", "--data", "fashion-mnist", "--steps", "2"}),
                       doctest::Contains("use --epochs"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"train", "lenet", "--data", "fashion-mnist", "--epochs", "0"}),
                       doctest::Contains("--epochs"), bj::ValueError);
  Result r = blockjit({"train", "lenet", "--data", "fashion-mnist", "--epochs", "1"}, std::filesystem::temp_directory_path(),
                      "BJ_DATA_DIR=/nonexistent/fashion");
  CHECK(r.status == 1);
  CHECK(contains(r.out, "/nonexistent/fashion/train-images-idx3-ubyte.gz"));
  CHECK(contains(r.out, "dataset-fashion-mnist"));
  if (std::filesystem::exists(bj::data::fashion_mnist_dir() + "/train-labels-idx1-ubyte.gz")) {
    r = blockjit({"train", "mlp", "--data", "fashion-mnist", "--epochs", "1"});
    CHECK(r.status == 1);
    CHECK(contains(r.out, "training needs [batch, 10] logits"));
  }
}

TEST_CASE("blockjit train char-lm: options checked, a missing fortunes package named, a short run reports losses and samples") {
  using bj::cli::parse;
  bj::cli::Command c = parse({"train", "char-lm", "--steps", "40", "--batch", "8", "--lr", "0.001", "--hybridize", "--exact"});
  CHECK(c.data == "fortunes");
  CHECK(c.text.steps == 40);
  CHECK(c.text.batch == 8);
  CHECK(c.text.lr == 0.001);
  CHECK(c.text.mode == "hybridize");
  CHECK(c.text.exact);
  CHECK(c.text.eval_every == 8);
  CHECK(parse({"train", "gru-lm"}).text.steps == bj::examples::LanguageModelOptions{}.steps);
  CHECK(parse({"train", "char-lm", "--data", "fortunes"}).data == "fortunes");
  CHECK(parse({"train", "mlp", "--step", "--exact"}).train.exact);
  CHECK(parse({"bench", "char-lm", "--train", "--exact"}).exact);
  CHECK_THROWS_WITH_AS(parse({"train", "char-lm", "--data", "fashion-mnist"}), doctest::Contains("--data is fortunes"),
                       bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"train", "char-lm", "--optimizer", "sgd"}), doctest::Contains("--optimizer"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"train", "char-lm", "--epochs", "2"}), doctest::Contains("--epochs"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"train", "char-lm", "--batch", "0"}), doctest::Contains("--batch"), bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"train", "char-lm", "--exact"}), doctest::Contains("--hybridize or --step"),
                       bj::ValueError);
  CHECK_THROWS_WITH_AS(parse({"train", "lenet", "--data", "fortunes"}), doctest::Contains("fashion-mnist"),
                       bj::ValueError);
  Result r = blockjit({"train", "char-lm", "--steps", "2"}, std::filesystem::temp_directory_path(),
                      "BJ_FORTUNES_DIR=/nonexistent/fortunes");
  CHECK(r.status == 1);
  CHECK(contains(r.out, "/nonexistent/fortunes"));
  CHECK(contains(r.out, "apt-get install fortunes"));
  if (std::filesystem::is_directory(bj::data::fortunes_dir())) {
    r = blockjit({"train", "char-lm", "--steps", "5", "--batch", "2", "--hybridize"});
    CHECK(r.status == 0);
    CHECK(contains(r.out, "valid loss"));
    CHECK(contains(r.out, "4 of 5 steps compiled"));
    CHECK(contains(r.out, "compiled/eager speed"));
    CHECK(contains(r.out, "sampled (temperature 0.8, seed 0):\nThe "));
  } else {
    MESSAGE("the fortunes package is not installed: the short char-lm run is skipped");
  }
}

TEST_CASE("blockjit export and run: a zoo model exported, run without its class from the files, inputs from a file, errors named") {
  bj::test::Scratch tmp("cli-export");
  Result r = blockjit({"export", "fixed-hidden-mlp", "--out", tmp / "it's"});  // a quote in the name: never a shell's
  REQUIRE(r.status == 0);
  CHECK(contains(r.out, "1 path to"));
  CHECK(std::filesystem::exists(tmp / "it's.ir"));
  r = blockjit({"run", tmp / "it's", "--bench"});
  CHECK(r.status == 0);
  CHECK(contains(r.out, "tensor("));
  CHECK(contains(r.out, "first call"));
  CHECK(contains(r.out, "(compiled)"));
  // The inputs from a safetensors file: the default input gives the default output.
  bj::manual_seed(0);
  bj::save(tmp / "in.safetensors", {{"x", bj::uniform(0, 1, {2, 20})}});
  Result from_file = blockjit({"run", tmp / "it's", "--input", tmp / "in.safetensors"});
  CHECK(from_file.status == 0);
  CHECK(from_file.out == blockjit({"run", tmp / "it's"}).out);
  // An input of another shape, a path the export did not record, a missing file: exit 1, named.
  bj::save(tmp / "wide.safetensors", {{"x", bj::uniform(0, 1, {3, 20})}});
  r = blockjit({"run", tmp / "it's", "--input", tmp / "wide.safetensors"});
  CHECK(r.status == 1);
  CHECK(contains(r.out, "f32[3,20]"));
  bj::save(tmp / "far.safetensors", {{"x", bj::uniform(1000, 2000, {2, 20})}});
  r = blockjit({"run", tmp / "it's", "--input", tmp / "far.safetensors"});
  CHECK(r.status == 1);
  CHECK(contains(r.out, "did not record"));
  r = blockjit({"run", tmp / "absent"});
  CHECK(r.status == 1);
  CHECK(contains(r.out, "absent.ir"));
  CHECK(blockjit({"export", "mlp"}).status == 2);  // --out is required
  CHECK(blockjit({"run"}).status == 2);
  CHECK(blockjit({"run", tmp / "it's", "--input"}).status == 2);
}
