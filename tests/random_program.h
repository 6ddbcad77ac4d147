// A random block for differential tests: Dense layers, affine steps and
// activations mixed with data-dependent control flow (if on sums, centred
// sums, maxima and item() reads; while on norms), built from a seed.
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "frontend/blockjit.h"

namespace bj::test {

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

}  // namespace bj::test
