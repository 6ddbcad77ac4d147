// Dynamic batch (HybridizeOptions::dynamic_batch, ir/batch.h): two traces at
// different batch sizes that are one program unify into one variant for
// every batch size; each later size's first call is traced and checked to
// be that program. Results equal eager's at every size, batch 0 and 1
// included; guards still decide as eager mode does; a program that depends
// on the batch size keeps a variant per size.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <thread>

#include "codegen/executable.h"
#include "frontend/dispatch.h"
#include "frontend/trace.h"
#include "runtime/interpreter.h"
#include "examples/zoo.h"
#include "ir/batch.h"
#include "tests/helpers.h"
#include "tests/random_graph.h"

using namespace bj;

namespace {

/// x at batch size n for model m (its default input with dim 0 replaced).
Tensor input_at(const examples::ZooModel& m, int64_t n, uint64_t seed) {
  Shape s = m.input;
  s[0] = n;
  return examples::example_input(m, s, seed);
}

}  // namespace

TEST_CASE("dynamic batch: a block called at 80 batch sizes (0 and 1 included) keeps at most 2 variants, every result eager's") {
  for (const char* name : {"mlp", "nest-mlp", "parallel", "factory"}) {
    CAPTURE(name);
    const auto& m = examples::zoo_model(name);
    manual_seed(7);
    auto net = m.make();
    NoGradGuard no_grad;
    net->call_eager(input_at(m, 2, 1));
    net->hybridize({.use_cache = false, .adaptive = false});
    for (int64_t n = 0; n < 80; ++n) {
      CAPTURE(n);
      const int64_t b = (n * 37 + 5) % 80;  // every size once, in a scrambled order
      const Tensor x = input_at(m, b, static_cast<uint64_t>(b) + 3);
      const Tensor want = net->call_eager(x);
      test::check_near((*net)(x), want, {1e-5, 1e-6});  // the traced call (eager) or compiled
      test::check_near((*net)(x), want, {1e-5, 1e-6});  // compiled from the second call of a size
    }
    const nn::HybridStats s = net->stats();
    CHECK(s.variants <= 2);
    CHECK(s.dynamic_variants == 1);
    CHECK(s.dynamic_sizes >= 78);
    CHECK(s.compiled_hits >= 78);
    CHECK(s.str().find("every batch size") != std::string::npos);
  }
}

TEST_CASE("dynamic batch: FixedHiddenMLP's guards decide as eager does at every batch size") {
  const auto& m = examples::zoo_model("fixed-hidden-mlp");
  for (const char* name : {"fixed-hidden-mlp", "chimera"}) {
    CAPTURE(name);
    manual_seed(11);
    auto net = examples::zoo_model(name).make();
    NoGradGuard no_grad;
    net->hybridize({.use_cache = false, .adaptive = false});
    for (int64_t b : {2, 3, 5, 8, 1, 0, 13, 64, 7, 3, 2, 40}) {
      CAPTURE(b);
      for (double scale : {0.1, 1.0, 30.0}) {  // the while loop runs a different number of times
        CAPTURE(scale);
        const Tensor x = input_at(m, b, static_cast<uint64_t>(b)) * scale;
        const Tensor want = net->call_eager(x);
        test::check_near((*net)(x), want, {1e-5, 1e-6});
        test::check_near((*net)(x), want, {1e-5, 1e-6});
      }
    }
    CHECK(net->stats().compiled_hits > 0);
  }
}

TEST_CASE("dynamic batch: the vision and sequence zoos agree with eager mode at every batch size") {
  std::vector<examples::ZooModel> models = examples::vision_zoo();
  for (const auto& m : examples::sequence_zoo()) models.push_back(m);
  for (const auto& m : models) {
    if (m.name == "resnet18") continue;  // 96x96 images: slow under the sanitizers; resnet18-28 is the same network
    CAPTURE(m.name);
    manual_seed(13);
    auto net = m.make();
    NoGradGuard no_grad;
    net->eval();
    net->call_eager(input_at(m, 2, 1));
    net->hybridize({.use_cache = false, .adaptive = false});
    for (int64_t b : {2, 3, 1, 5, 0, 4}) {
      CAPTURE(b);
      const Tensor x = input_at(m, b, static_cast<uint64_t>(b) + 20);
      const Tensor want = net->call_eager(x);
      test::check_near((*net)(x), want, {1e-4, 1e-5});
      test::check_near((*net)(x), want, {1e-4, 1e-5});
    }
    CHECK(net->stats().compile_failures == 0);
    if (m.name.starts_with("lenet")) CHECK(net->stats().dynamic_variants == 1);  // convolutions, pooling
  }
}

