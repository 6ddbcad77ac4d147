// Convolution and pooling: eager kernels against naive loops, the
// interpreter and compiled code against eager, gradients against finite
// differences, and typed errors for bad windows and shapes.
#include <doctest/doctest.h>

#include <atomic>
#include <bit>
#include <mutex>
#include <thread>

#include "tests/gradcheck.h"
#include "tests/helpers.h"

using namespace bj;
using test::check_close;
using V = std::vector<Tensor>;

namespace {

struct Conv {
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
  ir::OpAttrs attrs() const {
    ir::OpAttrs a;
    a.stride = {sh, sw};
    a.padding = {ph, pw};
    a.dilation = {dh, dw};
    a.groups = groups;
    return a;
  }
};

/// An image and weight shape and the window's geometry.
struct ConvCase {
  Shape x, w;
  Conv c;
};

/// The textbook loop: y[n,o,i,j] = sum over the group's channels and the kernel's taps.
std::vector<double> naive_conv(const Tensor& x, const Tensor& w, const Conv& c) {
  const auto xv = test::values(x), wv = test::values(w);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), CG = w.size(1), KH = w.size(2), KW = w.size(3);
  const int64_t OH = (H + 2 * c.ph - c.dh * (KH - 1) - 1) / c.sh + 1, OW = (W + 2 * c.pw - c.dw * (KW - 1) - 1) / c.sw + 1;
  std::vector<double> y(static_cast<size_t>(N * O * OH * OW), 0.0);
  const int64_t og = O / c.groups;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double s = 0;
          for (int64_t cc = 0; cc < CG; ++cc)
            for (int64_t a = 0; a < KH; ++a)
              for (int64_t b = 0; b < KW; ++b) {
                const int64_t r = i * c.sh - c.ph + a * c.dh, q = j * c.sw - c.pw + b * c.dw;
                if (r < 0 || r >= H || q < 0 || q >= W) continue;
                const int64_t ch = (o / og) * CG + cc;
                s += xv[static_cast<size_t>(((n * C + ch) * H + r) * W + q)] *
                     wv[static_cast<size_t>(((o * CG + cc) * KH + a) * KW + b)];
              }
          y[static_cast<size_t>(((n * O + o) * OH + i) * OW + j)] = s;
        }
  return y;
}

/// The textbook loops of both gradients: gx[n,c,r,q] and gw[o,cc,a,b] summed over every
/// output position (n,o,i,j) whose window reads x[n,c,r,q] through tap (a,b).
std::pair<std::vector<double>, std::vector<double>> naive_conv_grads(const Tensor& x, const Tensor& w,
                                                                      const Tensor& gy, const Conv& c) {
  const auto xv = test::values(x), wv = test::values(w), gv = test::values(gy);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), CG = w.size(1), KH = w.size(2), KW = w.size(3);
  const int64_t OH = gy.size(2), OW = gy.size(3), og = O / c.groups;
  std::vector<double> gx(xv.size(), 0.0), gw(wv.size(), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          const double g = gv[static_cast<size_t>(((n * O + o) * OH + i) * OW + j)];
          for (int64_t cc = 0; cc < CG; ++cc)
            for (int64_t a = 0; a < KH; ++a)
              for (int64_t b = 0; b < KW; ++b) {
                const int64_t r = i * c.sh - c.ph + a * c.dh, q = j * c.sw - c.pw + b * c.dw;
                if (r < 0 || r >= H || q < 0 || q >= W) continue;
                const auto xi = static_cast<size_t>(((n * C + (o / og) * CG + cc) * H + r) * W + q);
                const auto wi = static_cast<size_t>(((o * CG + cc) * KH + a) * KW + b);
                gx[xi] += g * wv[wi];
                gw[wi] += g * xv[xi];
              }
        }
  return {gx, gw};
}

std::vector<double> naive_pool(const Tensor& x, int64_t k, int64_t s, int64_t p, bool max) {
  const auto xv = test::values(x);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
  std::vector<double> y;
  for (int64_t n = 0; n < N * C; ++n)
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        double acc = max ? -INFINITY : 0.0;
        for (int64_t a = 0; a < k; ++a)
          for (int64_t b = 0; b < k; ++b) {
            const int64_t r = i * s - p + a, q = j * s - p + b;
            if (r < 0 || r >= H || q < 0 || q >= W) continue;
            const double v = xv[static_cast<size_t>((n * H + r) * W + q)];
            acc = max ? std::max(acc, v) : acc + v;
          }
        y.push_back(max ? acc : acc / static_cast<double>(k * k));
      }
  return y;
}

