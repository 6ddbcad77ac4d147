// Tensor handles, creation, views and host reads.
#include "tests/helpers.h"

using namespace bj;
using bj::test::check_close;

TEST_CASE("creation: zeros, ones, full, arange") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.dtype() == kF32);
  check_close(z, {0, 0, 0, 0, 0, 0});
  check_close(ones({3}), {1, 1, 1});
  Tensor f = full({2}, 2.5);
  check_close(f, {2.5, 2.5});
  check_close(arange(4), {0, 1, 2, 3});
  check_close(arange(1, 2, 0.25), {1, 1.25, 1.5, 1.75});
  CHECK(arange(5, 1).numel() == 0);
  Tensor i = arange(3, kI64);
  CHECK(i.dtype() == kI64);
  CHECK(i.data<int64_t>()[2] == 2);
  Tensor b = full({2}, 1, kBool);
  CHECK(b.dtype() == kBool);
  CHECK(b.data<uint8_t>()[1] == 1);
  CHECK(zeros({}).numel() == 1);
  CHECK(zeros({0, 4}).numel() == 0);
}

TEST_CASE("creation: nested lists and vectors") {
  Tensor t = tensor({{1, 2, 3}, {4, 5, 6}});
  CHECK(t.shape() == Shape{2, 3});
  check_close(t, {1, 2, 3, 4, 5, 6});
  Tensor s = tensor(3.5);
  CHECK(s.dim() == 0);
  CHECK(s.item() == 3.5);
  Tensor deep = tensor({{{1}, {2}}, {{3}, {4}}});
  CHECK(deep.shape() == Shape{2, 2, 1});
  CHECK(tensor({1, 2}, kI64).dtype() == kI64);
  CHECK_THROWS_AS(tensor({{1, 2}, {3}}), ValueError);
  CHECK_THROWS_AS(tensor({{1, 2}, 3}), ValueError);
  check_close(tensor(std::vector<float>{1, 2, 3, 4}, {2, 2}), {1, 2, 3, 4});
  Tensor iv = tensor(std::vector<int64_t>{7, 8}, {2});
  CHECK(iv.dtype() == kI64);
  CHECK(iv.data<int64_t>()[1] == 8);
  CHECK_THROWS_AS(tensor(std::vector<float>{1, 2, 3}, {2, 2}), ShapeError);
  CHECK_THROWS_AS(zeros({2, -1}), ShapeError);
}

TEST_CASE("handles share storage and clone copies") {
  Tensor a = zeros({3});
  Tensor b = a;
  b += 1;
  check_close(a, {1, 1, 1});
  Tensor c = a.clone();
  c += 1;
  check_close(a, {1, 1, 1});
  check_close(c, {2, 2, 2});
  CHECK(a.shares_storage(b));
  CHECK_FALSE(a.shares_storage(c));
}

TEST_CASE("reshape and flatten are views") {
  Tensor a = arange(6);
  Tensor r = a.reshape({2, -1});
  CHECK(r.shape() == Shape{2, 3});
  CHECK(r.shares_storage(a));
  r *= 10;
  check_close(a, {0, 10, 20, 30, 40, 50});
  Tensor x = zeros({2, 3, 4});
  CHECK(x.flatten().shape() == Shape{24});
  CHECK(x.flatten(1).shape() == Shape{2, 12});
  CHECK(x.flatten(0, 1).shape() == Shape{6, 4});
  CHECK(x.flatten(1).shares_storage(x));
  CHECK_THROWS_AS(a.reshape({4, 2}), ShapeError);
  CHECK_THROWS_AS(a.reshape({-1, -1}), ShapeError);
}

TEST_CASE("indexing and slicing") {
  Tensor t = tensor({{1, 2, 3}, {4, 5, 6}});
  check_close(t[1], {4, 5, 6});
  check_close(t[-1], {4, 5, 6});
  CHECK(t[0].shape() == Shape{3});
  check_close(t.slice(1, 0, 3, 2), {1, 3, 4, 6});
  check_close(t.slice(1, -2, 100), {2, 3, 5, 6});
  CHECK(t.slice(0, 1, 1).shape() == Shape{0, 3});
  CHECK_THROWS_AS(t[2], IndexError);
  CHECK_THROWS_AS(t.slice(2, 0, 1), IndexError);
  CHECK_THROWS_AS(t.slice(0, 0, 1, 0), ValueError);
}