TEST_CASE("dynamic batch: opting out keeps one variant per batch size") {
  const auto& m = examples::zoo_model("mlp");
  manual_seed(3);
  auto net = m.make();
  NoGradGuard no_grad;
  net->hybridize({.use_cache = false, .adaptive = false, .dynamic_batch = false});
  for (int64_t b : {2, 3, 4, 5}) {
    const Tensor x = input_at(m, b, 1);
    (*net)(x);
    test::check_near((*net)(x), net->call_eager(x), {1e-5, 1e-6});
  }
  CHECK(net->stats().variants == 4);
  CHECK(net->stats().dynamic_variants == 0);
}

TEST_CASE("dynamic batch: a program that depends on the batch size does not unify") {
  // The mean over the batch divides by a literal of the batch size: each size is its own program.
  struct BatchMean : nn::Block {
    Tensor forward(const Tensor& x) override {
      return x - x.sum({0}, true) * full({1}, 1.0 / static_cast<double>(x.shape()[0]));
    }
  };
  BatchMean net;
  NoGradGuard no_grad;
  net.hybridize({.use_cache = false, .adaptive = false});
  for (int64_t b : {2, 3, 4, 3, 2, 4}) {
    const Tensor x = uniform(-1, 1, {b, 5});
    const Tensor want = net.call_eager(x);
    test::check_near(net(x), want, {1e-5, 1e-6});
  }
  CHECK(net.stats().dynamic_variants == 0);
  CHECK(net.stats().variants == 3);
}

TEST_CASE("dynamic batch: unify_batch and fits_batch accept the same program at other sizes, nothing else") {
  const char* at2 = R"(graph @f(%x: f32[2,3]) -> (f32[2,4]) {
  param %w: f32[4,3]
  %0: f32[2,4] = matmul(%x, %w) {transpose_b}
  %1: f32[2,4] = relu(%0)
  return %1
})";
  const char* at5 = R"(graph @f(%x: f32[5,3]) -> (f32[5,4]) {
  param %w: f32[4,3]
  %0: f32[5,4] = matmul(%x, %w) {transpose_b}
  %1: f32[5,4] = relu(%0)
  return %1
})";
  const char* other = R"(graph @f(%x: f32[5,3]) -> (f32[5,4]) {
  param %w: f32[4,3]
  %0: f32[5,4] = matmul(%x, %w) {transpose_b}
  %1: f32[5,4] = sigmoid(%0)
  return %1
})";
  auto a = ir::parse(at2), b = ir::parse(at5), c = ir::parse(other);
  const auto factors = ir::unify_batch(*a, 2, *b, 5);
  REQUIRE(factors);
  CHECK(*factors == std::vector<int32_t>{1, 0, 1, 1});  // x, w, %0, %1
  std::string why;
  CHECK_FALSE(ir::unify_batch(*a, 2, *c, 5, &why));
  CHECK(why.find("sigmoid") != std::string::npos);  // the first difference, as printed
  CHECK_FALSE(ir::unify_batch(*a, 2, *b, 2));
  CHECK_FALSE(ir::unify_batch(*a, 3, *b, 5));  // 2 is not 3k with 5 = 5k
  CHECK(ir::fits_batch(*b, 5, *factors, *a, 2));
  CHECK_FALSE(ir::fits_batch(*b, 5, *factors, *c, 5));
  // The graph for every batch size prints its batched dims as N.
  ir::set_batch(*b, 5, *factors);
  const std::string text = ir::print(*b);
  CHECK(text.find("%x: f32[N,3]") != std::string::npos);
  CHECK(text.find("batch N (traced at 5)") != std::string::npos);
  CHECK(text.find("%w: f32[4,3]") != std::string::npos);
}

