// Autograd: every differentiable op of the table against finite
// differences (with broadcasting), the composites, grad mode, accumulation,
// in-place rules, and the typed errors.
#include <set>

#include "frontend/autograd.h"
#include "tests/gradcheck.h"

using namespace bj;
using bj::test::check_close;
using bj::test::gradcheck;
using bj::test::values;
using V = std::vector<Tensor>;

namespace {

/// Values in ±[0.3, 1.3]: away from the kinks of abs/relu and from zero for log/div.
Tensor away_from_zero(const Shape& s) {
  Tensor u = uniform(0.3, 1.3, s);
  Tensor sign = cast(rand(s) > 0.5, kF32) * 2 - 1;
  return u * sign;
}

struct OpCase {
  std::string name;
  test::Fn f;
  V inputs;
  test::GradTolerance tol{};
};

std::vector<OpCase> op_cases() {
  manual_seed(11);
  Tensor a23 = away_from_zero({2, 3}), b3 = away_from_zero({3}), pos = uniform(0.5, 2, {2, 3});
  Tensor distinct = tensor({{0.1, 0.9, -0.4}, {0.5, -0.8, 0.3}});
  return {
      {"neg", [](const V& x) { return -x[0]; }, {a23}},
      {"abs", [](const V& x) { return abs(x[0]); }, {a23}},
      {"relu", [](const V& x) { return relu(x[0]); }, {a23}},
      {"exp", [](const V& x) { return exp(x[0]); }, {a23}},
      {"log", [](const V& x) { return log(x[0]); }, {pos}},
      {"tanh", [](const V& x) { return tanh(x[0]); }, {a23}},
      {"sigmoid", [](const V& x) { return sigmoid(x[0]); }, {a23}},
      {"sqrt", [](const V& x) { return sqrt(x[0]); }, {pos}},
      {"pow 3", [](const V& x) { return pow(x[0], 3); }, {a23}},
      {"pow 0.5", [](const V& x) { return pow(x[0], 0.5); }, {pos}},
      {"cast (copy)", [](const V& x) { return x[0].clone(); }, {a23}},
      {"add broadcast", [](const V& x) { return x[0] + x[1]; }, {a23, b3}},
      {"sub broadcast", [](const V& x) { return x[0] - x[1]; }, {uniform(-1, 1, {2, 1}), uniform(-1, 1, {1, 3})}},
      {"mul broadcast", [](const V& x) { return x[0] * x[1]; }, {a23, b3}},
      {"mul scalar", [](const V& x) { return 3 * x[0] * 0.5; }, {a23}},
      {"div broadcast", [](const V& x) { return x[0] / x[1]; }, {a23, uniform(0.5, 2, {2, 1})}},
      {"maximum", [](const V& x) { return maximum(x[0], x[1]); }, {distinct, distinct.transpose(0, 1).reshape({2, 3}) * 0.7}},
      {"minimum", [](const V& x) { return minimum(x[0], x[1]); }, {distinct, b3}},
      {"where", [](const V& x) { return where(x[0] > 0, x[0], x[1] * 2); }, {a23, b3}},
      {"sum all", [](const V& x) { return x[0].sum(); }, {a23}},
      {"sum axes", [](const V& x) { return x[0].sum({0, 2}); }, {uniform(-1, 1, {2, 3, 4})}},
      {"sum keepdim", [](const V& x) { return x[0].sum({1}, true) * x[0]; }, {a23}},
      {"max axis", [](const V& x) { return x[0].max({1}); }, {distinct}},
      {"min all", [](const V& x) { return x[0].min(); }, {distinct}},
      {"prod axis", [](const V& x) { return prod(x[0], {1}); }, {a23}},
      {"prod with one zero", [](const V& x) { return prod(x[0], {0}); }, {tensor({{0.5, 0.0, -1.5}, {0.0, 0.7, 2.0}, {1.2, -0.9, 0.0}})}},
      {"prod with two zeros", [](const V& x) { return prod(x[0], {1}, true) * x[0]; }, {tensor({{0.0, 0.0, 0.8}, {0.6, -1.1, 0.9}})}},
      {"matmul", [](const V& x) { return matmul(x[0], x[1]); }, {uniform(-1, 1, {3, 4}), uniform(-1, 1, {4, 2})}},
      {"matmul ta", [](const V& x) { return matmul(x[0], x[1], true, false); }, {uniform(-1, 1, {4, 3}), uniform(-1, 1, {4, 2})}},
      {"matmul tb", [](const V& x) { return matmul(x[0], x[1], false, true); }, {uniform(-1, 1, {3, 4}), uniform(-1, 1, {2, 4})}},
      {"matmul ta tb", [](const V& x) { return matmul(x[0], x[1], true, true); }, {uniform(-1, 1, {4, 3}), uniform(-1, 1, {2, 4})}},
      {"matmul batched broadcast", [](const V& x) { return matmul(x[0], x[1]); }, {uniform(-1, 1, {2, 3, 4}), uniform(-1, 1, {4, 2})}},
      {"matmul batched broadcast tb", [](const V& x) { return matmul(x[0], x[1], false, true); }, {uniform(-1, 1, {2, 3, 4}), uniform(-1, 1, {2, 4})}},
      {"matmul 4-D times a matrix", [](const V& x) { return matmul(x[0], x[1]); }, {uniform(-1, 1, {2, 2, 3, 4}), uniform(-1, 1, {4, 2})}},
      {"permute", [](const V& x) { return x[0].permute({2, 0, 1}) * tensor({1, 2, 3, 4}); }, {uniform(-1, 1, {2, 3, 4}).permute({0, 2, 1})}},
      {"reshape", [](const V& x) { return x[0].reshape({3, 2}) * tensor({1, -2}); }, {a23}},
      {"expand", [](const V& x) { return expand(x[0], {2, 4, 3}); }, {uniform(-1, 1, {4, 1})}},
      {"concat", [](const V& x) { return concat({x[0], x[1], x[0]}, 1); }, {a23, uniform(-1, 1, {2, 2})}},
      {"slice step 1", [](const V& x) { return x[0].slice(1, 1, 3); }, {uniform(-1, 1, {2, 5})}},
      {"slice step 3", [](const V& x) { return x[0].slice(0, 1, 10, 3); }, {uniform(-1, 1, {10, 2})}},
      {"cross_entropy", [](const V& x) { return cross_entropy_unchecked(x[0], x[1]); },
       {uniform(-2, 2, {3, 5}), tensor(std::vector<int64_t>{1, 4, 0}, {3})}},
      {"cross_entropy with ties", [](const V& x) { return 3 * nn::cross_entropy(x[0], x[1]); },
       {tensor({{0.5, 0.5, 0.5}, {1.0, -1.0, 1.0}}), tensor(std::vector<int64_t>{2, 1}, {2})}},
      {"embedding (repeated ids)", [](const V& x) { return embedding_unchecked(x[0], x[1]) * tensor({1, -2, 3}); },
       {uniform(-1, 1, {4, 3}), tensor(std::vector<int64_t>{2, 0, 2, 3, 2, 1}, {2, 3})}},
      {"conv2d", [](const V& x) { return conv2d(x[0], x[1], {2, 1}, {1, 0}); },
       {uniform(-1, 1, {2, 2, 5, 4}), uniform(-1, 1, {3, 2, 2, 3})}},
      {"max_pool2d", [](const V& x) { return max_pool2d(x[0], {2, 2}); }, {distinct.reshape({1, 1, 2, 3})}},
      {"avg_pool2d", [](const V& x) { return avg_pool2d(x[0], {2, 2}, {1, 1}, {1, 1}); },
       {uniform(-1, 1, {1, 2, 3, 3})}},
      {"slice step 2 tail", [](const V& x) { return x[0].slice(1, 0, 7, 2); }, {uniform(-1, 1, {2, 7})}},
  };
}

/// Names of the ops in the graph recorded for t.
void collect_names(const std::shared_ptr<autograd::Node>& n, std::set<std::string>& names) {
  if (!n || !names.insert(n->name()).second) {
    if (n)
      for (auto& nx : n->next) collect_names(nx, names);
    return;
  }
  for (auto& nx : n->next) collect_names(nx, names);
}

}  // namespace

