#include "frontend/nn/ids.h"

#include <algorithm>

#include "frontend/ops.h"
#include "frontend/trace.h"

namespace bj::nn {

std::optional<std::pair<int64_t, int64_t>> ids_outside(const Tensor& ids, int64_t bound) {
  if (ids.numel() == 0) return std::nullopt;
  if (is_tracing()) {
    if (min(ids).item() < 0 || max(ids).item() >= static_cast<double>(bound))
      return std::pair{min(ids).item().to<int64_t>(), max(ids).item().to<int64_t>()};
    return std::nullopt;
  }
  const int64_t* t = ids.data<int64_t>();
  const auto [lo, hi] = std::minmax_element(t, t + ids.numel());
  if (*lo < 0 || *hi >= bound) return std::pair{*lo, *hi};
  return std::nullopt;
}

}  // namespace bj::nn
