// The tracer: graphs of the zoo models (exact replay, golden files), guards
// for every host read of tensor data, the divergence check on data-dependent
// control flow, and what becomes an input, parameter, constant or literal.
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "examples/seed_models.h"
#include "examples/zoo.h"
#include "tests/helpers.h"

using namespace bj;
using namespace bj::examples;

namespace {

std::vector<bool> guard_outcomes(const ir::Graph& g) {
  std::vector<bool> r;
  for (const auto& n : g.nodes())
    if (n->kind == ir::NodeKind::kGuard) r.push_back(n->expect);
  return r;
}

int uses(const ir::Graph& g, const std::string& value_name) {
  int k = 0;
  for (const auto& n : g.nodes())
    for (const ir::Value* v : n->inputs) k += v->name == value_name;
  return k;
}

using test::same_bits;

/// The divergence check against the oracle: run(t0, x) holds exactly when
/// tracing x takes the same path (same guard outcomes); when it holds, the
/// graph's output is the eager output, bit for bit.
void check_divergence(nn::Block& net, const Trace& t0, const Tensor& x, int& held, int& failed) {
  Trace tx = trace(net, x);
  bool same_path = guard_outcomes(*tx.graph) == guard_outcomes(*t0.graph);
  GraphRun r = run(t0, {x});
  CHECK(r.guards_hold == same_path);
  if (r.guards_hold) {
    REQUIRE(r.outputs.size() == 1);
    CHECK(same_bits(r.outputs[0], tx.outputs[0]));
    ++held;
  } else {
    CHECK(r.outputs.empty());
    CHECK(r.guard.rfind("guard %", 0) == 0);
    CHECK(r.origin.path.find(net.name()) == 0);
    // The failing guard is the first whose outcome differs.
    auto a = guard_outcomes(*t0.graph), b = guard_outcomes(*tx.graph);
    size_t first = 0;
    while (first < a.size() && first < b.size() && a[first] == b[first]) ++first;
    CHECK(r.failed_guard == static_cast<int>(first));
    ++failed;
  }
}

}  // namespace

TEST_CASE("every zoo model: the interpreter on the traced graph reproduces the eager output exactly") {
  for (const ZooModel& m : zoo()) {
    CAPTURE(m.name);
    manual_seed(0);
    auto net = m.make();
    Tensor x = rand(m.input);
    Trace t = trace(*net, x);
    CHECK(t.graph->name() == m.name);
    GraphRun r = run(t, {x});
    REQUIRE(r.guards_hold);
    CHECK(same_bits(r.outputs[0], t.outputs[0]));
    NoGradGuard no_grad;
    CHECK(same_bits(t.outputs[0], (*net)(x)));  // the trace's outputs are the eager outputs
    CHECK(t.notes.empty());
  }
}

TEST_CASE("golden IR of the traced mlp, fixed-hidden-mlp and chimera (BJ_UPDATE_GOLDEN=1 rewrites them)") {
  const bool update = std::getenv("BJ_UPDATE_GOLDEN") != nullptr;
  for (std::string name : {"mlp", "fixed-hidden-mlp", "chimera"}) {
    CAPTURE(name);
    manual_seed(0);
    const ZooModel& m = zoo_model(name);
    auto net = m.make();
    std::string text = ir::print(*trace(*net, rand(m.input)).graph);
    std::string path = std::string(BJ_SOURCE_DIR) + "/tests/golden/" + name + ".ir";
    if (update) {
      std::ofstream(path) << text;
      continue;
    }
    std::ifstream f(path);
    REQUIRE_MESSAGE(f.good(), "missing " << path << " (run the tests with BJ_UPDATE_GOLDEN=1)");
    std::stringstream ss;
    ss << f.rdbuf();
    CHECK(text == ss.str());
  }
}

TEST_CASE("FixedHiddenMLP: the loop unrolls with one guard per evaluation of its condition") {
  manual_seed(0);
  FixedHiddenMLP net;
  net.set_name("fixed");
  net.initialize();
  Tensor x = rand({2, 20}) * 1000;
  Trace t = trace(net, x);
  auto outcomes = guard_outcomes(*t.graph);
  REQUIRE(outcomes.size() >= 3);
  for (size_t i = 0; i + 1 < outcomes.size(); ++i) CHECK(outcomes[i]);  // true, ..., true,
  CHECK_FALSE(outcomes.back());                                         // false
  // The shared `linear`: one parameter pair, each used twice.
  CHECK(t.graph->params().size() == 2);
  CHECK(t.params.size() == 2);
  CHECK(uses(*t.graph, "linear.weight") == 2);
  CHECK(uses(*t.graph, "linear.bias") == 2);
  // The block's constant is a named constant, bound by reference.
  REQUIRE(t.graph->consts().size() == 1);
  CHECK(t.graph->consts()[0]->name == "rand_weight");
  CHECK(t.consts[0].shares_storage(net.rand_weight));
}

TEST_CASE("divergence: FixedHiddenMLP and chimera on inputs that need fewer or more halvings") {
  for (std::string name : {"fixed-hidden-mlp", "chimera"}) {
    CAPTURE(name);
    manual_seed(0);
    const ZooModel& m = zoo_model(name);
    auto net = m.make();
    net->initialize(init::uniform(0.5), true);
    Tensor base = rand(m.input);
    Trace t0 = trace(*net, base * 20);
    int held = 0, failed = 0;
    for (double scale : {20.0, 20.0001, 1.0, 0.01, 100.0, 1000.0, 1e4, 1e6}) {
      CAPTURE(scale);
      check_divergence(*net, t0, base * scale, held, failed);
    }
    MESSAGE(name << ": " << t0.graph->num_guards() - 1 << " halvings traced; " << held << " inputs held, " << failed
                 << " diverged");
    CHECK(held >= 2);
    CHECK(failed >= 3);
  }
}

