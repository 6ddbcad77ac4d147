// The passes: golden files for each pass alone, golden optimized graphs of
// the zoo, semantics preserved by every pass on the zoo and on hundreds of
// random graphs, memory plans without overlaps, the pass manager's dumps.
#include <cstdlib>
#include <cstring>
#include <limits>
#include <fstream>
#include <sstream>

#include "codegen/optimize.h"
#include "examples/seed_models.h"
#include "examples/zoo.h"
#include "tests/filecheck.h"
#include "tests/random_graph.h"

using namespace bj;

namespace {

std::string source(const std::string& rel) { return std::string(BJ_SOURCE_DIR) + "/" + rel; }
std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
bool update_golden() { return std::getenv("BJ_UPDATE_GOLDEN") != nullptr; }

/// Compares `text` with the golden file (or rewrites it under BJ_UPDATE_GOLDEN=1).
void check_golden(const std::string& rel, const std::string& text) {
  if (update_golden()) {
    std::ofstream(source(rel)) << text;
    return;
  }
  std::string expected = read_file(source(rel));
  REQUIRE_MESSAGE(!expected.empty(), "missing " << rel << " (run the tests with BJ_UPDATE_GOLDEN=1)");
  CHECK(text == expected);
}

std::unique_ptr<ir::Graph> copy(const ir::Graph& g) { return ir::parse(ir::print(g)); }

passes::PipelineOptions quiet() {
  passes::PipelineOptions o;
  o.verify = true;
  return o;
}

/// Runs `pass` alone on a copy of g and checks the interpreter gives the same bytes.
void check_pass_preserves(const ir::Graph& g, const passes::Pass& pass, const test::Bindings& b,
                          const std::vector<std::vector<std::byte>>& expected) {
  auto h = copy(g);
  passes::run_pipeline(*h, {{{pass}}}, codegen::pass_context(), quiet());
  auto r = test::interpret(*h, b);
  INFO("after " << pass.name << ":\n" << ir::print(*h));
  REQUIRE(r.failed_guard == nullptr);
  CHECK(test::output_bytes(*h, r) == expected);
}

struct ZooTrace {
  std::shared_ptr<nn::Block> net;
  Tensor x;
  Trace t;
};
ZooTrace trace_zoo(const examples::ZooModel& m) {
  manual_seed(0);
  auto net = m.make();
  Tensor x = rand(m.input);
  Trace t = trace(*net, x);
  return {net, x, t};
}


/// One case of a pass test file (tests/passes/NAME.ir): the passes its RUN line names, its
/// CHECK directives and its graph. Other `//` lines are comments.
struct PassCase {
  std::vector<std::string> passes, checks;
  std::string ir;
  int line = 0;  ///< of its RUN line
};
std::vector<PassCase> pass_cases(const std::string& path) {
  std::vector<PassCase> cases;
  std::istringstream in(read_file(path));
  int n = 0;
  for (std::string l; std::getline(in, l);) {
    ++n;
    const std::string t = test::trim(l);
    if (t.rfind("// RUN:", 0) == 0) {
      cases.push_back({{}, {}, "", n});
      std::istringstream names(t.substr(7));
      for (std::string name; std::getline(names, name, ',');) cases.back().passes.push_back(test::trim(name));
    } else if (t.rfind("// CHECK", 0) == 0 && !cases.empty()) {
      cases.back().checks.push_back(t.substr(3));
    } else if (t.rfind("//", 0) != 0 && !cases.empty()) {
      cases.back().ir += l + "\n";
    }
  }
  return cases;
}

}  // namespace

