// bj::Scalar: a number read from a tensor by host code (`t.item()`).
// Reading tensor data steers the host's control flow, so every such read is
// a guard point for the tracer (DESIGN.md section 5); Scalar is where those
// reads surface as plain C++ numbers and comparisons.
#pragma once

#include <concepts>

namespace bj {

template <class N>
concept Arithmetic = std::integral<N> || std::floating_point<N>;

/// A value read out of a one-element tensor.
class Scalar {
 public:
  explicit Scalar(double v) : v_(v) {}
  /// The value as a plain number (escapes to C++ arithmetic).
  operator double() const { return v_; }
  template <Arithmetic N>
  N to() const {
    return static_cast<N>(v_);
  }

  template <Arithmetic N>
  friend bool operator>(const Scalar& s, N n) { return s.v_ > n; }
  template <Arithmetic N>
  friend bool operator<(const Scalar& s, N n) { return s.v_ < n; }
  template <Arithmetic N>
  friend bool operator>=(const Scalar& s, N n) { return s.v_ >= n; }
  template <Arithmetic N>
  friend bool operator<=(const Scalar& s, N n) { return s.v_ <= n; }
  template <Arithmetic N>
  friend bool operator==(const Scalar& s, N n) { return s.v_ == n; }
  template <Arithmetic N>
  friend bool operator>(N n, const Scalar& s) { return n > s.v_; }
  template <Arithmetic N>
  friend bool operator<(N n, const Scalar& s) { return n < s.v_; }
  template <Arithmetic N>
  friend bool operator>=(N n, const Scalar& s) { return n >= s.v_; }
  template <Arithmetic N>
  friend bool operator<=(N n, const Scalar& s) { return n <= s.v_; }

 private:
  double v_;
};

}  // namespace bj
