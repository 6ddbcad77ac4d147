// Row regions (passes/fuse_row.cpp, codegen/lower_row.cpp) compiled against
// the interpreter: softmax, log-softmax, LayerNorm, masked softmax and means
// over two axes at row lengths around the vector width, with NaN, infinities,
// fully masked rows, subnormals and signed zeros in chosen rows, empty rows
// and empty batches, rows longer than a canonical sum block, per-row values
// read outside the region, and sizes that split rows among threads. In a
// guard's input cone a LayerNorm is eager's bit for bit.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "tests/helpers.h"

using namespace bj;
using test::check_near;
using test::Tol;
using V = std::vector<Tensor>;

namespace {

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta) {
  Tensor centred = x - x.mean({-1}, true);
  return centred / sqrt((centred * centred).mean({-1}, true) + 1e-5f) * gamma + beta;
}

int row_regions(const codegen::Executable& e) {
  int n = 0;
  for (const auto& node : e.graph().nodes()) n += node->kind == ir::NodeKind::kRegion && node->region == ir::RegionKind::kRow;
  return n;
}

/// x of `shape` in [-3, 3], with special values in its first rows (when it has them).
Tensor edgy(const Shape& shape) {
  Tensor x = uniform(-3, 3, shape);
  const int64_t width = shape.size() ? shape[shape.size() - 1] : 1, rows = width ? x.numel() / width : 0;
  if (width == 0) return x;
  std::vector<float> v = x.to_vector();
  auto row = [&](int64_t r) { return v.begin() + r * width; };
  const float inf = std::numeric_limits<float>::infinity();
  if (rows > 1) row(1)[width / 2] = std::nanf("");
  if (rows > 2) row(2)[0] = inf;
  if (rows > 3) std::fill(row(3), row(3) + width, -inf);
  if (rows > 4)
    for (int64_t i = 0; i < width; ++i) row(4)[i] = i % 3 == 0 ? std::numeric_limits<float>::denorm_min() : i % 3 == 1 ? -0.0f : 0.0f;
  if (rows > 5) std::fill(row(5), row(5) + width, 1.5f);  // constant: LayerNorm's variance is 0
  return tensor(v, shape);
}

struct Case {
  const char* name;
  std::function<Tensor(const V&)> f;
  Tol tol;
};

}  // namespace

TEST_CASE("row regions compiled equal the interpreter: softmax, log-softmax, LayerNorm, masks, special rows, empty and long rows") {
  NoGradGuard no_grad;
  manual_seed(5);
  const Tol approx{2e-6, 1e-6};  // exp and log approximations, reassociated sums of positive terms
  const Tol centred{1e-5, 1e-5};  // x - mean with the mean summed in another order
  const std::vector<Case> cases = {
      {"softmax", [](const V& v) { return softmax(v[0]); }, approx},
      {"log-softmax", [](const V& v) { return log_softmax(v[0]); }, approx},
      {"layer norm", [](const V& v) { return layer_norm(v[0], v[1], v[2]); }, centred},
      {"scaled, causally masked softmax", [](const V& v) {
         const double t = static_cast<double>(v[0].shape()[v[0].dim() - 1]);
         Tensor keep = ge(arange(t).reshape({-1, 1}), arange(t).reshape({1, -1}));
         return softmax(where(keep, v[0] * 0.125f, full({}, -INFINITY)));
       }, approx},
      {"mean over the last two axes", [](const V& v) {
         Shape s = v[0].shape();
         const int64_t last = s[s.size() - 1];
         s.erase(s.size() - 1);
         s.push_back(2);
         s.push_back(last / 2);
         Tensor r = reshape(v[0], s);
         return reshape(r - r.mean({-2, -1}, true), v[0].shape());
       }, centred},
  };
  for (const auto& c : cases) {
    CAPTURE(std::string(c.name));
    for (Shape shape : {Shape{6, 1}, Shape{6, 15}, Shape{6, 16}, Shape{7, 17}, Shape{2, 6, 64}, Shape{0, 8},
                        Shape{6, 0}, Shape{2, 4097}, Shape{520, 256}}) {
      if (std::string(c.name) == "scaled, causally masked softmax" && shape[shape.size() - 1] != shape[shape.size() - 2])
        shape = Shape{shape[0], shape[shape.size() - 1], shape[shape.size() - 1]};
      if (std::string(c.name) == "mean over the last two axes" && shape[shape.size() - 1] % 2) continue;
      if (std::string(c.name).find("softmax") != std::string::npos && shape.numel() == 0 && shape[0] > 0)
        continue;  // a max over an empty row has no identity: eager raises (tests/test_errors.cpp)
      CAPTURE(shape.str());
      const int64_t width = shape[shape.size() - 1];
      V inputs{edgy(shape), uniform(0.5, 1.5, {width}), uniform(-1, 1, {width})};
      Trace t = trace(c.name, [&](const V& v) { return V{c.f(v)}; }, inputs);
      CompiledTrace compiled = compile(t);
      if (shape.numel() > 0 && width > 1) CHECK(row_regions(compiled.executable()) >= 1);
      GraphRun got = compiled.run(inputs), want = run(t, inputs);
      REQUIRE(got.guards_hold);
      check_near(got.outputs[0], want.outputs[0], c.tol);
    }
  }
}

TEST_CASE("a row region's per-row values read after it (log-sum-exp, a row's mean) are stored for their readers") {
  NoGradGuard no_grad;
  manual_seed(6);
  Tensor x = edgy({9, 33});
  auto f = [](const V& v) {
    Tensor lse = logsumexp(v[0], -1, true);
    Tensor y = v[0] - lse;                      // log-softmax: the row region
    return V{y + lse.sum({0}, true), lse};      // lse read by a reduction over rows, and returned
  };
  Trace t = trace("lse", f, {x});
  CompiledTrace c = compile(t);
  CHECK(row_regions(c.executable()) >= 1);
  GraphRun got = c.run({x}), want = run(t, {x});
  check_near(got.outputs[0], want.outputs[0], Tol{2e-6, 1e-5});
  check_near(got.outputs[1], want.outputs[1], Tol{2e-6, 1e-6});
}

TEST_CASE("a LayerNorm feeding a guard is eager's bit for bit (canonical row sums), also at its special rows") {
  NoGradGuard no_grad;
  manual_seed(7);
  for (int64_t width : {1, 15, 16, 17, 100, 4096, 4097}) {
    CAPTURE(width);
    Tensor gamma = uniform(0.5, 1.5, {width}), beta = uniform(-1, 1, {width});
    auto fn = [&](const V& v) {
      Tensor y = layer_norm(v[0], gamma, beta);
      if (y.sum() > 0) return V{y};
      return V{-y};
    };
    Tensor x = edgy({7, width});
    Trace t = trace("guarded layer norm", fn, {x});
    CompiledTrace c = compile(t);
    for (int i = 0; i < 3; ++i) {
      Tensor xi = i == 0 ? x : edgy({7, width});
      GraphRun r = c.run({xi});
      if (!r.guards_hold) continue;
      const std::vector<float> got = r.outputs.at(0).to_vector(), want = fn({xi})[0].to_vector();
      REQUIRE(got.size() == want.size());
      for (size_t k = 0; k < got.size(); ++k)
        if (!(std::isnan(got[k]) && std::isnan(want[k])))
          REQUIRE_MESSAGE(std::bit_cast<uint32_t>(got[k]) == std::bit_cast<uint32_t>(want[k]),
                          "element " << k << ": " << got[k] << " against " << want[k]);
    }
  }
}
