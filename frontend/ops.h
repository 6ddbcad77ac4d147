// Tensor math: the eager ops (one per line of ir/ops.def, dispatched in
// frontend/dispatch.cpp) and the composites written with them (mean, norm,
// stack, flatten, transpose). Binary ops broadcast NumPy-style; a number on
// either side of an operator becomes a rank-0 tensor of the other side's dtype.
#pragma once

#include <vector>

#include "frontend/tensor.h"
#include "ir/ops.h"

namespace bj {

// Elementwise, one input.
/// Threads that large kernels, oneDNN and compiled code use (torch.set_num_threads's role);
/// BJ_NUM_THREADS or the core count until set. ValueError unless 1 <= n <= 4096.
void set_num_threads(int n);
int num_threads();

/// True if |a - b| <= atol + rtol * |b| for every element (NumPy's allclose), a and b of the same
/// shape (any dtypes; compared as doubles). NaN is close only to NaN, and only with `equal_nan`;
/// an infinity only to the same infinity. ShapeError if the shapes differ.
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8, bool equal_nan = false);
/// The largest |a - b| over the elements (0 for empty tensors; pairs of NaNs and equal infinities
/// count as equal): NaN if exactly one of a pair is NaN; ShapeError if the shapes differ.
double max_abs_diff(const Tensor& a, const Tensor& b);

Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
/// Converts to `dtype` (bool: nonzero is true; f32 to i64 truncates, saturating).
Tensor cast(const Tensor& x, DType dtype);

// Elementwise, broadcasting.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
/// cond ? a : b elementwise; cond is a bool tensor.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// Reductions: over all elements, or over `axes` (negative axes count from the back).
Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, const Shape& axes, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const Shape& axes, bool keepdim = false);
/// Product of all elements, or over `axes`; an empty product is 1.
Tensor prod(const Tensor& x);
Tensor prod(const Tensor& x, const Shape& axes, bool keepdim = false);
Tensor max(const Tensor& x);
Tensor max(const Tensor& x, const Shape& axes, bool keepdim = false);
Tensor min(const Tensor& x);
Tensor min(const Tensor& x, const Shape& axes, bool keepdim = false);
/// Frobenius norm: sqrt of the sum of squares of all elements.
Tensor norm(const Tensor& x);

/// log(sum(exp(x))) over `axis`, computed stably (the max is subtracted first).
Tensor logsumexp(const Tensor& x, int64_t axis = -1, bool keepdim = false);
Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);

/// Matrix product of rank >= 2 operands; leading (batch) dims broadcast.
/// transpose_a/b use an operand's last two axes swapped, without copying it.
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

/// The cross-entropy op of ir/ops.def: mean over rows of logsumexp(logits[i]) - logits[i, targets[i]],
/// logits f32[N,C], targets i64[N]. It does not check the targets' range (a target outside [0, C)
/// gives NaN): nn::cross_entropy does, and is what models call.
Tensor cross_entropy_unchecked(const Tensor& logits, const Tensor& targets);
/// Its gradient with respect to the logits for the loss's gradient g (f32[]).
Tensor cross_entropy_grad(const Tensor& logits, const Tensor& targets, const Tensor& g);

/// The embedding op of ir/ops.def: row ids[i] of table f32[V, D] for each id, giving f32[..., D].
/// It does not check the ids' range (an id outside [0, V) gives a row of NaN): nn::embedding does,
/// and is what models call.
Tensor embedding_unchecked(const Tensor& table, const Tensor& ids);
/// Its gradient with respect to the table (of shape `table`): gy's rows added into their ids' rows.
Tensor embedding_grad(const Tensor& gy, const Tensor& ids, const Shape& table);

// Convolution and pooling over NCHW images (ir/ops.def gives the exact semantics). Windows are
// [height, width] pairs; an empty pooling stride means the kernel's size.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Shape& stride = {1, 1}, const Shape& padding = {0, 0},
              const Shape& dilation = {1, 1}, int64_t groups = 1);
Tensor max_pool2d(const Tensor& x, const Shape& kernel, const Shape& stride = {}, const Shape& padding = {0, 0});
Tensor avg_pool2d(const Tensor& x, const Shape& kernel, const Shape& stride = {}, const Shape& padding = {0, 0});
// Their gradient ops (the gradient formulas' building blocks), with the forward op's attributes.
Tensor conv2d_grad_input(const Tensor& gy, const Tensor& weight, const ir::OpAttrs& conv, const Shape& input);
Tensor conv2d_grad_weight(const Tensor& x, const Tensor& gy, const ir::OpAttrs& conv, const Shape& weight);
Tensor max_pool2d_grad(const Tensor& x, const Tensor& gy, const ir::OpAttrs& pool);
Tensor avg_pool2d_grad(const Tensor& gy, const ir::OpAttrs& pool, const Shape& input);

// Movement.
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x, int64_t start = 0, int64_t end = -1);
Tensor permute(const Tensor& x, const Shape& perm);
Tensor transpose(const Tensor& x, int64_t a = -2, int64_t b = -1);
/// Broadcasts x to `shape` (a copy).
Tensor expand(const Tensor& x, const Shape& shape);
/// Joins tensors of one rank along an existing axis.
Tensor concat(const std::vector<Tensor>& xs, int64_t axis = 0);
/// Joins tensors of one shape along a new axis.
Tensor stack(const std::vector<Tensor>& xs, int64_t axis = 0);
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step = 1);

// Operators. Comparisons return bool tensors; a one-element bool tensor
// converts to bool, so `while (x.norm() > 1) x /= 2;` reads as in Python.
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator>(const Tensor& a, const Tensor& b);
Tensor operator<(const Tensor& a, const Tensor& b);
Tensor operator>=(const Tensor& a, const Tensor& b);
Tensor operator<=(const Tensor& a, const Tensor& b);
Tensor operator==(const Tensor& a, const Tensor& b);

/// A rank-0 tensor holding `v` in the dtype a binary op with `like` needs:
/// like's dtype, or f32 when like is i64 and v is not a whole number.
Tensor scalar_like(double v, const Tensor& like);

#define BJ_SCALAR_OPERATOR(op)                                                              \
  inline Tensor operator op(const Tensor& a, double b) { return a op scalar_like(b, a); } \
  inline Tensor operator op(double a, const Tensor& b) { return scalar_like(a, b) op b; }
BJ_SCALAR_OPERATOR(+)
BJ_SCALAR_OPERATOR(-)
BJ_SCALAR_OPERATOR(*)
BJ_SCALAR_OPERATOR(/)
BJ_SCALAR_OPERATOR(>)
BJ_SCALAR_OPERATOR(<)
BJ_SCALAR_OPERATOR(>=)
BJ_SCALAR_OPERATOR(<=)
BJ_SCALAR_OPERATOR(==)
#undef BJ_SCALAR_OPERATOR

}  // namespace bj
