// Shape and Type helpers.
#include "ir/shape.h"

#include "ir/error.h"

namespace bj {

static void check_rank(int n) {
  if (n > kMaxRank)
    throw ShapeError("shape", "rank " + std::to_string(n) + " exceeds the maximum rank " +
                                  std::to_string(kMaxRank));
}

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::span<const int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const int64_t> dims) {
  check_rank(static_cast<int>(dims.size()));
  for (int64_t v : dims) d_[n_++] = v;
}

void Shape::push_back(int64_t v) {
  check_rank(n_ + 1);
  d_[n_++] = v;
}

void Shape::insert(int pos, int64_t v) {
  check_rank(n_ + 1);
  for (int i = n_; i > pos; --i) d_[i] = d_[i - 1];
  d_[pos] = v;
  ++n_;
}

void Shape::erase(int pos) {
  for (int i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
  --n_;
}

int64_t Shape::numel() const {
  for (int i = 0; i < n_; ++i)
    if (d_[i] == 0) return 0;  // before any product that could overflow
  int64_t n = 1;
  for (int i = 0; i < n_; ++i) n *= d_[i];
  return n;
}

void check_shape(std::string_view op, const Shape& s) {
  for (int64_t d : s)
    if (d < 0) throw ShapeError(std::string(op), "negative dimension in " + s.str());
  for (int64_t d : s)
    if (d == 0) return;  // empty: no product to overflow
  int64_t n = 1;
  for (int64_t d : s)
    if (__builtin_mul_overflow(n, d, &n) || n > kMaxNumel)
      throw ShapeError(std::string(op), s.str() + " has more than 2^59 elements");
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < n_; ++i) s += (i ? ", " : "") + std::to_string(d_[i]);
  return s + "]";
}

Shape contiguous_strides(const Shape& s) {
  Shape st = s;
  int64_t acc = 1;
  for (int i = s.size() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

Shape broadcast_strides(const Shape& in, const Shape& out) {
  Shape st = out, cs = contiguous_strides(in);
  const int off = out.size() - in.size();
  for (int i = 0; i < out.size(); ++i) st[i] = (i < off || in[i - off] == 1) ? 0 : cs[i - off];
  return st;
}

StridedSpace collapse(const Shape& shape, std::span<const Shape> strides) {
  StridedSpace s;
  s.strides.resize(strides.size());
  for (int d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !s.dims.empty();
    for (size_t k = 0; merge && k < strides.size(); ++k) merge = s.strides[k].back() == strides[k][d] * shape[d];
    if (merge) {
      s.dims[s.dims.size() - 1] *= shape[d];
      for (size_t k = 0; k < strides.size(); ++k) s.strides[k][s.strides[k].size() - 1] = strides[k][d];
    } else {
      s.dims.push_back(shape[d]);
      for (size_t k = 0; k < strides.size(); ++k) s.strides[k].push_back(strides[k][d]);
    }
  }
  if (s.dims.empty()) {
    s.dims.push_back(1);
    for (Shape& st : s.strides) st.push_back(0);
  }
  return s;
}

std::string Type::str() const {
  std::string s(dtype_name(dtype));
  s += "[";
  for (int i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace bj
