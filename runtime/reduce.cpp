// Reduction kernels (sum, prod, max, min over a sorted set of axes), one
// loop combining values as ir/semantics.h says. Each run of
// adjacent reduced axes is one pass over an [outer, R, inner] view; float
// sums of contiguous rows follow the canonical order (kernels.h: 16 lanes per
// 4096-element block, blocks added in double), so results do not depend on
// the thread count and compiled guard cones can reproduce them bit for bit.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ir/semantics.h"
#include "runtime/kernel_impl.h"

namespace bj::rt {

namespace {

constexpr int64_t kBlock = kSumBlock;

template <class T>
T block_sum(const T* x, int64_t n) {
  if constexpr (std::is_integral_v<T>) {
    T acc = 0;
    for (int64_t i = 0; i < n; ++i) acc = ir::plus(acc, x[i]);
    return acc;
  } else {
    return canonical_sum(x, nullptr, n);
  }
}

/// Sum of a contiguous row, deterministic and parallel when long.
template <class T>
T row_sum(const T* x, int64_t n) {
  if constexpr (std::is_integral_v<T>) {
    return block_sum(x, n);
  } else {
    int64_t blocks = (n + kBlock - 1) / kBlock;
    if (blocks <= 1) return block_sum(x, n);
    std::vector<double> part(blocks);
    parallel_range(n, [&](int64_t lo, int64_t hi) {  // each block belongs to the chunk holding its start
      for (int64_t b = (lo + kBlock - 1) / kBlock; b * kBlock < hi; ++b)
        part[b] = block_sum(x + b * kBlock, std::min(kBlock, n - b * kBlock));
    });
    double total = 0;
    for (double p : part) total += p;
    return static_cast<T>(total);
  }
}

/// One contiguous row reduced: sums in the canonical order, the others in increasing index.
template <class T>
T row_reduce(ir::Combine c, const T* x, int64_t n) {
  if (c == ir::Combine::kAdd) return row_sum(x, n);
  T acc = ir::identity<T>(c);
  for (int64_t i = 0; i < n; ++i) acc = ir::combine(c, acc, x[i]);
  return acc;
}

/// y[o, i] = reduce over r of x[o, r, i].
template <class T>
void reduce_block(ir::Combine c, const T* x, T* y, int64_t outer, int64_t R, int64_t inner) {
  if (R == 0) {  // only sum and prod reach here (inference rejects empty max/min)
    std::fill(y, y + outer * inner, ir::empty_reduction<T>(c));
    return;
  }
  if (inner == 1) {
    if (outer == 1) {
      y[0] = row_reduce(c, x, R);
      return;
    }
    parallel_range(outer * R, [&](int64_t lo, int64_t hi) {
      for (int64_t o = (lo + R - 1) / R; o * R < hi; ++o) y[o] = row_reduce(c, x + o * R, R);
    });
    return;
  }
  parallel_range(outer * R * inner, [&](int64_t lo, int64_t hi) {
    int64_t per = R * inner;
    for (int64_t o = (lo + per - 1) / per; o * per < hi; ++o) {
      T* yo = y + o * inner;
      const T* xo = x + o * per;
      std::copy(xo, xo + inner, yo);
      for (int64_t r = 1; r < R; ++r)
        for (int64_t i = 0; i < inner; ++i) yo[i] = ir::combine(c, yo[i], xo[r * inner + i]);
    }
  });
}

void reduce(ir::Combine c, Inputs in, const ir::OpAttrs& attrs, const View& out) {
  auto run = [&]<class T>() {
    Shape s = in[0].type.shape;
    const Shape& axes = attrs.dims;
    std::vector<T> tmp;
    const T* src = static_cast<const T*>(in[0].data);
    // Runs of adjacent axes, last run first; each pass keeps reduced dims as size 1.
    int k = axes.size() - 1;
    while (k >= 0) {
      int hi = axes[k], lo = hi;
      while (k > 0 && axes[k - 1] == lo - 1) lo = axes[--k];
      --k;
      int64_t outer = 1, R = 1, inner = 1;
      for (int i = 0; i < s.size(); ++i) (i < lo ? outer : i <= hi ? R : inner) *= s[i];
      bool last = k < 0;
      std::vector<T> next;
      T* dst = static_cast<T*>(out.data);
      if (!last) {
        next.resize(outer * inner);
        dst = next.data();
      }
      reduce_block<T>(c, src, dst, outer, R, inner);
      for (int i = lo; i <= hi; ++i) s[i] = 1;
      tmp = std::move(next);
      src = tmp.data();
    }
    if (axes.empty()) std::memcpy(out.data, in[0].data, out.type.bytes());
  };
  if (out.type.dtype == DType::kF32)
    run.template operator()<float>();
  else
    run.template operator()<int64_t>();
}

}  // namespace

// Each reduction op is the one loop above with its ir::Combine (ir/semantics.h).
#define REDUCTION_KERNEL(Name)                                                      \
  void kernel_##Name(Inputs in, const ir::OpAttrs& attrs, const View& out) {        \
    reduce(*ir::reduction(ir::OpKind::Name), in, attrs, out);                       \
  }
REDUCTION_KERNEL(Sum)
REDUCTION_KERNEL(Prod)
REDUCTION_KERNEL(Max)
REDUCTION_KERNEL(Min)
#undef REDUCTION_KERNEL

}  // namespace bj::rt
