// Every eager op against hand-computed values or a naive reference loop,
// with broadcasting, size-1 and size-0 dims, scalars, and sizes that take
// the kernels' parallel and oneDNN paths.
#include <algorithm>
#include <cmath>

#include "runtime/kernels.h"
#include "tests/helpers.h"

using namespace bj;
using bj::test::check_close;
using bj::test::reference_binary;
using bj::test::values;

TEST_CASE("unary elementwise ops") {
  Tensor x = tensor({-2, -0.5, 0, 0.5, 3});
  check_close(-x, {2, 0.5, 0, -0.5, -3});
  check_close(abs(x), {2, 0.5, 0, 0.5, 3});
  check_close(relu(x), {0, 0, 0, 0.5, 3});
  std::vector<double> e, th, sg;
  for (double v : values(x)) {
    e.push_back(std::exp(v));
    th.push_back(std::tanh(v));
    sg.push_back(1 / (1 + std::exp(-v)));
  }
  check_close(exp(x), e);
  check_close(tanh(x), th);
  check_close(sigmoid(x), sg);
  Tensor p = tensor({0.25, 1, 4});
  check_close(sqrt(p), {0.5, 1, 2});
  check_close(log(p), {std::log(0.25), 0, std::log(4)});
  check_close(pow(p, 2), {0.0625, 1, 16});
  check_close(pow(p, 0.5), {0.5, 1, 2});
  check_close(x.pow(3), {-8, -0.125, 0, 0.125, 27});
  check_close(sigmoid(tensor({-100, 100})), {0, 1});
  CHECK(std::isnan(values(log(tensor(-1.0)))[0]));
  Tensor i = tensor({-3, 4}, kI64);
  CHECK(abs(i).dtype() == kI64);
  check_close(abs(i), {3, 4});
  check_close(relu(i), {0, 4});
  CHECK_THROWS_AS(exp(i), DTypeError);
  CHECK_THROWS_AS(-full({2}, 1, kBool), DTypeError);
}

TEST_CASE("binary ops with broadcasting against a reference loop") {
  manual_seed(1);
  struct Case {
    Shape a, b, out;
  };
  const Case cases[] = {
      {{3}, {3}, {3}},
      {{2, 3}, {3}, {2, 3}},
      {{2, 1}, {1, 3}, {2, 3}},
      {{4, 1, 5}, {3, 1}, {4, 3, 5}},
      {{}, {2, 2}, {2, 2}},
      {{2, 2}, {}, {2, 2}},
      {{1}, {5}, {5}},
      {{2, 0}, {1}, {2, 0}},
      {{3, 1, 17}, {1, 15, 1}, {3, 15, 17}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.a.str());
    CAPTURE(c.b.str());
    Tensor a = uniform(-2, 2, c.a), b = uniform(0.5, 2, c.b);
    check_close(a + b, reference_binary(a, b, c.out, [](double x, double y) { return float(x) + float(y); }));
    check_close(a - b, reference_binary(a, b, c.out, [](double x, double y) { return float(x) - float(y); }));
    check_close(a * b, reference_binary(a, b, c.out, [](double x, double y) { return float(x) * float(y); }));
    check_close(a / b, reference_binary(a, b, c.out, [](double x, double y) { return float(x) / float(y); }));
    check_close(maximum(a, b), reference_binary(a, b, c.out, [](double x, double y) { return std::max(x, y); }));
    check_close(minimum(a, b), reference_binary(a, b, c.out, [](double x, double y) { return std::min(x, y); }));
    check_close(a > b, reference_binary(a, b, c.out, [](double x, double y) { return double(x > y); }));
    check_close(a <= b, reference_binary(a, b, c.out, [](double x, double y) { return double(x <= y); }));
    CHECK((a + b).shape() == c.out);
  }
}

TEST_CASE("comparisons give bool tensors") {
  Tensor a = tensor({1, 2, 3}), b = tensor({3, 2, 1});
  Tensor g = a > b;
  CHECK(g.dtype() == kBool);
  check_close(g, {0, 0, 1});
  check_close(a < b, {1, 0, 0});
  check_close(a >= b, {0, 1, 1});
  check_close(a <= b, {1, 1, 0});
  check_close(a == b, {0, 1, 0});
  check_close(a > 1.5, {0, 1, 1});
  check_close(2 > a, {1, 0, 0});
  check_close(eq(a > 1, b > 1), {0, 1, 0});
}

