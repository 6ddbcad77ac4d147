// Internal to runtime/: declarations of the per-op kernels (one per line of
// ir/ops.def, so a missing kernel fails to link) and the strided row walker
// the elementwise and movement kernels share.
#pragma once

#include <array>
#include <cstring>

#include "runtime/kernels.h"
#include "runtime/threads.h"

namespace bj::rt {

using Inputs = std::span<const ConstView>;

#define OP(Name, ...) void kernel_##Name(Inputs in, const ir::OpAttrs& attrs, const View& out);
#include "ir/ops.def"


/// Calls body(begin, end) over [0, n), split among threads when n is large.
template <class Body>
void parallel_range(int64_t n, Body&& body) {
  int nt = num_threads();
  if (n < 2 * kParallelGrain || nt <= 1) {
    body(int64_t{0}, n);
    return;
  }
  parallel_chunks(n, static_cast<int>(std::min<int64_t>(nt, n / kParallelGrain)), body);
}

/// The canonical sum (see kSumLanes in kernels.h) of x[k] * y[k] (of x[k] when y is null) for k
/// in [0, n). The 16 lanes are four 4-float vectors (GCC's generic vectors: SSE, or scalar code,
/// whatever the target); vector adds and multiplies round each lane on its own, so every lane
/// sums exactly the terms, in exactly the order, that the canonical order gives it.
inline float canonical_sum(const float* x, const float* y, int64_t n) {
  static_assert(kSumLanes == 16);
  typedef float V4 __attribute__((vector_size(16)));
  auto load = [](const float* p) {
    V4 v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  const V4 nz = {-0.0f, -0.0f, -0.0f, -0.0f};
  V4 acc[4] = {nz, nz, nz, nz};
  int64_t k = 0;
  for (; k + kSumLanes <= n; k += kSumLanes)
    for (int q = 0; q < 4; ++q) acc[q] += y ? load(x + k + 4 * q) * load(y + k + 4 * q) : load(x + k + 4 * q);
  for (int l = 0; k + l < n; ++l) acc[l / 4][l % 4] += y ? x[k + l] * y[k + l] : x[k + l];
  const V4 h8[2] = {acc[0] + acc[2], acc[1] + acc[3]};  // lanes l += l + 8
  const V4 h4 = h8[0] + h8[1];                          // l += l + 4
  const float h2[2] = {h4[0] + h4[2], h4[1] + h4[3]};   // l += l + 2
  return h2[0] + h2[1];                                 // l += l + 1
}

/// Walks elements [begin, end) of a contiguous output of shape `shape` row by
/// row (rows along the collapsed last dimension). For each row calls
/// row(out_offset, in_offsets, in_inner_strides, length), where the N inputs
/// are addressed through element strides `strides` (any values: 0 for
/// broadcast, permuted or stepped strides for movement ops).
template <int N, class Row>
void for_each_row(const Shape& shape, std::array<Shape, N> strides, int64_t begin, int64_t end, Row&& row) {
  if (begin >= end) return;
  const StridedSpace space = collapse(shape, strides);
  const Shape& dims = space.dims;
  const std::vector<Shape>& st = space.strides;
  const int r = dims.size();
  const int64_t inner = dims[r - 1];
  // Multi-index of `begin`.
  std::array<int64_t, kMaxRank> idx{};
  std::array<int64_t, N> off{}, inner_st{};
  int64_t rest = begin;
  for (int i = r - 1; i >= 0; --i) {
    idx[i] = rest % dims[i];
    rest /= dims[i];
    for (int k = 0; k < N; ++k) off[k] += idx[i] * st[k][i];
  }
  for (int k = 0; k < N; ++k) inner_st[k] = st[k][r - 1];
  int64_t pos = begin;
  while (pos < end) {
    int64_t len = std::min(inner - idx[r - 1], end - pos);
    row(pos, off, inner_st, len);
    pos += len;
    // Advance the multi-index by len (to the start of the next row, or to end).
    for (int k = 0; k < N; ++k) off[k] += len * inner_st[k];
    idx[r - 1] += len;
    for (int i = r - 1; i > 0 && idx[i] == dims[i]; --i) {
      for (int k = 0; k < N; ++k) off[k] += st[k][i - 1] - dims[i] * st[k][i];
      idx[i] = 0;
      ++idx[i - 1];
    }
  }
}

/// Copies a strided source into a contiguous destination of shape `shape`,
/// element by element of `elem` bytes.
void strided_copy(size_t elem, const void* src, const Shape& src_strides, void* dst, const Shape& shape);

}  // namespace bj::rt
