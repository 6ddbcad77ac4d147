// Max and average pooling over NCHW images and their gradients. Each
// (image, channel) plane is one task (planes are split among threads:
// windows overlap only within a plane, so a gradient's accumulation stays on
// one thread); within a plane, each output row's window rows and each output
// column's window columns are clipped to the image once. The columns whose
// windows lie inside the image (all but a padded edge) run window tap by
// window tap over the whole row of outputs, a loop the compiler vectorizes;
// each output still meets its window's elements in row-major order, so the
// forward passes and the max gradient give the plain loops' results bit for
// bit (overlapping average-pool windows add their gradient terms in another
// fixed order).
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

  /// [first, end) of the output columns whose windows lie inside the image's columns.
  std::pair<int64_t, int64_t> interior() const {
    const int64_t lo = std::min(ow, (pw + sw - 1) / sw);
    const int64_t hi = w + pw - kw < 0 ? 0 : std::min(ow, (w + pw - kw) / sw + 1);
    return {lo, std::max(lo, hi)};
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
    parallel_chunks(planes, nt, planes_in);
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
  const auto [jlo, jhi] = win.interior();
  win.each_plane([&, W = win.w, OH = win.oh, OW = win.ow, KW = win.kw, SW = win.sw, PW = win.pw](
                     int64_t xi, int64_t yi, const Spans& rows, const Spans& cols) {
    const float* plane = x + xi;
    for (int64_t i = 0; i < OH; ++i) {
      const auto [r0, r1] = rows[static_cast<size_t>(i)];
      float* yrow = y + yi + i * OW;
      auto one = [&](int64_t j) {  // a window clipped by the padding
        const auto [c0, c1] = cols[static_cast<size_t>(j)];
        float m = plane[r0 * W + c0];
        bool any_nan = false;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) {
            const float v = plane[r * W + c];
            m = std::max(m, v);
            any_nan |= std::isnan(v);
          }
        yrow[j] = any_nan ? std::numeric_limits<float>::quiet_NaN() : m;
      };
      for (int64_t j = 0; j < jlo; ++j) one(j);
      // The unclipped windows, tap by tap (restrict: the compiler may keep the row in registers).
      // A NaN replaces the maximum and is never replaced, as in one().
      float* __restrict m = yrow;
      const float* __restrict first = plane + r0 * W - PW;
      for (int64_t j = jlo; j < jhi; ++j) m[j] = first[j * SW];
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = 0; c < KW; ++c) {
          const float* __restrict src = plane + r * W - PW + c;
          for (int64_t j = jlo; j < jhi; ++j) {
            const float v = src[j * SW];
            m[j] = (v > m[j]) | (v != v) ? v : m[j];
          }
        }
      for (int64_t j = jhi; j < OW; ++j) one(j);
    }
  });
}

void kernel_MaxPool2dGrad(Inputs in, const ir::OpAttrs& attrs, const View& out) {  // (x, gy) -> gx
  const Window win(in[0].type.shape, in[1].type.shape, attrs);
  const auto* x = static_cast<const float*>(in[0].data);
  const auto* gy = static_cast<const float*>(in[1].data);
  auto* gx = static_cast<float*>(out.data);
  const auto [jlo, jhi] = win.interior();
  win.each_plane([&, W = win.w, H = win.h, OH = win.oh, OW = win.ow, KW = win.kw, SW = win.sw, PW = win.pw](
                     int64_t xi, int64_t yi, const Spans& rows, const Spans& cols) {
    const float* plane = x + xi;
    const float* __restrict src_plane = plane;
    float* gplane = gx + xi;
    std::fill_n(gplane, H * W, 0.0f);
    std::vector<float> max_buf(static_cast<size_t>(OW));
    std::vector<int64_t> best_buf(static_cast<size_t>(OW));
    float* __restrict m = max_buf.data();
    int64_t* __restrict best = best_buf.data();  // per output: the first maximum of its window, row-major
    for (int64_t i = 0; i < OH; ++i) {
      const auto [r0, r1] = rows[static_cast<size_t>(i)];
      for (int64_t j = 0; j < OW; ++j) {
        if (j == jlo && jlo < jhi) {  // the unclipped windows, tap by tap
          for (int64_t k = jlo; k < jhi; ++k) {
            best[k] = r0 * W + k * SW - PW;
            m[k] = plane[best[k]];
          }
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t c = 0; c < KW; ++c)
              for (int64_t k = jlo; k < jhi; ++k) {
                const int64_t at = r * W + k * SW - PW + c;
                const float v = src_plane[at];
                const bool take = beats(v, m[k]);
                best[k] = take ? at : best[k];
                m[k] = take ? v : m[k];
              }
          for (int64_t k = jlo; k < jhi; ++k) gplane[best[k]] += gy[yi + i * OW + k];
          j = jhi - 1;
          continue;
        }
        const auto [c0, c1] = cols[static_cast<size_t>(j)];
        int64_t b = r0 * W + c0;
        float mv = plane[b];
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) {
            const float v = plane[r * W + c];
            const bool take = beats(v, mv);
            b = take ? r * W + c : b;
            mv = take ? v : mv;
          }
        gplane[b] += gy[yi + i * OW + j];
      }
    }
  });
}

