// Elementwise kernels: unary, broadcasting binary, comparisons, where, cast.
// Written for clarity and auto-vectorization; eager mode is the oracle, so
// these use libm's exact functions (codegen uses fast approximations).
#include <cmath>
#include <cstdint>
#include <limits>

#include "ir/semantics.h"
#include "runtime/kernel_impl.h"

namespace bj::rt {

namespace {

template <class T, class F>
void unary(Inputs in, const View& out, F f) {
  const T* x = static_cast<const T*>(in[0].data);
  T* y = static_cast<T*>(out.data);
  parallel_range(out.type.numel(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = f(x[i]);
  });
}

/// out = f(a, b) with broadcasting; R is the result element type.
template <class T, class R, class F>
void binary(Inputs in, const View& out, F f) {
  const T* a = static_cast<const T*>(in[0].data);
  const T* b = static_cast<const T*>(in[1].data);
  R* o = static_cast<R*>(out.data);
  const Shape& s = out.type.shape;
  const int64_t n = out.type.numel();
  if (in[0].type.shape == s && in[1].type.shape == s) {  // the common case, fully contiguous
    parallel_range(n, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) o[i] = f(a[i], b[i]);
    });
    return;
  }
  std::array<Shape, 2> st{broadcast_strides(in[0].type.shape, s), broadcast_strides(in[1].type.shape, s)};
  parallel_range(n, [&](int64_t lo, int64_t hi) {
    for_each_row<2>(s, st, lo, hi, [&](int64_t oo, std::array<int64_t, 2> off, std::array<int64_t, 2> is, int64_t len) {
      const T* pa = a + off[0];
      const T* pb = b + off[1];
      R* po = o + oo;
      if (is[0] == 1 && is[1] == 1) {
        for (int64_t j = 0; j < len; ++j) po[j] = f(pa[j], pb[j]);
      } else if (is[0] == 1 && is[1] == 0) {
        const T y = *pb;
        for (int64_t j = 0; j < len; ++j) po[j] = f(pa[j], y);
      } else if (is[0] == 0 && is[1] == 1) {
        const T x = *pa;
        for (int64_t j = 0; j < len; ++j) po[j] = f(x, pb[j]);
      } else {
        for (int64_t j = 0; j < len; ++j) po[j] = f(pa[j * is[0]], pb[j * is[1]]);
      }
    });
  });
}

/// Calls body<T>() with T the C type of a numeric dtype (f32 or i64).
template <class Body>
void numeric(DType t, Body&& body) {
  if (t == DType::kF32)
    body.template operator()<float>();
  else
    body.template operator()<int64_t>();
}

/// Calls body<T>() for any dtype with kernels (f32, i64, bool).
template <class Body>
void any_dtype(DType t, Body&& body) {
  switch (t) {
    case DType::kF32: body.template operator()<float>(); break;
    case DType::kI64: body.template operator()<int64_t>(); break;
    default: body.template operator()<uint8_t>(); break;
  }
}

/// IEEE abs: clears the sign, so abs(-0) is +0 (as fabs and codegen's llvm.fabs give); for
/// integers abs(INT64_MIN) wraps to itself (as NumPy's).
template <class T>
T abs_value(T x) {
  if constexpr (std::is_floating_point_v<T>)
    return std::fabs(x);
  else
    return x < 0 ? ir::negated(x) : x;
}

template <class From, class To>
To convert(From v) {
  if constexpr (std::is_same_v<To, uint8_t>) {
    return v != From(0);
  } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    // Saturating, NaN to 0: a float outside i64's range has no exact value anyway.
    if (v != v) return 0;
    if (v >= static_cast<From>(std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
    if (v <= static_cast<From>(std::numeric_limits<To>::min())) return std::numeric_limits<To>::min();
    return static_cast<To>(v);
  } else {
    return static_cast<To>(v);
  }
}

}  // namespace

// ---- unary ----------------------------------------------------------------
#define NUMERIC_UNARY(Name, expr)                                    \
  void kernel_##Name(Inputs in, const ir::OpAttrs&, const View& out) { \
    numeric(out.type.dtype, [&]<class T>() { unary<T>(in, out, [](T x) { return expr; }); }); \
  }
