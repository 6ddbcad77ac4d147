// What ops compute, written once. The eager kernels (and so the interpreter),
// the tracer's host-side checks and codegen all take these facts from here:
// which comparison an op is, how a reduction combines values and where it
// starts, how maximum and minimum treat NaN. Each mapping from OpKind is a
// switch that lists every op and has no `default`, so an op added to
// ir/ops.def without its facts does not compile (-Wswitch is an error).
#pragma once

#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>

#include "ir/ops.h"

namespace bj::ir {

// ---- comparisons ---------------------------------------------------------------------------

/// The comparison ops' predicates. IEEE: every comparison involving NaN is false.
enum class Cmp : uint8_t { kGt, kLt, kGe, kLe, kEq };

/// The predicate op `op` computes; nothing for ops that are not comparisons.
constexpr std::optional<Cmp> comparison(OpKind op) {
  using K = OpKind;
  switch (op) {
    case K::Gt: return Cmp::kGt;
    case K::Lt: return Cmp::kLt;
    case K::Ge: return Cmp::kGe;
    case K::Le: return Cmp::kLe;
    case K::Eq: return Cmp::kEq;
    case K::Neg: case K::Abs: case K::Relu: case K::Exp: case K::Log: case K::Tanh: case K::Sigmoid: case K::Sqrt:
    case K::Pow: case K::Cast: case K::Add: case K::Sub: case K::Mul: case K::Div: case K::Maximum: case K::Minimum:
    case K::Where: case K::Sum: case K::Prod: case K::Max: case K::Min: case K::Matmul: case K::Permute:
    case K::Reshape: case K::Expand: case K::Concat: case K::Slice: case K::RandUniform:
    case K::CrossEntropy: case K::CrossEntropyGrad: case K::Embedding: case K::EmbeddingGrad: case K::Conv2d: case K::Conv2dGradInput:
    case K::Conv2dGradWeight: case K::MaxPool2d: case K::MaxPool2dGrad: case K::AvgPool2d: case K::AvgPool2dGrad:
      return std::nullopt;
  }
  return std::nullopt;
}

/// The op computing predicate `c`.
constexpr OpKind comparison_op(Cmp c) {
  switch (c) {
    case Cmp::kGt: return OpKind::Gt;
    case Cmp::kLt: return OpKind::Lt;
    case Cmp::kGe: return OpKind::Ge;
    case Cmp::kLe: return OpKind::Le;
    case Cmp::kEq: return OpKind::Eq;
  }
  return OpKind::Eq;
}

/// The predicate with its operands swapped: `a c b` is `b swapped(c) a`.
constexpr Cmp swapped(Cmp c) {
  switch (c) {
    case Cmp::kGt: return Cmp::kLt;
    case Cmp::kLt: return Cmp::kGt;
    case Cmp::kGe: return Cmp::kLe;
    case Cmp::kLe: return Cmp::kGe;
    case Cmp::kEq: return Cmp::kEq;
  }
  return c;
}

/// `a c b`, in T's arithmetic.
template <class T>
constexpr bool holds(Cmp c, T a, T b) {
  switch (c) {
    case Cmp::kGt: return a > b;
    case Cmp::kLt: return a < b;
    case Cmp::kGe: return a >= b;
    case Cmp::kLe: return a <= b;
    case Cmp::kEq: return a == b;
  }
  return false;
}

// ---- arithmetic ----------------------------------------------------------------------------

/// Integers wrap around (two's complement, as NumPy's int64 does) instead of overflowing, which
/// C++ leaves undefined; floats are IEEE. Every kernel's +, -, * and negation go through these.
template <class T>
using Wrapping = typename std::conditional_t<std::is_integral_v<T>, std::make_unsigned<T>, std::type_identity<T>>::type;
template <class T>
constexpr T plus(T a, T b) {
  return T(Wrapping<T>(a) + Wrapping<T>(b));
}
template <class T>
constexpr T minus(T a, T b) {
  return T(Wrapping<T>(a) - Wrapping<T>(b));
}
template <class T>
constexpr T times(T a, T b) {
  return T(Wrapping<T>(a) * Wrapping<T>(b));
}
template <class T>
constexpr T negated(T a) {
  if constexpr (std::is_integral_v<T>)
    return T(Wrapping<T>(0) - Wrapping<T>(a));
  else
    return -a;
}

// ---- maximum and minimum ---------------------------------------------------------------------

/// IEEE 754-2019 maximum (the op `maximum`; the reduction `max` combines with it): NaN if either
/// operand is NaN, else the larger, with -0 below +0. So it is commutative and associative, and
/// a `max` reduction gives the same bits in any order: compiled code reduces in vectors
/// (llvm.maximum), eager one element at a time. Integers: the larger.
template <class T>
constexpr T maximum(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (a != a) return a;
    if (b != b) return b;
    if (a == b) return std::signbit(a) ? b : a;  // only +0 and -0 are equal and differ
  }
  return a > b ? a : b;
}
/// IEEE 754-2019 minimum (the op `minimum`, the reduction `min`): NaN wins, -0 below +0.
template <class T>
constexpr T minimum(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (a != a) return a;
    if (b != b) return b;
    if (a == b) return std::signbit(a) ? a : b;
  }
  return a < b ? a : b;
}

