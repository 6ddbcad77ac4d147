// Commits: state a graph writes (parameters, constants) at the end of a call,
// only once every guard held; in place where the planner proves it safe,
// copied at the end otherwise. Compiled code against the interpreter, and
// traced in-place writes of block state against eager twins.
#include <cstring>

#include "codegen/executable.h"
#include "ir/error.h"
#include "runtime/interpreter.h"
#include "tests/helpers.h"

using namespace bj;

namespace {

/// State of one run: the parameters after it, its outputs (empty if a guard failed).
struct Outcome {
  std::vector<std::vector<float>> params;
  std::vector<std::vector<float>> outputs;
  bool held = true;
};

/// Runs graph `text` on f32 input x with f32 parameters `params` (written by its commits),
/// compiled (`compiled`) or interpreted.
Outcome run_graph(const std::string& text, const std::vector<float>& x, std::vector<std::vector<float>> params,
                  bool compiled) {
  auto g = ir::parse(text);
  ir::verify(*g);
  std::vector<rt::ConstView> in{{x.data(), g->inputs()[0]->type}}, ps;
  for (size_t i = 0; i < params.size(); ++i) ps.push_back({params[i].data(), g->params()[i]->type});
  Outcome o;
  std::vector<std::shared_ptr<rt::Storage>> outs;
  if (compiled) {
    auto exe = codegen::compile(*g, {.use_cache = false});
    auto r = exe->run(in, ps, {}, {});
    o.held = r.failed_guard < 0;
    outs = std::move(r.outputs);
  } else {
    auto r = rt::interpret(*g, in, ps, {});
    o.held = r.failed_guard == nullptr;
    outs = std::move(r.outputs);
  }
  for (size_t i = 0; i < outs.size(); ++i) {
    const float* p = static_cast<const float*>(outs[i]->data());
    o.outputs.emplace_back(p, p + g->outputs()[i]->type.numel());
  }
  o.params = std::move(params);
  return o;
}

std::vector<float> iota(int64_t n, float start, float step) {
  std::vector<float> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = start + step * static_cast<float>(i);
  return v;
}

/// Which commits the plan writes in place: of the optimized graph, or of the graph as written
/// (`as_written`: no pass reorders it, so a guard after the update stays there).
std::vector<bool> in_place(const std::string& text, bool as_written = false) {
  auto g = ir::parse(text);
  if (as_written) return codegen::make_plan(*g).commit_in_place;
  return codegen::compile(*g, {.use_cache = false})->plan().commit_in_place;
}

}  // namespace

TEST_CASE("commits print, parse back and verify (target kind, type, once, after every node)") {
  const std::string text =
      "graph @g(%x: f32[4]) -> (f32[4]) {\n"
      "  param %w: f32[4]\n"
      "  const %c: f32[4]\n"
      "  %0: f32[4] = add(%w, %x)\n"
      "  %1: f32[4] = mul(%c, %x)\n"
      "  commit %w = %0\n"
      "  commit %c = %1\n"
      "  return %0\n"
      "}\n";
  auto g = ir::parse(text);
  ir::verify(*g);
  CHECK(g->commits().size() == 2);
  CHECK(ir::print(*g) == text);
  CHECK(ir::to_dot(*g).find("commit %w") != std::string::npos);
  auto bad = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    t.replace(t.find(from), from.size(), to);
    return t;
  };
  auto verify_text = [](const std::string& t) { ir::verify(*ir::parse(t)); };
  CHECK_THROWS_WITH_AS(verify_text(bad("commit %c = %1", "commit %x = %1")),
                       doctest::Contains("a commit writes a parameter or a constant"), VerifyError);
  CHECK_THROWS_WITH_AS(verify_text(bad("commit %c = %1", "commit %w = %1")), doctest::Contains("committed twice"),
                       VerifyError);
  CHECK_THROWS_WITH_AS(verify_text(bad("  %1: f32[4] = mul(%c, %x)\n", "  %1: f32[] = sum(%x) {axes=[0]}\n")),
                       doctest::Contains("commit %c: the value is f32[], the target f32[4]"), VerifyError);
  CHECK_THROWS_WITH_AS(verify_text(bad("  commit %c = %1\n", "  commit %c = %1\n  %2: f32[4] = neg(%x)\n")),
                       doctest::Contains("commits follow every node"), ParseError);
  CHECK_THROWS_AS(verify_text(bad("commit %c = %1", "commit %c = %9")), ParseError);
}