Tensor conv(const Tensor& x, const Tensor& w, const Conv& c) {
  return conv2d(x, w, {c.sh, c.sw}, {c.ph, c.pw}, {c.dh, c.dw}, c.groups);
}

}  // namespace

TEST_CASE("conv2d equals the textbook loop: odd sizes, strides, padding, dilation, groups, batch 1 and 7") {
  manual_seed(3);
  const ConvCase cases[] = {
      {{1, 1, 28, 28}, {6, 1, 5, 5}, {1, 1, 2, 2}},           // LeNet's first layer
      {{7, 6, 14, 14}, {16, 6, 5, 5}, {}},                    // and its second
      {{2, 3, 9, 11}, {4, 3, 3, 3}, {2, 3, 1, 0}},            // uneven strides, one-sided padding values
      {{1, 4, 10, 9}, {6, 2, 3, 2}, {1, 1, 2, 1, 2, 3, 2}},   // dilation and two groups
      {{3, 4, 7, 7}, {4, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 4}},    // depthwise
      {{7, 5, 1, 1}, {3, 5, 1, 1}, {}},                       // 1x1 on 1x1 images
      {{2, 8, 12, 12}, {8, 8, 1, 1}, {2, 2, 0, 0}},           // ResNet's strided 1x1 shortcut
  };
  for (const ConvCase& k : cases) {
    CAPTURE(k.x.str());
    CAPTURE(k.w.str());
    Tensor x = uniform(-1, 1, k.x), w = uniform(-1, 1, k.w);
    check_close(conv(x, w, k.c), naive_conv(x, w, k.c), 1e-4, 1e-5);
  }
}

TEST_CASE("conv2d's input and weight gradients equal the textbook loops, in every layout oneDNN is given") {
  // The first layers (one input channel, a 5x5 or 7x7 window) take the channels-last weight
  // gradient, tiny images the plain one; the others oneDNN's blocked layouts; a strided 1x1
  // window must stay blocked.
  manual_seed(6);
  const ConvCase cases[] = {
      {{7, 1, 28, 28}, {6, 1, 5, 5}, {1, 1, 2, 2}},         // LeNet's first layer
      {{2, 1, 20, 20}, {16, 1, 7, 7}, {2, 2, 3, 3}},        // ResNet's first layer, smaller
      {{3, 3, 11, 9}, {5, 3, 5, 3}, {2, 1, 2, 0}},          // three channels, uneven window and strides
      {{3, 4, 8, 8}, {8, 4, 1, 1}, {2, 2, 0, 0}},           // the strided 1x1 shortcut
      {{2, 6, 14, 14}, {16, 6, 5, 5}, {}},                  // LeNet's second layer
      {{1, 4, 10, 9}, {6, 2, 3, 2}, {1, 1, 2, 1, 2, 3, 2}}, // dilation and two groups
      {{3, 16, 3, 3}, {16, 16, 3, 3}, {1, 1, 1, 1}},        // tiny images (ResNet's last): plain layouts
  };
  for (const ConvCase& k : cases) {
    CAPTURE(k.x.str());
    CAPTURE(k.w.str());
    Tensor x = uniform(-1, 1, k.x), w = uniform(-1, 1, k.w);
    Tensor gy = uniform(-1, 1, conv(x, w, k.c).shape());
    const ir::OpAttrs a = k.c.attrs();
    const auto [gx, gw] = naive_conv_grads(x, w, gy, k.c);
    for (int rep = 0; rep < 2; ++rep) {  // the cached primitives give the same sums again
      check_close(conv2d_grad_input(gy, w, a, x.shape()), gx, 1e-4, 1e-5);
      check_close(conv2d_grad_weight(x, gy, a, w.shape()), gw, 1e-4, 1e-4);
    }
  }
}