#define FLOAT_UNARY(Name, expr)                                       \
  void kernel_##Name(Inputs in, const ir::OpAttrs& attrs, const View& out) { \
    [[maybe_unused]] const float p = static_cast<float>(attrs.scalar);  \
    unary<float>(in, out, [=](float x) { return expr; });             \
  }

NUMERIC_UNARY(Neg, ir::negated(x))
NUMERIC_UNARY(Abs, abs_value(x))
NUMERIC_UNARY(Relu, T(x < 0 ? T(0) : x))
FLOAT_UNARY(Exp, std::exp(x))
FLOAT_UNARY(Log, std::log(x))
FLOAT_UNARY(Tanh, std::tanh(x))
FLOAT_UNARY(Sigmoid, 1.0f / (1.0f + std::exp(-x)))
FLOAT_UNARY(Sqrt, std::sqrt(x))
FLOAT_UNARY(Pow, p == 2.0f ? x * x : std::pow(x, p))
#undef NUMERIC_UNARY
#undef FLOAT_UNARY

void kernel_Cast(Inputs in, const ir::OpAttrs&, const View& out) {
  any_dtype(in[0].type.dtype, [&]<class From>() {
    any_dtype(out.type.dtype, [&]<class To>() {
      const From* x = static_cast<const From*>(in[0].data);
      To* y = static_cast<To*>(out.data);
      parallel_range(out.type.numel(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) y[i] = convert<From, To>(x[i]);
      });
    });
  });
}

// ---- binary ---------------------------------------------------------------
#define NUMERIC_BINARY(Name, expr)                                     \
  void kernel_##Name(Inputs in, const ir::OpAttrs&, const View& out) { \
    numeric(out.type.dtype, [&]<class T>() { binary<T, T>(in, out, [](T a, T b) { return expr; }); }); \
  }
NUMERIC_BINARY(Add, ir::plus(a, b))
NUMERIC_BINARY(Sub, ir::minus(a, b))
NUMERIC_BINARY(Mul, ir::times(a, b))
NUMERIC_BINARY(Maximum, ir::maximum(a, b))
NUMERIC_BINARY(Minimum, ir::minimum(a, b))
#undef NUMERIC_BINARY

void kernel_Div(Inputs in, const ir::OpAttrs&, const View& out) {
  binary<float, float>(in, out, [](float a, float b) { return a / b; });
}

// Each comparison op is its ir::Cmp predicate (ir/semantics.h), fixed at compile time.
#define COMPARE(Name)                                                        \
  void kernel_##Name(Inputs in, const ir::OpAttrs&, const View& out) {       \
    any_dtype(in[0].type.dtype, [&]<class T>() {                             \
      binary<T, uint8_t>(in, out, [](T a, T b) {                             \
        return uint8_t(ir::holds(*ir::comparison(ir::OpKind::Name), a, b));  \
      });                                                                    \
    });                                                                      \
  }
COMPARE(Gt)
COMPARE(Lt)
COMPARE(Ge)
COMPARE(Le)
COMPARE(Eq)
#undef COMPARE

void kernel_Where(Inputs in, const ir::OpAttrs&, const View& out) {
  const Shape& s = out.type.shape;
  std::array<Shape, 3> st{broadcast_strides(in[0].type.shape, s), broadcast_strides(in[1].type.shape, s),
                          broadcast_strides(in[2].type.shape, s)};
  const uint8_t* c = static_cast<const uint8_t*>(in[0].data);
  any_dtype(out.type.dtype, [&]<class T>() {
    const T* a = static_cast<const T*>(in[1].data);
    const T* b = static_cast<const T*>(in[2].data);
    T* o = static_cast<T*>(out.data);
    parallel_range(out.type.numel(), [&](int64_t lo, int64_t hi) {
      for_each_row<3>(s, st, lo, hi, [&](int64_t oo, std::array<int64_t, 3> off, std::array<int64_t, 3> is, int64_t len) {
        for (int64_t j = 0; j < len; ++j)
          o[oo + j] = c[off[0] + j * is[0]] ? a[off[1] + j * is[1]] : b[off[2] + j * is[2]];
      });
    });
  });
}

}  // namespace bj::rt