// ---- rounding ------------------------------------------------------------------------------

/// True if elementwise op `op` (with `attrs`) gives the same bits wherever it runs: eager's
/// kernel, the interpreter, compiled code, exact or not. These are IEEE's correctly rounded
/// operations (add, mul, div, sqrt...), compares and selects; not exp, log, tanh, sigmoid or
/// powers other than x^1 and x^2, which compiled code approximates.
constexpr bool same_bits_everywhere(OpKind op, const OpAttrs& attrs) {
  using K = OpKind;
  switch (op) {
    case K::Neg: case K::Abs: case K::Relu: case K::Sqrt: case K::Cast: case K::Add: case K::Sub: case K::Mul:
    case K::Div: case K::Maximum: case K::Minimum: case K::Gt: case K::Lt: case K::Ge: case K::Le: case K::Eq:
    case K::Where:
      return true;
    case K::Pow: return attrs.scalar == 1 || attrs.scalar == 2;
    case K::Exp: case K::Log: case K::Tanh: case K::Sigmoid:
    case K::Sum: case K::Prod: case K::Max: case K::Min: case K::Matmul:
    case K::Permute: case K::Reshape: case K::Expand: case K::Concat: case K::Slice: case K::RandUniform:
    case K::CrossEntropy: case K::CrossEntropyGrad: case K::Embedding: case K::EmbeddingGrad: case K::Conv2d: case K::Conv2dGradInput:
    case K::Conv2dGradWeight: case K::MaxPool2d: case K::MaxPool2dGrad: case K::AvgPool2d: case K::AvgPool2dGrad:
      return false;
  }
  return false;
}

// ---- reductions ------------------------------------------------------------------------------

/// How a reduction combines its values.
enum class Combine : uint8_t { kAdd, kMul, kMax, kMin };

/// How reduction `op` combines values; nothing for ops that are not reductions.
constexpr std::optional<Combine> reduction(OpKind op) {
  using K = OpKind;
  switch (op) {
    case K::Sum: return Combine::kAdd;
    case K::Prod: return Combine::kMul;
    case K::Max: return Combine::kMax;
    case K::Min: return Combine::kMin;
    case K::Neg: case K::Abs: case K::Relu: case K::Exp: case K::Log: case K::Tanh: case K::Sigmoid: case K::Sqrt:
    case K::Pow: case K::Cast: case K::Add: case K::Sub: case K::Mul: case K::Div: case K::Maximum: case K::Minimum:
    case K::Gt: case K::Lt: case K::Ge: case K::Le: case K::Eq: case K::Where: case K::Matmul: case K::Permute:
    case K::Reshape: case K::Expand: case K::Concat: case K::Slice: case K::RandUniform:
    case K::CrossEntropy: case K::CrossEntropyGrad: case K::Embedding: case K::EmbeddingGrad: case K::Conv2d: case K::Conv2dGradInput:
    case K::Conv2dGradWeight: case K::MaxPool2d: case K::MaxPool2dGrad: case K::AvgPool2d: case K::AvgPool2dGrad:
      return std::nullopt;
  }
  return std::nullopt;
}

/// True if the reduction has an identity, so reducing an empty axis gives it (sum: 0, prod: 1);
/// max and min of nothing are errors, as in NumPy.
constexpr bool empty_reduction_ok(Combine c) {
  switch (c) {
    case Combine::kAdd: case Combine::kMul: return true;
    case Combine::kMax: case Combine::kMin: return false;
  }
  return false;
}

/// Where an accumulation starts: combining it with any x gives x (for floats, -0 + x is x for
/// -0 and +0 alike; max and min start from -inf and +inf, or the integer limits).
template <class T>
constexpr T identity(Combine c) {
  switch (c) {
    case Combine::kAdd: return std::is_floating_point_v<T> ? T(-0.0) : T(0);
    case Combine::kMul: return T(1);
    case Combine::kMax:
      return std::is_floating_point_v<T> ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest();
    case Combine::kMin:
      return std::is_floating_point_v<T> ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
  }
  return T(0);
}

/// The result of reducing an empty axis: +0 for sum (as NumPy), 1 for prod.
template <class T>
constexpr T empty_reduction(Combine c) {
  return c == Combine::kMul ? T(1) : T(0);
}

/// The accumulator after value v (max and min: a NaN on either side propagates).
template <class T>
constexpr T combine(Combine c, T acc, T v) {
  switch (c) {
    case Combine::kAdd: return plus(acc, v);
    case Combine::kMul: return times(acc, v);
    case Combine::kMax: return maximum(v, acc);
    case Combine::kMin: return minimum(v, acc);
  }
  return acc;
}

}  // namespace bj::ir