TEST_CASE("pass tests in FileCheck style: every case's checks hold, the change report is true, results are bit for bit the same") {
  for (const passes::Pass& p : passes::all_passes()) {
    const std::string name = p.name;
    CAPTURE(name);
    std::string file_name = name;
    std::replace(file_name.begin(), file_name.end(), '-', '_');
    // One spelling: passes/NAME.cpp holds `bool NAME(...)`, `--print-after=NAME` (with '-') runs it.
    CHECK(std::ifstream(source("passes/" + file_name + ".cpp")).good());
    const std::vector<PassCase> cases = pass_cases(source("tests/passes/" + name + ".ir"));
    CHECK(cases.size() >= 3);
    int unchanged = 0;
    for (const PassCase& c : cases) {
      CAPTURE(c.line);
      auto g = ir::parse(c.ir);
      ir::verify(*g);
      auto before = copy(*g);
      std::vector<passes::Pass> run;
      for (const std::string& n : c.passes) run.push_back(passes::pass_named(n));
      passes::PipelineReport report = passes::run_pipeline(*g, {{run}}, codegen::pass_context(), quiet());
      const std::string out = ir::print(*g);
      INFO("output:\n" << out);
      CHECK(test::filecheck(out, c.checks) == "");
      bool changed = false;
      for (const auto& r : report.runs) changed |= r.changed;
      CHECK(changed == (out != ir::print(*before)));  // a pass says whether it changed the graph, truly
      unchanged += !changed;
      CHECK(ir::print(*ir::parse(out)) == out);  // regions and offsets round-trip too
      auto b = test::Bindings::random_for(*before, 7);
      test::make_guards_hold(*before, b);
      test::make_guards_hold(*g, b);
      auto r0 = test::interpret(*before, b), r1 = test::interpret(*g, b);
      REQUIRE(r0.failed_guard == nullptr);
      REQUIRE(r1.failed_guard == nullptr);
      if (p.exact) {
        CHECK(test::output_bytes(*before, r0) == test::output_bytes(*g, r1));
      } else {  // a pass that changes rounding: the same values within float rounding
        const auto want = test::output_bytes(*before, r0), got = test::output_bytes(*g, r1);
        REQUIRE(want.size() == got.size());
        for (size_t i = 0; i < want.size(); ++i) {
          REQUIRE(want[i].size() == got[i].size());
          const auto* a = reinterpret_cast<const float*>(got[i].data());
          const auto* e = reinterpret_cast<const float*>(want[i].data());
          for (size_t k = 0; k < want[i].size() / sizeof(float); ++k) CHECK(a[k] == doctest::Approx(e[k]).epsilon(1e-5));
        }
      }
    }
    CHECK_MESSAGE(unchanged >= 1, "no case where " << name << " must not fire");
  }
}

TEST_CASE("the FileCheck matcher: CHECK, CHECK-NEXT, CHECK-LABEL, CHECK-NOT") {
  const std::string out = "graph @g() {\n  %0 = a\n  %1 = b\n  return %1\n}\n";
  CHECK(test::filecheck(out, {"CHECK-LABEL: graph @g", "CHECK: = a", "CHECK-NEXT: = b", "CHECK-NOT: = c", "CHECK: return"}) == "");
  CHECK(test::filecheck(out, {"CHECK: = b", "CHECK: = a"}).find("not found") != std::string::npos);  // in order
  CHECK(test::filecheck(out, {"CHECK: graph", "CHECK-NEXT: = b"}).find("CHECK-NEXT") != std::string::npos);
  CHECK(test::filecheck(out, {"CHECK: graph", "CHECK-NOT: = a", "CHECK: return"}).find("line 2") != std::string::npos);
  CHECK(test::filecheck(out, {"CHECK: return", "CHECK-NOT: }"}).find("CHECK-NOT") != std::string::npos);  // to the end
  CHECK(test::filecheck(out, {"CHECK-SAME: x"}).find("unknown directive") != std::string::npos);
}

/// The zoo, LeNet in both variants and one ResNet block (with its 1x1 shortcut; in training, so
/// its BatchNorms commit their running statistics).
std::vector<examples::ZooModel> golden_models() {
  std::vector<examples::ZooModel> models = examples::zoo();
  models.push_back(examples::zoo_model("lenet"));
  models.push_back(examples::zoo_model("lenet-relu"));
  models.push_back({"residual", "Residual(8, use_1x1conv, strides 2)", {2, 4, 8, 8}, [] {
                      auto b = std::make_shared<nn::Residual>(8, true, 2);
                      b->set_name("residual");
                      b->initialize(init::xavier());
                      return std::static_pointer_cast<nn::Block>(b);
                    }});
  models.push_back({"attention-block", "TransformerEncoderLayer(32, 4 heads, 64, pre-norm, causal)", {2, 8, 32}, [] {
                      auto b = std::make_shared<nn::TransformerEncoderLayer>(32, 4, 64, true, true);
                      b->set_name("attention-block");
                      b->initialize(init::xavier());
                      return std::static_pointer_cast<nn::Block>(b);
                    }});
  return models;
}