TEST_CASE("scalars on either side, and in-place forms") {
  Tensor x = tensor({1, 2, 4});
  check_close(x + 1, {2, 3, 5});
  check_close(1 - x, {0, -1, -3});
  check_close(x * 2, {2, 4, 8});
  check_close(2 / x, {2, 1, 0.5});
  Tensor y = x.clone();
  y += 1;
  y -= 0.5;
  y *= 2;
  y /= 4;
  check_close(y, {0.75, 1.25, 2.25});
  Tensor m = ones({2, 3});
  m += tensor({1, 2, 3});  // broadcasting into the left side is fine
  check_close(m, {2, 3, 4, 2, 3, 4});
  Tensor small = ones({3});
  CHECK_THROWS_AS(small += ones({2, 3}), ShapeError);  // would change the shape
  Tensor i = tensor({1, 2}, kI64);
  CHECK((i * 3).dtype() == kI64);
  check_close(i * 3, {3, 6});
  CHECK_THROWS_AS(i * 0.5, DTypeError);
  CHECK_THROWS_AS(i / 2, DTypeError);
}

TEST_CASE("where") {
  Tensor c = tensor({1, 0, 1}) > 0.5;
  check_close(where(c, tensor({1, 2, 3}), tensor({-1, -2, -3})), {1, -2, 3});
  check_close(where(c, tensor({{10}, {20}}), zeros({})), {10, 0, 10, 20, 0, 20});
  CHECK_THROWS_AS(where(tensor({1, 0}), tensor({1, 2}), tensor({3, 4})), DTypeError);
  Tensor ic = where(c, tensor({5, 6, 7}, kI64), zeros({3}, kI64));
  CHECK(ic.dtype() == kI64);
  check_close(ic, {5, 0, 7});
}

TEST_CASE("reductions over all elements and over axes") {
  Tensor x = tensor({{1, 2, 3}, {4, 5, 6}});
  check_close(x.sum(), {21});
  CHECK(x.sum().dim() == 0);
  check_close(x.sum({0}), {5, 7, 9});
  check_close(x.sum({1}), {6, 15});
  check_close(x.sum({-1}), {6, 15});
  CHECK(x.sum({1}, true).shape() == Shape{2, 1});
  CHECK(x.sum({0, 1}, true).shape() == Shape{1, 1});
  check_close(x.mean(), {3.5});
  check_close(x.mean({0}), {2.5, 3.5, 4.5});
  check_close(x.max(), {6});
  check_close(x.max({0}), {4, 5, 6});
  check_close(x.min({1}), {1, 4});
  check_close(x.min(), {1});
  check_close(norm(tensor({3, 4})), {5});
  check_close(x.norm(), {std::sqrt(91.0)});
  check_close(sum(zeros({0, 3}), {0}), {0, 0, 0});
  CHECK_THROWS_AS(max(zeros({0, 3}), {0}), ValueError);
  CHECK_THROWS_AS(x.sum({2}), IndexError);
  CHECK_THROWS_AS(x.sum({0, 0}), IndexError);
  check_close(tensor({1, 2, 3}, kI64).sum(), {6});

  // Non-adjacent axes and every subset of a rank-3 tensor against a reference loop.
  manual_seed(2);
  Tensor t = uniform(-1, 1, {3, 4, 5});
  auto v = values(t);
  for (int mask = 1; mask < 8; ++mask) {
    Shape axes, out;
    for (int d = 0; d < 3; ++d)
      if (mask & (1 << d)) axes.push_back(d);
    std::vector<double> ref_sum, ref_max, ref_prod;
    std::vector<int64_t> kept;
    for (int d = 0; d < 3; ++d)
      if (!(mask & (1 << d))) out.push_back(t.shape()[d]);
    ref_sum.assign(out.numel(), 0);
    ref_max.assign(out.numel(), -1e30);
    ref_prod.assign(out.numel(), 1);
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 4; ++j)
        for (int64_t k = 0; k < 5; ++k) {
          int64_t idx[3] = {i, j, k}, o = 0;
          for (int d = 0; d < 3; ++d)
            if (!(mask & (1 << d))) o = o * t.shape()[d] + idx[d];
          double val = v[(i * 4 + j) * 5 + k];
          ref_sum[o] += val;
          ref_max[o] = std::max(ref_max[o], val);
          ref_prod[o] *= val;
        }
    CAPTURE(axes.str());
    check_close(t.sum(axes), ref_sum, 1e-5, 1e-5);
    check_close(t.max(axes), ref_max);
    check_close(prod(t, axes), ref_prod, 1e-5, 1e-12);
  }
}

TEST_CASE("i64 arithmetic wraps around (two's complement, as NumPy) instead of overflowing") {
  const int64_t kMax = INT64_MAX, kMin = INT64_MIN;
  auto i64 = [](std::vector<int64_t> v) { const int64_t n = static_cast<int64_t>(v.size()); return tensor(v, {n}); };
  auto first = [](const Tensor& t) { return t.data<int64_t>()[0]; };
  CHECK(first(i64({kMax}) + i64({1})) == kMin);
  CHECK(first(i64({kMin}) - i64({1})) == kMax);
  CHECK(first(i64({kMax}) * i64({2})) == -2);
  CHECK(first(-i64({kMin})) == kMin);
  CHECK(first(abs(i64({kMin}))) == kMin);
  CHECK(first(i64({kMax, 1}).sum()) == kMin);
  CHECK(first(i64({-3, 4}).sum()) == 1);
}