TEST_CASE("max and average pooling equal the textbook loop, with padding and overlapping windows") {
  manual_seed(4);
  for (auto [k, s, p] : {std::tuple{2, 2, 0}, std::tuple{3, 2, 1}, std::tuple{3, 1, 1}, std::tuple{2, 1, 0}}) {
    CAPTURE(k);
    CAPTURE(s);
    CAPTURE(p);
    Tensor x = uniform(-1, 1, {3, 2, 9, 8});
    check_close(max_pool2d(x, {k, k}, {s, s}, {p, p}), naive_pool(x, k, s, p, true), 0, 0);
    check_close(avg_pool2d(x, {k, k}, {s, s}, {p, p}), naive_pool(x, k, s, p, false), 1e-6, 1e-7);
  }
  // NaN is a window's maximum; -inf is never lost to padding.
  Tensor special = tensor(std::vector<float>{1.0f, NAN, -INFINITY, 2.0f}, {1, 1, 2, 2});
  CHECK(std::isnan(max_pool2d(special, {2, 2}).item().to<double>()));
  Tensor ninf = full({1, 1, 2, 2}, -INFINITY);
  CHECK(max_pool2d(ninf, {3, 3}, {1, 1}, {1, 1}).to_vector()[0] == -INFINITY);
  // A NaN inside an unpadded window of a wider row, and next to the padding.
  std::vector<float> row(2 * 9 * 10, 1.0f);
  row[3 * 10 + 4] = NAN;  // plane 0: in the windows of outputs (1, 2) and (2, 2) (3x3, stride 2, padding 1)
  row[90 + 0] = NAN;      // plane 1: the corner, in output (0, 0)'s clipped window
  const auto pooled = max_pool2d(tensor(row, {1, 2, 9, 10}), {3, 3}, {2, 2}, {1, 1}).to_vector();
  for (size_t i = 0; i < pooled.size(); ++i) {
    CAPTURE(i);
    CHECK(std::isnan(pooled[i]) == (i == 1 * 5 + 2 || i == 2 * 5 + 2 || i == 25 + 0));
  }
  // Ties: the gradient goes to the first maximum of each window in row-major order, clipped
  // windows included.
  ir::OpAttrs w3;
  w3.kernel = {3, 3};
  w3.stride = {2, 2};
  w3.padding = {1, 1};
  const auto g = max_pool2d_grad(zeros({1, 1, 5, 7}), ones({1, 1, 3, 4}), w3).to_vector();
  std::vector<float> want(35, 0.0f);
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) want[static_cast<size_t>(std::max<int64_t>(2 * i - 1, 0) * 7 + std::max<int64_t>(2 * j - 1, 0))] += 1;
  CHECK(g == want);
}

TEST_CASE("convolution and pooling gradients equal finite differences") {
  manual_seed(5);
  const test::GradTolerance tol{1e-2, 2e-2, 2e-3};
  test::gradcheck([](const V& v) { return conv(v[0], v[1], Conv{2, 1, 1, 2, 1, 2, 1}); },
                  {uniform(-1, 1, {2, 2, 6, 7}), uniform(-1, 1, {3, 2, 3, 2})}, tol);
  test::gradcheck([](const V& v) { return conv(v[0], v[1], Conv{1, 1, 1, 1, 1, 1, 2}); },
                  {uniform(-1, 1, {1, 4, 5, 5}), uniform(-1, 1, {2, 2, 3, 3})}, tol);
  // Distinct values, so no window has a near-tie a finite difference would cross.
  std::vector<float> spread;
  for (int64_t i = 0; i < 2 * 3 * 6 * 6; ++i) spread.push_back(0.05f * static_cast<float>((i * 37) % 216));
  Tensor distinct = tensor(spread, {2, 3, 6, 6});
  test::gradcheck([](const V& v) { return max_pool2d(v[0], {3, 3}, {2, 2}, {1, 1}); }, {distinct}, tol);
  test::gradcheck([](const V& v) { return avg_pool2d(v[0], {3, 3}, {1, 1}, {1, 1}); }, {uniform(-1, 1, {2, 2, 5, 4})},
                  tol);
}

