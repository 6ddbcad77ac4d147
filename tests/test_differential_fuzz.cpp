// Differential fuzzing of hybridize(): random blocks whose forward branches
// and loops on data (if on sums, centred sums, maxima and item() reads,
// while on norms, after dense layers and activations), called on random and
// near-tie inputs; every compiled call's result is compared with eager mode
// (call_eager) and no path is ever traced twice. BJ_FUZZ_CALLS sets the
// number of calls (default 4000); BJ_FUZZ_SEED the first program's seed.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <set>
#include <string>

#include "tests/helpers.h"
#include "tests/random_program.h"

using namespace bj;

namespace {

using test::RandomProgram;


/// Compiled and eager results agree: infinities and NaN where eager has them, the rest within
/// rounding of the ops after the last guard (a wrong branch differs by order 1 or a factor of 2).
bool agree(const Tensor& got, const Tensor& want, std::string& why) {
  if (!(got.type() == want.type())) {
    why = got.type().str() + " against " + want.type().str();
    return false;
  }
  auto g = got.to_vector(), w = want.to_vector();
  double scale = 0;
  for (float v : w)
    if (std::isfinite(v)) scale = std::max(scale, std::fabs(double(v)));
  for (size_t i = 0; i < g.size(); ++i) {
    bool ok = (std::isnan(g[i]) && std::isnan(w[i])) || g[i] == w[i] ||
              (std::isfinite(w[i]) && std::isfinite(g[i]) && std::fabs(double(g[i]) - w[i]) <= 1e-4 * (1 + scale));
    if (!ok) {
      why = "element " + std::to_string(i) + ": compiled " + std::to_string(g[i]) + ", eager " + std::to_string(w[i]);
      return false;
    }
  }
  return true;
}

/// Random, centred, unit-norm-times-2^k and widely scaled inputs, and their 1-ulp neighbours.
Tensor fuzz_input(std::mt19937& rng, int64_t batch, int64_t width) {
  Tensor u = uniform(-1, 1, {batch, width});
  switch (rng() % 5) {
    case 0: return u;
    case 1: return u - u.mean();
    case 2: return u / u.norm() * static_cast<float>(std::ldexp(1.0, static_cast<int>(rng() % 5)));
    case 3: return u * static_cast<float>(std::pow(10.0, static_cast<int>(rng() % 7) - 3));
    default: {
      Tensor x = u - u.mean();
      float* p = x.mutable_data<float>();
      const int64_t i = static_cast<int64_t>(rng() % static_cast<uint32_t>(batch * width));
      p[i] = std::nextafter(p[i], rng() % 2 ? 1.0f : -1.0f);
      return x;
    }
  }
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoll(v, nullptr, 10) : fallback;
}

}  // namespace

TEST_CASE("differential fuzzing: random blocks with data-dependent control flow, compiled equals eager on every call") {
  NoGradGuard no_grad;
  const int64_t total_calls = env_int("BJ_FUZZ_CALLS", 4000);
  const auto first_seed = static_cast<uint32_t>(env_int("BJ_FUZZ_SEED", 1));
  const int64_t calls_per_program = 250;
  int64_t calls = 0, compiled = 0, programs = 0, mismatches = 0;
  for (uint32_t seed = first_seed; calls < total_calls; ++seed, ++programs) {
    CAPTURE(seed);
    manual_seed(seed);
    std::mt19937 rng(seed);
    RandomProgram net(seed);
    net.initialize();
    const int64_t batch = 1 + static_cast<int64_t>(rng() % 3), width = 4 + static_cast<int64_t>(rng() % 29);
    net(uniform(-1, 1, {batch, width}));  // deferred shapes
    net.hybridize({.max_variants = 16});
    std::set<std::string> paths;
    for (int64_t i = 0; i < calls_per_program && calls < total_calls; ++i, ++calls) {
      Tensor x = fuzz_input(rng, batch, width);
      Tensor got = net(x);
      Tensor want = net.call_eager(x);
      paths.insert(net.path);
      std::string why;
      if (!agree(got, want, why)) {
        ++mismatches;
        FAIL_CHECK("program " << seed << ", call " << i << ": " << why);
      }
    }
    const nn::HybridStats s = net.stats();
    INFO(s.str());
    compiled += s.compiled_hits;
    CHECK(s.traces <= static_cast<int64_t>(paths.size()));  // no path traced twice
    CHECK(s.compile_failures == 0);
  }
  MESSAGE(calls << " calls of " << programs << " random programs, " << compiled << " compiled, " << mismatches
                << " mismatches");
  CHECK(mismatches == 0);
  CHECK(compiled > calls / 2);
}
