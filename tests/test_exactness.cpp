// Compiled calls are always right: replaced weights are never stale, guards
// decide exactly as eager mode decides (near-tie predicates, FixedHiddenMLP
// at its thresholds), compiled math matches eager over the whole float range
// (subnormals, zeros, infinities, NaN), NaN survives every fused contraction
// epilogue, and call_eager is eager all the way down.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>

#include "examples/seed_models.h"
#include "tests/helpers.h"

using namespace bj;
using test::check_near;
using test::Tol;
using V = std::vector<Tensor>;

namespace {

/// Bit-for-bit equality of two f32 tensors (NaNs equal when both are NaN).
bool same_bits(const Tensor& a, const Tensor& b, std::string* why = nullptr) {
  if (!(a.type() == b.type())) {
    if (why) *why = a.type().str() + " against " + b.type().str();
    return false;
  }
  auto x = a.to_vector(), y = b.to_vector();
  for (size_t i = 0; i < x.size(); ++i)
    if (!(std::isnan(x[i]) && std::isnan(y[i])) && std::bit_cast<uint32_t>(x[i]) != std::bit_cast<uint32_t>(y[i])) {
      if (why) *why = "element " + std::to_string(i) + ": " + std::to_string(x[i]) + " against " + std::to_string(y[i]);
      return false;
    }
  return true;
}

/// A Dense layer hybridized and called twice (the second call is compiled).
struct Warm {
  nn::Dense dense;
  Tensor x;
  Warm(int64_t units, int64_t batch, int64_t in, const char* act) : dense(units, act) {
    dense.initialize();
    x = uniform(-1, 1, {batch, in});
    dense.hybridize();
    dense(x);
    dense(x);
  }
  void check() {
    // Sums of up to 256 terms of size up to 5 in another order: rounding differs by ~1e-5 at most;
    // a stale weight differs by order 1.
    Tensor got = dense(x), want = dense.call_eager(x);
    check_near(got, want, Tol{1e-5, 1e-4});
  }
};

}  // namespace

TEST_CASE("replaced weights are never stale: set_data 1, 2 and 3 times, and initialize(force_reinit), between compiled calls") {
  manual_seed(21);
  NoGradGuard no_grad;
  struct Size {
    int64_t units, batch, in;
    std::string what;
  };
  // small dot products (256 -> 10 stays dots), packed register-blocked products, oneDNN-sized products
  for (Size s : {Size{10, 2, 256, "dots"}, Size{48, 3, 24, "packed"}, Size{128, 128, 96, "oneDNN"}}) {
    CAPTURE(s.what);
    for (int replacements : {1, 2, 3}) {
      CAPTURE(replacements);
      Warm w(s.units, s.batch, s.in, "relu");
      for (int r = 0; r < replacements; ++r) {  // no call in between: the freed storage's address comes back
        w.dense.weight.set_data(uniform(-3, 3, {s.units, s.in}));
        w.dense.bias.set_data(uniform(-1, 1, {s.units}));
      }
      w.check();
      CHECK(w.dense.stats().compiled_hits >= 2);
    }
    Warm w(s.units, s.batch, s.in, "");
    w.dense.initialize(init::uniform(5.0), true);
    w.dense.initialize(init::uniform(5.0), true);
    w.check();
  }
}

TEST_CASE("storage versions identify contents: a storage freed and reallocated at the same address gets a new version") {
  std::set<uint64_t> seen;
  const void* first = nullptr;
  int same_address = 0;
  for (int i = 0; i < 100; ++i) {
    auto s = rt::make_storage(4096);
    if (!first) first = s->data();
    same_address += s->data() == first;
    CHECK(seen.insert(s->version()).second);
    s->bump_version();
    CHECK(seen.insert(s->version()).second);
  }
  CHECK(same_address > 1);  // the allocator did hand the same block back
}

