// Printing with fmt and iostreams.
#include <sstream>

#include "tests/helpers.h"

using namespace bj;

TEST_CASE("small tensors print their values, shape and dtype") {
  CHECK(fmt::format("{}", tensor({{1.5, -2}, {3, 4.25}})) ==
        "tensor([[ 1.5000, -2.0000],\n"
        "        [ 3.0000,  4.2500]], shape=[2, 2], dtype=f32)");
  CHECK(fmt::format("{}", tensor({1, 2, 3})) == "tensor([1., 2., 3.], shape=[3], dtype=f32)");
  CHECK(fmt::format("{}", tensor(0.5)) == "tensor(0.5000, shape=[], dtype=f32)");
  CHECK(fmt::format("{}", tensor({1, 20}, kI64)) == "tensor([ 1, 20], shape=[2], dtype=i64)");
  // Exactly, not through a double (2^63 - 1 became -2^63, 2^53 + 1 became 2^53; found by fuzz_ir).
  CHECK(fmt::format("{}", tensor(std::vector<int64_t>{INT64_MAX, INT64_MIN, (int64_t{1} << 53) + 1}, {3})) ==
        "tensor([ 9223372036854775807, -9223372036854775808,     9007199254740993], shape=[3], dtype=i64)");
  CHECK(fmt::format("{}", tensor({1, 2}) > 1.5) == "tensor([false,  true], shape=[2], dtype=bool)");
  CHECK(fmt::format("{}", zeros({0})) == "tensor([], shape=[0], dtype=f32)");
  CHECK(fmt::format("{}", tensor({1e-6, 1})) == "tensor([1.0000e-06, 1.0000e+00], shape=[2], dtype=f32)");
  CHECK(fmt::format("{}", Tensor()) == "tensor(undefined)");
  std::ostringstream os;
  os << tensor({1, 2});
  CHECK(os.str() == "tensor([1., 2.], shape=[2], dtype=f32)");
}

TEST_CASE("autograd state shows in the print, as in torch") {
  Tensor w = tensor({1, 2}).set_requires_grad();
  CHECK(fmt::format("{}", w) == "tensor([1., 2.], shape=[2], dtype=f32, requires_grad=true)");
  CHECK(fmt::format("{}", w * 2) == "tensor([2., 4.], shape=[2], dtype=f32, grad_fn=<mul>)");
}

TEST_CASE("large tensors are summarized with ellipses") {
  std::string s = fmt::format("{}", arange(2000).reshape({40, 50}));
  CHECK(s.find("...") != std::string::npos);
  CHECK(s.find("1999.") != std::string::npos);
  CHECK(s.find("1000.") == std::string::npos);
  CHECK(s.find("shape=[40, 50]") != std::string::npos);
  CHECK(std::count(s.begin(), s.end(), '\n') < 20);
}

TEST_CASE("long rows wrap at 80 columns") {
  std::string s = fmt::format("{}", arange(30) / 7.0);
  for (size_t start = 0, nl; start < s.size(); start = nl + 1) {
    nl = s.find('\n', start);
    if (nl == std::string::npos) nl = s.size();
    size_t len = nl - start;
    bool last = nl == s.size();
    if (!last) CHECK(len <= 80);
    CHECK(s[nl - 1] != ' ');
  }
}