TEST_CASE("a commit computed by the update's own loop is written in place, outputs see the value before") {
  const std::string text =
      "graph @g(%x: f32[37]) -> (f32[37]) {\n"
      "  param %w: f32[37]\n"
      "  %0: f32[37] = mul(%w, %x)\n"
      "  %1: f32[37] = add(%0, %w)\n"
      "  commit %w = %1\n"
      "  return %0\n"
      "}\n";
  CHECK(in_place(text) == std::vector<bool>{true});
  const auto x = iota(37, -2, 0.25f), w = iota(37, 3, -0.5f);
  for (bool compiled : {false, true}) {
    CAPTURE(compiled);
    Outcome o = run_graph(text, x, {w}, compiled);
    REQUIRE(o.held);
    for (size_t i = 0; i < w.size(); ++i) {
      CHECK(o.outputs[0][i] == w[i] * x[i]);
      CHECK(o.params[0][i] == w[i] * x[i] + w[i]);
    }
  }
}

TEST_CASE("commits: a failed guard writes nothing, wherever the guard stands") {
  // As written, a guard after the update keeps the update from writing the state early.
  const std::string late_guard =
      "graph @g(%x: f32[64]) -> (f32[64]) {\n  param %w: f32[64]\n  %0: f32[64] = mul(%w, %x)\n"
      "  %1: f32[64] = sub(%w, %0)\n  %2: f32[] = sum(%x) {axes=[0]}\n  %3: f32[] = literal 0\n"
      "  %4: bool[] = gt(%2, %3)\n  guard %4 == true\n  commit %w = %1\n  return %0\n}\n";
  CHECK(in_place(late_guard, true) == std::vector<bool>{false});
  CHECK(in_place(late_guard) == std::vector<bool>{true});  // optimized: the guard is checked first
  // A guard on the input (scheduled before the update) or on the updated value itself (after it:
  // the commit cannot be written by the update's loop).
  for (const char* guard_on : {"%x", "%1"}) {
    CAPTURE(guard_on);
    const bool after = std::string(guard_on) == "%1";
    const std::string guard = "  %g: f32[] = sum(" + std::string(guard_on) +
                              ") {axes=[0]}\n  %z: f32[] = literal 0\n  %p: bool[] = gt(%g, %z)\n  guard %p == true\n";
    const std::string update = "  %0: f32[64] = mul(%w, %x)\n  %1: f32[64] = sub(%w, %0)\n";
    const std::string text = "graph @g(%x: f32[64]) -> (f32[64]) {\n  param %w: f32[64]\n" +
                             (after ? update + guard : guard + update) + "  commit %w = %1\n  return %0\n}\n";
    CHECK(in_place(text) == std::vector<bool>{!after});
    const auto w = iota(64, 1, 0.5f);
    for (bool compiled : {false, true}) {
      CAPTURE(compiled);
      Outcome fail = run_graph(text, iota(64, after ? 5 : -5, 0), {w}, compiled);  // the sum is negative
      CHECK(!fail.held);
      CHECK(fail.params[0] == w);
      Outcome ok = run_graph(text, iota(64, 0.5f, 0), {w}, compiled);
      REQUIRE(ok.held);
      for (size_t i = 0; i < w.size(); ++i) CHECK(ok.params[0][i] == w[i] - w[i] * 0.5f);
    }
  }
}