TEST_CASE("golden IR of the fused attention block: each LayerNorm and the scaled, masked softmax are one row region") {
  auto models = golden_models();
  auto [net, x, t] = trace_zoo(*std::find_if(models.begin(), models.end(), [](const auto& m) { return m.name == "attention-block"; }));
  codegen::optimize(*t.graph, quiet());
  const std::string out = ir::print(*t.graph);
  INFO(out);
  CHECK(test::filecheck(out, {
      "CHECK: fused row {",  // norm1: both sums, the per-row arithmetic and the affine map
      "CHECK-NEXT: sum(%x) {axes=[2], keepdim}", "CHECK: sum(", "CHECK: sqrt(", "CHECK: add(", "CHECK-NEXT: } ->",
      "CHECK: matmul(",  // queries · keys
      "CHECK: fused row {",  // scale, causal mask, softmax: everything between the two products
      "CHECK-NEXT: mul(", "CHECK-NEXT: where(", "CHECK-NEXT: max(", "CHECK-NEXT: sub(", "CHECK-NEXT: exp(",
      "CHECK-NEXT: sum(", "CHECK-NEXT: div(", "CHECK-NEXT: } ->", "CHECK-NEXT: matmul(",
      "CHECK: fused row {",  // norm2, with the output projection's bias and the residual add before it
      "CHECK: sum(", "CHECK: sum(", "CHECK: sqrt(", "CHECK: } ->",
      "CHECK-NOT: fused row",
  }) == "");
  int rows = 0, loose_reductions = 0;
  for (const auto& n : t.graph->nodes()) {
    rows += n->kind == ir::NodeKind::kRegion && n->region == ir::RegionKind::kRow;
    loose_reductions += n->kind == ir::NodeKind::kOp && ir::has_trait(n->op, ir::kReduction);
  }
  CHECK(rows == 3);
  CHECK(loose_reductions == 0);
}

TEST_CASE("golden optimized graphs of every zoo model, which also round-trip and run exactly as traced") {
  for (const auto& m : golden_models()) {
    CAPTURE(m.name);
    auto [net, x, t] = trace_zoo(m);
    codegen::optimize(*t.graph, quiet());
    std::string text = ir::print(*t.graph);
    check_golden("tests/golden/" + m.name + ".opt.ir", text);
    CHECK(ir::print(*ir::parse(text)) == text);
    GraphRun optimized = run(t, {x});
    REQUIRE(optimized.guards_hold);
    CHECK(std::memcmp(optimized.outputs[0].raw_data(), t.outputs[0].raw_data(), t.outputs[0].type().bytes()) == 0);
  }
}

TEST_CASE("every single pass preserves the zoo models' results exactly") {
  for (const auto& m : golden_models()) {
    CAPTURE(m.name);
    auto [net, x, t] = trace_zoo(m);
    test::Bindings b;
    b.inputs = {x};
    for (const auto& p : t.params) b.params.push_back(p.data());
    b.consts = t.consts;
    auto expected = test::output_bytes(*t.graph, test::interpret(*t.graph, b));
    for (const passes::Pass& p : passes::all_passes()) check_pass_preserves(*t.graph, p, b, expected);
  }
}

TEST_CASE("hundreds of random graphs: every pass, and the whole pipeline, preserve the results") {
  int graphs = 0, changed_by_pipeline = 0;
  for (uint64_t seed = 1; seed <= 250; ++seed) {
    CAPTURE(seed);
    auto g = test::random_graph(seed);
    ir::verify(*g);
    auto b = test::Bindings::random_for(*g, seed);
    auto r = test::interpret(*g, b);
    REQUIRE(r.failed_guard == nullptr);
    auto expected = test::output_bytes(*g, r);
    for (const passes::Pass& p : passes::all_passes()) check_pass_preserves(*g, p, b, expected);
    auto h = copy(*g);
    codegen::optimize(*h, quiet());
    changed_by_pipeline += ir::print(*h) != ir::print(*g);
    auto ro = test::interpret(*h, b);  // runs in the planned arena
    REQUIRE(ro.failed_guard == nullptr);
    CHECK(test::output_bytes(*h, ro) == expected);
    ++graphs;
  }
  CHECK(graphs == 250);
  CHECK(changed_by_pipeline > 200);
}

