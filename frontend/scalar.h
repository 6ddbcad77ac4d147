// bj::Scalar: a number read from a tensor by host code (`t.item()`).
// Reading tensor data steers the host's control flow, so every such read is
// a guard point for the tracer (README, "Tracing and the IR"): a Scalar read during a
// trace remembers its value in the graph, and each comparison or escape to
// plain C++ arithmetic records a guard.
#pragma once

#include <concepts>
#include <cstdint>
#include <source_location>

#include "ir/semantics.h"

namespace bj {

template <class N>
concept Arithmetic = std::integral<N> || std::floating_point<N>;

class Scalar;
namespace detail {
/// Tracer hooks (frontend/trace.cpp); called only for scalars read during a trace.
void scalar_compared(const Scalar& s, ir::Cmp cmp, double rhs, bool outcome);
void scalar_escaped(const Scalar& s);
}  // namespace detail

/// A value read out of a one-element tensor.
class Scalar {
 public:
  explicit Scalar(double v, const void* traced = nullptr, uint64_t epoch = 0, std::source_location site = {})
      : v_(v), traced_(traced), epoch_(epoch), site_(site) {}
  /// The value as a plain number (escapes to C++ arithmetic: when tracing, a guard on the exact value).
  operator double() const {
    if (traced_) detail::scalar_escaped(*this);
    return v_;
  }
  template <Arithmetic N>
  N to() const {
    return static_cast<N>(static_cast<double>(*this));
  }
  /// The value without recording anything (for the tracer and printing).
  double peek() const { return v_; }
  /// The graph value this scalar was read from, and the trace it belongs to (null/0 outside traces).
  const void* traced_value() const { return traced_; }
  uint64_t trace_epoch() const { return epoch_; }
  /// Where item() read it: the origin of the guards its comparisons record.
  const std::source_location& site() const { return site_; }

#define BJ_SCALAR_COMPARE(op, kind)                                            \
  template <Arithmetic N>                                                      \
  friend bool operator op(const Scalar& s, N n) {                              \
    bool r = s.v_ op static_cast<double>(n);                                   \
    if (s.traced_) detail::scalar_compared(s, ir::Cmp::kind, double(n), r);    \
    return r;                                                                  \
  }                                                                            \
  template <Arithmetic N>                                                      \
  friend bool operator op(N n, const Scalar& s) {                              \
    bool r = static_cast<double>(n) op s.v_;                                   \
    if (s.traced_) detail::scalar_compared(s, ir::swapped(ir::Cmp::kind), double(n), r); \
    return r;                                                                  \
  }
  BJ_SCALAR_COMPARE(>, kGt)
  BJ_SCALAR_COMPARE(<, kLt)
  BJ_SCALAR_COMPARE(>=, kGe)
  BJ_SCALAR_COMPARE(<=, kLe)
  BJ_SCALAR_COMPARE(==, kEq)
#undef BJ_SCALAR_COMPARE

 private:
  double v_;
  const void* traced_;
  uint64_t epoch_;
  std::source_location site_;
};

}  // namespace bj
