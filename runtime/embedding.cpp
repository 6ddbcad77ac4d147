// The embedding kernels (ir/ops.def): a lookup copies table rows, its
// gradient adds gradient rows into the table's shape, positions in order (a
// fixed order, so eager, interpreted and compiled runs give the same sums).
// An id outside [0, V) is never used as an index: its row is NaN, and so is
// the whole gradient.
#include <algorithm>
#include <limits>

#include "runtime/kernel_impl.h"

namespace bj::rt {

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
}  // namespace

void kernel_Embedding(Inputs in, const ir::OpAttrs&, const View& out) {
  const auto* table = static_cast<const float*>(in[0].data);
  const auto* ids = static_cast<const int64_t*>(in[1].data);
  const int64_t rows = in[0].type.shape[0], width = in[0].type.shape[1], n = in[1].type.numel();
  auto* y = static_cast<float*>(out.data);
  for (int64_t i = 0; i < n; ++i) {
    float* dst = y + i * width;
    if (ids[i] >= 0 && ids[i] < rows)
      std::copy_n(table + ids[i] * width, width, dst);
    else
      std::fill_n(dst, width, kNaN);
  }
}

void kernel_EmbeddingGrad(Inputs in, const ir::OpAttrs&, const View& out) {
  const auto* gy = static_cast<const float*>(in[0].data);
  const auto* ids = static_cast<const int64_t*>(in[1].data);
  const int64_t rows = out.type.shape[0], width = out.type.shape[1], n = in[1].type.numel();
  auto* g = static_cast<float*>(out.data);
  const bool valid = std::all_of(ids, ids + n, [rows](int64_t id) { return id >= 0 && id < rows; });
  std::fill_n(g, out.type.numel(), valid ? 0.0f : kNaN);
  if (!valid) return;
  for (int64_t i = 0; i < n; ++i) {
    float* dst = g + ids[i] * width;
    const float* src = gy + i * width;
    for (int64_t j = 0; j < width; ++j) dst[j] += src[j];
  }
}

}  // namespace bj::rt
