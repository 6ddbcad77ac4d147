// Ahead-of-time libraries against the JIT: the seed MLP and large-mlp, each
// compiled by `blockjit aot` at build time (bench/CMakeLists.txt) and imported
// from the same export for the JIT; interleaved rounds, medians per call and
// the ratio. Also the import's cost: import + first compiled call. Checks the
// outputs agree bit for bit before timing anything.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <vector>

#include "codegen/host.h"
#include "frontend/blockjit.h"
#include "large_mlp_aot.h"
#include "seed_mlp.h"

namespace {

double once_us(const std::function<void()>& f, int calls) {
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) f();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / calls;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int compare(const char* name, const std::string& prefix, int (*run)(const float*, float*), int calls) {
  using namespace bj;
  const auto t0 = std::chrono::steady_clock::now();
  auto jit = nn::SymbolBlock::imports(prefix, {.adaptive = false});  // always the compiled code
  NoGradGuard no_grad;
  manual_seed(0);
  const Tensor x = uniform(0, 1, jit->paths()[0].inputs[0]->shape);
  Tensor want = (*jit)(x);
  const double first_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  Tensor got = zeros(want.shape());
  float* out = const_cast<float*>(got.data<float>());
  if (run(x.data<float>(), out) != 0 || std::memcmp(out, want.data<float>(), want.type().bytes()) != 0) {
    fmt::print("{}: the AOT library and the JIT disagree\n", name);
    return 1;
  }
  auto jit_call = [&] { (*jit)(x); };
  auto aot_call = [&] { run(x.data<float>(), out); };
  for (int i = 0; i < 3; ++i) jit_call(), aot_call();
  std::vector<double> tj, ta;
  for (int r = 0; r < 41; ++r) {
    tj.push_back(once_us(jit_call, calls));
    ta.push_back(once_us(aot_call, calls));
  }
  const double j = median(tj), a = median(ta);
  fmt::print("{:<10} JIT (hybridized call) {:>10.3f} us   AOT {:>10.3f} us   AOT/JIT {:.3f}   import + first call {:.2f} ms{}\n",
             name, j, a, a / j, first_ms, jit->stats().cache_hits > 0 ? " (object cache)" : "");
  return 0;
}

}  // namespace

int main() {
  fmt::print("CPU {} ({} threads); medians of 41 interleaved rounds\n", bj::codegen::host_info().cpu, bj::num_threads());
  const std::string dir = BJ_AOT_BENCH_DIR;
  return compare("seed mlp", std::string(BJ_EXAMPLES_AOT_DIR) + "/seed_mlp", seed_mlp_run, 20000) |
         compare("large-mlp", dir + "/large_mlp", large_mlp_aot_run, 10);
}