TEST_CASE("prod: empty axes give 1, NaN and infinities propagate, i64 wraps instead of overflowing") {
  Tensor x = tensor({{1, 2, 3}, {4, 5, 6}});
  check_close(prod(x), {720});
  check_close(prod(x, {0}), {4, 10, 18});
  check_close(prod(x, {1}, true), {6, 120});
  CHECK(prod(x, {1}, true).shape() == Shape{2, 1});
  check_close(prod(zeros({0, 3}), {0}), {1, 1, 1});  // the empty product
  check_close(prod(zeros({2, 0})), {1});
  CHECK(std::isnan(prod(tensor({2.0f, NAN, 0.0f})).item()));
  CHECK(prod(tensor({INFINITY, -2.0f})).item() == -INFINITY);
  CHECK(std::isnan(prod(tensor({INFINITY, 0.0f})).item()));  // inf * 0
  CHECK(std::signbit(prod(tensor({-0.0f, 3.0f})).item()));
  // 2^62 * 4 wraps to 0 in two's complement (as NumPy's int64 does); never undefined behaviour.
  Tensor big = tensor(std::vector<int64_t>{int64_t{1} << 62, 4, 3}, {3});
  CHECK(prod(big).dtype() == kI64);
  CHECK(prod(big).data<int64_t>()[0] == 0);
  CHECK(prod(tensor(std::vector<int64_t>{-3, 5, 7}, {3})).data<int64_t>()[0] == -105);
  CHECK_THROWS_AS(prod(x, {2}), IndexError);
}

TEST_CASE("large reductions and elementwise ops take the parallel path correctly") {
  const int64_t n = 1000003;  // odd, above the parallel grain, leaves vector tails
  Tensor x = ones({n});
  check_close(x.sum(), {double(n)});
  check_close((x * 2 + 1).sum(), {3.0 * n}, 1e-6);
  Tensor r = arange(n) / double(n);
  check_close(r.max(), {double(n - 1) / n});
  Tensor m = ones({1000, 1001});
  check_close(m.sum({1}).sum(), {1001000.0});
  check_close(m.sum({0}).sum(), {1001000.0});
  Tensor b = ones({1000, 1001}) + arange(1001);  // broadcast over rows, parallel
  CHECK(b.data<float>()[1001 * 999 + 1000] == 1001);
}

TEST_CASE("matmul: small loops, oneDNN, transposes and batches against a reference") {
  manual_seed(3);
  struct Case {
    int64_t m, k, n;
  };
  // {256, 512, 20} and {300, 70, 17} read transposed (a weight gradient's shape) run as the
  // transposed product, oneDNN then making many columns instead of few.
  for (Case c : {Case{1, 1, 1}, Case{2, 20, 256}, Case{3, 5, 7}, Case{17, 15, 1}, Case{64, 80, 96}, Case{130, 70, 33},
                 Case{256, 512, 20}, Case{300, 70, 17}}) {
    CAPTURE(c.m);
    CAPTURE(c.k);
    CAPTURE(c.n);
    Tensor a = uniform(-1, 1, {c.m, c.k}), b = uniform(-1, 1, {c.k, c.n});
    auto ref = bj::test::reference_matmul(values(a), values(b), c.m, c.k, c.n);
    check_close(matmul(a, b), ref, 1e-4, 1e-4);
    check_close(matmul(a.transpose(), b, true, false), ref, 1e-4, 1e-4);
    check_close(matmul(a, b.transpose(), false, true), ref, 1e-4, 1e-4);
    check_close(matmul(a.transpose(), b.transpose(), true, true), ref, 1e-4, 1e-4);
  }
  // Batched, with the second operand broadcast over the batch.
  Tensor a = uniform(-1, 1, {3, 4, 5}), w = uniform(-1, 1, {5, 6});
  Tensor y = matmul(a, w);
  CHECK(y.shape() == Shape{3, 4, 6});
  for (int64_t i = 0; i < 3; ++i) check_close(y[i], matmul(a[i], w), 1e-5, 1e-6);
  Tensor bb = uniform(-1, 1, {2, 1, 4, 5}), cc = uniform(-1, 1, {3, 5, 2});
  Tensor z = matmul(bb, cc);
  CHECK(z.shape() == Shape{2, 3, 4, 2});
  check_close(z[1][2], matmul(bb[1][0], cc[2]), 1e-5, 1e-6);
  // A batch of oneDNN-sized products that broadcasts nothing is one batched primitive: each
  // product against the reference, in every transpose (attention's per-head products).
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      CAPTURE(ta);
      CAPTURE(tb);
      Tensor x = uniform(-1, 1, ta ? Shape{2, 3, 72, 64} : Shape{2, 3, 64, 72});
      Tensor v = uniform(-1, 1, tb ? Shape{2, 3, 80, 72} : Shape{2, 3, 72, 80});
      Tensor batched = matmul(x, v, ta, tb);
      CHECK(batched.shape() == Shape{2, 3, 64, 80});
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 3; ++j) {
          Tensor xa = ta ? x[i][j].transpose() : x[i][j], vb = tb ? v[i][j].transpose() : v[i][j];
          check_close(batched[i][j], bj::test::reference_matmul(values(xa), values(vb), 64, 72, 80),
                      1e-4, 1e-4);
        }
    }
  check_close(matmul(zeros({2, 0}), zeros({0, 3})), {0, 0, 0, 0, 0, 0});
  CHECK_THROWS_AS(matmul(ones({2, 3}), ones({4, 2})), ShapeError);
  CHECK_THROWS_AS(matmul(ones({3}), ones({3, 2})), ShapeError);
}

