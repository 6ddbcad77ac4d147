// Ahead-of-time libraries (codegen/aot.h, the runtime of codegen/aot_abi.h): a
// model compiled by `blockjit aot` at build time gives the JIT's results bit
// for bit, returns a code naming the failed guard on an unrecorded path, and
// refuses to run (never misruns) when its description does not fit this
// runtime.
#include <doctest/doctest.h>

#include <thread>

#include "codegen/aot.h"
#include "fh_aot.h"
#include "seed_mlp.h"
#include "tests/helpers.h"

using namespace bj;

namespace {
const std::string kAotDir = std::string(BJ_BINARY_DIR) + "/tests/aot";
const std::string kExamplesAot = std::string(BJ_BINARY_DIR) + "/examples/aot";

/// The imported model's compiled output and the library's, for input `x`.
std::pair<Tensor, Tensor> both(nn::SymbolBlock& jit, const Tensor& x, int (*run)(const float*, float*), int* rc) {
  NoGradGuard no_grad;
  Tensor want = jit(x);
  Tensor got = zeros(want.shape());
  *rc = run(x.data<float>(), const_cast<float*>(got.data<float>()));
  return {want, got};
}
}  // namespace

TEST_CASE("an AOT library gives the JIT's results bit for bit, on every recorded path") {
  auto mlp = nn::SymbolBlock::imports(kExamplesAot + "/seed_mlp");
  manual_seed(1);
  for (int i = 0; i < 5; ++i) {
    int rc = -9;
    auto [want, got] = both(*mlp, uniform(-2, 2, {2, 20}), seed_mlp_run, &rc);
    CHECK(rc == 0);
    CHECK(test::same_bits(got, want));
  }
  auto fh = nn::SymbolBlock::imports(kAotDir + "/fh");
  REQUIRE(fh->paths().size() == 2);
  CHECK(fh_aot_num_inputs == 1);
  CHECK(fh_aot_model.n_paths == 2);
  manual_seed(0);
  const Tensor x = uniform(0, 1, {2, 20});  // the export's default input
  for (double scale : {1.0, 64.0, 1.0}) {
    CAPTURE(scale);
    int rc = -9;
    auto [want, got] = both(*fh, x * scale, fh_aot_run, &rc);
    CHECK(rc == 0);
    CHECK(test::same_bits(got, want));
  }
  CHECK(fh->stats().eager_fallbacks == 0);
}

TEST_CASE("an AOT library on an unrecorded path returns a code naming the guard, and many threads may call it") {
  manual_seed(0);
  const Tensor x = uniform(0, 1, {2, 20}) * 4096.0;
  float out = 0;
  const int rc = fh_aot_run(x.data<float>(), &out);
  CHECK(rc > 0);
  const std::string msg = fh_aot_message(rc);
  CHECK(msg.find("no recorded path") != std::string::npos);
  CHECK(msg.find("guard %") != std::string::npos);
  CHECK(msg.find("seed_models.h:") != std::string::npos);
  CHECK(std::string(fh_aot_message(0)).find("done") != std::string::npos);
  CHECK(std::string(fh_aot_message(12345)).find("not a code") != std::string::npos);
  // Concurrent calls each get their own arena and the same answers.
  const Tensor ok = uniform(0, 1, {2, 20});
  float want = 0;
  REQUIRE(fh_aot_run(ok.data<float>(), &want) == 0);
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        float got = -1;
        if (fh_aot_run(ok.data<float>(), &got) != 0 || got != want) ++bad[t];
      }
    });
  for (auto& th : threads) th.join();
  CHECK(bad == std::vector<int>(4, 0));
}

TEST_CASE("an AOT library whose description does not fit this runtime is refused with a reason, never run") {
  float in[40] = {}, out[1] = {};
  const void* ins[1] = {in};
  void* outs[1] = {out};
  CHECK(bj_aot_run(nullptr, ins, outs) == -2);
  CHECK(bj_aot_run(&fh_aot_model, nullptr, outs) == -2);
  auto refused = [&](const bj_aot_model& m, const std::string& why) {
    const int rc = bj_aot_run(&m, ins, outs);
    CHECK(rc == -1);
    CHECK(std::string(bj_aot_message(&m, rc)).find(why) != std::string::npos);
  };
  static bj_aot_model other_build = fh_aot_model;  // static: the runtime keys its state by address
  other_build.source_hash = "0123456789abcdef";
  refused(other_build, "another blockjit build");
  static bj_aot_model newer = fh_aot_model;
  newer.abi = 99;
  refused(newer, "AOT interface 99");
  static bj_aot_model alien_cpu = fh_aot_model;
  alien_cpu.features = "+avx512f,+avx512bf16,+avx2,+fma";
  if (!__builtin_cpu_supports("avx512bf16")) refused(alien_cpu, "lacks");
  static bj_aot_path lying_path = fh_aot_model.paths[0];
  lying_path.offsets = nullptr;
  static uint64_t far[3] = {0, uint64_t{1} << 40, 64};
  lying_path.offsets = far;
  static bj_aot_model lying = fh_aot_model;
  lying.n_paths = 1;
  lying.paths = &lying_path;
  refused(lying, "outside the library's data");
  static bj_aot_path garbled = fh_aot_model.paths[0];
  garbled.graph_bytes = garbled.graph_bytes / 2;  // cut in the middle
  static bj_aot_model cut = fh_aot_model;
  cut.n_paths = 1;
  cut.paths = &garbled;
  refused(cut, "cannot be prepared");
}

TEST_CASE("blockjit aot refuses paths that write state and names that are not C identifiers") {
  test::Scratch tmp("aot");
  manual_seed(7);
  auto net = std::make_shared<nn::Sequential>();
  net->add(nn::Dense(4), nn::BatchNorm());
  net->initialize();
  const Tensor x = uniform(-1, 1, {8, 3});
  NoGradGuard no_grad;  // training mode: the path commits BatchNorm's running statistics
  net->call_eager(x);
  net->hybridize();
  (*net)(x);
  net->export_model(tmp / "bn");
  auto imported = nn::SymbolBlock::imports(tmp / "bn", {.hybridize = false});
  codegen::AotModel m;
  m.name = "bn";
  m.paths.push_back({imported->paths()[0].graph, {}});
  test::check_error<ValueError>([&] { codegen::write_aot_library(m, tmp / "out"); }, {"updates state", "eval mode"});
  m.name = "1-bad name";
  test::check_error<ValueError>([&] { codegen::write_aot_library(m, tmp / "out"); }, {"not a C identifier"});
}
