// Bad input: each raises a typed bj::Error whose message names the block
// path, the op and the shapes; nothing aborts.
#include "examples/seed_models.h"
#include "tests/helpers.h"

using namespace bj;
using namespace bj::examples;
using bj::test::check_error;

TEST_CASE("a Dense input width that differs from its weight names the block path and shapes") {
  Sequential chim = chimera();
  chim.set_name("chimera");
  chim.initialize();
  chim(rand({2, 20}));
  check_error<ShapeError>([&] { chim(rand({2, 32})); },
                          {"chimera.0.net.0", "Dense", "input has 32 features, weight expects 20", "f32[2,32]",
                           "weight f32[64,20]"});
  // A nested custom block, called directly: the path starts at that block.
  NestMLP nest;
  nest.initialize();
  nest(rand({3, 20}));
  check_error<ShapeError>([&] { nest(rand({3, 7})); }, {"NestMLP.net.0: Dense: input has 7 features"});
}

TEST_CASE("matmul inner dimensions, broadcasting, concat ranks") {
  check_error<ShapeError>([] { matmul(ones({2, 3}), ones({4, 5})); },
                          {"matmul", "inner dimensions differ: 3 vs 4", "f32[2,3]", "f32[4,5]"});
  check_error<ShapeError>([] { ones({2, 3}) + ones({4}); }, {"add", "[2, 3]", "[4]", "do not broadcast"});
  check_error<ShapeError>([] { concat({ones({2, 3}), ones({3})}, 0); }, {"concat", "f32[2,3]", "f32[3]"});
  struct Bad : nn::Block {
    Tensor forward(const Tensor& x) override { return x * ones({5}); }
  };
  Sequential net(Bad{});
  net.set_name("net");
  check_error<ShapeError>([&] { net(ones({2, 3})); }, {"net.0: mul: shapes [2, 3] and [5] do not broadcast"});
}

TEST_CASE("calling a block whose parameters were never initialized") {
  MLP mlp;
  check_error<NotInitializedError>([&] { mlp(rand({2, 20})); },
                                   {"MLP.hidden", "parameter 'weight'", "call initialize()"});
  Dense d(4, "none", true, 3);
  check_error<NotInitializedError>([&] { d(rand({2, 3})); }, {"Dense", "weight", "[4, 3]"});
}

TEST_CASE("item() on a multi-element tensor, bool of a multi-element tensor") {
  check_error<ValueError>([] { ones({2, 2}).item(); }, {"item", "one-element", "f32[2,2]"});
  check_error<ValueError>([] { (void)static_cast<bool>(ones({3}) > 0); }, {"ambiguous", "bool[3]"});
}

TEST_CASE("wrong-rank input") {
  Dense d(4);
  d.initialize();
  check_error<ShapeError>([&] { d(ones({5})); }, {"Dense", "rank >= 2", "f32[5]"});
  MLP mlp;
  mlp.initialize();
  check_error<ShapeError>([&] { mlp(ones({20})); }, {"MLP.hidden: Dense", "f32[20]"});
}

TEST_CASE("dtype mistakes and undefined tensors") {
  check_error<DTypeError>([] { exp(ones({2}, kI64)); }, {"exp", "f32", "i64[2]"});
  check_error<DTypeError>([] { ones({2}) + ones({2}, kI64); }, {"add", "one dtype", "f32[2]", "i64[2]"});
  check_error<ValueError>([] { Tensor() + ones({1}); }, {"add", "undefined"});
  check_error<IndexError>([] { ones({2, 3}).sum({3}); }, {"sum", "axis 3", "rank 2"});
}

TEST_CASE("every error is a bj::Error and a std::exception") {
  CHECK_THROWS_AS(matmul(ones({2, 3}), ones({4, 5})), Error);
  CHECK_THROWS_AS(matmul(ones({2, 3}), ones({4, 5})), std::exception);
}