TEST_CASE("every differentiable op of the table: autograd equals finite differences") {
  std::set<std::string> covered;
  for (const OpCase& c : op_cases()) {
    CAPTURE(c.name);
    gradcheck(c.f, c.inputs, c.tol);
    V xs;
    for (const Tensor& x : c.inputs) xs.push_back(x.detach().clone().set_requires_grad(x.dtype() == kF32));
    Tensor out = c.f(xs);
    collect_names(out.impl()->autograd->grad_fn, covered);
  }
  for (int k = 0; k < ir::kNumOps; ++k) {
    auto op = static_cast<ir::OpKind>(k);
    if (!autograd::is_differentiable(op)) continue;
    INFO("no gradient check covers " << ir::op_name(op));
    CHECK(covered.count(std::string(ir::op_name(op))) == 1);
  }
}

TEST_CASE("composites: mean, norm, softmax, log_softmax, logsumexp, stack, transpose, flatten") {
  manual_seed(12);
  Tensor x = uniform(-1, 1, {3, 4});
  gradcheck([](const V& v) { return v[0].mean({1}); }, {x});
  gradcheck([](const V& v) { return v[0].norm(); }, {x});
  gradcheck([](const V& v) { return softmax(v[0], 1); }, {x});
  gradcheck([](const V& v) { return log_softmax(v[0], 0); }, {x});
  gradcheck([](const V& v) { return logsumexp(v[0], 1); }, {x * 10}, {1e-2, 2e-2, 2e-3});
  gradcheck([](const V& v) { return stack({v[0], v[0] * 2}, 1); }, {x});
  gradcheck([](const V& v) { return v[0].transpose().flatten(); }, {x});
  check_close(softmax(x, 1).sum({1}), {1, 1, 1});
  check_close(logsumexp(tensor({{1000, 1000}}), 1), {1000 + std::log(2.0)}, 1e-6);  // no overflow
}

