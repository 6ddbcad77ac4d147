// Creating tensors: filled, ranges, from C++ data, and random (from one
// global Philox generator seeded by manual_seed).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <variant>
#include <vector>

#include "frontend/tensor.h"

namespace bj {

Tensor zeros(const Shape& shape, DType dtype = kF32);
Tensor ones(const Shape& shape, DType dtype = kF32);
Tensor full(const Shape& shape, double value, DType dtype = kF32);
/// 0, 1, ..., end-1.
Tensor arange(double end, DType dtype = kF32);
/// start, start+step, ... < end.
Tensor arange(double start, double end, double step = 1, DType dtype = kF32);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);

/// A nested initializer list of numbers: `bj::tensor({{1, 2}, {3, 4}})`.
class NestedList {
 public:
  NestedList(double v) : v_(v) {}
  NestedList(std::initializer_list<NestedList> items) : v_(std::vector<NestedList>(items)) {}
  const std::variant<double, std::vector<NestedList>>& value() const { return v_; }

 private:
  std::variant<double, std::vector<NestedList>> v_;
};

/// A tensor from nested lists; ValueError if the lists are ragged.
Tensor tensor(const NestedList& values, DType dtype = kF32);
/// A tensor of `shape` holding `values` row-major; ShapeError if the counts differ.
Tensor tensor(const std::vector<float>& values, const Shape& shape);
Tensor tensor(const std::vector<int64_t>& values, const Shape& shape);

/// Seeds the global generator: the same seed gives the same numbers everywhere.
void manual_seed(uint64_t seed);
/// Uniform in [0, 1).
Tensor rand(const Shape& shape);
/// Uniform in [lo, hi).
Tensor uniform(double lo, double hi, const Shape& shape);
/// Standard normal.
Tensor randn(const Shape& shape);
/// Normal with the given mean and standard deviation.
Tensor normal(double mean, double stddev, const Shape& shape);

namespace detail {
/// Counter blocks of the global generator, reserved for one draw or one compiled call.
struct RandomDraw {
  uint64_t seed = 0, base = 0, blocks = 0;
};
/// Reserves `blocks` consecutive counters (atomically).
RandomDraw reserve_random(uint64_t blocks);
/// Gives a reservation back if nothing was drawn after it (a compiled call whose guard failed:
/// the eager call that replaces it then draws the same numbers).
void return_random(const RandomDraw& d);
}  // namespace detail

}  // namespace bj
