// The eager ops: thin wrappers that fill in attributes and call
// detail::apply, plus the composites built from them.
#include "frontend/ops.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "frontend/creation.h"
#include "frontend/dispatch.h"
#include "ir/infer.h"
#include "runtime/kernels.h"

namespace bj {

using ir::OpAttrs;
using ir::OpKind;
using detail::apply;

Tensor neg(const Tensor& x) { return apply(OpKind::Neg, {x}); }
Tensor abs(const Tensor& x) { return apply(OpKind::Abs, {x}); }
Tensor relu(const Tensor& x) { return apply(OpKind::Relu, {x}); }
Tensor exp(const Tensor& x) { return apply(OpKind::Exp, {x}); }
Tensor log(const Tensor& x) { return apply(OpKind::Log, {x}); }
Tensor tanh(const Tensor& x) { return apply(OpKind::Tanh, {x}); }
Tensor sigmoid(const Tensor& x) { return apply(OpKind::Sigmoid, {x}); }
Tensor sqrt(const Tensor& x) { return apply(OpKind::Sqrt, {x}); }
Tensor pow(const Tensor& x, double exponent) {
  OpAttrs a;
  a.scalar = exponent;
  return apply(OpKind::Pow, {x}, a);
}
Tensor cast(const Tensor& x, DType dtype) {
  OpAttrs a;
  a.dtype = dtype;
  return apply(OpKind::Cast, {x}, a);
}

Tensor add(const Tensor& a, const Tensor& b) { return apply(OpKind::Add, {a, b}); }
Tensor sub(const Tensor& a, const Tensor& b) { return apply(OpKind::Sub, {a, b}); }
Tensor mul(const Tensor& a, const Tensor& b) { return apply(OpKind::Mul, {a, b}); }
Tensor div(const Tensor& a, const Tensor& b) { return apply(OpKind::Div, {a, b}); }
Tensor maximum(const Tensor& a, const Tensor& b) { return apply(OpKind::Maximum, {a, b}); }
Tensor minimum(const Tensor& a, const Tensor& b) { return apply(OpKind::Minimum, {a, b}); }
Tensor gt(const Tensor& a, const Tensor& b) { return apply(OpKind::Gt, {a, b}); }
Tensor lt(const Tensor& a, const Tensor& b) { return apply(OpKind::Lt, {a, b}); }
Tensor ge(const Tensor& a, const Tensor& b) { return apply(OpKind::Ge, {a, b}); }
Tensor le(const Tensor& a, const Tensor& b) { return apply(OpKind::Le, {a, b}); }
Tensor eq(const Tensor& a, const Tensor& b) { return apply(OpKind::Eq, {a, b}); }
Tensor where(const Tensor& c, const Tensor& a, const Tensor& b) { return apply(OpKind::Where, {c, a, b}); }

Tensor cross_entropy_unchecked(const Tensor& logits, const Tensor& targets) {
  return apply(OpKind::CrossEntropy, {logits, targets});
}
Tensor cross_entropy_grad(const Tensor& logits, const Tensor& targets, const Tensor& g) {
  return apply(OpKind::CrossEntropyGrad, {logits, targets, g});
}

Tensor embedding_unchecked(const Tensor& table, const Tensor& ids) { return apply(OpKind::Embedding, {table, ids}); }
Tensor embedding_grad(const Tensor& gy, const Tensor& ids, const Shape& table) {
  OpAttrs a;
  a.dims = table;
  return apply(OpKind::EmbeddingGrad, {gy, ids}, a);
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Shape& stride, const Shape& padding, const Shape& dilation,
              int64_t groups) {
  OpAttrs a;
  a.stride = stride;
  a.padding = padding;
  a.dilation = dilation;
  a.groups = groups;
  return apply(OpKind::Conv2d, {x, weight}, a);
}
namespace {
Tensor pool(OpKind op, const Tensor& x, const Shape& kernel, const Shape& stride, const Shape& padding) {
  OpAttrs a;
  a.kernel = kernel;
  a.stride = stride;
  a.padding = padding;
  return apply(op, {x}, a);
}
/// The forward op's attributes with `shape` (the gradient's shape) added.
OpAttrs with_shape(OpAttrs a, const Shape& shape) {
  a.dims = shape;
  return a;
}
}  // namespace
Tensor max_pool2d(const Tensor& x, const Shape& kernel, const Shape& stride, const Shape& padding) {
  return pool(OpKind::MaxPool2d, x, kernel, stride, padding);
}
Tensor avg_pool2d(const Tensor& x, const Shape& kernel, const Shape& stride, const Shape& padding) {
  return pool(OpKind::AvgPool2d, x, kernel, stride, padding);
}
Tensor conv2d_grad_input(const Tensor& gy, const Tensor& weight, const OpAttrs& conv, const Shape& input) {
  return apply(OpKind::Conv2dGradInput, {gy, weight}, with_shape(conv, input));
}
Tensor conv2d_grad_weight(const Tensor& x, const Tensor& gy, const OpAttrs& conv, const Shape& weight) {
  return apply(OpKind::Conv2dGradWeight, {x, gy}, with_shape(conv, weight));
}
Tensor max_pool2d_grad(const Tensor& x, const Tensor& gy, const OpAttrs& pool) {
  return apply(OpKind::MaxPool2dGrad, {x, gy}, pool);
}
Tensor avg_pool2d_grad(const Tensor& gy, const OpAttrs& pool, const Shape& input) {
  return apply(OpKind::AvgPool2dGrad, {gy}, with_shape(pool, input));
}

namespace {
Shape all_axes(const Tensor& x) {
  Shape s;
  for (int i = 0; i < x.dim(); ++i) s.push_back(i);
  return s;
}
Tensor reduce(OpKind op, const Tensor& x, const Shape& axes, bool keepdim) {
  OpAttrs a;
  a.dims = axes;
  a.keepdim = keepdim;
  return apply(op, {x}, a);
}
}  // namespace

Tensor sum(const Tensor& x) { return reduce(OpKind::Sum, x, all_axes(x), false); }
Tensor sum(const Tensor& x, const Shape& axes, bool keepdim) { return reduce(OpKind::Sum, x, axes, keepdim); }
Tensor prod(const Tensor& x) { return reduce(OpKind::Prod, x, all_axes(x), false); }
Tensor prod(const Tensor& x, const Shape& axes, bool keepdim) { return reduce(OpKind::Prod, x, axes, keepdim); }
Tensor max(const Tensor& x) { return reduce(OpKind::Max, x, all_axes(x), false); }
Tensor max(const Tensor& x, const Shape& axes, bool keepdim) { return reduce(OpKind::Max, x, axes, keepdim); }
Tensor min(const Tensor& x) { return reduce(OpKind::Min, x, all_axes(x), false); }
Tensor min(const Tensor& x, const Shape& axes, bool keepdim) { return reduce(OpKind::Min, x, axes, keepdim); }
Tensor mean(const Tensor& x) { return mean(x, all_axes(x)); }
Tensor mean(const Tensor& x, const Shape& axes, bool keepdim) {
  if (x.dtype() != DType::kF32) throw DTypeError("mean", "expects f32 input, got " + x.type().str());
  Tensor s = sum(x, axes, keepdim);
  int64_t count = x.numel() / std::max<int64_t>(s.numel(), 1);
  if (x.numel() == 0) count = 0;  // mean over nothing is NaN, as in torch
  return s / static_cast<double>(count);
}
Tensor norm(const Tensor& x) { return sqrt(sum(x * x)); }

Tensor logsumexp(const Tensor& x, int64_t axis, bool keepdim) {
  Tensor m = max(x, {axis}, true).detach();  // any constant works; the max keeps exp() in range
  Tensor r = log(sum(exp(x - m), {axis}, true)) + m;
  if (keepdim) return r;
  Shape s = r.shape();
  s.erase(ir::normalize_axis("logsumexp", axis, x.dim()));
  return reshape(r, s);
}
Tensor log_softmax(const Tensor& x, int64_t axis) { return x - logsumexp(x, axis, true); }
Tensor softmax(const Tensor& x, int64_t axis) {
  Tensor e = exp(x - max(x, {axis}, true).detach());  // one exp per element, none overflows
  return e / sum(e, {axis}, true);
}

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  OpAttrs at;
  at.transpose_a = transpose_a;
  at.transpose_b = transpose_b;
  return apply(OpKind::Matmul, {a, b}, at);
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  OpAttrs a;
  a.dims = shape;
  return apply(OpKind::Reshape, {x}, a);
}
Tensor flatten(const Tensor& x, int64_t start, int64_t end) {
  if (x.dim() == 0) return reshape(x, {1});
  int s = ir::normalize_axis("flatten", start, x.dim()), e = ir::normalize_axis("flatten", end, x.dim());
  if (s > e) throw IndexError("flatten", "start axis " + std::to_string(s) + " is after end axis " + std::to_string(e));
  Shape out;
  for (int i = 0; i < s; ++i) out.push_back(x.shape()[i]);
  int64_t merged = 1;
  for (int i = s; i <= e; ++i) merged *= x.shape()[i];
  out.push_back(merged);
  for (int i = e + 1; i < x.dim(); ++i) out.push_back(x.shape()[i]);
  return reshape(x, out);
}
Tensor permute(const Tensor& x, const Shape& perm) {
  OpAttrs a;
  a.dims = perm;
  return apply(OpKind::Permute, {x}, a);
}
Tensor transpose(const Tensor& x, int64_t a, int64_t b) {
  if (x.dim() < 2) throw ShapeError("transpose", "needs rank >= 2, got " + x.type().str());
  int i = ir::normalize_axis("transpose", a, x.dim()), j = ir::normalize_axis("transpose", b, x.dim());
  Shape perm;
  for (int k = 0; k < x.dim(); ++k) perm.push_back(k);
  std::swap(perm[i], perm[j]);
  return permute(x, perm);
}
Tensor expand(const Tensor& x, const Shape& shape) {
  OpAttrs a;
  a.dims = shape;
  return apply(OpKind::Expand, {x}, a);
}
Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  OpAttrs a;
  a.axis = axis;
  return apply(OpKind::Concat, std::span<const Tensor>(xs), a);
}
Tensor stack(const std::vector<Tensor>& xs, int64_t axis) {
  if (xs.empty()) throw ValueError("stack", "needs at least one tensor");
  for (const Tensor& x : xs)
    if (!(x.shape() == xs[0].shape()))
      throw ShapeError("stack", "shapes differ: " + xs[0].type().str() + " and " + x.type().str());
  int ax = ir::normalize_axis("stack", axis, xs[0].dim() + 1);
  std::vector<Tensor> parts;
  parts.reserve(xs.size());
  for (const Tensor& x : xs) {
    Shape s = x.shape();
    s.insert(ax, 1);
    parts.push_back(reshape(x, s));
  }
  return concat(parts, ax);
}
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step) {
  OpAttrs a;
  a.axis = axis;
  a.start = start;
  a.end = end;
  a.step = step;
  return apply(OpKind::Slice, {x}, a);
}

Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }

Tensor scalar_like(double v, const Tensor& like) {
  DType t = like.defined() ? like.dtype() : DType::kF32;
  if (t == DType::kI64 && v != std::trunc(v)) t = DType::kF32;
  if (t == DType::kBool) t = DType::kF32;
  return full({}, v, t);
}

namespace {
/// Every element of `t` as a double (i64 exactly up to 2^53).
std::vector<double> as_doubles(const Tensor& t) {
  if (t.dtype() == DType::kI64) {
    const auto* p = static_cast<const int64_t*>(t.raw_data());
    return std::vector<double>(p, p + t.numel());
  }
  const std::vector<float> f = t.to_vector();
  return std::vector<double>(f.begin(), f.end());
}
std::pair<std::vector<double>, std::vector<double>> pair_of(const char* op, const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) throw ValueError(op, "needs two defined tensors");
  if (!(a.shape() == b.shape())) throw ShapeError(op, "shapes differ: " + a.type().str() + " and " + b.type().str());
  return {as_doubles(a), as_doubles(b)};
}
}  // namespace

void set_num_threads(int n) {
  if (n < 1 || n > 4096) throw ValueError("set_num_threads", fmt::format("expected 1 to 4096 threads, got {}", n));
  rt::set_num_threads(n);
}
int num_threads() { return rt::num_threads(); }

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol, bool equal_nan) {
  if (!(rtol >= 0) || !(atol >= 0)) throw ValueError("allclose", fmt::format("tolerances must be non-negative, got rtol {} and atol {}", rtol, atol));
  const auto [x, y] = pair_of("allclose", a, b);
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i])) {
      if (!(equal_nan && std::isnan(x[i]) && std::isnan(y[i]))) return false;
    } else if (std::isinf(x[i]) || std::isinf(y[i])) {
      if (x[i] != y[i]) return false;
    } else if (!(std::fabs(x[i] - y[i]) <= atol + rtol * std::fabs(y[i]))) {
      return false;
    }
  }
  return true;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto [x, y] = pair_of("max_abs_diff", a, b);
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) && std::isnan(y[i])) continue;
    if (x[i] == y[i]) continue;  // equal infinities too
    const double d = std::fabs(x[i] - y[i]);
    if (std::isnan(d)) return d;
    worst = std::max(worst, d);
  }
  return worst;
}

}  // namespace bj
