// Hostile inputs to the public API, the IR parser and the verifier: each
// must be a typed error (bj::Error, or std::bad_alloc for a genuinely
// impossible allocation) with a useful message, never a crash, a hang, a
// huge allocation or a silently wrong result.
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <fstream>
#include <set>
#include <string>

#include "tests/helpers.h"

using namespace bj;

TEST_CASE("the public API: impossible shapes and sizes are typed errors") {
  test::check_error<ShapeError>([] { expand(ones({1}), {-5}); }, {"expand", "negative dimension"});
  Tensor x = ones({5});
  CHECK(slice(x, 0, 0, 3, INT64_MAX).shape() == Shape{1});  // one element, no overflow
  CHECK(slice(x, 0, 4, 5, INT64_MAX).shape() == Shape{1});
  CHECK(slice(x, 0, 0, 0, INT64_MAX).shape() == Shape{0});
  test::check_error<ShapeError>([] { expand(ones({1}), {int64_t{1} << 62}); }, {"expand", "more than 2^59 elements"});
  test::check_error<ShapeError>([] { zeros({int64_t{1} << 32, int64_t{1} << 32}); }, {"more than 2^59 elements"});
  test::check_error<ShapeError>([] { zeros({-1, 3}); }, {"negative dimension"});
  test::check_error<ShapeError>([] { reshape(ones({4}), {int64_t{1} << 40, int64_t{1} << 40, 0, -1}); }, {"reshape"});
  CHECK(zeros({int64_t{1} << 40, int64_t{1} << 40, 0}).numel() == 0);  // empty, not overflowing
  CHECK_THROWS_AS(rt::make_storage(SIZE_MAX - 100), std::bad_alloc);
  CHECK_THROWS_AS(rt::make_storage(SIZE_MAX / 2), std::bad_alloc);
}

namespace {
std::string graph(const std::string& body, const std::string& sig = "(%x: f32[2]) -> (f32[2])") {
  return "graph @g" + sig + " {\n" + body + "}\n";
}
}  // namespace

TEST_CASE("IR text: shapes, literals and sizes that lie are parse errors at their line and column") {
  using test::check_error;
  check_error<ParseError>([] { ir::parse(graph("  return %x\n", "(%x: f32[-2,20]) -> (f32[2])")); },
                          {"1:", "negative dimension"});
  check_error<ParseError>([] { ir::parse(graph("  return %x\n", "(%x: f32[4294967296,4294967296]) -> (f32[2])")); },
                          {"more than 2^59 elements"});
  check_error<VerifyError>([] { ir::verify(*ir::parse(graph("  %0: f32[5] = expand(%x) {shape=[-5]}\n  return %x\n"))); },
                          {"line 2:3", "[-5]"});
  // A 300-byte file whose literal claims 16 GB: an error, and nothing near 16 GB allocated.
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  check_error<ParseError>([] { ir::parse(graph("  %0: f32[4294967296] = literal [1, 2]\n  return %x\n")); },
                          {"2:", "4294967296 value(s)"});
  check_error<ParseError>([] { ir::parse(graph("  %0: f32[4294967296] = literal 0x0011\n  return %x\n")); },
                          {"hex data of 17179869184 bytes"});
  getrusage(RUSAGE_SELF, &after);
  CHECK(after.ru_maxrss - before.ru_maxrss < 100 * 1024);  // KiB
  // Literal values are converted exactly or rejected.
  check_error<ParseError>([] { ir::parse(graph("  %0: i64[] = literal nan\n  return %x\n")); }, {"2:", "whole number"});
  check_error<ParseError>([] { ir::parse(graph("  %0: i64[] = literal 1e300\n  return %x\n")); }, {"whole number"});
  check_error<ParseError>([] { ir::parse(graph("  %0: i64[] = literal 2.9\n  return %x\n")); }, {"whole number"});
  check_error<ParseError>([] { ir::parse(graph("  %0: i64[] = literal 99999999999999999999\n  return %x\n")); },
                          {"an i64 value"});
  auto big = ir::parse(graph("  %0: i64[] = literal 9007199254740993\n  return %x\n"));  // 2^53 + 1, exactly
  int64_t v = 0;
  std::memcpy(&v, big->nodes()[0]->data.data(), 8);
  CHECK(v == 9007199254740993);
  auto bf = ir::parse(graph("  %0: bf16[2] = literal [1.5, -2]\n  return %x\n"));
  uint16_t h[2];
  std::memcpy(h, bf->nodes()[0]->data.data(), 4);
  CHECK(h[0] == 0x3fc0);  // 1.5 in bf16, not a bool byte
  CHECK(h[1] == 0xc000);
}

