// Max and average pooling over NCHW images and their gradients: loops over
// each (image, channel) plane, split among threads for large batches.
#include <algorithm>
#include <cmath>

#include "runtime/kernel_impl.h"

namespace bj::rt {

namespace {

/// One pooling's geometry, from the input's and output's shapes and the canonical window.
struct Window {
  int64_t planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw;
  Window(const Shape& x, const Shape& y, const ir::OpAttrs& a)
      : planes(x[0] * x[1]), h(x[2]), w(x[3]), oh(y[2]), ow(y[3]), kh(a.kernel[0]), kw(a.kernel[1]),
        sh(a.stride[0]), sw(a.stride[1]), ph(a.padding[0]), pw(a.padding[1]) {}
  /// Calls f(plane, output_index, first_row, end_row, first_col, end_col) for every output cell,
  /// the window clipped to the image. Planes are split among threads (windows overlap only
  /// within a plane, so a gradient's accumulation stays on one thread).
  template <class F>
  void each(F&& f) const {
    auto planes_in = [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p)
        for (int64_t i = 0; i < oh; ++i) {
          const int64_t r0 = std::max<int64_t>(i * sh - ph, 0), r1 = std::min(i * sh - ph + kh, h);
          for (int64_t j = 0; j < ow; ++j) {
            const int64_t c0 = std::max<int64_t>(j * sw - pw, 0), c1 = std::min(j * sw - pw + kw, w);
            f(p, (p * oh + i) * ow + j, r0, r1, c0, c1);
          }
        }
    };
    const int nt = std::min<int64_t>(num_threads(), planes);
    if (nt <= 1 || planes * h * w < 2 * kParallelGrain) return planes_in(0, planes);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; ++t) planes_in(planes * t / nt, planes * (t + 1) / nt);
  }
};

/// The offset (within its plane) of the window's first maximum; a NaN is the maximum.
int64_t argmax(const float* plane, int64_t w, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  int64_t best = r0 * w + c0;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) {
      const float v = plane[r * w + c], b = plane[best];
      if (std::isnan(b)) return best;
      if (v > b || std::isnan(v)) best = r * w + c;
    }
  return best;
}

}  // namespace

void kernel_MaxPool2d(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  const Window win(in[0].type.shape, out.type.shape, attrs);
  const auto* x = static_cast<const float*>(in[0].data);
  auto* y = static_cast<float*>(out.data);
  win.each([&](int64_t p, int64_t o, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    const float* plane = x + p * win.h * win.w;
    y[o] = plane[argmax(plane, win.w, r0, r1, c0, c1)];
  });
}

void kernel_MaxPool2dGrad(Inputs in, const ir::OpAttrs& attrs, const View& out) {  // (x, gy) -> gx
  const Window win(in[0].type.shape, in[1].type.shape, attrs);
  const auto* x = static_cast<const float*>(in[0].data);
  const auto* gy = static_cast<const float*>(in[1].data);
  auto* gx = static_cast<float*>(out.data);
  std::fill_n(gx, out.type.numel(), 0.0f);
  win.each([&](int64_t p, int64_t o, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    const int64_t plane = p * win.h * win.w;
    gx[plane + argmax(x + plane, win.w, r0, r1, c0, c1)] += gy[o];
  });
}

void kernel_AvgPool2d(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  const Window win(in[0].type.shape, out.type.shape, attrs);
  const auto* x = static_cast<const float*>(in[0].data);
  auto* y = static_cast<float*>(out.data);
  const float area = static_cast<float>(win.kh * win.kw);
  win.each([&](int64_t p, int64_t o, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    const float* plane = x + p * win.h * win.w;
    float s = 0;
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = c0; c < c1; ++c) s += plane[r * win.w + c];
    y[o] = s / area;
  });
}

void kernel_AvgPool2dGrad(Inputs in, const ir::OpAttrs& attrs, const View& out) {  // (gy) -> gx
  const Window win(out.type.shape, in[0].type.shape, attrs);
  const auto* gy = static_cast<const float*>(in[0].data);
  auto* gx = static_cast<float*>(out.data);
  std::fill_n(gx, out.type.numel(), 0.0f);
  const float area = static_cast<float>(win.kh * win.kw);
  win.each([&](int64_t p, int64_t o, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    float* plane = gx + p * win.h * win.w;
    const float g = gy[o] / area;
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = c0; c < c1; ++c) plane[r * win.w + c] += g;
  });
}

}  // namespace bj::rt