TEST_CASE("dynamic batch: code for every batch size computes what the interpreter computes at sizes 0 to 300") {
  // Elementwise work, a broadcast bias, a row softmax, reductions over the last axis and over the
  // batch, a view, small products (loops and packed kernels), a large one (the runtime's) and a
  // product over the batch, compiled once from the graphs at sizes 3 and 7.
  auto text = [](int64_t n) {
    return fmt::format(R"(graph @g(%x: f32[{0},40]) -> (f32[{0},48], f32[{0}], f32[{0},300], f32[{0},8,5], f32[40], f32[40,40], f32[{0},10]) {{
  param %w: f32[48,40]
  param %v: f32[300,40]
  param %u: f32[10,40]
  param %b: f32[40]
  %0: f32[{0},48] = matmul(%x, %w) {{transpose_b}}
  %1: f32[{0},48] = tanh(%0)
  %2: f32[{0},40] = add(%x, %b)
  %3: f32[{0}] = sum(%2) {{axes=[1]}}
  %4: f32[{0},300] = matmul(%2, %v) {{transpose_b}}
  %5: f32[{0},1] = max(%x) {{axes=[1], keepdim}}
  %6: f32[{0},40] = sub(%x, %5)
  %7: f32[{0},40] = exp(%6)
  %8: f32[{0},1] = sum(%7) {{axes=[1], keepdim}}
  %9: f32[{0},40] = div(%7, %8)
  %10: f32[{0},8,5] = reshape(%9) {{shape=[{0},8,5]}}
  %11: f32[40] = sum(%x) {{axes=[0]}}
  %12: f32[40,40] = matmul(%x, %x) {{transpose_a}}
  %13: f32[{0},10] = matmul(%9, %u) {{transpose_b}}
  return %1, %3, %4, %10, %11, %12, %13
}})",
                       n);
  };
  auto g3 = ir::parse(text(3)), g7 = ir::parse(text(7));
  auto exe = codegen::compile_dynamic(*g3, 3, *g7, 7, {.use_cache = false});
  REQUIRE(exe);
  CHECK(exe->dynamic());
  manual_seed(5);
  std::vector<Tensor> params;
  for (const ir::Value* p : g7->params()) params.push_back(uniform(-0.5, 0.5, p->type.shape));
  for (int64_t n : {0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 33, 64, 100, 257, 300}) {
    CAPTURE(n);
    auto gn = ir::parse(text(n));
    const Tensor x = uniform(-2, 2, {n, 40});
    std::vector<rt::ConstView> in{{x.raw_data(), x.type()}}, ps;
    for (const Tensor& p : params) ps.push_back({p.raw_data(), p.type()});
    const auto want = rt::interpret(*gn, in, ps, {});
    const auto got = exe->run(in, ps, {});
    REQUIRE(got.failed_guard == -1);
    REQUIRE(got.outputs.size() == want.outputs.size());
    for (size_t i = 0; i < got.outputs.size(); ++i) {
      CAPTURE(i);
      const Type t = gn->outputs()[i]->type;
      CHECK(exe->output_type(i, n) == t);
      test::check_near(detail::tensor_over(got.outputs[i], t), detail::tensor_over(want.outputs[i], t), {1e-4, 1e-5});
    }
  }
}

