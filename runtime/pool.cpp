// Max and average pooling over NCHW images and their gradients. Each
// (image, channel) plane is one task (planes are split among threads:
// windows overlap only within a plane, so a gradient's accumulation stays on
// one thread); within a plane, each output row's window rows and each output
// column's window columns are clipped to the image once.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "runtime/kernel_impl.h"

namespace bj::rt {

namespace {

/// One pooling's geometry, from the input's and output's shapes and the canonical window.
struct Window {
  int64_t planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw;
  Window(const Shape& x, const Shape& y, const ir::OpAttrs& a)
      : planes(x[0] * x[1]), h(x[2]), w(x[3]), oh(y[2]), ow(y[3]), kh(a.kernel[0]), kw(a.kernel[1]),
        sh(a.stride[0]), sw(a.stride[1]), ph(a.padding[0]), pw(a.padding[1]) {}

  /// [first, end) of the image's rows (or columns) that output row (column) i's window covers.
  static std::pair<int64_t, int64_t> span(int64_t i, int64_t stride, int64_t pad, int64_t k, int64_t size) {
    const int64_t start = i * stride - pad;
    return {std::max<int64_t>(start, 0), std::min(start + k, size)};
  }

  /// Calls f(in_plane_offset, out_plane_offset, rows, cols) for every plane, where rows[i] and
  /// cols[j] are output row i's and column j's clipped spans.
  template <class F>
  void each_plane(F&& f) const {
    std::vector<std::pair<int64_t, int64_t>> rows(static_cast<size_t>(oh)), cols(static_cast<size_t>(ow));
    for (int64_t i = 0; i < oh; ++i) rows[static_cast<size_t>(i)] = span(i, sh, ph, kh, h);
    for (int64_t j = 0; j < ow; ++j) cols[static_cast<size_t>(j)] = span(j, sw, pw, kw, w);
    auto planes_in = [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) f(p * h * w, p * oh * ow, rows, cols);
    };
    const int nt = static_cast<int>(std::min<int64_t>(num_threads(), planes));
    if (nt <= 1 || planes * h * w < 2 * kParallelGrain) return planes_in(0, planes);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; ++t) planes_in(planes * t / nt, planes * (t + 1) / nt);
  }
};

using Spans = std::vector<std::pair<int64_t, int64_t>>;

/// Whether v replaces m as a window's maximum so far: larger, or the first NaN (NaN stays).
/// Bitwise, not short-circuit: on random data a branch here mispredicts half the time.
inline bool beats(float v, float m) { return (v > m) | (std::isnan(v) & !std::isnan(m)); }

}  // namespace

void kernel_MaxPool2d(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  const Window win(in[0].type.shape, out.type.shape, attrs);
  const auto* x = static_cast<const float*>(in[0].data);
  auto* y = static_cast<float*>(out.data);
  win.each_plane([&, W = win.w, H = win.h, OH = win.oh, OW = win.ow](int64_t xi, int64_t yi, const Spans& rows,
                                                                     const Spans& cols) {
    const float* plane = x + xi;
    for (int64_t i = 0; i < OH; ++i) {
      const auto [r0, r1] = rows[static_cast<size_t>(i)];
      float* yrow = y + yi + i * OW;
      for (int64_t j = 0; j < OW; ++j) {
        const auto [c0, c1] = cols[static_cast<size_t>(j)];
        float m = plane[r0 * W + c0];
        bool nan = false;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) {
            const float v = plane[r * W + c];
            m = std::max(m, v);
            nan |= std::isnan(v);
          }
        yrow[j] = nan ? std::numeric_limits<float>::quiet_NaN() : m;
      }
    }
  });
}

void kernel_MaxPool2dGrad(Inputs in, const ir::OpAttrs& attrs, const View& out) {  // (x, gy) -> gx
  const Window win(in[0].type.shape, in[1].type.shape, attrs);
  const auto* x = static_cast<const float*>(in[0].data);
  const auto* gy = static_cast<const float*>(in[1].data);
  auto* gx = static_cast<float*>(out.data);
  win.each_plane([&, W = win.w, H = win.h, OH = win.oh, OW = win.ow](int64_t xi, int64_t yi, const Spans& rows,
                                                                     const Spans& cols) {
    const float* plane = x + xi;
    float* gplane = gx + xi;
    std::fill_n(gplane, H * W, 0.0f);
    for (int64_t i = 0; i < OH; ++i) {
      const auto [r0, r1] = rows[static_cast<size_t>(i)];
      for (int64_t j = 0; j < OW; ++j) {
        const auto [c0, c1] = cols[static_cast<size_t>(j)];
        int64_t best = r0 * W + c0;  // the first maximum, row-major
        float m = plane[best];
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) {
            const float v = plane[r * W + c];
            const bool take = beats(v, m);
            best = take ? r * W + c : best;
            m = take ? v : m;
          }
        gplane[best] += gy[yi + i * OW + j];
      }
    }
  });
}

void kernel_AvgPool2d(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  const Window win(in[0].type.shape, out.type.shape, attrs);
  const auto* x = static_cast<const float*>(in[0].data);
  auto* y = static_cast<float*>(out.data);
  const float inv_area = 1.0f / static_cast<float>(win.kh * win.kw);
  win.each_plane([&, inv_area, W = win.w, H = win.h, OH = win.oh, OW = win.ow](int64_t xi, int64_t yi, const Spans& rows,
                                                                     const Spans& cols) {
    const float* plane = x + xi;
    for (int64_t i = 0; i < OH; ++i) {
      const auto [r0, r1] = rows[static_cast<size_t>(i)];
      float* yrow = y + yi + i * OW;
      for (int64_t j = 0; j < OW; ++j) {
        const auto [c0, c1] = cols[static_cast<size_t>(j)];
        float s = 0;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) s += plane[r * W + c];
        yrow[j] = s * inv_area;
      }
    }
  });
}

void kernel_AvgPool2dGrad(Inputs in, const ir::OpAttrs& attrs, const View& out) {  // (gy) -> gx
  const Window win(out.type.shape, in[0].type.shape, attrs);
  const auto* gy = static_cast<const float*>(in[0].data);
  auto* gx = static_cast<float*>(out.data);
  const float inv_area = 1.0f / static_cast<float>(win.kh * win.kw);
  win.each_plane([&, inv_area, W = win.w, H = win.h, OH = win.oh, OW = win.ow](int64_t xi, int64_t yi, const Spans& rows,
                                                                     const Spans& cols) {
    float* gplane = gx + xi;
    std::fill_n(gplane, H * W, 0.0f);
    for (int64_t i = 0; i < OH; ++i) {
      const auto [r0, r1] = rows[static_cast<size_t>(i)];
      for (int64_t j = 0; j < OW; ++j) {
        const auto [c0, c1] = cols[static_cast<size_t>(j)];
        const float g = gy[yi + i * OW + j] * inv_area;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) gplane[r * W + c] += g;
      }
    }
  });
}

}  // namespace bj::rt
