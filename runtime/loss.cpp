// The cross-entropy kernels (ir/ops.def): per row, one pass for the maximum
// and one for the exponentials, summed in double. A target outside [0, C)
// makes its row NaN instead of reading outside the row.
#include <cmath>
#include <limits>

#include "runtime/kernel_impl.h"

namespace bj::rt {

namespace {

struct Rows {
  const float* x;
  const int64_t* t;
  int64_t n, c;
  explicit Rows(Inputs in)
      : x(static_cast<const float*>(in[0].data)),
        t(static_cast<const int64_t*>(in[1].data)),
        n(in[0].type.shape[0]),
        c(in[0].type.shape[1]) {}
  bool valid(int64_t i) const { return t[i] >= 0 && t[i] < c; }
  /// The row's maximum (NaN if any element is NaN) and sum of exp(x - max).
  std::pair<float, double> max_and_sum(int64_t i) const {
    const float* r = x + i * c;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < c; ++j) m = (r[j] > m || std::isnan(r[j])) ? r[j] : m;
    double s = 0;
    for (int64_t j = 0; j < c; ++j) s += std::exp(r[j] - m);
    return {m, s};
  }
};

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

}  // namespace

void kernel_CrossEntropy(Inputs in, const ir::OpAttrs&, const View& out) {
  const Rows r(in);
  double total = 0;
  for (int64_t i = 0; i < r.n; ++i) {
    if (!r.valid(i)) {
      total = kNaN;
      break;
    }
    const auto [m, s] = r.max_and_sum(i);
    total += std::log(s) + static_cast<double>(m) - static_cast<double>(r.x[i * r.c + r.t[i]]);
  }
  *static_cast<float*>(out.data) = static_cast<float>(total / static_cast<double>(r.n));  // 0/0 = NaN for N = 0
}

void kernel_CrossEntropyGrad(Inputs in, const ir::OpAttrs&, const View& out) {
  const Rows r(in);
  const double scale = static_cast<double>(*static_cast<const float*>(in[2].data)) / static_cast<double>(r.n);
  auto* y = static_cast<float*>(out.data);
  for (int64_t i = 0; i < r.n; ++i) {
    float* row = y + i * r.c;
    if (!r.valid(i)) {
      for (int64_t j = 0; j < r.c; ++j) row[j] = kNaN;
      continue;
    }
    const auto [m, s] = r.max_and_sum(i);
    const double k = scale / s;
    for (int64_t j = 0; j < r.c; ++j) row[j] = static_cast<float>(k * std::exp(r.x[i * r.c + j] - m));
    row[r.t[i]] = static_cast<float>(k * std::exp(r.x[i * r.c + r.t[i]] - m) - scale);
  }
}

}  // namespace bj::rt