TEST_CASE("commits: a target read after its update is copied at the end, and chains of commits read the old state") {
  // %w is read by the sum after the update, so the update cannot overwrite it early; %v takes w's
  // old value while w takes a new one (v's copy goes first).
  const std::string text =
      "graph @g(%x: f32[33]) -> (f32[]) {\n"
      "  param %w: f32[33]\n"
      "  param %v: f32[33]\n"
      "  %0: f32[33] = add(%w, %x)\n"
      "  %1: f32[] = sum(%w) {axes=[0]}\n"
      "  %2: f32[33] = mul(%0, %1)\n"
      "  commit %w = %2\n"
      "  commit %v = %w\n"
      "  return %1\n"
      "}\n";
  const auto x = iota(33, 0.5f, 0.125f), w = iota(33, -1, 0.0625f), v = iota(33, 7, 0);
  Outcome want = run_graph(text, x, {w, v}, false), got = run_graph(text, x, {w, v}, true);
  REQUIRE(got.held);
  CHECK(want.params[1] == w);
  CHECK(got.params[1] == w);
  REQUIRE(got.params[0].size() == want.params[0].size());
  for (size_t i = 0; i < w.size(); ++i) CHECK(got.params[0][i] == doctest::Approx(want.params[0][i]).epsilon(1e-6));
  CHECK(got.outputs[0][0] == doctest::Approx(want.outputs[0][0]).epsilon(1e-6));
  // Two parameters swapped by their commits: the interpreter stages them; codegen says it cannot.
  const std::string swap =
      "graph @g(%x: f32[4]) -> (f32[4]) {\n  param %a: f32[4]\n  param %b: f32[4]\n  %0: f32[4] = add(%a, %x)\n"
      "  commit %a = %b\n  commit %b = %a\n  return %0\n}\n";
  Outcome s = run_graph(swap, iota(4, 0, 1), {iota(4, 1, 0), iota(4, 2, 0)}, false);
  CHECK(s.params[0] == iota(4, 2, 0));
  CHECK(s.params[1] == iota(4, 1, 0));
  CHECK_THROWS_WITH_AS(run_graph(swap, iota(4, 0, 1), {iota(4, 1, 0), iota(4, 2, 0)}, true),
                       doctest::Contains("swap state in a cycle"), Error);
}

namespace {
/// A block with running statistics, as BatchNorm keeps them: constants it updates in place in
/// every call (under no grad), then a data-dependent path.
struct Running : nn::Block {
  Tensor& mean = add_constant("mean", zeros({8}));
  Tensor& calls = add_constant("calls", zeros({}));
  Tensor forward(const Tensor& x) override {
    {
      NoGradGuard no_grad;
      mean *= 0.9;
      mean += x.mean({0}) * 0.1;
      calls += 1.0;
    }
    if (x.sum() > 0) return x * 2;
    return x - 1;
  }
};
}  // namespace

TEST_CASE("a hybridized block's in-place state changes are committed per call, as eagerly, and not on failed guards") {
  manual_seed(7);
  Running hybrid, eager;
  hybrid.hybridize();
  std::vector<Tensor> xs;
  for (int i = 0; i < 12; ++i) xs.push_back(uniform(i % 3 == 2 ? -2.0 : -0.5, 1.0, {5, 8}));
  for (size_t i = 0; i < xs.size(); ++i) {
    CAPTURE(i);
    Tensor a = hybrid(xs[i]), b = eager(xs[i]);
    test::check_close(a, test::values(b), 0, 0);
    test::check_close(hybrid.mean, test::values(eager.mean), 1e-6, 1e-7);
    CHECK(hybrid.calls.item() == eager.calls.item());
  }
  const nn::HybridStats st = hybrid.stats();
  CHECK(st.compiled_hits >= 8);
  CHECK(st.variants == 2);  // both paths compiled
  // The trace shows the writes.
  Trace t = trace(hybrid, xs[0]);
  const std::string text = ir::print(*t.graph);
  CHECK(text.find("commit %mean = %") != std::string::npos);
  CHECK(text.find("commit %calls = %") != std::string::npos);
}