TEST_CASE("oneDNN convolutions and products from 4 threads at once, on primitives another thread made: each equals one thread's") {
  // The primitives are cached and shared by every thread; each call takes its scratch memory from
  // its own thread (with oneDNN's library-managed scratchpad, some implementations, such as the
  // strided 1x1 convolution, keep one buffer per primitive, and concurrent calls overwrite it).
  manual_seed(41);
  NoGradGuard no_grad;
  struct Geometry {
    Shape x, w;
    int64_t stride, padding;
  };
  const Geometry geometries[] = {
      {{3, 1, 28, 28}, {6, 1, 5, 5}, 1, 2},  // LeNet's first layer
      {{3, 4, 8, 8}, {8, 4, 1, 1}, 2, 0},    // ResNet's strided 1x1 shortcut
      {{8, 6, 14, 14}, {16, 6, 5, 5}, 1, 2},
  };
  auto attrs = [](const Geometry& g) {
    ir::OpAttrs a;
    a.stride = {g.stride, g.stride};
    a.padding = {g.padding, g.padding};
    a.dilation = {1, 1};
    a.groups = 1;
    return a;
  };
  struct Work {
    std::vector<Tensor> x, w, gy;
    Tensor m1, m2;
  };
  std::vector<Work> work(4);
  for (Work& k : work) {
    for (const Geometry& g : geometries) {
      k.x.push_back(uniform(-1, 1, g.x));
      k.w.push_back(uniform(-1, 1, g.w));
      k.gy.push_back(uniform(-1, 1, conv2d(k.x.back(), k.w.back(), attrs(g).stride, attrs(g).padding).shape()));
    }
    k.m1 = uniform(-1, 1, {96, 80});
    k.m2 = uniform(-1, 1, {80, 72});
  }
  auto results = [&](const Work& k) {
    std::vector<Tensor> r{matmul(k.m1, k.m2)};
    for (size_t i = 0; i < std::size(geometries); ++i) {
      const ir::OpAttrs a = attrs(geometries[i]);
      r.push_back(conv2d(k.x[i], k.w[i], a.stride, a.padding));
      r.push_back(conv2d_grad_input(k.gy[i], k.w[i], a, k.x[i].shape()));
      r.push_back(conv2d_grad_weight(k.x[i], k.gy[i], a, k.w[i].shape()));
    }
    return r;
  };
  std::vector<std::vector<Tensor>> want;
  for (const Work& k : work) want.push_back(results(k));  // made here, on this thread
  std::atomic<int> mismatches{0};
  std::mutex first_mu;
  std::string first;  // the first mismatch: which result, which input, which element, the two values
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      NoGradGuard no_grad_here;
      for (int call = 0; call < 40; ++call) {
        const size_t i = static_cast<size_t>((t + call) % 4);
        const std::vector<Tensor> got = results(work[i]);
        for (size_t r = 0; r < got.size(); ++r) {
          std::string why;
          if (!test::near(got[r], want[i][r], test::Tol{1e-5, 1e-6}, &why) && mismatches++ == 0) {
            std::lock_guard lock(first_mu);
            first = fmt::format("result {} of input {} on thread {}, call {}: {}", r, i, t, call, why);
          }
        }
      }
    });
  for (auto& th : threads) th.join();
  CAPTURE(first);
  CHECK(mismatches == 0);
}

TEST_CASE("hostile convolution and pooling IR: bad windows and absurd sizes are typed errors, never a crash") {
  auto fails = [](const std::string& op_line, const std::string& x = "f32[1,2,5,5]") {
    const std::string result = op_line.substr(4, op_line.find(" = ") - 4);  // the line's own result type
    const std::string text = "graph @g(%x: " + x + ", %w: f32[3,2,3,3]) -> (" + result + ") {\n  " + op_line +
                             "\n  return %0\n}\n";
    CAPTURE(text);
    CHECK_THROWS_AS(ir::verify(*ir::parse(text)), Error);
  };
  fails("%0: f32[1,3,3,3] = conv2d(%x, %w) {stride=[0,1], padding=[0,0], dilation=[1,1], groups=1}");
  fails("%0: f32[1,3,3,3] = conv2d(%x, %w) {stride=[1,1], padding=[-1,0], dilation=[1,1], groups=1}");
  fails("%0: f32[1,3,3,3] = conv2d(%x, %w) {stride=[1,1], padding=[99999999999,0], dilation=[1,1], groups=1}");
  fails("%0: f32[1,3,3,3] = conv2d(%x, %w) {stride=[1,1], padding=[0,0], dilation=[16777216,1], groups=1}");
  fails("%0: f32[1,3,3,3] = conv2d(%x, %w) {stride=[1,1], padding=[0,0], dilation=[1,1], groups=0}");
  fails("%0: f32[1,3,3,3] = conv2d(%x, %w) {stride=[1,1,1], padding=[0,0], dilation=[1,1], groups=1}");
  fails("%0: f32[1,3,3,3] = conv2d(%x, %w) {stride=[1,1], padding=[0,0], dilation=[1,1], groups=1}",
        "f32[0,2,4611686018427387904,5]");
  fails("%0: f32[1,3,3,3] = conv2d(%x, %w) {stride=[1,1], padding=[0,0], dilation=[1,1], groups=1}", "f32[1,2,2,5]");
  fails("%0: f32[1,2,2,2] = max_pool2d(%x) {stride=[2,2], padding=[0,0]}");  // no kernel
  fails("%0: f32[1,2,2,2] = max_pool2d(%x) {kernel=[2,2], stride=[2,2], padding=[2,0]}");
  fails("%0: f32[1,2,2,2] = avg_pool2d(%x) {kernel=[9,2], stride=[1,1], padding=[0,0]}");
  fails("%0: f32[1,2,2,2] = max_pool2d(%x) {kernel=[2,2], stride=[2,2], padding=[0,0], groups=2}");  // not read
  // And a correct one parses, with the canonical window printed back.
  const std::string ok =
      "graph @g(%x: f32[1,2,5,5], %w: f32[3,2,3,3]) -> (f32[1,3,3,3]) {\n"
      "  %0: f32[1,3,3,3] = conv2d(%x, %w) {stride=[1,1], padding=[0,0], dilation=[1,1], groups=1}\n"
      "  return %0\n}\n";
  auto g = ir::parse(ok);
  ir::verify(*g);
  CHECK(ir::print(*g) == ok);
}