TEST_CASE("host reads: item, bool, data") {
  Tensor one = tensor({{2.5}});
  CHECK(one.item() == 2.5);
  CHECK(one.item() > 2);
  CHECK(3 > one.item());
  float f = one.item();
  CHECK(f == 2.5f);
  CHECK(static_cast<bool>(tensor(1.0) > 0));
  CHECK_FALSE(static_cast<bool>(tensor(1.0) > 2));
  CHECK(tensor(3, kI64).item().to<int>() == 3);
  Tensor x = tensor({1, 2});
  CHECK(x.data<float>()[1] == 2);
  x.mutable_data<float>()[1] = 7;
  check_close(x, {1, 7});
  CHECK_THROWS_AS(x.data<int64_t>(), DTypeError);
  int halvings = 0;
  Tensor y = tensor({30, 40});  // norm 50
  while (y.norm() > 1) {
    y /= 2;
    ++halvings;
  }
  CHECK(halvings == 6);  // 50 / 64 < 1 < 50 / 32
  CHECK_THROWS_AS(Tensor().item(), ValueError);
}

TEST_CASE("dtype conversion") {
  Tensor x = tensor({-1.5, 0, 2.7});
  Tensor i = x.to(kI64);
  CHECK(i.dtype() == kI64);
  CHECK(i.data<int64_t>()[0] == -1);
  CHECK(i.data<int64_t>()[2] == 2);
  Tensor b = x.to(kBool);
  CHECK(b.data<uint8_t>()[0] == 1);
  CHECK(b.data<uint8_t>()[1] == 0);
  check_close(b.to(kF32), {1, 0, 1});
  CHECK(x.to(kF32).shares_storage(x));
  CHECK_THROWS_AS(x.to(kBF16), DTypeError);
  Tensor big = tensor({1e30, -1e30, NAN}).to(kI64);  // saturates, NaN becomes 0
  CHECK(big.data<int64_t>()[0] == INT64_MAX);
  CHECK(big.data<int64_t>()[1] == INT64_MIN);
  CHECK(big.data<int64_t>()[2] == 0);
}

TEST_CASE("allclose, max_abs_diff and set_num_threads: NumPy's rule, NaN and infinities, typed errors") {
  const float nan = std::nanf(""), inf = INFINITY;
  Tensor a = tensor(std::vector<float>{1, 2, inf, nan}, {4});
  CHECK_FALSE(allclose(a, a));  // NaN is not close to NaN by default
  CHECK(allclose(a, a, 1e-5, 1e-8, /*equal_nan=*/true));
  CHECK(allclose(tensor(std::vector<float>{1, 100}, {2}), tensor(std::vector<float>{1.000009f, 100.0009f}, {2})));
  CHECK_FALSE(allclose(tensor(std::vector<float>{1}, {1}), tensor(std::vector<float>{1.0001f}, {1})));
  CHECK_FALSE(allclose(tensor(std::vector<float>{inf}, {1}), tensor(std::vector<float>{-inf}, {1})));
  CHECK(max_abs_diff(tensor(std::vector<float>{1, -3}, {2}), tensor(std::vector<float>{1.5f, -1}, {2})) == 2);
  CHECK(max_abs_diff(a, a) == 0);
  CHECK(std::isnan(max_abs_diff(a, tensor(std::vector<float>{1, 2, inf, 0}, {4}))));
  CHECK(max_abs_diff(tensor(std::vector<int64_t>{int64_t{1} << 40}, {1}), tensor(std::vector<int64_t>{(int64_t{1} << 40) + 1}, {1})) == 1);
  CHECK(max_abs_diff(zeros({0, 3}), zeros({0, 3})) == 0);
  test::check_error<ShapeError>([&] { allclose(zeros({2}), zeros({3})); }, {"allclose", "f32[2]", "f32[3]"});
  test::check_error<ValueError>([&] { allclose(zeros({2}), zeros({2}), -1); }, {"non-negative"});
  const int before = num_threads();
  set_num_threads(1);
  CHECK(num_threads() == 1);
  set_num_threads(before);
  test::check_error<ValueError>([&] { set_num_threads(0); }, {"set_num_threads", "got 0"});
}