void kernel_AvgPool2d(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  const Window win(in[0].type.shape, out.type.shape, attrs);
  const auto* x = static_cast<const float*>(in[0].data);
  auto* y = static_cast<float*>(out.data);
  const float inv_area = 1.0f / static_cast<float>(win.kh * win.kw);
  const auto [jlo, jhi] = win.interior();
  win.each_plane([&, inv_area, W = win.w, OH = win.oh, OW = win.ow, KW = win.kw, SW = win.sw, PW = win.pw](
                     int64_t xi, int64_t yi, const Spans& rows, const Spans& cols) {
    const float* plane = x + xi;
    for (int64_t i = 0; i < OH; ++i) {
      const auto [r0, r1] = rows[static_cast<size_t>(i)];
      float* yrow = y + yi + i * OW;
      auto one = [&](int64_t j) {
        const auto [c0, c1] = cols[static_cast<size_t>(j)];
        float s = 0;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) s += plane[r * W + c];
        yrow[j] = s * inv_area;
      };
      for (int64_t j = 0; j < jlo; ++j) one(j);
      float* __restrict acc = yrow;
      std::fill(acc + jlo, acc + jhi, 0.0f);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = 0; c < KW; ++c) {
          const float* __restrict src = plane + r * W - PW + c;
          for (int64_t j = jlo; j < jhi; ++j) acc[j] += src[j * SW];
        }
      for (int64_t j = jlo; j < jhi; ++j) acc[j] *= inv_area;
      for (int64_t j = jhi; j < OW; ++j) one(j);
    }
  });
}

void kernel_AvgPool2dGrad(Inputs in, const ir::OpAttrs& attrs, const View& out) {  // (gy) -> gx
  const Window win(out.type.shape, in[0].type.shape, attrs);
  const auto* gy = static_cast<const float*>(in[0].data);
  auto* gx = static_cast<float*>(out.data);
  const float inv_area = 1.0f / static_cast<float>(win.kh * win.kw);
  const auto [jlo, jhi] = win.interior();
  win.each_plane([&, inv_area, W = win.w, H = win.h, OH = win.oh, OW = win.ow, KW = win.kw, SW = win.sw,
                  PW = win.pw](int64_t xi, int64_t yi, const Spans& rows, const Spans& cols) {
    float* gplane = gx + xi;
    std::fill_n(gplane, H * W, 0.0f);
    std::vector<float> g_buf(static_cast<size_t>(OW));
    float* g = g_buf.data();
    for (int64_t i = 0; i < OH; ++i) {
      const auto [r0, r1] = rows[static_cast<size_t>(i)];
      for (int64_t j = 0; j < OW; ++j) g[j] = gy[yi + i * OW + j] * inv_area;
      auto one = [&](int64_t j) {
        const auto [c0, c1] = cols[static_cast<size_t>(j)];
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) gplane[r * W + c] += g[j];
      };
      for (int64_t j = 0; j < jlo; ++j) one(j);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = 0; c < KW; ++c) {
          float* __restrict dst = gplane + r * W - PW + c;
          const float* __restrict gj = g;
          for (int64_t j = jlo; j < jhi; ++j) dst[j * SW] += gj[j];
        }
      for (int64_t j = jhi; j < OW; ++j) one(j);
    }
  });
}

}  // namespace bj::rt
