// Shape: a small inline vector of dimension sizes (no heap allocation; rank
// at most kMaxRank). Also used for lists of axes and permutations in op
// attributes. Type: dtype + shape, printed as "f32[2,20]".
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ir/dtype.h"

namespace bj {

inline constexpr int kMaxRank = 8;

/// Dimension sizes (or axes), row-major, at most kMaxRank entries.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(std::span<const int64_t> dims);

  int size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t& operator[](int i) { return d_[i]; }
  /// The i-th dimension counted from the back for negative i (back(-1) is the last).
  int64_t back(int i = -1) const { return d_[n_ + i]; }
  const int64_t* begin() const { return d_.data(); }
  const int64_t* end() const { return d_.data() + n_; }
  int64_t* begin() { return d_.data(); }
  int64_t* end() { return d_.data() + n_; }
  std::span<const int64_t> span() const { return {d_.data(), static_cast<size_t>(n_)}; }

  void push_back(int64_t v);
  void insert(int pos, int64_t v);
  void erase(int pos);
  /// Product of all dimensions (1 for rank 0).
  int64_t numel() const;
  /// "[2, 20]".
  std::string str() const;

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.n_ != b.n_) return false;
    for (int i = 0; i < a.n_; ++i)
      if (a.d_[i] != b.d_[i]) return false;
    return true;
  }

 private:
  std::array<int64_t, kMaxRank> d_{};
  uint8_t n_ = 0;
};

/// The most elements one tensor may have, so that its size in bytes (at most 8 per element)
/// and every offset into it fit in int64_t.
inline constexpr int64_t kMaxNumel = int64_t{1} << 59;
/// Throws ShapeError naming `op` if a dimension is negative or there are more than kMaxNumel
/// elements (checked without overflow). Every shape a tensor or a graph value gets passes here.
void check_shape(std::string_view op, const Shape& s);

/// Row-major element strides of a contiguous tensor of this shape.
Shape contiguous_strides(const Shape& s);
/// Element strides of a contiguous value of shape `in` broadcast (NumPy-style) to `out`: 0 on
/// the dimensions it is broadcast along.
Shape broadcast_strides(const Shape& in, const Shape& out);

/// An iteration space with the element strides of each operand over it (one Shape per operand).
struct StridedSpace {
  Shape dims;
  std::vector<Shape> strides;
};
/// `shape` with operands at `strides`, collapsed for loops: size-1 dims dropped, each dim merged
/// into the one before it where every operand is contiguous across the two. Never empty: a
/// scalar space is one dim of size 1. Eager kernels and codegen walk the same collapsed space.
StridedSpace collapse(const Shape& shape, std::span<const Shape> strides);

/// A value's type: element type plus static shape.
struct Type {
  DType dtype = DType::kF32;
  Shape shape;

  int64_t numel() const { return shape.numel(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * element_size(dtype); }
  /// "f32[2,20]" (the IR spelling; rank 0 is "f32[]").
  std::string str() const;
  friend bool operator==(const Type&, const Type&) = default;
};

}  // namespace bj