TEST_CASE("few-tap convolutions and their weight gradients compile to loops equal to the textbook ones") {
  // At most 28 taps (in_channels x kernel area, LeNet's first layer) codegen emits its own loops
  // instead of oneDNN's: odd widths (masked vectors), several vectors per row, output channels in
  // blocks with a short last one, row strides, padding, dilation, batch 0, 1 and 7.
  manual_seed(11);
  const ConvCase cases[] = {
      {{7, 1, 28, 28}, {6, 1, 5, 5}, {1, 1, 2, 2}},           // LeNet's first layer
      {{1, 2, 9, 11}, {5, 2, 3, 3}, {2, 1, 1, 0}},            // two channels, a row stride, one-sided padding
      {{2, 1, 6, 70}, {13, 1, 2, 2}, {}},                     // 5 vectors a row: 4 channel blocks, the last short
      {{3, 1, 10, 37}, {7, 1, 3, 5}, {1, 1, 2, 4, 2, 3}},     // dilation and padding wider than the kernel reach
      {{0, 1, 8, 8}, {4, 1, 3, 3}, {1, 1, 1, 1}},             // no image
  };
  for (const ConvCase& k : cases) {
    CAPTURE(k.x.str());
    CAPTURE(k.w.str());
    Tensor x = uniform(-1, 1, k.x), w = uniform(-1, 1, k.w);
    Tensor gy = uniform(-1, 1, conv(x, w, k.c).shape());
    const ir::OpAttrs a = k.c.attrs();
    const Shape ws = k.w;
    Trace t = trace("conv", [a, ws](const V& v) {
      return V{conv2d(v[0], v[1], a.stride, a.padding, a.dilation), conv2d_grad_weight(v[0], v[2], a, ws)};
    }, {x, w, gy});
    codegen::CompileOptions co;
    co.use_cache = false;
    co.keep_ir = true;
    CompiledTrace c = compile(t, co);
    const std::string& ir = c.executable().llvm_ir();
    CHECK((ir.find("@conv2d(") != std::string::npos) == (k.x[0] > 0));  // no image: nothing to compute
    CHECK(ir.find("@conv2d_grad_weight(") != std::string::npos);
    CHECK(ir.find("bj_rt_call_node") == std::string::npos);  // no runtime kernel
    GraphRun r = c.run({x, w, gy});
    REQUIRE(r.guards_hold);
    check_close(r.outputs[0], naive_conv(x, w, k.c), 1e-5, 1e-6);
    check_close(r.outputs[1], naive_conv_grads(x, w, gy, k.c).second, 1e-5, 1e-5);
  }
  {  // Rows wider than 256 outputs would be long straight-line code: the runtime's kernel instead.
    Tensor wide = uniform(-1, 1, {1, 1, 3, 300}), w = uniform(-1, 1, {2, 1, 2, 2});
    Trace t = trace("wide", [](const V& v) { return V{conv2d(v[0], v[1], {1, 1}, {0, 0})}; }, {wide, w});
    codegen::CompileOptions co;
    co.use_cache = false;
    co.keep_ir = true;
    CompiledTrace c = compile(t, co);
    CHECK(c.executable().llvm_ir().find("@conv2d(") == std::string::npos);
    check_close(c.run({wide, w}).outputs.at(0), naive_conv(wide, w, Conv{}), 1e-5, 1e-6);
  }
  // A padded cell adds nothing, not 0 * w: an infinite weight leaves outputs whose window meets it
  // only in the padding finite (as eager mode's), and is ±inf where it meets the image.
  Tensor x = uniform(0.5, 1, {1, 1, 6, 6});
  std::vector<float> wv(9, 0.25f);
  wv[0] = std::numeric_limits<float>::infinity();  // the top-left tap: it reads row oh - 1, column ow - 1
  Tensor w = tensor(wv, {1, 1, 3, 3});
  Trace t = trace("padded", [](const V& v) { return V{conv2d(v[0], v[1], {1, 1}, {1, 1})}; }, {x, w});
  codegen::CompileOptions co;
  co.use_cache = false;
  const std::vector<float> got = compile(t, co).run({x, w}).outputs.at(0).to_vector();
  const std::vector<float> want = conv2d(x, w, {1, 1}, {1, 1}).to_vector();
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    const bool edge = i < 6 || i % 6 == 0;  // first row or first column: the inf tap is in the padding
    CHECK(std::isfinite(got[i]) == edge);
    CHECK(std::isfinite(want[i]) == edge);
    if (edge) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-6));
  }
}