TEST_CASE("tracing in place: graph inputs cannot be written, and a stale view read after a write is an error") {
  Tensor w = ones({2, 3});
  CHECK_THROWS_WITH_AS(trace("f", [](const std::vector<Tensor>& in) {
                         Tensor x = in[0];
                         x += 1.0;
                         return std::vector<Tensor>{x};
                       }, {ones({3})}),
                       doctest::Contains("in place inside traced code is not supported"), TraceError);
  CHECK_THROWS_WITH_AS(trace("f", [&](const std::vector<Tensor>& in) {
                         Tensor y = in[0] * 2.0;
                         Tensor flat = y.reshape({6});
                         y += 1.0;
                         Tensor view = flat.detach();  // a handle on y's storage, of the stale view's type
                         return std::vector<Tensor>{view + 1.0};
                       }, {w}),
                       doctest::Contains("in-place changes through views cannot be traced"), TraceError);
  // Two handles on one parameter's storage, each written in place: both writes are committed.
  {
    nn::Parameter p({3});
    p.initialize(init::constant(1));
    struct Twice : nn::Block {
      nn::Parameter& w;
      explicit Twice(nn::Parameter& p) : w(add_parameter("w", p)) {}
      Tensor forward(const Tensor& x) override {
        NoGradGuard no_grad;
        Tensor a = w.data(), b = w.data().detach();
        a += x;
        b *= 2.0;
        return x * 1.0;
      }
    } twice(p);
    Trace t = trace(twice, full({3}, 0.5));
    CHECK(ir::print(*t.graph).find("commit %w = %") != std::string::npos);
    run(t, {full({3}, 0.25)});
    test::check_close(p.data(), std::vector<double>(3, ((1 + 0.5) * 2 + 0.25) * 2), 0, 0);
  }
  // A handle of the same type sees the new value.
  Trace t = trace("f", [](const std::vector<Tensor>& in) {
    Tensor y = in[0] * 2.0;
    Tensor same = y.detach();
    y += 1.0;
    return std::vector<Tensor>{same.detach() * 3.0};
  }, {w});
  GraphRun r = run(t, {full({2, 3}, 4.0)});
  test::check_close(r.outputs[0], std::vector<double>(6, (4 * 2 + 1) * 3), 0, 0);
}

namespace {
/// A Dense layer that also keeps the running mean of its outputs, as BatchNorm does in training.
struct DenseWithStats : nn::Block {
  nn::Dense& dense = add("dense", nn::Dense(4));
  Tensor& running = add_constant("running", zeros({4}));
  Tensor forward(const Tensor& x) override {
    Tensor y = dense(x);
    {
      NoGradGuard no_grad;
      running *= 0.8;
      running += y.detach().mean({0}) * 0.2;
    }
    return y.relu();
  }
};
}  // namespace

TEST_CASE("hybridized training with state written in forward: gradients and running statistics equal eager's") {
  manual_seed(17);
  DenseWithStats hybrid, eager;
  Tensor x0 = uniform(-1, 1, {3, 6});
  hybrid.initialize();
  eager.initialize();
  hybrid.call_eager(x0);
  eager.call_eager(x0);
  auto ph = hybrid.parameters(), pe = eager.parameters();
  for (size_t i = 0; i < ph.size(); ++i) pe[i].set_data(ph[i].data().clone());
  eager.running = hybrid.running.clone();
  hybrid.hybridize();
  optim::SGD oh(ph, {.lr = 0.1}), oe(pe, {.lr = 0.1});
  for (int step = 0; step < 6; ++step) {
    CAPTURE(step);
    Tensor x = uniform(-1, 1, {3, 6});
    oh.zero_grad();
    oe.zero_grad();
    hybrid(x).sum().backward();
    eager(x).sum().backward();
    for (size_t i = 0; i < ph.size(); ++i) test::check_close(ph[i].data().grad(), test::values(pe[i].data().grad()), 1e-5, 1e-6);
    test::check_close(hybrid.running, test::values(eager.running), 1e-5, 1e-6);
    oh.step();
    oe.step();
  }
  CHECK(hybrid.stats().compiled_hits >= 4);
}
