// Tensor printing (see print.h).
#include "frontend/print.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace bj {

namespace {

constexpr int64_t kSummarizeAbove = 1000;
constexpr int64_t kEdgeItems = 3;
constexpr size_t kLineWidth = 80;

struct Printer {
  const Tensor& t;
  bool summarize;
  std::vector<std::string> cells;  // formatted elements, row-major (summarized ones left empty)
  size_t width = 0;
  std::string out;

  bool shown(int64_t i, int64_t n) const { return !summarize || n <= 2 * kEdgeItems || i < kEdgeItems || i >= n - kEdgeItems; }

  // Formats every shown element with one style for the whole tensor.
  void format_cells() {
    const int64_t n = t.numel();
    std::vector<double> vals(n);
    std::vector<bool> keep(n, true);
    Shape strides = contiguous_strides(t.shape());
    for (int64_t i = 0; i < n; ++i)
      for (int d = 0; d < t.dim(); ++d)
        if (!shown(i / strides[d] % t.shape()[d], t.shape()[d])) keep[i] = false;
    // Reads go through Tensor::data, like every host read of tensor data.
    auto read = [&](const auto* p) {
      for (int64_t i = 0; i < n; ++i) vals[i] = static_cast<double>(p[i]);
    };
    switch (t.dtype()) {
      case DType::kF32: read(t.data<float>()); break;
      case DType::kI64: read(t.data<int64_t>()); break;
      default: read(t.data<uint8_t>()); break;
    }
    const int64_t* ints = t.dtype() == DType::kI64 ? t.data<int64_t>() : nullptr;  // printed exactly, not via double
    double maxabs = 0, minabs = INFINITY;
    bool integral = true;
    for (int64_t i = 0; i < n; ++i) {
      if (!keep[i] || !std::isfinite(vals[i])) continue;
      double a = std::fabs(vals[i]);
      maxabs = std::max(maxabs, a);
      if (a > 0) minabs = std::min(minabs, a);
      integral = integral && vals[i] == std::trunc(vals[i]);
    }
    bool sci = maxabs >= 1e8 || (minabs < 1e-4 && minabs > 0) || (maxabs / minabs > 1e3 && minabs < 1e-2);
    cells.assign(n, "");
    for (int64_t i = 0; i < n; ++i) {
      if (!keep[i]) continue;
      double v = vals[i];
      if (t.dtype() == DType::kBool)
        cells[i] = v != 0 ? "true" : "false";
      else if (t.dtype() == DType::kI64)
        cells[i] = fmt::format("{}", ints[i]);
      else if (std::isnan(v))
        cells[i] = "nan";
      else if (std::isinf(v))
        cells[i] = v > 0 ? "inf" : "-inf";
      else if (sci)
        cells[i] = fmt::format("{:.4e}", v);
      else if (integral)
        cells[i] = fmt::format("{:.0f}.", v);
      else
        cells[i] = fmt::format("{:.4f}", v);
      width = std::max(width, cells[i].size());
    }
  }

  void print_axis(int d, int64_t offset, const Shape& strides, size_t indent) {
    const int64_t n = t.shape()[d];
    out += "[";
    if (d == t.dim() - 1) {
      size_t col = indent + 1;
      for (int64_t i = 0; i < n; ++i) {
        if (!shown(i, n)) {
          if (i == kEdgeItems) out += "..., ", col += 5;
          continue;
        }
        std::string cell = fmt::format("{:>{}}", cells[offset + i], width);
        if (i > 0 && col + cell.size() + 2 > kLineWidth) {
          out.pop_back();  // the space after the comma
          out += "\n" + std::string(indent + 1, ' ');
          col = indent + 1;
        }
        out += cell;
        col += cell.size();
        if (i + 1 < n) out += ", ", col += 2;
      }
    } else {
      std::string sep = "," + std::string(t.dim() - 1 - d, '\n') + std::string(indent + 1, ' ');
      for (int64_t i = 0; i < n; ++i) {
        if (!shown(i, n)) {
          if (i == kEdgeItems) out += "..." + sep;
          continue;
        }
        print_axis(d + 1, offset + i * strides[d], strides, indent + 1);
        if (i + 1 < n) out += sep;
      }
    }
    out += "]";
  }
};

}  // namespace

std::string to_string(const Tensor& t) {
  if (!t.defined()) return "tensor(undefined)";
  std::string tail = fmt::format("shape={}, dtype={}", t.shape().str(), dtype_name(t.dtype()));
  if (!t.is_leaf())
    tail += ", grad_fn=<" + t.grad_fn_name() + ">";
  else if (t.requires_grad())
    tail += ", requires_grad=true";
  if (t.dtype() == DType::kBF16) return "tensor(<bf16 data>, " + tail + ")";
  Printer p{t, t.numel() > kSummarizeAbove, {}, 0, ""};
  p.format_cells();
  const size_t indent = 7;  // "tensor("
  if (t.dim() == 0)
    p.out = p.cells[0];
  else
    p.print_axis(0, 0, contiguous_strides(t.shape()), indent);
  return "tensor(" + p.out + ", " + tail + ")";
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << to_string(t); }
std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

}  // namespace bj
