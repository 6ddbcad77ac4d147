// The text IR: printer, parser (round trips, malformed text), verifier and
// DOT export, on hand-written files and on every zoo model's trace.
#include <fstream>
#include <sstream>

#include "examples/zoo.h"
#include "runtime/interpreter.h"
#include "tests/helpers.h"

using namespace bj;

namespace {
std::string read_file(const std::string& path) {
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "cannot read " << path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
std::string source(const std::string& rel) { return std::string(BJ_SOURCE_DIR) + "/" + rel; }

Trace trace_zoo(const examples::ZooModel& m) {
  manual_seed(0);
  auto net = m.make();
  return trace(*net, rand(m.input));
}
}  // namespace

TEST_CASE("hand-written IR files parse, verify and print back byte for byte") {
  for (std::string file : {"tests/ir/ops.ir", "tests/ir/guards.ir"}) {
    CAPTURE(file);
    std::string text = read_file(source(file));
    auto g = ir::parse(text);
    ir::verify(*g);
    CHECK(ir::print(*g) == text);
  }
}

TEST_CASE("every zoo model's trace verifies and round-trips through the text form") {
  for (const auto& m : examples::zoo()) {
    CAPTURE(m.name);
    Trace t = trace_zoo(m);
    ir::verify(*t.graph);
    std::string text = ir::print(*t.graph);
    auto g = ir::parse(text);
    ir::verify(*g);
    CHECK(ir::print(*g) == text);
  }
}

TEST_CASE("a parsed graph runs in the interpreter like the graph it was printed from") {
  std::string text = read_file(source("tests/ir/guards.ir"));
  auto g = ir::parse(text);
  Tensor small = tensor({0.5, 0.5, 0.5, 0.6});  // norm just above 1: one halving
  rt::ConstView in{small.raw_data(), small.type()};
  auto r = rt::interpret(*g, {&in, 1}, {}, {});
  REQUIRE(r.failed_guard == nullptr);
  Tensor out(std::make_shared<detail::TensorImpl>(detail::TensorImpl{r.outputs[0], g->outputs()[0]->type, nullptr}));
  test::check_close(out, {2.1 / 2});
  Tensor tiny = tensor({0.1, 0.1, 0.1, 0.1});  // no halving: the first guard fails
  rt::ConstView in2{tiny.raw_data(), tiny.type()};
  auto r2 = rt::interpret(*g, {&in2, 1}, {}, {});
  REQUIRE(r2.failed_guard != nullptr);
  CHECK(r2.failed_guard_index == 0);
  CHECK(r2.failed_guard->origin.file == "loop.cpp");
  CHECK(r2.outputs.empty());
}

TEST_CASE("malformed text gives a ParseError with line:column, never a crash") {
  struct Bad {
    std::string text, where, what;
  };
  const std::string head = "graph @g(%x: f32[2]) -> (f32[2]) {\n";
  const Bad cases[] = {
      {"", "1:1", "'graph'"},
      {"graph g(", "1:7", "'@'"},
      {"graph @g(%x: f33[2]) -> (f32[2]) {\n", "1:14", "a dtype (f32, i64, bool, bf16), got 'f33'"},
      {"graph @g(%x: f32[2) -> (f32[2]) {\n", "1:19", "']'"},
      {head + "  %0: f32[2] = frobnicate(%x)\n  return %0\n}\n", "2:16", "an op name"},
      {head + "  %0: f32[2] = neg(%y)\n  return %0\n}\n", "2:20", "%y is not defined"},
      {head + "  %0: f32[2] = neg(%x\n  return %0\n}\n", "2:22", "')'"},
      {head + "  %0: f32[2] = neg(%x) {color=red}\n  return %0\n}\n", "2:25", "a known attribute (got 'color')"},
      {head + "  %0: f32[2] = literal [1, 2, 3]\n  return %0\n}\n", "2:24", "2 value(s) for f32[2]"},
      {head + "  %0: f32[2] = literal 0x00ff\n  return %0\n}\n", "2:24", "hex data of 8 bytes"},
      {head + "  %0: f32[2] = neg(%x)\n  %0: f32[2] = neg(%x)\n  return %0\n}\n", "3:3", "%0 is already defined"},
      {head + "  guard %x == maybe\n  return %x\n}\n", "2:15", "'false'"},
      {head + "  %0: f32[2] = neg(%x)\n", "3:1", "a node, 'return' or '}'"},
      {head + "  return %x\n}\nextra\n", "4:1", "the end of the text"},
      {head + "  %0: f32[2] = neg(%x) junk\n  return %0\n}\n", "2:24", "the end of the line"},
      {head + "  %0: f32[2] = add(%x, %x) {perm=[0]}\n  return %0\n}\n", "2:29", "an attribute add reads (none), got 'perm'"},
      {head + "  %0: f32[] = sum(%x) {axes=[0], step=2}\n  return %0\n}\n", "2:34", "an attribute sum reads (axes, keepdim), got 'step'"},
      {head + "  %0: f32[] = sum(%x) {axes=[0], axes=[0]}\n  return %0\n}\n", "2:34", "each attribute once ('axes' is given twice)"},
      {head + "  fused loopy {\n    %0: f32[2] = neg(%x)\n  } -> (%0)\n  return %0\n}\n", "2:9", "a region kind (elementwise, contraction, reduction, row), got 'loopy'"},
  };
  for (const Bad& b : cases) {
    CAPTURE(b.text);
    test::check_error<ParseError>([&] { ir::parse(b.text); }, {b.where + ": expected", b.what});
  }
  test::check_error<ParseError>([&] { ir::parse(head + "  return %x\n}\n").get(); ir::parse("graph @g() -> (f32[3]) {\n  return\n}\n"); },
                                {"declares 1 results, return gives 0"});
}

TEST_CASE("the verifier names the node and what is wrong") {
  auto wrong_type = "graph @g(%x: f32[2,3]) -> (f32[2,2]) {\n  %0: f32[2,2] = relu(%x)   # net.3\n  return %0\n}\n";
  test::check_error<VerifyError>([&] { ir::verify(*ir::parse(wrong_type)); },
                                 {"%0: f32[2,2] = relu(%x)", "net.3", "should be f32[2,3]"});
  auto bad_shapes = "graph @g(%x: f32[2,3]) -> (f32[2,2]) {\n  %0: f32[2,2] = matmul(%x, %x)\n  return %0\n}\n";
  test::check_error<VerifyError>([&] { ir::verify(*ir::parse(bad_shapes)); }, {"matmul", "inner dimensions differ"});
  auto bad_guard = "graph @g(%x: f32[2]) -> (f32[2]) {\n  guard %x == true\n  return %x\n}\n";
  test::check_error<VerifyError>([&] { ir::verify(*ir::parse(bad_guard)); }, {"one-element bool predicate", "f32[2]"});
  auto noncanonical = "graph @g(%x: f32[2,3]) -> (f32[2]) {\n  %0: f32[2] = sum(%x) {axes=[-1]}\n  return %0\n}\n";
  test::check_error<VerifyError>([&] { ir::verify(*ir::parse(noncanonical)); }, {"canonical"});
  auto arity = "graph @g(%x: f32[2]) -> (f32[2]) {\n  %0: f32[2] = add(%x)\n  return %0\n}\n";
  test::check_error<VerifyError>([&] { ir::verify(*ir::parse(arity)); }, {"line 2:3", "add takes 2 operands, got 1"});
  // A graph built in code with attributes its op does not read (the text form cannot even say it).
  ir::Graph g("g");
  ir::Value* x = g.add_input("x", Type{DType::kF32, {2, 3}});
  ir::OpAttrs perm;
  perm.dims = {1, 0};
  perm.step = 2;
  g.add_output(g.add_op(ir::OpKind::Neg, perm, {x}, Type{DType::kF32, {2, 3}}, {}));
  test::check_error<VerifyError>([&] { ir::verify(g); }, {"neg", "sets attributes neg does not read: axes/perm/shape, step"});
}

TEST_CASE("DOT export: clusters per block path, parameters and constants drawn apart, typed edges") {
  Trace t = trace_zoo(examples::zoo_model("chimera"));
  std::string dot = ir::to_dot(*t.graph);
  CHECK(dot.rfind("digraph \"chimera\" {", 0) == 0);
  CHECK(dot.find("label=\"chimera.0.net.0\"") != std::string::npos);
  CHECK(dot.find("label=\"chimera.2.linear\"") != std::string::npos);
  CHECK(dot.find("param %2.linear.weight\\nf32[20,20]\", shape=box, style=filled, fillcolor=lightyellow") !=
        std::string::npos);
  CHECK(dot.find("const %2.rand_weight\\nf32[20,20]\", shape=box, style=filled, fillcolor=lightgrey") !=
        std::string::npos);
  CHECK(dot.find("[label=\"f32[2,64]\"]") != std::string::npos);
  CHECK(dot.find("guard == true") != std::string::npos);
  CHECK(dot.back() == '\n');
}
