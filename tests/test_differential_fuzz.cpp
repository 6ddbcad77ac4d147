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

using namespace bj;

namespace {

enum class StepKind { kDense, kAffine, kActivation, kIfSum, kIfCentredSum, kIfMax, kIfItem, kUnitNorm, kWhileNorm };

struct Step {
  StepKind kind;
  int layer = 0;       // kDense
  float a = 0, b = 0;  // constants, thresholds
  int act = 0;         // which activation
};

/// A block made of random steps, some of which branch or loop on the data.
struct RandomProgram : nn::Block {
  std::vector<Step> steps;
  std::vector<nn::Dense*> layers;
  std::string path;  // the decisions of the last eager run (C++ state: invisible to the tracer)

  explicit RandomProgram(uint32_t seed) {
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
    auto real = [&](float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); };
    const int n = 3 + pick(6);
    bool branches = false;
    for (int i = 0; i < n || !branches; ++i) {
      Step s{static_cast<StepKind>(pick(9))};
      switch (s.kind) {
        case StepKind::kDense: {
          const int units[] = {4, 8, 16, 20, 33};
          const char* acts[] = {"", "relu", "tanh", "sigmoid"};
          s.layer = static_cast<int>(layers.size());
          layers.push_back(&add("d" + std::to_string(i), nn::Dense(units[pick(5)], acts[pick(4)])));
          break;
        }
        case StepKind::kAffine: s.a = real(-3, 3), s.b = real(-1, 1); break;
        case StepKind::kActivation: s.act = pick(5); break;
        case StepKind::kIfSum: s.a = pick(2) ? 0.0f : real(-2, 2), s.act = pick(5); break;
        case StepKind::kIfMax: s.a = real(-0.5f, 1); break;
        case StepKind::kIfItem: s.a = pick(2) ? 0.0f : real(-1, 1); break;
        case StepKind::kUnitNorm: s.a = std::ldexp(1.0f, pick(4)); break;
        case StepKind::kWhileNorm: s.a = pick(2) ? 1.0f : real(0.5f, 4); break;
        case StepKind::kIfCentredSum: break;
      }
      branches |= s.kind >= StepKind::kIfSum && s.kind != StepKind::kUnitNorm;
      steps.push_back(s);
    }
  }

  static Tensor activation(const Tensor& x, int which) {
    switch (which) {
      case 0: return relu(x);
      case 1: return tanh(x);
      case 2: return sigmoid(x);
      case 3: return exp(tanh(x));
      default: return x * x;
    }
  }

  Tensor forward(const Tensor& input) override {
    path.clear();
    Tensor x = input;
    for (const Step& s : steps) {
      switch (s.kind) {
        case StepKind::kDense: x = (*layers[static_cast<size_t>(s.layer)])(x); break;
        case StepKind::kAffine: x = x * s.a + s.b; break;
        case StepKind::kActivation: x = activation(x, s.act); break;
        case StepKind::kIfSum:
          if (x.sum() > s.a) {
            x = activation(x, s.act) * 2 + 1;
            path += 'S';
          } else {
            x = x * -3;
            path += 's';
          }
          break;
        case StepKind::kIfCentredSum:  // a tie up to rounding on every input
          if ((x - x.mean()).sum() > 0) {
            x = x * 2 + 1;
            path += 'C';
          } else {
            x = x * -3;
            path += 'c';
          }
          break;
        case StepKind::kIfMax:
          if (x.max() > s.a) {
            x = x - x.max();
            path += 'M';
          } else {
            x = x * 0.5f + 2;
            path += 'm';
          }
          break;
        case StepKind::kIfItem:
          if (x.mean().item() > s.a) {
            x = x + 1;
            path += 'I';
          } else {
            x = x * -2;
            path += 'i';
          }
          break;
        case StepKind::kUnitNorm: x = x / (x.norm() + 1e-30f) * s.a; break;
        case StepKind::kWhileNorm:
          for (int k = 0; k < 40 && x.norm() > s.a; ++k) {  // bounded: an infinite norm stays infinite
            x = x / 2;
            path += 'h';
          }
          path += '.';
          break;
      }
    }
    return x;
  }
};

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