namespace {

/// `if (x.sum() > 0) return x * 2; return x * -2;`
struct SignBranch : nn::Block {
  Tensor forward(const Tensor& x) override {
    if (x.sum() > 0) return x * 2;
    return x * -2;
  }
};

/// `while (x.norm() > 1) x /= 2;`
struct HalveToUnit : nn::Block {
  Tensor forward(const Tensor& input) override {
    Tensor x = input.clone();
    while (x.norm() > 1) x /= 2;
    return x;
  }
};

/// How many halvings eager mode does for x (the path HalveToUnit takes).
int halvings_of(const Tensor& input) {
  Tensor x = input.clone();
  int n = 0;
  while (x.norm() > 1) {
    x /= 2;
    ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("near ties: 10000 calls of sum > 0 on centred inputs, 0 wrong branches, 2 variants") {
  manual_seed(5);
  NoGradGuard no_grad;
  SignBranch net;
  net.hybridize({.max_keys = 512});  // every width stays cached: a retrace would be a duplicate
  std::mt19937 rng(7);
  int wrong = 0, ties = 0;
  for (int i = 0; i < 10000; ++i) {
    const int64_t n = 1 + static_cast<int64_t>(rng() % 300);
    Tensor u = uniform(-1, 1, {1, n});
    Tensor x = u - u.mean();  // the sum is 0 up to rounding, either side
    ties += std::fabs(static_cast<double>(x.sum().item())) < 1e-5;
    Tensor got = net(x), want = net.call_eager(x);
    wrong += !same_bits(got, want);
  }
  CHECK(wrong == 0);
  CHECK(ties > 9000);
  // one key per input width, two paths each at most: never a path traced twice
  const nn::HybridStats s = net.stats();
  CHECK(s.traces == s.variants);
  CHECK(s.variants <= 2 * 300);
}

TEST_CASE("near ties: 10000 calls of while (norm > 1) on inputs of norm 2^k up to rounding, no duplicate variants") {
  manual_seed(6);
  NoGradGuard no_grad;
  HalveToUnit net;
  net.hybridize({.max_variants = 64});
  std::mt19937 rng(8);
  std::set<int> paths;
  int wrong = 0;
  for (int i = 0; i < 10000; ++i) {
    Tensor u = uniform(-1, 1, {4, 16});
    Tensor x = u / u.norm() * static_cast<float>(std::ldexp(1.0, static_cast<int>(rng() % 6)));
    paths.insert(halvings_of(x));
    Tensor got = net(x), want = net.call_eager(x);
    wrong += !same_bits(got, want);
  }
  CHECK(wrong == 0);
  const nn::HybridStats s = net.stats();
  INFO(s.str());
  CHECK(s.traces == static_cast<int64_t>(paths.size()));  // each path traced once
  CHECK(s.variants == static_cast<int64_t>(paths.size()));
  CHECK(paths.size() >= 6);  // both sides of several thresholds were met
}

TEST_CASE("FixedHiddenMLP at its thresholds: inputs whose norm after the layers sits at 2^k up to rounding") {
  manual_seed(9);
  NoGradGuard no_grad;
  examples::FixedHiddenMLP net;
  net.initialize();
  net.hybridize({.max_variants = 32});
  Tensor base = uniform(-1, 1, {2, 20});
  auto path = [&](float scale) { return halvings_of(net.linear(relu(matmul(net.linear(base * scale), net.rand_weight) + 1))); };
  int boundaries = 0, checked = 0;
  // Walk the scale up; where the number of halvings changes, bisect to adjacent floats.
  float lo = 1e-3f;
  for (float hi = lo * 1.5f; hi < 1e4f; lo = hi, hi *= 1.5f) {
    if (path(lo) == path(hi)) continue;
    float a = lo, b = hi;
    while (std::nextafter(a, b) != b) {
      float m = a + (b - a) / 2;
      if (m == a || m == b) break;
      (path(m) == path(a) ? a : b) = m;
    }
    ++boundaries;
    for (float s : {std::nextafter(a, 0.0f), a, b, std::nextafter(b, 2 * b)}) {
      Tensor x = base * s;
      // The halvings are decided exactly as eager decides them; the final sum after the last
      // guard is compiled code's own (reassociated), so it may differ in the last bits only.
      Tensor got = net(x), want = net.call_eager(x);
      check_near(got, want, Tol{1e-5, 1e-7});
      ++checked;
    }
  }
  CHECK(boundaries >= 6);
  const nn::HybridStats s = net.stats();
  INFO(s.str());
  CHECK(s.traces == s.variants);
}

TEST_CASE("values feeding a guard are eager's bit for bit: row sums, 3-D sums, products, reductions with producers") {
  NoGradGuard no_grad;
  manual_seed(31);
  // Each function returns a value that also feeds a guard, so compiled code computes it as eager does.
  using F = std::function<Tensor(const Tensor&, const Tensor&)>;
  const std::pair<const char*, F> cases[] = {
      {"row sums", [](const Tensor& x, const Tensor&) { return x.sum({1}); }},
      {"sum of squares over the last two axes", [](const Tensor& x, const Tensor&) {
         Tensor r = reshape(x, {3, 1, -1});
         return (r * r).sum({1, 2});
       }},
      {"matmul_nt", [](const Tensor& x, const Tensor& w) { return matmul(x, w, false, true); }},
      {"matmul", [](const Tensor& x, const Tensor& w) { return matmul(x, transpose(w)); }},
      {"dense + relu", [](const Tensor& x, const Tensor& w) { return relu(matmul(x, w, false, true) + 0.25f); }},
      {"norm", [](const Tensor& x, const Tensor&) { return reshape(norm(x), {1}); }},
  };
  for (const auto& [name, f] : cases) {
    CAPTURE(std::string(name));
    for (int64_t width : {1, 15, 16, 17, 33, 100, 4096, 4097}) {
      CAPTURE(width);
      Tensor x = uniform(-1, 1, {3, width}), w = uniform(-1, 1, {5, width});
      auto fn = [&](const V& v) {
        Tensor y = f(v[0], w);
        if (y.sum() > 0) return V{y};
        return V{-y};
      };
      Trace t = trace(name, fn, {x});
      CompiledTrace c = compile(t);
      for (int i = 0; i < 3; ++i) {
        Tensor xi = i == 0 ? x : uniform(-1, 1, {3, width});
        GraphRun r = c.run({xi});
        Tensor want = fn({xi})[0];
        if (!r.guards_hold) continue;  // another path: nothing to compare
        std::string why;
        CHECK_MESSAGE(same_bits(r.outputs.at(0), want, &why), why);
      }
    }
  }
}

namespace {

/// Every float, sampled: all special values, subnormals and both signs, plus a stride through the bit patterns.
std::vector<float> float_sweep() {
  std::vector<float> v = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 1.0f, -1.0f,
                          std::numeric_limits<float>::min(), -std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                          88.72283172607421875f, 88.7228393554687f, -103.972084045410156f, -103.97209f, -87.33654f,
                          -86.6f, -87.0f, -88.0f, -88.72283f, -88.8f, -89.0f, 7.90531110763549805f, -7.9053111f};
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 4099) v.push_back(std::bit_cast<float>(static_cast<uint32_t>(bits)));
  return v;
}

/// Compiled f against eager f on the sweep: infinities, NaN and zeros (with their sign) exactly,
/// normal results within `rel` (plus `abs`), subnormal results within `rel` plus two units of 2^-149.
void check_range(const std::string& name, const std::function<Tensor(const Tensor&)>& f, double rel, double abs = 0) {
  CAPTURE(name);
  std::vector<float> xs = float_sweep();
  Tensor x = tensor(xs, {static_cast<int64_t>(xs.size())});
  Trace t = trace(name, [&](const V& v) { return V{f(v[0])}; }, {x});
  const std::vector<float> got = compile(t).run({x}).outputs.at(0).to_vector();
  const std::vector<float> want = f(x).to_vector();
  int bad = 0;
  for (size_t i = 0; i < xs.size() && bad < 5; ++i) {
    const float g = got[i], w = want[i];
    bool ok;
    if (std::isnan(w) || std::isnan(g) || std::isinf(w) || std::isinf(g) || w == 0 || g == 0)
      ok = (std::isnan(w) && std::isnan(g)) || std::bit_cast<uint32_t>(g) == std::bit_cast<uint32_t>(w);
    else
      ok = std::fabs(double(g) - w) <= abs + rel * std::fabs(double(w)) +
                                           (std::fabs(w) < std::numeric_limits<float>::min() ? 2 * 0x1p-149 : 0.0);
    if (!ok) {
      ++bad;
      FAIL_CHECK(name << "(" << xs[i] << " = 0x" << std::hex << std::bit_cast<uint32_t>(xs[i]) << std::dec
                      << "): compiled " << g << ", eager " << w);
    }
  }
}

}  // namespace

TEST_CASE("compiled math equals eager over the whole float range: subnormals, zeros, infinities, NaN") {
  NoGradGuard no_grad;
  check_range("exp", [](const Tensor& x) { return exp(x); }, 2e-7);
  check_range("log", [](const Tensor& x) { return log(x); }, 2e-7);
  check_range("tanh", [](const Tensor& x) { return tanh(x); }, 5e-7);
  check_range("sigmoid", [](const Tensor& x) { return sigmoid(x); }, 5e-7);
  check_range("abs", [](const Tensor& x) { return abs(x); }, 0);
  check_range("sqrt", [](const Tensor& x) { return sqrt(x); }, 0);
  for (double p : {0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 0.5, 8.0, -9.0, 10.0, 16.0, -16.0}) {
    CAPTURE(p);
    check_range("pow", [p](const Tensor& x) { return pow(x, p); }, std::max(1.0, std::fabs(p)) * 0x1p-23 + 0x1p-24);
  }
  for (double p : {1.5, -0.5, 17.0, 100.0, -33.0, 0.1}) {  // not inline: eager's powf itself
    CAPTURE(p);
    check_range("pow", [p](const Tensor& x) { return pow(x, p); }, 0);
  }
  // The combinations the issue names.
  check_range("exp(x)/exp(x)", [](const Tensor& x) { return exp(x) / exp(x); }, 0);
  // exp's relative error becomes log's absolute error: log(exp(x)) is x within 2.5e-7 + 2e-7 |x|,
  // and finite down to x = -103.97 (it was -inf below -86.6).
  check_range("log(exp(x))", [](const Tensor& x) { return log(exp(x)); }, 2e-7, 2.5e-7);
}

TEST_CASE("special values of pow, abs and contracted multiply-adds match eager exactly") {
  NoGradGuard no_grad;
  auto both = [](const std::function<Tensor(const Tensor&)>& f, const Tensor& x) {
    Trace t = trace("f", [&](const V& v) { return V{f(v[0])}; }, {x});
    std::string why;
    CHECK_MESSAGE(same_bits(compile(t).run({x}).outputs.at(0), f(x), &why), why);
  };
  both([](const Tensor& x) { return pow(x, 10); }, tensor({-2.0}));   // 1024, not NaN
  both([](const Tensor& x) { return pow(x, -9); }, tensor({-0.0}));   // -inf
  both([](const Tensor& x) { return pow(x, 0.5); }, tensor({-INFINITY, -0.0, 4.0}));  // +inf, +0, 2
  both([](const Tensor& x) { return abs(x); }, tensor({-0.0, 0.0, -NAN}));
  both([](const Tensor& x) { return x * -2 + x; }, tensor({3.4e38}));  // -inf: no fused multiply-add
  CHECK(abs(tensor({-0.0})).to_vector()[0] == 0.0f);
  CHECK(!std::signbit(abs(tensor({-0.0})).to_vector()[0]));
  CHECK(std::isinf(pow(tensor({-0.0}), -9).to_vector()[0]));
}

TEST_CASE("NaN and infinities through every fused contraction epilogue match eager") {
  NoGradGuard no_grad;
  manual_seed(17);
  struct Case {
    int64_t units, batch, in;
    const char* act;
  };
  for (Case c : {Case{10, 2, 256, "relu"}, Case{48, 3, 24, "relu"}, Case{48, 3, 24, "tanh"}, Case{33, 5, 24, "sigmoid"},
                 Case{128, 128, 96, "relu"}, Case{128, 128, 96, ""}, Case{128, 128, 96, "tanh"}}) {
    CAPTURE(c.units);
    CAPTURE(c.batch);
    CAPTURE(c.act);
    nn::Dense d(c.units, c.act);
    d.initialize();
    Tensor x = uniform(-1, 1, {c.batch, c.in});
    float* p = x.mutable_data<float>();
    p[0] = NAN;                     // row 0: NaN
    p[c.in + 1] = INFINITY;         // row 1: +inf
    if (c.batch > 2) p[2 * c.in] = -INFINITY;
    Trace t = trace(d, x);
    Tensor got = compile(t).run({x}).outputs.at(0), want = d(x);
    check_near(got, want, Tol{2e-5, 1e-6});
  }
}

TEST_CASE("call_eager on a plain parent runs a hybridized child eagerly too") {
  NoGradGuard no_grad;
  manual_seed(2);
  nn::Sequential net(nn::Dense(8, "relu"), nn::Dense(4));
  net.initialize();
  Tensor x = uniform(-1, 1, {2, 6});
  net(x);
  auto& child = static_cast<nn::Dense&>(*net.children().at(1).second);
  child.hybridize();
  net(x);
  net(x);
  const int64_t calls = child.stats().calls;
  CHECK(child.stats().compiled_hits >= 1);
  net.call_eager(x);
  CHECK(child.stats().calls == calls);  // the hybridized child was not asked
  net(x);
  CHECK(child.stats().calls == calls + 1);
}

namespace {

constexpr int kSumLine = __LINE__ + 4;  // the line of the `if` below
/// A guard on a tensor's truth (`if (t)`, found from debug line tables) and one on an item().
struct TwoGuards : nn::Block {
  Tensor forward(const Tensor& x) override {
    if (x.sum() > 0) return x * 2;
    if (x.max().item() > 0.25) return x * 3;
    return x * -1;
  }
};
constexpr int kItemLine = kSumLine + 1;

/// `(int) x.max().item()` used as a number: a guard on the exact value read.
struct ExactRead : nn::Block {
  Tensor forward(const Tensor& x) override {
    const int k = static_cast<int>(std::floor(static_cast<double>(x.max().item()) * 1000));
    return x * static_cast<float>(k);
  }
};

}  // namespace

TEST_CASE("guard reports name the file:line of the read and the variant the guard belongs to") {
  NoGradGuard no_grad;
  TwoGuards net;
  net.hybridize();
  Tensor neg = -rand({2, 3}) - 1, pos = rand({2, 3}) + 1;
  net(neg);  // variant 1: sum <= 0, max <= 0.25
  net(neg);
  net(pos);  // fails variant 1's first guard; variant 2
  net(neg);
  const nn::HybridStats s = net.stats();
  INFO(s.str());
  REQUIRE(s.guard_failures.size() >= 1);
  const auto& f = s.guard_failures.front();
  CHECK(f.variant == 1);
  CHECK(f.key == "f32[2,3], training, no grad");
  CHECK(f.origin.file == "test_exactness.cpp");
  CHECK(f.origin.line == kSumLine);
  CHECK(!f.exact_value);
  CHECK(s.str().find("of variant 1 (f32[2,3], training, no grad) failed") != std::string::npos);
  // the item() comparison's guard carries the item() call's line
  Trace t = trace(net, tensor({{-1.0, 0.5, 0.1}}));
  bool item_line = false;
  ir::for_each_node(t.graph->nodes(), [&](const ir::Node& n) {
    item_line |= n.kind == ir::NodeKind::kGuard && n.origin.line == kItemLine && n.origin.file == "test_exactness.cpp";
  });
  CHECK(item_line);
}

TEST_CASE("the variant cap notice names the guard that filled it, and says when no cap can help") {
  NoGradGuard no_grad;
  struct Capture {
    std::vector<std::string> lines;
    Capture() {
      nn::set_log_handler([this](const std::string& l) { lines.push_back(l); });
    }
    ~Capture() { nn::set_log_handler(nullptr); }
  } log;
  {
    examples::FixedHiddenMLP net;
    net.initialize();
    net.hybridize({.max_variants = 2});
    Tensor base = uniform(-1, 1, {2, 20});
    for (float scale : {0.01f, 1.0f, 100.0f, 1e4f, 1e6f}) net(base * scale);
  }
  {
    ExactRead net;
    net.hybridize({.max_variants = 3});
    for (int i = 0; i < 6; ++i) net(rand({2, 4}));
  }
  std::vector<std::string> caps;
  for (const std::string& l : log.lines)
    if (l.find("(the cap)") != std::string::npos) caps.push_back(l);
  REQUIRE(caps.size() == 2);
  CHECK(caps[0].find("The call that found the cap full failed guard %") != std::string::npos);
  CHECK(caps[0].find("recorded at FixedHiddenMLP (seed_models.h:60)") != std::string::npos);
  CHECK(caps[0].find("exact value") == std::string::npos);
  CHECK(caps[1].find("compares an exact value") != std::string::npos);
  CHECK(caps[1].find("x.max() > 3") != std::string::npos);
}