TEST_CASE("memory planning: no two values live at the same time overlap, over random graphs") {
  int in_place_pairs = 0;  // values sharing bytes with an operand their node reads last
  for (uint64_t seed = 1000; seed < 1150; ++seed) {
    CAPTURE(seed);
    auto g = test::random_graph(seed, 40);
    passes::run_pipeline(*g, passes::default_pipeline(), codegen::pass_context(), quiet());
    // Intervals from the final order: [definition, last top-level use].
    auto& nodes = g->mutable_nodes();
    std::unordered_map<const ir::Value*, std::pair<size_t, size_t>> live;
    std::unordered_map<const ir::Value*, const ir::Value*> view_of;  // a reshape sharing its input's bytes
    auto defs = [&](size_t i, const ir::Value* v) {
      if (v->offset >= 0) live[v] = {i, i};
    };
    for (size_t i = 0; i < nodes.size(); ++i) {
      const ir::Node& n = *nodes[i];
      if (n.kind == ir::NodeKind::kOp && n.op == ir::OpKind::Reshape && n.result->offset >= 0 &&
          n.result->offset == n.inputs[0]->offset) {
        view_of[n.result] = view_of.count(n.inputs[0]) ? view_of.at(n.inputs[0]) : n.inputs[0];
        continue;
      }
      if (n.result) defs(i, n.result);
      for (const ir::Value* y : n.yields) defs(i, y);
    }
    for (size_t i = 0; i < nodes.size(); ++i) {
      auto use = [&](const ir::Value* v) {
        if (view_of.count(v)) v = view_of.at(v);  // reading a view keeps its input's bytes live
        auto it = live.find(v);
        if (it != live.end()) it->second.second = std::max(it->second.second, i);
      };
      for (const ir::Value* v : nodes[i]->inputs) use(v);
      for (const auto& b : nodes[i]->body)
        for (const ir::Value* v : b->inputs) use(v);
    }
    std::vector<std::pair<const ir::Value*, std::pair<size_t, size_t>>> all(live.begin(), live.end());
    for (size_t a = 0; a < all.size(); ++a)
      for (size_t c = a + 1; c < all.size(); ++c) {
        auto [va, ia] = all[a];
        auto [vc, ic] = all[c];
        bool overlap_time = ia.first <= ic.second && ic.first <= ia.second;
        bool overlap_space = va->offset < vc->offset + static_cast<int64_t>(vc->type.bytes()) &&
                             vc->offset < va->offset + static_cast<int64_t>(va->type.bytes());
        // In place: the later value's node reads the earlier one last, element for element.
        auto in_place = [&](const ir::Value* early, std::pair<size_t, size_t> ie, const ir::Value* late,
                            std::pair<size_t, size_t> il) {
          return ie.second == il.first && early->offset == late->offset &&
                 ir::reads_in_place(*nodes[il.first], early, late);
        };
        if (overlap_time && overlap_space && (in_place(va, ia, vc, ic) || in_place(vc, ic, va, ia))) {
          ++in_place_pairs;
          continue;
        }
        CHECK_FALSE((overlap_time && overlap_space));
        CHECK(va->offset + static_cast<int64_t>(va->type.bytes()) <= g->arena_bytes);
      }
    CHECK(g->arena_bytes <= passes::intermediate_bytes(*g) + 64 * static_cast<int64_t>(all.size()));
  }
  CHECK(in_place_pairs > 10);
}

TEST_CASE("the seed MLP has two contraction regions and each FixedHiddenMLP halving fuses with the next norm") {
  Trace mlp = trace_zoo(examples::zoo_model("mlp")).t;
  codegen::optimize(*mlp.graph, quiet());
  std::vector<std::vector<std::string>> regions;
  for (const auto& n : mlp.graph->nodes())
    if (n->kind == ir::NodeKind::kRegion && n->region == ir::RegionKind::kContraction) {
      regions.emplace_back();
      for (const auto& b : n->body) regions.back().push_back(std::string(ir::op_name(b->op)));
    }
  CHECK(regions == std::vector<std::vector<std::string>>{{"matmul", "add", "relu"}, {"matmul", "add"}});

  manual_seed(0);
  examples::FixedHiddenMLP net;
  net.initialize(init::uniform(0.5));
  Trace t = trace(net, rand({2, 20}) * 100);
  const int halvings = t.graph->num_guards() - 1;
  REQUIRE(halvings >= 3);
  codegen::optimize(*t.graph, quiet());
  int fused_halvings = 0;
  for (const auto& n : t.graph->nodes()) {
    if (n->kind != ir::NodeKind::kRegion || n->region != ir::RegionKind::kReduction) continue;
    // mul(x, 0.5) (the halving, x / 2 simplified), mul(h, h) and sum: one pass over memory.
    std::vector<std::string> ops;
    for (const auto& b : n->body) ops.push_back(std::string(ir::op_name(b->op)));
    if (ops == std::vector<std::string>{"mul", "mul", "sum"} && n->yields.size() == 2) ++fused_halvings;
  }
  CHECK(fused_halvings == halvings);
}

