// One inference rule per `rule` column of ir/ops.def; infer() dispatches on
// the table, so an op whose rule is missing fails to compile.
#include "ir/infer.h"

#include <algorithm>

#include "ir/error.h"
#include "ir/semantics.h"

namespace bj::ir {

namespace {

using Inputs = std::span<const Type>;

/// The op a rule checks: its kind (for the facts of ir/semantics.h) and its name (for messages).
struct OpRef {
  OpKind kind;
  std::string_view name;
  operator std::string_view() const { return name; }
};

std::string types_str(Inputs in) {
  std::string s;
  for (size_t i = 0; i < in.size(); ++i) s += (i ? ", " : "") + in[i].str();
  return s;
}

[[noreturn]] void dtype_error(std::string_view op, Inputs in, std::string_view need) {
  throw DTypeError(std::string(op), "expects " + std::string(need) + ", got " + types_str(in));
}

void require_same_dtype(std::string_view op, Inputs in) {
  for (const Type& t : in)
    if (t.dtype != in[0].dtype) dtype_error(op, in, "inputs of one dtype");
}

void require_numeric(std::string_view op, Inputs in) {
  for (const Type& t : in)
    if (t.dtype != DType::kF32 && t.dtype != DType::kI64) dtype_error(op, in, "f32 or i64 inputs");
}

void require_f32(std::string_view op, Inputs in) {
  for (const Type& t : in)
    if (t.dtype != DType::kF32) dtype_error(op, in, "f32 inputs");
}

void require_supported(std::string_view op, Inputs in) {
  for (const Type& t : in)
    if (t.dtype == DType::kBF16) dtype_error(op, in, "f32, i64 or bool inputs (bf16 has no kernels yet)");
}

Shape broadcast_all(std::string_view op, Inputs in) {
  Shape s = in[0].shape;
  for (size_t i = 1; i < in.size(); ++i) s = broadcast_shapes(op, s, in[i].shape);
  return s;
}

Type infer_UnaryNumeric(OpRef op, Inputs in, OpAttrs&) {
  require_numeric(op, in);
  return in[0];
}

Type infer_UnaryFloat(OpRef op, Inputs in, OpAttrs&) {
  require_f32(op, in);
  return in[0];
}

Type infer_Cast(OpRef op, Inputs in, OpAttrs& a) {
  require_supported(op, in);
  if (a.dtype == DType::kBF16) throw DTypeError(std::string(op), "casting to bf16 is not supported yet");
  return {a.dtype, in[0].shape};
}

Type infer_BinaryNumeric(OpRef op, Inputs in, OpAttrs&) {
  require_numeric(op, in);
  require_same_dtype(op, in);
  return {in[0].dtype, broadcast_all(op, in)};
}

Type infer_BinaryFloat(OpRef op, Inputs in, OpAttrs&) {
  require_f32(op, in);
  return {in[0].dtype, broadcast_all(op, in)};
}

Type infer_Compare(OpRef op, Inputs in, OpAttrs&) {
  require_supported(op, in);
  require_same_dtype(op, in);
  return {DType::kBool, broadcast_all(op, in)};
}

Type infer_Where(OpRef op, Inputs in, OpAttrs&) {
  if (in[0].dtype != DType::kBool) dtype_error(op, in, "a bool condition");
  require_supported(op, in.subspan(1));
  require_same_dtype(op, in.subspan(1));
  return {in[1].dtype, broadcast_all(op, in)};
}

Type infer_Reduce(OpRef op, Inputs in, OpAttrs& a) {
  require_numeric(op, in);
  const Shape& s = in[0].shape;
  Shape axes;
  for (int64_t ax : a.dims) axes.push_back(normalize_axis(op, ax, s.size()));
  std::sort(axes.begin(), axes.end());
  for (int i = 1; i < axes.size(); ++i)
    if (axes[i] == axes[i - 1])
      throw IndexError(std::string(op), "axis " + std::to_string(axes[i]) + " given twice for " + in[0].str());
  a.dims = axes;
  Shape out;
  int k = 0;
  for (int i = 0; i < s.size(); ++i) {
    bool reduced = k < axes.size() && axes[k] == i;
    if (reduced) {
      ++k;
      if (s[i] == 0 && !empty_reduction_ok(*reduction(op.kind)))
        throw ValueError(std::string(op), "reduction over an empty axis " + std::to_string(i) + " of " +
                                              in[0].str() + " has no identity");
      if (a.keepdim) out.push_back(1);
    } else {
      out.push_back(s[i]);
    }
  }
  return {in[0].dtype, out};
}

Type infer_Matmul(OpRef op, Inputs in, OpAttrs& a) {
  require_f32(op, in);
  const Shape &x = in[0].shape, &y = in[1].shape;
  if (x.size() < 2 || y.size() < 2)
    throw ShapeError(std::string(op), "expects operands of rank >= 2, got " + types_str(in));
  int64_t m = a.transpose_a ? x.back(-1) : x.back(-2), k1 = a.transpose_a ? x.back(-2) : x.back(-1);
  int64_t k2 = a.transpose_b ? y.back(-1) : y.back(-2), n = a.transpose_b ? y.back(-2) : y.back(-1);
  if (k1 != k2)
    throw ShapeError(std::string(op), "inner dimensions differ: " + std::to_string(k1) + " vs " +
                                          std::to_string(k2) + " (" + types_str(in) +
                                          (a.transpose_a ? ", first transposed" : "") +
                                          (a.transpose_b ? ", second transposed" : "") + ")");
  Shape bx(x.span().first(x.size() - 2)), by(y.span().first(y.size() - 2));
  Shape out = broadcast_shapes(op, bx, by);
  out.push_back(m);
  out.push_back(n);
  return {in[0].dtype, out};
}

Type infer_Permute(OpRef op, Inputs in, OpAttrs& a) {
  const Shape& s = in[0].shape;
  if (a.dims.size() != s.size())
    throw ShapeError(std::string(op), "permutation " + a.dims.str() + " does not match " + in[0].str());
  Shape perm, out;
  bool seen[kMaxRank] = {};
  for (int64_t p : a.dims) {
    int ax = normalize_axis(op, p, s.size());
    if (seen[ax]) throw IndexError(std::string(op), a.dims.str() + " is not a permutation");
    seen[ax] = true;
    perm.push_back(ax);
    out.push_back(s[ax]);
  }
  a.dims = perm;
  return {in[0].dtype, out};
}

Type infer_Reshape(OpRef op, Inputs in, OpAttrs& a) {
  int64_t known = 1;
  int infer_at = -1;
  for (int i = 0; i < a.dims.size(); ++i) {
    if (a.dims[i] == -1) {
      if (infer_at >= 0) throw ShapeError(std::string(op), "only one -1 allowed in " + a.dims.str());
      infer_at = i;
    } else if (a.dims[i] < 0) {
      throw ShapeError(std::string(op), "negative size in " + a.dims.str());
    } else if (__builtin_mul_overflow(known, a.dims[i], &known) || known > kMaxNumel) {
      throw ShapeError(std::string(op), "cannot reshape " + in[0].str() + " to " + a.dims.str());
    }
  }
  int64_t n = in[0].numel();
  if (infer_at >= 0) {
    if (known == 0 || n % known != 0)
      throw ShapeError(std::string(op), "cannot reshape " + in[0].str() + " to " + a.dims.str());
    a.dims[infer_at] = n / known;
  } else if (known != n) {
    throw ShapeError(std::string(op), "cannot reshape " + in[0].str() + " (" + std::to_string(n) +
                                          " elements) to " + a.dims.str());
  }
  return {in[0].dtype, a.dims};
}

Type infer_Expand(OpRef op, Inputs in, OpAttrs& a) {
  const Shape& s = in[0].shape;
  bool ok = a.dims.size() >= s.size();
  for (int i = 1; ok && i <= s.size(); ++i) ok = s.back(-i) == 1 || s.back(-i) == a.dims.back(-i);
  if (!ok) throw ShapeError(std::string(op), "cannot broadcast " + in[0].str() + " to " + a.dims.str());
  return {in[0].dtype, a.dims};
}

Type infer_Concat(OpRef op, Inputs in, OpAttrs& a) {
  if (in.empty()) throw ValueError(std::string(op), "needs at least one input");
  require_same_dtype(op, in);
  const Shape& s0 = in[0].shape;
  if (s0.empty()) throw ShapeError(std::string(op), "cannot concatenate rank-0 tensors: " + types_str(in));
  int ax = normalize_axis(op, a.axis, s0.size());
  a.axis = ax;
  Shape out = s0;
  for (size_t j = 1; j < in.size(); ++j) {
    const Shape& s = in[j].shape;
    bool ok = s.size() == s0.size();
    for (int i = 0; ok && i < s.size(); ++i) ok = i == ax || s[i] == s0[i];
    if (!ok)
      throw ShapeError(std::string(op), "shapes differ outside axis " + std::to_string(ax) + ": " + types_str(in));
    if (__builtin_add_overflow(out[ax], s[ax], &out[ax]))
      throw ShapeError(std::string(op), "the result along axis " + std::to_string(ax) + " is too long: " + types_str(in));
  }
  return {in[0].dtype, out};
}

Type infer_Slice(OpRef op, Inputs in, OpAttrs& a) {
  const Shape& s = in[0].shape;
  if (s.empty()) throw ShapeError(std::string(op), "cannot slice a rank-0 tensor");
  int ax = normalize_axis(op, a.axis, s.size());
  if (a.step <= 0) throw ValueError(std::string(op), "step must be positive, got " + std::to_string(a.step));
  int64_t n = s[ax];
  auto clamp = [n](int64_t v) { return std::clamp(v < 0 ? v + n : v, int64_t{0}, n); };
  a.axis = ax;
  a.start = clamp(a.start);
  a.end = std::max(a.start, clamp(a.end));
  Shape out = s;
  out[ax] = a.end > a.start ? (a.end - a.start - 1) / a.step + 1 : 0;  // no overflow for any step
  return {in[0].dtype, out};
}

Type infer_RandUniform(OpRef op, Inputs in, OpAttrs& a) {
  if (!(in[0] == Type{DType::kI64, {2}}))
    throw DTypeError(std::string(op), "takes the generator state i64[2] (seed, counter), got " + in[0].str());
  if (a.start < 0) throw ValueError(std::string(op), "start must be non-negative, got " + std::to_string(a.start));
  for (int i = 0; i < a.dims.size(); ++i)
    if (a.dims[i] < 0) throw ShapeError(std::string(op), "negative size in " + a.dims.str());
  return {DType::kF32, a.dims};
}

/// Logits f32[N, C] and class indices i64[N], as the cross-entropy ops take them.
void check_logits_targets(OpRef op, Inputs in) {
  if (in[0].dtype != DType::kF32 || in[1].dtype != DType::kI64 || in[0].shape.size() != 2 ||
      in[1].shape.size() != 1 || in[1].shape[0] != in[0].shape[0])
    throw ShapeError(std::string(op), "expects logits f32[N,C] and targets i64[N], got " + types_str(in.first(2)));
}

Type infer_CrossEntropy(OpRef op, Inputs in, OpAttrs&) {
  check_logits_targets(op, in);
  return {DType::kF32, {}};
}

Type infer_CrossEntropyGrad(OpRef op, Inputs in, OpAttrs&) {
  check_logits_targets(op, in);
  if (!(in[2] == Type{DType::kF32, {}}))
    throw ShapeError(std::string(op), "expects the loss's gradient as f32[], got " + in[2].str());
  return in[0];
}

// ---- embedding ----

/// The ids' shape with the table's width appended: the lookup's result shape.
Shape rows_shape(OpRef op, const Type& ids, int64_t width) {
  if (ids.shape.size() >= kMaxRank)
    throw ShapeError(std::string(op), "ids of rank " + std::to_string(ids.shape.size()) + " give a result above rank " +
                                          std::to_string(kMaxRank));
  Shape out = ids.shape;
  out.push_back(width);
  return out;
}

Type infer_Embedding(OpRef op, Inputs in, OpAttrs&) {
  if (in[0].dtype != DType::kF32 || in[0].shape.size() != 2 || in[1].dtype != DType::kI64)
    throw ShapeError(std::string(op), "expects a table f32[V,D] and ids i64[...], got " + types_str(in.first(2)));
  return {DType::kF32, rows_shape(op, in[1], in[0].shape[1])};
}

Type infer_EmbeddingGrad(OpRef op, Inputs in, OpAttrs& a) {  // (gy, ids) -> the table's shape
  if (a.dims.size() != 2 || a.dims[0] < 0 || a.dims[1] < 0)
    throw ShapeError(std::string(op), "needs the table's shape [V, D], got " + a.dims.str());
  if (in[0].dtype != DType::kF32 || in[1].dtype != DType::kI64 || in[0].shape != rows_shape(op, in[1], a.dims[1]))
    throw ShapeError(std::string(op), "expects gradients f32[..., " + std::to_string(a.dims[1]) +
                                          "] for ids i64[...], got " + types_str(in.first(2)));
  return {DType::kF32, a.dims};
}

// ---- convolution and pooling (NCHW) ----

/// A [height, width] attribute: `fallback` when not given, else two values in [least, 2^24] (the
/// bound keeps every window computation far from overflow, whatever a text IR file says).
Shape pair_attr(OpRef op, const char* name, const Shape& given, const Shape& fallback, int64_t least) {
  constexpr int64_t kMost = int64_t{1} << 24;
  if (given.size() == 0) return fallback;
  if (given.size() != 2 || given[0] < least || given[1] < least || given[0] > kMost || given[1] > kMost)
    throw ValueError(std::string(op), std::string(name) + " must be two values in [" + std::to_string(least) +
                                          ", 2^24] ([height, width]), got " + given.str());
  return given;
}

/// One spatial size of a window's output: floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1, at least 1.
int64_t window_out(OpRef op, const Type& x, int axis, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  int64_t span = 0, padded = 0, room = 0;  // sizes of an empty tensor's other axes are unbounded: checked
  if (k < 1 || __builtin_mul_overflow(dil, k - 1, &span) || __builtin_add_overflow(span, 1, &span) ||
      __builtin_add_overflow(x.shape[axis], 2 * pad, &padded) || __builtin_sub_overflow(padded, span, &room))
    throw ShapeError(std::string(op), "a window of " + std::to_string(k) + " on " + x.str() +
                                          " is empty or overflows 64 bits");
  if (room < 0)
    throw ShapeError(std::string(op), "input " + x.str() + " is too small for a window of " + std::to_string(span) +
                                          (axis == 2 ? " rows" : " columns") + " with padding " +
                                          std::to_string(pad) + ": no output");
  return room / stride + 1;
}

void require_image(OpRef op, Inputs in, size_t count) {
  for (size_t i = 0; i < count; ++i)
    if (in[i].dtype != DType::kF32 || in[i].shape.size() != 4)
      throw ShapeError(std::string(op), "expects f32 NCHW tensors (rank 4), got " + types_str(in));
}

/// The output shape of conv2d(x, w), checking the operands and canonicalizing the window.
Shape conv_shape(OpRef op, const Type& x, const Type& w, OpAttrs& a) {
  a.stride = pair_attr(op, "stride", a.stride, {1, 1}, 1);
  a.padding = pair_attr(op, "padding", a.padding, {0, 0}, 0);
  a.dilation = pair_attr(op, "dilation", a.dilation, {1, 1}, 1);
  const int64_t c = x.shape[1], o = w.shape[0], g = a.groups;
  if (g < 1 || c % g != 0 || o % g != 0 || w.shape[1] * g != c)
    throw ShapeError(std::string(op), "input " + x.str() + " has " + std::to_string(c) + " channels but weight " +
                                          w.str() + " expects " + std::to_string(w.shape[1] * std::max<int64_t>(g, 1)) +
                                          " (in " + std::to_string(g) + " group(s), output channels divisible by it)");
  return {x.shape[0], o, window_out(op, x, 2, w.shape[2], a.stride[0], a.padding[0], a.dilation[0]),
          window_out(op, x, 3, w.shape[3], a.stride[1], a.padding[1], a.dilation[1])};
}

/// The output shape of a pooling of x, canonicalizing the window (stride defaults to the kernel).
Shape pool_shape(OpRef op, const Type& x, OpAttrs& a) {
  if (a.kernel.size() == 0) throw ValueError(std::string(op), "needs a kernel size");
  a.kernel = pair_attr(op, "kernel", a.kernel, {}, 1);
  a.stride = pair_attr(op, "stride", a.stride, a.kernel, 1);
  a.padding = pair_attr(op, "padding", a.padding, {0, 0}, 0);
  if (2 * a.padding[0] > a.kernel[0] || 2 * a.padding[1] > a.kernel[1])
    throw ValueError(std::string(op), "padding " + a.padding.str() + " exceeds half the kernel " + a.kernel.str());
  return {x.shape[0], x.shape[1], window_out(op, x, 2, a.kernel[0], a.stride[0], a.padding[0], 1),
          window_out(op, x, 3, a.kernel[1], a.stride[1], a.padding[1], 1)};
}

/// A gradient op's result shape (attribute `shape`): rank 4 and giving back `forward` when run forward.
void check_grad_shape(OpRef op, const Shape& want, const Shape& got, const Shape& target) {
  if (!(want == got))
    throw ShapeError(std::string(op), "the gradient " + got.str() + " does not match the forward result " +
                                          want.str() + " of " + target.str());
}

Type infer_Conv2d(OpRef op, Inputs in, OpAttrs& a) {
  require_image(op, in, 2);
  return {DType::kF32, conv_shape(op, in[0], in[1], a)};
}

Type infer_Conv2dGradInput(OpRef op, Inputs in, OpAttrs& a) {  // (gy, w) -> x's shape
  require_image(op, in, 2);
  if (a.dims.size() != 4) throw ShapeError(std::string(op), "needs the input's shape (rank 4), got " + a.dims.str());
  const Type x{DType::kF32, a.dims};
  check_grad_shape(op, conv_shape(op, x, in[1], a), in[0].shape, a.dims);
  return x;
}

Type infer_Conv2dGradWeight(OpRef op, Inputs in, OpAttrs& a) {  // (x, gy) -> w's shape
  require_image(op, in, 2);
  if (a.dims.size() != 4) throw ShapeError(std::string(op), "needs the weight's shape (rank 4), got " + a.dims.str());
  const Type w{DType::kF32, a.dims};
  check_grad_shape(op, conv_shape(op, in[0], w, a), in[1].shape, a.dims);
  return w;
}

Type infer_Pool2d(OpRef op, Inputs in, OpAttrs& a) {
  require_image(op, in, 1);
  return {DType::kF32, pool_shape(op, in[0], a)};
}

Type infer_MaxPool2dGrad(OpRef op, Inputs in, OpAttrs& a) {  // (x, gy) -> x's shape
  require_image(op, in, 2);
  check_grad_shape(op, pool_shape(op, in[0], a), in[1].shape, in[0].shape);
  return in[0];
}

Type infer_AvgPool2dGrad(OpRef op, Inputs in, OpAttrs& a) {  // (gy) -> the input's shape
  require_image(op, in, 1);
  if (a.dims.size() != 4) throw ShapeError(std::string(op), "needs the input's shape (rank 4), got " + a.dims.str());
  const Type x{DType::kF32, a.dims};
  check_grad_shape(op, pool_shape(op, x, a), in[0].shape, a.dims);
  return x;
}

}  // namespace

Shape broadcast_shapes(std::string_view op, const Shape& a, const Shape& b) {
  const Shape& big = a.size() >= b.size() ? a : b;
  Shape out = big;
  int r = out.size();
  for (int i = 1; i <= std::min(a.size(), b.size()); ++i) {
    int64_t x = a.back(-i), y = b.back(-i);
    if (x != y && x != 1 && y != 1)
      throw ShapeError(std::string(op), "shapes " + a.str() + " and " + b.str() + " do not broadcast (" +
                                            std::to_string(x) + " vs " + std::to_string(y) + ")");
    out[r - i] = x == 1 ? y : x;
  }
  return out;
}

int normalize_axis(std::string_view op, int64_t axis, int rank) {
  if (axis < -rank || axis >= rank)
    throw IndexError(std::string(op), "axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  return static_cast<int>(axis < 0 ? axis + rank : axis);
}

Type infer(OpKind op, std::span<const Type> inputs, OpAttrs& attrs) {
  const OpInfo& info = op_info(op);
  if (info.arity >= 0 && static_cast<int>(inputs.size()) != info.arity)
    throw ValueError(std::string(info.name), "expects " + std::to_string(info.arity) + " inputs, got " +
                                                 std::to_string(inputs.size()));
  for (const Type& t : inputs) check_shape(info.name, t.shape);
  Type result;
  switch (op) {
#define OP(Name, text, arity, traits, attrs_, rule, ...) \
  case OpKind::Name: result = infer_##rule(OpRef{op, info.name}, inputs, attrs); break;
#include "ir/ops.def"
  }
  check_shape(info.name, result.shape);
  return result;
}

}  // namespace bj::ir