TEST_CASE("the verifier: arity before operands, planned offsets in bounds, aligned and never shared while live") {
  using test::check_error;
  check_error<VerifyError>(
      [] { ir::verify(*ir::parse(graph("  fused reduction {\n    %0: f32[] = sum() {axes=[]}\n  } -> (%0)\n  return %x\n"))); },
      {"line 3:5", "sum takes 1 operands, got 0"});
  auto planned = [](const std::string& body, int64_t arena) {
    return "graph @g(%x: f32[4]) -> (f32[4]) arena " + std::to_string(arena) + " {\n" + body + "}\n";
  };
  check_error<VerifyError>([&] { ir::verify(*ir::parse(planned("  %0: f32[4] @100000000 = neg(%x)\n  %1: f32[4] = abs(%0)\n  return %1\n", 16))); },
                           {"line 2:3", "do not fit the arena of 16 bytes"});
  check_error<VerifyError>([&] { ir::verify(*ir::parse(planned("  %0: f32[4] @2049 = neg(%x)\n  %1: f32[4] = abs(%0)\n  return %1\n", 2048))); },
                           {"not 64-byte aligned"});
  check_error<VerifyError>([&] { ir::verify(*ir::parse(planned("  %0: f32[4] @2048 = neg(%x)\n  %1: f32[4] = abs(%0)\n  return %1\n", 2048))); },
                           {"do not fit the arena"});
  // Two values live at once at overlapping offsets: the plan would compute abs(x) where neg(x) was asked.
  check_error<VerifyError>([&] {
    ir::verify(*ir::parse(planned("  %0: f32[4] @0 = neg(%x)\n  %1: f32[4] @0 = abs(%x)\n  %2: f32[4] = add(%0, %1)\n  return %2\n", 64)));
  }, {"overlap", "neg(%x)"});
  // ...and a value reusing the bytes of one that died earlier is fine.
  ir::verify(*ir::parse(planned("  %0: f32[4] @0 = neg(%x)\n  %1: f32[4] @64 = abs(%0)\n  %2: f32[4] @0 = exp(%1)\n  %3: f32[4] = add(%2, %2)\n  return %3\n", 128)));
  // A long origin comment is not echoed whole.
  std::string long_origin(100000, 'p');
  try {
    ir::verify(*ir::parse(graph("  %0: f32[2] = add(%x)     # " + long_origin + "\n  return %0\n")));
    FAIL("expected a VerifyError");
  } catch (const VerifyError& e) {
    CHECK(std::string(e.what()).size() < 1000);
  }
}

TEST_CASE("the verifier is linear in the number of regions (100000 regions: it was quadratic, minutes)") {
  std::string body;
  std::string prev = "%x";
  for (int i = 0; i < 100000; ++i) {
    body += "  fused elementwise {\n    %" + std::to_string(i) + ": f32[2] = neg(" + prev + ")\n  } -> (%" +
            std::to_string(i) + ")\n";
    prev = "%" + std::to_string(i);
  }
  auto g = ir::parse(graph(body + "  return " + prev + "\n"));
  ir::verify(*g);  // no timing assertion: a quadratic verifier would take minutes and time the test out
  CHECK(g->nodes().size() == 100000);
}

TEST_CASE("the IR fuzzer's dictionary lists every op's spelling (tests/fuzz/ir.dict follows ir/ops.def)") {
  std::ifstream f(std::string(BJ_SOURCE_DIR) + "/tests/fuzz/ir.dict");
  REQUIRE(f);
  std::set<std::string> words;
  for (std::string line; std::getline(f, line);)
    if (line.size() >= 2 && line.front() == '"' && line.back() == '"') words.insert(line.substr(1, line.size() - 2));
  for (int i = 0; i < ir::kNumOps; ++i) {
    const std::string name(ir::op_name(static_cast<ir::OpKind>(i)));
    CAPTURE(name);
    CHECK(words.count(name) == 1);
  }
}
