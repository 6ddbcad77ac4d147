// The random generator: Philox known-answer tests (so numbers are the same
// on every machine), seeding, ranges and moments.
#include "runtime/philox.h"
#include "tests/helpers.h"

using namespace bj;
using bj::test::values;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
  using A4 = std::array<uint32_t, 4>;
  CHECK(rt::philox4x32(A4{0, 0, 0, 0}, {0, 0}) == A4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(rt::philox4x32(A4{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        A4{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(rt::philox4x32(A4{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        A4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("manual_seed: same seed, same numbers, and the stream moves on") {
  manual_seed(0);
  auto a = values(rand({5}));
  auto a2 = values(rand({5}));
  manual_seed(0);
  CHECK(values(rand({5})) == a);
  CHECK(values(rand({5})) == a2);
  CHECK(a != a2);
  manual_seed(1);
  CHECK(values(rand({5})) != a);
  // The first numbers of seed 0, fixed for every machine (24-bit floats from Philox words).
  manual_seed(0);
  auto first = rand({4}).to_vector();
  CHECK(first[0] == doctest::Approx(0.399046421).epsilon(1e-7));
  CHECK(first[1] == doctest::Approx(0.880520165).epsilon(1e-7));
  CHECK(first[2] == doctest::Approx(0.735712767).epsilon(1e-7));
  CHECK(first[3] == doctest::Approx(0.605481803).epsilon(1e-7));
}

TEST_CASE("uniform and normal: ranges and moments") {
  manual_seed(7);
  auto u = values(uniform(-3, 5, {100000}));
  double mean = 0;
  for (double v : u) {
    CHECK_UNARY(v >= -3);
    CHECK_UNARY(v < 5);
    mean += v / u.size();
  }
  CHECK(mean == doctest::Approx(1.0).epsilon(0.02));
  auto n = values(normal(2, 0.5, {100001}));
  double m = 0, var = 0;
  for (double v : n) m += v / n.size();
  for (double v : n) var += (v - m) * (v - m) / n.size();
  CHECK(m == doctest::Approx(2.0).epsilon(0.01));
  CHECK(std::sqrt(var) == doctest::Approx(0.5).epsilon(0.01));
  for (double v : values(randn({1000}))) CHECK(std::isfinite(v));
}