TEST_CASE("gradients accumulate across uses and across backward calls") {
  Tensor w = tensor({1, 2, 3}).set_requires_grad();
  Tensor y = (w * w).sum() + w.sum();  // d/dw = 2w + 1
  y.backward();
  check_close(w.grad(), {3, 5, 7});
  (w * 2).sum().backward();
  check_close(w.grad(), {5, 7, 9});
  w.zero_grad();
  CHECK_FALSE(w.grad().defined());
  // backward with an explicit output gradient.
  Tensor z = w * 3;
  z.backward(tensor({1, 0, -1}));
  check_close(w.grad(), {3, 0, -3});
}

TEST_CASE("grad mode: no_grad scopes, detach, what requires grad") {
  Tensor w = ones({2}).set_requires_grad();
  CHECK(is_grad_enabled());
  {
    NoGradGuard g;
    CHECK_FALSE(is_grad_enabled());
    CHECK_FALSE((w * 2).requires_grad());
  }
  CHECK(is_grad_enabled());
  Tensor y = w * 2;
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  CHECK(y.grad_fn_name() == "mul");
  CHECK(w.is_leaf());
  Tensor d = y.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.shares_storage(y));
  CHECK_FALSE((w > 0).requires_grad());  // comparisons carry no gradient
  CHECK_FALSE((ones({2}) * 2).requires_grad());
  CHECK_THROWS_AS(ones({2}, kI64).set_requires_grad(), DTypeError);
  CHECK_THROWS_AS(y.set_requires_grad(false), AutogradError);
}

TEST_CASE("in-place ops: recorded on non-leaves, refused on leaves, checked by version") {
  Tensor w = tensor({1, 2, 4}).set_requires_grad();
  // A non-leaf changed in place keeps a correct history (x /= 2 in FixedHiddenMLP).
  Tensor x = w * 3;
  x /= 2;
  x += 1;
  x.sum().backward();
  check_close(w.grad(), {1.5, 1.5, 1.5});
  // A leaf that requires grad can only be updated under no-grad.
  CHECK_THROWS_AS(w += 1, AutogradError);
  {
    NoGradGuard g;
    w -= 1;
  }
  check_close(w.detach(), {0, 1, 3});
  // Modifying a tensor that backward still needs is an error, not a wrong gradient.
  Tensor v = tensor({0.5, 1.0}).set_requires_grad();
  Tensor e = exp(v);  // exp's backward reads its output
  e *= 2;             // recorded, but changes exp's saved output
  try {
    e.sum().backward();
    FAIL("expected AutogradError");
  } catch (const AutogradError& err) {
    std::string msg = err.what();
    CHECK(msg.find("exp backward") != std::string::npos);
    CHECK(msg.find("modified in place") != std::string::npos);
    CHECK(msg.find("f32[2]") != std::string::npos);
  }
  // Raw writes count as in-place changes too.
  Tensor u = tensor({2.0}).set_requires_grad();
  Tensor p = u * u;
  Tensor saved = u.detach();
  saved.mutable_data<float>()[0] = 5;
  CHECK_THROWS_AS(p.backward(), AutogradError);
}

TEST_CASE("backward misuse gives typed errors") {
  Tensor w = ones({3}).set_requires_grad();
  test::check_error<AutogradError>([&] { (w * 2).backward(); }, {"backward", "non-scalar", "f32[3]"});
  test::check_error<AutogradError>([&] { ones({1}).backward(); }, {"does not require grad"});
  test::check_error<AutogradError>([&] { (w * 2).backward(ones({2})); }, {"f32[2]", "f32[3]"});
}

TEST_CASE("a shared subexpression and a diamond graph") {
  Tensor a = tensor({0.5, -1.5}).set_requires_grad();
  Tensor b = tanh(a);
  Tensor c = b * b + sigmoid(b) * b;  // b used three times
  c.sum().backward();
  auto av = values(a.detach());
  std::vector<double> expect;
  for (double v : av) {
    double t = std::tanh(v), s = 1 / (1 + std::exp(-t));
    expect.push_back((2 * t + s * (1 - s) * t + s) * (1 - t * t));
  }
  check_close(a.grad(), expect, 1e-5, 1e-6);
}