TEST_CASE("guards from item(): comparisons, escapes to plain numbers, and raw data reads") {
  auto branchy = [](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    if (x.sum().item() > 0) return std::vector<Tensor>{x * 2};
    return std::vector<Tensor>{x * 3};
  };
  Trace t = trace("branchy", branchy, {tensor({1, 2})});
  CHECK(t.graph->num_guards() == 1);
  CHECK(ir::print(*t.graph).find("gt(") != std::string::npos);
  CHECK(run(t, {tensor({5, -1})}).guards_hold);
  GraphRun other = run(t, {tensor({-5, 1})});
  CHECK_FALSE(other.guards_hold);
  CHECK(other.guard.find("== true") != std::string::npos);

  auto escaping = [](const std::vector<Tensor>& in) {
    double m = in[0].max().item();  // leaves the graph as a plain number
    return std::vector<Tensor>{in[0] * (m + 1)};
  };
  Trace e = trace("escaping", escaping, {tensor({1, 4})});
  CHECK(e.graph->num_guards() == 1);
  CHECK(ir::print(*e.graph).find("eq(") != std::string::npos);
  CHECK(run(e, {tensor({0, 4})}).guards_hold);        // same max
  CHECK_FALSE(run(e, {tensor({0, 4.5})}).guards_hold);  // another max: the literal 5 would be wrong

  auto reading = [](const std::vector<Tensor>& in) {
    float first = in[0].data<float>()[0];
    return std::vector<Tensor>{in[0] + first};
  };
  Trace rd = trace("reading", reading, {tensor({1, 2, 3})});
  CHECK(rd.graph->num_guards() == 1);
  CHECK(run(rd, {tensor({1, 2, 3})}).guards_hold);
  CHECK_FALSE(run(rd, {tensor({1, 2, 3.5})}).guards_hold);  // any change of the data that was read
}

TEST_CASE("an if/else on a tensor predicate traces the branch taken and guards it") {
  struct Branch : nn::Block {
    nn::Dense& up = add("up", nn::Dense(4, "none", true, 3));
    Tensor forward(const Tensor& x) override {
      if (x.mean() > 0) return relu(up(x));
      return up(x) * -1;
    }
  };
  Branch net;
  net.initialize();
  Tensor pos = ones({2, 3}), neg = -ones({2, 3});
  Trace tp = trace(net, pos);
  Trace tn = trace(net, neg);
  CHECK(guard_outcomes(*tp.graph) == std::vector<bool>{true});
  CHECK(guard_outcomes(*tn.graph) == std::vector<bool>{false});
  CHECK(ir::print(*tp.graph).find("relu") != std::string::npos);
  CHECK(ir::print(*tn.graph).find("relu") == std::string::npos);
  CHECK(run(tp, {pos * 2}).guards_hold);
  CHECK_FALSE(run(tp, {neg}).guards_hold);
  CHECK(same_bits(run(tn, {neg * 3}).outputs[0], net(neg * 3)));
}

TEST_CASE("literals, captured tensors, random tensors and what cannot be traced") {
  Tensor outside = tensor({10, 20});
  auto fn = [&](const std::vector<Tensor>& in) {
    Tensor made = tensor({1, 2});  // made inside: a literal
    return std::vector<Tensor>{in[0] * made + outside};
  };
  Trace t = trace("mixed", fn, {tensor({3, 4})});
  std::string text = ir::print(*t.graph);
  CHECK(text.find("literal [1, 2]") != std::string::npos);
  REQUIRE(t.graph->consts().size() == 1);
  CHECK(t.graph->consts()[0]->name == "captured0");
  REQUIRE(t.notes.size() == 1);
  CHECK(t.notes[0].find("captured") != std::string::npos);
  outside += 1;  // bound by reference: the next run sees it
  test::check_close(run(t, {tensor({3, 4})}).outputs[0], {14, 29});

  // rand() (Dropout's masks) is an op of the generator's state; uniform() changes its numbers on
  // the host, so they are frozen with a note.
  nn::Sequential drop(nn::Dropout(0.5));
  Trace td = trace(drop, ones({4, 4}));
  CHECK(td.notes.empty());
  CHECK(!td.random_frozen);
  CHECK(td.rng_input == 1);
  CHECK(td.random_blocks == 4);
  CHECK(ir::print(*td.graph).find("rand_uniform(%rng) {shape=[4,4], start=0}") != std::string::npos);
  Trace tu = trace("noise", [](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0] + uniform(0, 1, {4})}; },
                   {ones({4})});
  REQUIRE(tu.notes.size() == 1);
  CHECK(tu.notes[0].find("random tensor f32[4]") != std::string::npos);
  CHECK(tu.random_frozen);

  auto mutate_input = [](const std::vector<Tensor>& in) {
    Tensor x = in[0];
    x /= 2;
    return std::vector<Tensor>{x};
  };
  test::check_error<TraceError>([&] { trace("mutating", mutate_input, {ones({2})}); },
                                {"div (in place)", "graph input %x", "f32[2]"});
  CHECK_FALSE(is_tracing());  // the failed trace left no recorder behind
  auto nested = [](const std::vector<Tensor>& in) {
    trace("inner", [](const std::vector<Tensor>& v) { return v; }, in);
    return in;
  };
  CHECK_THROWS_AS(trace("outer", nested, {ones({1})}), TraceError);
  test::check_error<ShapeError>([&] { run(t, {ones({3})}); }, {"input 0 is f32[3]", "made for f32[2]"});
}