TEST_CASE("average pooling and its gradient compile to loops that give eager's results bit for bit") {
  // Windows with and without padding, strides 1 to 3, rows of several vectors with a masked
  // tail; the gradient of windows that do not overlap is a loop, overlapping ones keep the
  // runtime's kernel. Values include -0 (0 + (-0) / 4 is +0), infinities and NaN.
  manual_seed(12);
  struct Pool {
    Shape x;
    int64_t k0, k1, s0, s1, p0, p1;
  };
  const Pool pools[] = {
      {{7, 6, 28, 28}, 2, 2, 2, 2, 0, 0},   // LeNet's first pool
      {{2, 3, 9, 37}, 3, 3, 3, 3, 1, 1},    // padded, three vectors a row
      {{1, 2, 8, 41}, 3, 2, 2, 1, 1, 0},    // overlapping along the row: the gradient stays a kernel call
      {{3, 1, 5, 70}, 2, 3, 2, 3, 0, 1},
      {{0, 2, 4, 4}, 2, 2, 2, 2, 0, 0},     // no image
  };
  for (const Pool& p : pools) {
    CAPTURE(p.x.str());
    std::vector<float> xv = uniform(-1, 1, p.x).to_vector();
    for (size_t i = 0; i < xv.size(); i += 97) xv[i] = -0.0f;
    if (xv.size() > 300) {
      xv[5] = std::numeric_limits<float>::infinity();
      xv[200] = std::numeric_limits<float>::quiet_NaN();
    }
    const Tensor x = tensor(xv, p.x);
    const Shape k{p.k0, p.k1}, s{p.s0, p.s1}, pad{p.p0, p.p1};
    const Tensor y = avg_pool2d(x, k, s, pad);
    std::vector<float> gv = uniform(-1, 1, y.shape()).to_vector();
    for (size_t i = 0; i < gv.size(); i += 13) gv[i] = -0.0f;
    const Tensor gy = tensor(gv, y.shape());
    ir::OpAttrs a;
    a.kernel = k;
    a.stride = s;
    a.padding = pad;
    const Shape xs = p.x;
    Trace t = trace("pool", [a, xs](const V& v) {
      return V{avg_pool2d(v[0], a.kernel, a.stride, a.padding), avg_pool2d_grad(v[1], a, xs)};
    }, {x, gy});
    codegen::CompileOptions co;
    co.use_cache = false;
    co.keep_ir = true;
    CompiledTrace c = compile(t, co);
    const std::string& ir = c.executable().llvm_ir();
    const bool any = p.x[0] > 0, apart = p.s0 >= p.k0 && p.s1 >= p.k1;
    CHECK((ir.find("@avg_pool2d(") != std::string::npos) == any);
    CHECK((ir.find("@avg_pool2d_grad(") != std::string::npos) == (any && apart));
    GraphRun r = c.run({x, gy});
    REQUIRE(r.guards_hold);
    const Tensor want[] = {y, avg_pool2d_grad(gy, a, xs)};
    for (size_t o = 0; o < 2; ++o) {
      const std::vector<float> got_v = r.outputs[o].to_vector(), want_v = want[o].to_vector();
      REQUIRE(got_v.size() == want_v.size());
      size_t differ = 0;
      for (size_t i = 0; i < got_v.size(); ++i)
        differ += std::bit_cast<uint32_t>(got_v[i]) != std::bit_cast<uint32_t>(want_v[i]) &&
                  !(std::isnan(got_v[i]) && std::isnan(want_v[i]));
      CAPTURE(o);
      CHECK(differ == 0);
    }
  }
}