TEST_CASE("dynamic batch: 8 threads calling at many batch sizes at once all get eager's results") {
  const auto& m = examples::zoo_model("mlp");
  manual_seed(17);
  auto net = m.make();
  NoGradGuard no_grad;
  net->call_eager(input_at(m, 2, 1));
  std::vector<Tensor> xs, want;
  for (int64_t b = 0; b < 24; ++b) {
    xs.push_back(input_at(m, b, static_cast<uint64_t>(b) + 40));
    want.push_back(net->call_eager(xs.back()));
  }
  net->hybridize({.use_cache = false, .adaptive = false});
  std::vector<std::thread> threads;
  std::vector<int> wrong(8, 0);
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      NoGradGuard inner;
      for (int i = 0; i < 60; ++i) {
        const size_t k = static_cast<size_t>((i * 7 + t * 5) % 24);
        if (!test::near((*net)(xs[k]), want[k], {1e-5, 1e-6})) ++wrong[static_cast<size_t>(t)];
      }
    });
  for (auto& th : threads) th.join();
  for (int w : wrong) CHECK(w == 0);
  CHECK(net->stats().dynamic_variants <= 1);
  // Every size was seen: calls now run compiled code (a variant of its own, or the dynamic one).
  net->wait_for_compiles();
  const int64_t traces = net->stats().traces, hits = net->stats().compiled_hits;
  for (size_t k = 0; k < xs.size(); ++k) test::check_near((*net)(xs[k]), want[k], {1e-5, 1e-6});
  CHECK(net->stats().traces == traces);
  CHECK(net->stats().compiled_hits == hits + 24);
}

TEST_CASE("dynamic batch: random graphs compiled for every batch size agree with the interpreter at other sizes") {
  int unified = 0, runs = 0;
  auto views = [](const std::vector<Tensor>& ts) {
    std::vector<rt::ConstView> v;
    for (const Tensor& t : ts) v.push_back({t.raw_data(), t.type()});
    return v;
  };
  for (uint64_t seed = 0; seed < 200; ++seed) {
    CAPTURE(seed);
    auto a = test::random_graph(seed, 24, 3), b = test::random_graph(seed, 24, 7);
    const auto factors = ir::unify_batch(*a, 3, *b, 7);
    if (!factors) continue;  // the sizes changed the program (a broadcast, a guard, a size cap)
    auto exe = codegen::compile_dynamic(*a, 3, *b, 7, {.use_cache = false});
    if (!exe) continue;
    ++unified;
    for (int64_t n : {1, 2, 5, 9, 16}) {
      CAPTURE(n);
      auto gn = test::random_graph(seed, 24, n);
      if (!ir::fits_batch(*b, 7, *factors, *gn, n)) continue;
      const auto data = test::Bindings::random_for(*gn, seed);  // its guards hold on these
      const auto want = test::interpret(*gn, data);
      auto in = views(data.inputs), p = views(data.params), c = views(data.consts);
      const auto got = exe->run(in, p, c);
      ++runs;
      if (got.failed_guard >= 0) {  // a guard on a sum that reassociation moved across its threshold
        WARN_MESSAGE(false, "seed " << seed << " at " << n << ": compiled guard " << got.failed_guard << " failed");
        continue;
      }
      REQUIRE(want.failed_guard == nullptr);
      for (size_t i = 0; i < gn->outputs().size(); ++i) {
        const Type& t = gn->outputs()[i]->type;
        CHECK(exe->output_type(i, n) == t);
        test::check_near(detail::tensor_over(got.outputs[i], t), detail::tensor_over(want.outputs[i], t), {1e-4, 1e-5});
      }
    }
  }
  MESSAGE(unified << " of 200 random graphs unified across batch sizes 3 and 7; " << runs << " runs at other sizes");
  CHECK(unified >= 20);
  CHECK(runs >= 50);
}

TEST_CASE("dynamic batch: with background compiles the unifying compile runs on the worker too") {
  const auto& m = examples::zoo_model("mlp");
  manual_seed(19);
  auto net = m.make();
  NoGradGuard no_grad;
  net->call_eager(input_at(m, 2, 1));
  net->hybridize({.background = true, .use_cache = false, .adaptive = false});
  for (int64_t b : {3, 6, 9, 12}) {
    const Tensor x = input_at(m, b, static_cast<uint64_t>(b));
    test::check_near((*net)(x), net->call_eager(x), {1e-5, 1e-6});  // eager while compiling
    net->wait_for_compiles();
    test::check_near((*net)(x), net->call_eager(x), {1e-5, 1e-6});
  }
  const nn::HybridStats s = net->stats();
  CHECK(s.dynamic_variants == 1);
  CHECK(s.variants == 2);
  CHECK(s.dynamic_sizes == 4);
}