TEST_CASE("an integer min or max cast to f32 (a label range check), compiled, equals eager at i64's extremes") {
  // Rounding to f32 is monotone, so simplify reduces the cast values; codegen then reads the
  // integers in a loop. Ties and values that round across powers of two are where it could go wrong.
  auto g = ir::parse(
      "graph @range(%t: i64[7], %g: i64[7]) -> (f32[], f32[], bool[], f32[], f32[]) {\n"
      "  %0: i64[] = min(%t) {axes=[0]}\n"
      "  %1: f32[] = cast(%0) {dtype=f32}\n"
      "  %2: i64[] = max(%t) {axes=[0]}\n"
      "  %3: f32[] = cast(%2) {dtype=f32}\n"
      "  %4: f32[] = literal 0\n"
      "  %5: bool[] = lt(%1, %4)\n"
      "  %6: i64[] = min(%g) {axes=[0]}\n"
      "  %7: f32[] = cast(%6) {dtype=f32}\n"
      "  %8: i64[] = max(%g) {axes=[0]}\n"
      "  %9: f32[] = cast(%8) {dtype=f32}\n"
      "  return %1, %3, %5, %7, %9\n"
      "}\n");
  const int64_t big = int64_t{1} << 53;
  const std::vector<std::vector<int64_t>> cases = {
      {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), 0, -1, 1, big + 1, -(big + 1)},
      {16777217, 16777216, 16777215, -16777217, -16777216, 3, 2},
      {big + 1, big + 2, big + 3, big - 1, big, big + 5, big + 7},
  };
  for (const auto& t : cases) {
    CAPTURE(t);
    std::vector<int64_t> rev(t.rbegin(), t.rend());
    const Tensor a = tensor(t, {7}), b = tensor(rev, {7});
    const rt::ConstView in[] = {{a.raw_data(), a.type()}, {b.raw_data(), b.type()}};
    const auto want = rt::interpret(*g, in, {}, {});
    auto simplified = ir::parse(ir::print(*g));
    passes::run_pipeline(*simplified, {{{passes::pass_named("simplify"), passes::pass_named("dce")}}},
                         codegen::pass_context(), quiet());
    const auto got = rt::interpret(*simplified, in, {}, {});
    codegen::CompileOptions co;
    co.use_cache = false;
    const auto exe = codegen::compile(*g, co);
    CHECK(exe->plan().context.nodes.empty());  // no runtime kernel: loops over the integers
    const auto compiled = exe->run(in, {}, {});
    REQUIRE(compiled.failed_guard == -1);
    for (size_t i = 0; i < want.outputs.size(); ++i) {
      CAPTURE(i);
      const size_t bytes = g->outputs()[i]->type.bytes();
      CHECK(std::memcmp(want.outputs[i]->data(), got.outputs[i]->data(), bytes) == 0);
      CHECK(std::memcmp(want.outputs[i]->data(), compiled.outputs[i]->data(), bytes) == 0);
    }
  }
}

TEST_CASE("the pass manager prints after passes, says (unchanged), and knows its passes") {
  auto g = ir::parse(pass_cases(source("tests/passes/dce.ir")).at(0).ir);
  std::ostringstream out;
  passes::PipelineOptions o;
  o.out = &out;
  CHECK(o.parse_flag("--print-after=dce,cse"));
  CHECK_FALSE(o.parse_flag("--verbose"));
  passes::run_pipeline(*g, {{{passes::pass_named("dce"), passes::pass_named("cse")}}}, codegen::pass_context(), o);
  std::string s = out.str();
  CHECK(s.find("// -- after dce --\ngraph @dce") != std::string::npos);
  CHECK(s.find("// -- after cse (unchanged) --") != std::string::npos);
  passes::PipelineOptions all;
  CHECK(all.parse_flag("--print-after-all"));
  CHECK(all.print_after_all);
  CHECK_THROWS_AS(all.parse_flag("--print-after=dse"), ValueError);
  auto report = codegen::optimize(*trace_zoo(examples::zoo_model("fixed-hidden-mlp")).t.graph, quiet());
  CHECK(report.runs.size() >= passes::all_passes().size());
  CHECK(report.arena_bytes > 0);
  CHECK(report.arena_bytes < report.intermediate_bytes);
}