// (Not named for the ThreadSanitizer run: libgomp is not instrumented, so TSan cannot see the
// parallel region's join and would report its writes as races.)
TEST_CASE("batched small products: the batch split among OpenMP workers, 16 columns at a time, each element summed over k in order") {
  manual_seed(4);
  // Column counts below, at and past the 16-column blocks (the remainder path), every transpose.
  for (int64_t n : {5, 16, 37}) {
    CAPTURE(n);
    const int64_t batch = 40, m = 9, k = 13;
    const Tensor a = uniform(-1, 1, {batch, m, k}), b = uniform(-1, 1, {batch, k, n});
    // Eager's loop order, element by element: increasing k from -0, each product and sum rounded.
    const auto va = values(a), vb = values(b);
    std::vector<double> want;
    for (int64_t i = 0; i < batch; ++i)
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < n; ++c) {
          float acc = -0.0f;
          for (int64_t t = 0; t < k; ++t)
            acc += static_cast<float>(va[(i * m + r) * k + t]) * static_cast<float>(vb[(i * k + t) * n + c]);
          want.push_back(acc);
        }
    const int threads = rt::num_threads();
    for (int nt : {1, 2, 3}) {
      CAPTURE(nt);
      rt::set_num_threads(nt);
      check_close(matmul(a, b), want, 0, 0);
      check_close(matmul(a.transpose(), b, true, false), want, 0, 0);
    }
    rt::set_num_threads(threads);
  }
}

TEST_CASE("permute, transpose, expand") {
  Tensor x = arange(24).reshape({2, 3, 4});
  Tensor p = x.permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  auto vx = values(x), vp = values(p);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 4; ++k) CHECK(vp[(k * 2 + i) * 3 + j] == vx[(i * 3 + j) * 4 + k]);
  Tensor t = tensor({{1, 2, 3}, {4, 5, 6}}).transpose();
  check_close(t, {1, 4, 2, 5, 3, 6});
  check_close(x.transpose(0, 2).transpose(0, 2), values(x));
  check_close(expand(tensor({{1}, {2}}), {2, 3}), {1, 1, 1, 2, 2, 2});
  check_close(expand(tensor({1, 2}), {2, 2}), {1, 2, 1, 2});
  CHECK_THROWS_AS(x.permute({0, 0, 1}), IndexError);
  CHECK_THROWS_AS(x.permute({0, 1}), ShapeError);
  CHECK_THROWS_AS(expand(tensor({1, 2}), {3}), ShapeError);
}

TEST_CASE("concat and stack") {
  Tensor a = tensor({{1, 2}, {3, 4}}), b = tensor({{5, 6}});
  check_close(concat({a, b}, 0), {1, 2, 3, 4, 5, 6});
  Tensor c = tensor({{7}, {8}});
  check_close(concat({a, c}, 1), {1, 2, 7, 3, 4, 8});
  check_close(concat({a, c}, -1), {1, 2, 7, 3, 4, 8});
  Tensor s = stack({tensor({1, 2}), tensor({3, 4})});
  CHECK(s.shape() == Shape{2, 2});
  check_close(s, {1, 2, 3, 4});
  Tensor s1 = stack({tensor({1, 2}), tensor({3, 4})}, 1);
  check_close(s1, {1, 3, 2, 4});
  CHECK(concat({zeros({0, 2}), a}, 0).shape() == Shape{2, 2});
  CHECK_THROWS_AS(concat({a, ones({2})}, 0), ShapeError);
  CHECK_THROWS_AS(concat({a, b}, 1), ShapeError);
  CHECK_THROWS_AS(stack({tensor({1}), tensor({1, 2})}), ShapeError);
  CHECK_THROWS_AS(concat({}, 0), ValueError);
}
