// Compiled code against the interpreter (the oracle): every op of the
// table at sizes that exercise vector tails, the transcendental
// approximations' stated errors, every zoo model at several batch sizes,
// random graphs, guards, the object cache across processes, concurrency.
#include <unistd.h>

#include <bit>
#include <cstdio>
#include <fstream>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "examples/seed_models.h"
#include "examples/zoo.h"
#include "tests/random_graph.h"

using namespace bj;
using V = std::vector<Tensor>;
using Fn = std::function<Tensor(const V&)>;
using test::check_near;
using test::Tol;

namespace {

/// Compiles fn traced on `inputs` and compares with the interpreter on the same inputs.
codegen::Executable const* check_compiled(const std::string& name, const Fn& fn, const V& inputs, Tol tol) {
  static std::vector<CompiledTrace> keep;  // so the returned executable stays alive for the caller
  Trace t = trace(name, [&](const V& v) { return V{fn(v)}; }, inputs);
  keep.push_back(compile(t));
  GraphRun c = keep.back().run(inputs), i = run(t, inputs);
  REQUIRE(c.guards_hold);
  REQUIRE(i.guards_hold);
  check_near(c.outputs[0], i.outputs[0], tol);
  return &keep.back().executable();
}

const Tol kExact{0, 0};
const Tol kApprox{5e-7, 1e-30};   // the transcendental approximations
const Tol kSum{2e-6, 1e-6};       // reassociated dot products
const Tol kLoss{1e-5, 1e-12};     // cross-entropy: exp and log approximated, rows summed reassociated
/// Reassociated sums of n terms of size up to ~3: the error scales with sum |x|, not with the result.
Tol sum_tol(int64_t n) { return Tol{2e-6, 3e-7 * static_cast<double>(n)}; }
/// Reassociated products of n terms near 1: rounding errors add up like a random walk.
Tol prod_tol(int64_t n) { return Tol{2e-6 + 1e-6 * std::sqrt(static_cast<double>(n)), 1e-30}; }

}  // namespace

TEST_CASE("every op of the table compiled equals the interpreter (vector tails, broadcasting, stated tolerances)") {
  manual_seed(21);
  std::set<std::string> covered;
  auto note = [&](const codegen::Executable* e) {
    ir::for_each_node(e->graph().nodes(), [&](const ir::Node& n) {
      if (n.kind == ir::NodeKind::kOp) covered.insert(std::string(ir::op_name(n.op)));
    });
  };
  for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{17}, int64_t{1000003}}) {
    CAPTURE(n);
    Tensor x = uniform(-3, 3, {n}), y = uniform(-3, 3, {n}), pos = uniform(0.01, 5, {n});
    Tensor row = uniform(-1, 1, {1}), m = uniform(-2, 2, {2, n}), near1 = uniform(0.99, 1.01, {2, n});
    Tensor labels = tensor(std::vector<int64_t>{0, n - 1}, {2});
    struct Case {
      const char* name;
      Fn f;
      V in;
      Tol tol;
    };
    const Case cases[] = {
        {"neg", [](const V& v) { return -v[0]; }, {x}, kExact},
        {"abs", [](const V& v) { return abs(v[0]); }, {x}, kExact},
        {"relu", [](const V& v) { return relu(v[0]); }, {x}, kExact},
        {"exp", [](const V& v) { return exp(v[0]); }, {x}, kApprox},
        {"log", [](const V& v) { return log(v[0]); }, {pos}, kApprox},
        {"tanh", [](const V& v) { return tanh(v[0]); }, {x}, kApprox},
        {"sigmoid", [](const V& v) { return sigmoid(v[0]); }, {x}, kApprox},
        {"sqrt", [](const V& v) { return sqrt(v[0]); }, {pos}, kExact},
        {"pow 2", [](const V& v) { return pow(v[0], 2); }, {x}, kExact},
        {"pow 1.5", [](const V& v) { return pow(v[0], 1.5); }, {pos}, Tol{2e-6, 1e-30}},
        {"cast", [](const V& v) { return cast(cast(v[0] > 0, kBool), kF32); }, {x}, kExact},
        {"add", [](const V& v) { return v[0] + v[1]; }, {x, y}, kExact},
        {"sub broadcast", [](const V& v) { return v[0] - v[1]; }, {m, row}, kExact},
        {"mul broadcast", [](const V& v) { return v[0] * v[1]; }, {m, x}, kExact},
        {"div", [](const V& v) { return v[0] / v[1]; }, {x, pos}, kExact},
        {"maximum", [](const V& v) { return maximum(v[0], v[1]); }, {x, y}, kExact},
        {"minimum", [](const V& v) { return minimum(v[0], v[1]); }, {m, x}, kExact},
        {"compare and where", [](const V& v) {
           Tensor a = v[0], b = v[1];
           return where(a > b, a, b) + cast(a < b, kF32) + cast(a >= b, kF32) * 2 + cast(a <= b, kF32) * 3 +
                  cast(a == a, kF32);
         }, {x, y}, kExact},
        {"sum all", [](const V& v) { return v[0].sum(); }, {x}, sum_tol(n)},
        {"sum rows", [](const V& v) { return v[0].sum({1}); }, {m}, sum_tol(n)},
        {"sum cols keepdim", [](const V& v) { return v[0].sum({0}, true); }, {m}, sum_tol(2)},
        {"max", [](const V& v) { return v[0].max({1}); }, {m}, kExact},
        {"min", [](const V& v) { return v[0].min(); }, {x}, kExact},
        {"prod rows", [](const V& v) { return prod(v[0], {1}); }, {near1}, prod_tol(n)},
        {"prod all with producers", [](const V& v) { return prod(v[0] * 1.001f); }, {near1}, prod_tol(2 * n)},
        {"norm (fused)", [](const V& v) { return (v[0] * 0.5).norm(); }, {x}, sum_tol(n)},
        {"permute", [](const V& v) { return v[0].transpose(); }, {m}, kExact},
        {"reshape", [](const V& v) { return v[0].reshape({-1}) * 2; }, {m}, kExact},
        {"expand", [](const V& v) { return expand(v[0], {3, v[0].numel()}); }, {x}, kExact},
        {"concat", [](const V& v) { return concat({v[0], v[1]}, 0); }, {x, y}, kExact},
        {"slice", [](const V& v) { return v[0].slice(0, 0, v[0].numel(), 2); }, {x}, kExact},
        // Loops with exp and log approximated and the row sums reassociated (lower_loss.cpp).
        {"cross_entropy and its gradient", [](const V& v) {
           return cross_entropy_grad(v[0], v[1], cross_entropy_unchecked(v[0], v[1]));
         }, {m, labels}, kLoss},
        {"cross_entropy with a target out of range (NaN)", [](const V& v) {
           return cross_entropy_unchecked(v[0], v[1]) + cross_entropy_grad(v[0], v[1], v[0].sum());
         }, {m, concat({labels.slice(0, 0, 1), tensor(std::vector<int64_t>{n}, {1})})}, kLoss},
        {"embedding and its gradient", [](const V& v) {
           return embedding_grad(embedding_unchecked(v[0], v[1]) * 2, v[1], v[0].shape());
         }, {m.transpose(), labels}, kExact},
        {"embedding with an id out of range (NaN)", [](const V& v) {
           return embedding_unchecked(v[0], v[1]).sum() + embedding_grad(embedding_unchecked(v[0], v[1]), v[1], v[0].shape());
         }, {m.transpose(), concat({labels.slice(0, 0, 1), tensor(std::vector<int64_t>{-1}, {1})})}, kExact},
    };
    for (const Case& c : cases) {
      CAPTURE(c.name);
      note(check_compiled(c.name, c.f, c.in, c.tol));
    }
    {  // rand_uniform: compiled, interpreted and eager draws from the same generator state agree
      Trace t = trace("rand", [](const V& v) { return V{v[0] + rand(v[0].shape())}; }, {x});
      CompiledTrace c = compile(t);
      note(&c.executable());
      manual_seed(77);
      GraphRun compiled = c.run({x});
      manual_seed(77);
      GraphRun interpreted = run(t, {x});
      manual_seed(77);
      Tensor eager = x + rand(x.shape());
      check_near(compiled.outputs[0], eager, kExact);
      check_near(interpreted.outputs[0], eager, kExact);
    }
  }
  {  // Convolution and pooling run eager mode's kernels (oneDNN for convolutions): the same bits.
    Tensor img = uniform(-1, 1, {3, 4, 9, 8}), w = uniform(-1, 1, {6, 2, 3, 3});
    ir::OpAttrs conv;
    conv.stride = {2, 1};
    conv.padding = {1, 1};
    conv.dilation = {1, 2};
    conv.groups = 2;
    ir::OpAttrs pool;
    pool.kernel = {3, 3};
    pool.stride = {2, 2};
    pool.padding = {1, 1};
    note(check_compiled("conv2d and its gradients", [conv](const V& v) {
      Tensor y = conv2d(v[0], v[1], conv.stride, conv.padding, conv.dilation, conv.groups);
      Tensor gx = conv2d_grad_input(y, v[1], conv, v[0].shape());
      return concat({gx.reshape({-1}), conv2d_grad_weight(v[0], y, conv, v[1].shape()).reshape({-1})});
    }, {img, w}, kExact));
    note(check_compiled("pooling and its gradients", [pool](const V& v) {
      Tensor m = max_pool2d(v[0], pool.kernel, pool.stride, pool.padding);
      Tensor a = avg_pool2d(v[0], pool.kernel, pool.stride, pool.padding);
      return max_pool2d_grad(v[0], m * a, pool) + avg_pool2d_grad(m - a, pool, v[0].shape());
    }, {img}, kExact));
  }
  // Matrix products: inline loops (small) and oneDNN (large), transposes, epilogues.
  for (auto [mm, kk, nn] : {std::tuple{2, 20, 256}, std::tuple{3, 1, 5}, std::tuple{17, 33, 15}, std::tuple{128, 96, 80}}) {
    CAPTURE(mm);
    Tensor a = uniform(-1, 1, {mm, kk}), b = uniform(-1, 1, {nn, kk}), bias = uniform(-1, 1, {nn});
    note(check_compiled("dense", [](const V& v) { return relu(matmul(v[0], v[1], false, true) + v[2]); }, {a, b, bias}, kSum));
    note(check_compiled("matmul ta", [](const V& v) { return matmul(v[0].transpose(), v[1].transpose(), true, false); },
                        {a, b}, kSum));
    // An add that is not a bias (a whole matrix) after a oneDNN product: an epilogue loop, not fused.
    Tensor full_c = uniform(-1, 1, {mm, nn});
    note(check_compiled("product + matrix", [](const V& v) { return matmul(v[0], v[1], false, true) + v[2]; },
                        {a, b, full_c}, kSum));
    // A batch times one matrix is one 2-D product of all the batch's rows (oneDNN blocks it differently).
    note(check_compiled("batched", [](const V& v) { return matmul(stack({v[0], v[0]}), v[1], false, true); }, {a, b}, sum_tol(kk)));
  }
  // Row products (B as stored): whole vectors of 16 columns and a masked tail, short k in
  // straight-line code and long k in a loop, A read transposed or not, with and without an epilogue.
  for (int64_t n : {1, 15, 16, 17, 40})
    for (int64_t k : {0, 1, 2, 8, 9, 33})
      for (int64_t m : {1, 3}) {
        CAPTURE(n);
        CAPTURE(k);
        CAPTURE(m);
        Tensor a = uniform(-1, 1, {m, k}), at = uniform(-1, 1, {k, m}), b = uniform(-1, 1, {k, n}), bias = uniform(-1, 1, {n});
        check_compiled("row", [](const V& v) { return matmul(v[0], v[1]); }, {a, b}, sum_tol(k));
        check_compiled("row ta", [](const V& v) { return matmul(v[0], v[1], true, false); }, {at, b}, sum_tol(k));
        check_compiled("row epilogue", [](const V& v) { return relu(matmul(v[0], v[1]) + v[2]); }, {a, b, bias}, sum_tol(k));
      }
  // Blocked dot products (B transposed): blocks of 8 columns and a short last block, chunks of 8
  // along k and a masked last chunk.
  for (int64_t n : {1, 7, 8, 9, 17, 40})
    for (int64_t k : {0, 1, 7, 8, 9, 33})
      for (int64_t m : {1, 3}) {
        CAPTURE(n);
        CAPTURE(k);
        CAPTURE(m);
        Tensor a = uniform(-1, 1, {m, k}), b = uniform(-1, 1, {n, k}), bias = uniform(-1, 1, {n});
        check_compiled("dot", [](const V& v) { return matmul(v[0], v[1], false, true); }, {a, b}, sum_tol(k));
        check_compiled("dot epilogue", [](const V& v) { return relu(matmul(v[0], v[1], false, true) + v[2]); },
                       {a, b, bias}, sum_tol(k));
      }
  for (int k = 0; k < ir::kNumOps; ++k) {
    std::string name(ir::op_name(static_cast<ir::OpKind>(k)));
    INFO("no compiled test covers " << name);
    CHECK(covered.count(name) == 1);
  }
}

TEST_CASE("the transcendental approximations: stated maximum relative errors and special values") {
  struct F {
    const char* name;
    double lo, hi, bound;
    Tensor (*f)(const Tensor&);
    double (*ref)(double);
    bool log_spaced;
  };
  const F fs[] = {
      {"exp", -86, 88.7, 2e-7, [](const Tensor& x) { return exp(x); }, [](double v) { return std::exp(v); }, false},
      {"log", 1e-37, 1e37, 2e-7, [](const Tensor& x) { return log(x); }, [](double v) { return std::log(v); }, true},
      {"tanh", -20, 20, 5e-7, [](const Tensor& x) { return tanh(x); }, [](double v) { return std::tanh(v); }, false},
      {"sigmoid", -80, 80, 5e-7, [](const Tensor& x) { return sigmoid(x); },
       [](double v) { return 1 / (1 + std::exp(-v)); }, false},
  };
  for (const F& f : fs) {
    std::string name = f.name;
    CAPTURE(name);
    const int n = 1 << 18;
    std::vector<float> xs(n);
    for (int i = 0; i < n; ++i) {
      double t = (i + 0.5) / n;
      xs[i] = static_cast<float>(f.log_spaced ? std::exp(std::log(f.lo) + t * (std::log(f.hi) - std::log(f.lo)))
                                              : f.lo + t * (f.hi - f.lo));
    }
    Tensor x = tensor(xs, {n});
    Trace t = trace(f.name, [&](const V& v) { return V{f.f(v[0])}; }, {x});
    auto y = compile(t).run({x}).outputs.at(0).to_vector();
    double worst = 0;
    for (int i = 0; i < n; ++i) {
      double r = f.ref(xs[i]);
      worst = std::max(worst, std::fabs(y[i] - r) / std::max(std::fabs(r), 1e-30));
    }
    INFO("max relative error " << worst);
    CHECK(worst <= f.bound);
    // Special values agree with the eager (libm) results.
    Tensor s = tensor({0.0, -0.0, INFINITY, -INFINITY, NAN, 1e-40, -1e-40, 100, -100, 1});
    Trace ts = trace(f.name, [&](const V& v) { return V{f.f(v[0])}; }, {s});
    check_near(compile(ts).run({s}).outputs.at(0), run(ts, {s}).outputs.at(0), Tol{1e-6, 1e-30});
  }
}

TEST_CASE("every zoo model compiled equals eager on many random inputs and batch sizes") {
  for (const auto& m : examples::zoo()) {
    CAPTURE(m.name);
    manual_seed(5);
    auto net = m.make();
    net->initialize(init::xavier(), true);
    for (int64_t batch : {1, 2, 7, 33}) {
      CAPTURE(batch);
      Shape shape = m.input;
      shape[0] = batch;
      Tensor x0 = uniform(-1, 1, shape);
      NoGradGuard no_grad;
      CompiledTrace c = compile(trace(*net, x0));
      for (int k = 0; k < 4; ++k) {
        Tensor x = k == 0 ? x0 : uniform(-1, 1, shape);
        GraphRun r = c.run({x});
        if (!r.guards_hold) continue;  // another path through FixedHiddenMLP's loop: the guards said so
        check_near(r.outputs[0], (*net)(x), Tol{1e-5, 1e-6});
      }
    }
  }
}

TEST_CASE("random graphs: compiled equals the interpreter within tolerance") {
  for (uint64_t seed = 300; seed < 500; ++seed) {
    CAPTURE(seed);
    auto g = test::random_graph(seed);
    auto b = test::Bindings::random_for(*g, seed);
    auto r = test::interpret(*g, b);
    REQUIRE(r.failed_guard == nullptr);
    auto exe = codegen::compile(*g);
    auto views = [](const V& ts) {
      std::vector<rt::ConstView> v;
      for (const Tensor& t : ts) v.push_back({t.raw_data(), t.type()});
      return v;
    };
    auto in = views(b.inputs), p = views(b.params), c = views(b.consts);
    auto cr = exe->run(in, p, c);
    if (cr.failed_guard >= 0) {  // a guard on a sum that reassociation moved across its threshold
      WARN_MESSAGE(false, "seed " << seed << ": compiled guard " << cr.failed_guard << " differs from the interpreter");
      continue;
    }
    for (size_t i = 0; i < g->outputs().size(); ++i) {
      const Type& t = g->outputs()[i]->type;
      Tensor got(std::make_shared<detail::TensorImpl>(detail::TensorImpl{cr.outputs[i], t, nullptr}));
      Tensor want(std::make_shared<detail::TensorImpl>(detail::TensorImpl{r.outputs[i], t, nullptr}));
      check_near(got, want, Tol{1e-4, 1e-5});
    }
  }
}

TEST_CASE("compiled FixedHiddenMLP: eager results on the traced path, the failing guard and no outputs elsewhere") {
  manual_seed(0);
  examples::FixedHiddenMLP net;
  net.initialize(init::uniform(0.5));
  Tensor base = rand({2, 20});
  NoGradGuard no_grad;
  Trace t = trace(net, base * 20);
  CompiledTrace c = compile(t);
  int held = 0, failed = 0;
  for (double scale : {20.0, 20.0001, 1.0, 0.01, 100.0, 1000.0, 1e5}) {
    CAPTURE(scale);
    Tensor x = base * scale;
    GraphRun compiled = c.run({x}), interpreted = run(t, {x});
    CHECK(compiled.guards_hold == interpreted.guards_hold);
    if (compiled.guards_hold) {
      check_near(compiled.outputs[0], net(x), Tol{1e-5, 1e-6});
      ++held;
    } else {
      CHECK(compiled.outputs.empty());
      CHECK(compiled.failed_guard == interpreted.failed_guard);
      CHECK(compiled.guard.rfind("guard %", 0) == 0);
      CHECK(compiled.origin.path == net.name());
      ++failed;
    }
  }
  CHECK(held >= 2);
  CHECK(failed >= 3);
}

TEST_CASE("one executable runs concurrently from several threads") {
  manual_seed(1);
  auto net = examples::zoo_model("chimera").make();
  Tensor x = rand({2, 20});
  NoGradGuard no_grad;
  CompiledTrace c = compile(trace(*net, x));
  Tensor want = c.run({x}).outputs.at(0);
  std::vector<int> ok(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (int i = 0; i < 200; ++i) {
        GraphRun r = c.run({x});
        ok[k] += r.guards_hold && std::memcmp(r.outputs[0].raw_data(), want.raw_data(), 4) == 0;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(ok == std::vector<int>(4, 200));
}

TEST_CASE("the object cache: a second process hits it, a corrupt or truncated entry is recompiled") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("bj-cache-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string cmd = "BJ_CACHE_DIR='" + dir.string() + "' '" + BJ_BINARY_DIR + "/bin/blockjit' bench mlp --threads 1 --json";
  auto run_process = [&] {
    int status = -1;
    std::string out = test::run_command(cmd, &status);
    CHECK(status == 0);
    return out;
  };
  CHECK(run_process().find("\"from_cache\": false") != std::string::npos);
  CHECK(run_process().find("\"from_cache\": true") != std::string::npos);
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(dir)) entries.push_back(e.path());
  REQUIRE(entries.size() == 1);
  fs::resize_file(entries[0], fs::file_size(entries[0]) / 2);  // truncated
  CHECK(run_process().find("\"from_cache\": false") != std::string::npos);
  CHECK(run_process().find("\"from_cache\": true") != std::string::npos);
  {  // corrupted: same size, one byte flipped in the object
    std::fstream f(entries[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  CHECK(run_process().find("\"from_cache\": false") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("compiling from several threads at once") {
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      Tensor x = full({3, 17}, k + 1.0);
      Trace t = trace("scale" + std::to_string(k), [k](const V& v) { return V{tanh(v[0] * (k + 2.0)) + v[0]}; }, {x});
      CompiledTrace c = compile(t, codegen::CompileOptions{.use_cache = false});
      GraphRun r = c.run({x});
      ok[k] = r.guards_hold && std::fabs(r.outputs[0].to_vector()[0] - (std::tanh((k + 1.0) * (k + 2.0)) + k + 1.0)) < 1e-6;
    });
  for (auto& th : threads) th.join();
  CHECK(ok == std::vector<int>(4, 1));
}

TEST_CASE("compiled code sees parameter changes: in-place updates and replaced values (packed weights refresh)") {
  manual_seed(2);
  examples::MLP net;
  net.initialize(init::xavier());
  Tensor x = uniform(-1, 1, {2, 20});
  NoGradGuard no_grad;
  CompiledTrace c = compile(trace(net, x));
  REQUIRE(c.executable().graph().params().size() == 4);
  check_near(c.run({x}).outputs.at(0), net(x), Tol{1e-5, 1e-6});
  Tensor w = net.hidden.weight.data();
  w *= 2;  // an optimizer-style in-place step: same storage, new version
  check_near(c.run({x}).outputs.at(0), net(x), Tol{1e-5, 1e-6});
  net.hidden.weight.set_data(uniform(-1, 1, {256, 20}));  // a new storage altogether
  check_near(c.run({x}).outputs.at(0), net(x), Tol{1e-5, 1e-6});
  net.out.bias.set_data(full({10}, 3.0));
  check_near(c.run({x}).outputs.at(0), net(x), Tol{1e-5, 1e-6});
}

TEST_CASE("a large dense layer is one oneDNN primitive (bias fused, relu a loop after it, weights reordered and refreshed)") {
  manual_seed(3);
  nn::Dense dense(128, "relu");
  dense.initialize();
  Tensor x = uniform(-1, 1, {128, 96});  // 128*96*128 multiply-adds: past the inline limit
  NoGradGuard no_grad;
  dense(x);
  CompiledTrace c = compile(trace(dense, x));
  const codegen::Plan& plan = c.executable().plan();
  REQUIRE(plan.with(codegen::Strategy::kDnnl).size() == 1);
  const codegen::DnnlProduct& d = *plan.with(codegen::Strategy::kDnnl).front()->dnnl;
  REQUIRE(d.packing >= 0);
  const rt::FusedMatmul& f = *plan.packings.at(static_cast<size_t>(d.packing)).dnnl;
  CHECK((f.bias && f.packed_b && f.tb));
  CHECK(d.fused == 2);  // matmul and add; relu is the loop after the primitive
  check_near(c.run({x}).outputs.at(0), dense(x), Tol{1e-5, 1e-6});
  Tensor w = dense.weight.data();
  w *= -1;  // in place: the reordered copy must be refreshed
  check_near(c.run({x}).outputs.at(0), dense(x), Tol{1e-5, 1e-6});
  dense.weight.set_data(uniform(-1, 1, {128, 96}));
  check_near(c.run({x}).outputs.at(0), dense(x), Tol{1e-5, 1e-6});
}


TEST_CASE("a large dense layer with any activation: bias fused into oneDNN, the activation a loop after it") {
  manual_seed(4);
  NoGradGuard no_grad;
  for (const char* act : {"tanh", "sigmoid", "none"}) {
    CAPTURE(act);
    nn::Dense dense(128, act);
    dense.initialize();
    Tensor x = uniform(-1, 1, {128, 96});
    dense(x);
    CompiledTrace c = compile(trace(dense, x));
    const auto products = c.executable().plan().with(codegen::Strategy::kDnnl);
    REQUIRE(products.size() == 1);
    CHECK(products.front()->dnnl->bias);
    CHECK(products.front()->dnnl->fused == 2);  // matmul and add; the activation is the loop after
    check_near(c.run({x}).outputs.at(0), dense(x), Tol{1e-5, 1e-6});
  }
}

TEST_CASE("small products with a packed parameter: every tile shape equals eager") {
  manual_seed(13);
  NoGradGuard no_grad;
  for (int64_t units : {16, 48, 80, 272, 10, 20, 33}) {  // 1, 3, 5, 17 vectors per row, and padded rows
    nn::Dense dense(units, "relu");
    dense.initialize();
    for (int64_t batch : {1, 2, 3, 4, 5, 8, 9}) {
      CAPTURE(units);
      CAPTURE(batch);
      Tensor x = uniform(-1, 1, {batch, 24});
      dense(x);
      CompiledTrace c = compile(trace(dense, x));
      REQUIRE(c.executable().plan().with(codegen::Strategy::kPacked).size() == 1);
      check_near(c.run({x}).outputs.at(0), dense(x), Tol{1e-5, 1e-6});
    }
  }
}

TEST_CASE("products with few terms per element or few columns are loops at any size: the epilogue reads each row in cache, equal to eager") {
  manual_seed(21);
  NoGradGuard no_grad;
  // A layer with 20 inputs (k <= kSkinnyPackedK) over a packed weight, at batch sizes oneDNN
  // would take: whole tiles, a leftover row, padded columns (10, 33).
  for (int64_t units : {256, 10, 33}) {
    nn::Dense dense(units, "relu");
    dense.initialize();
    for (int64_t batch : {300, 301}) {
      CAPTURE(units);
      CAPTURE(batch);
      Tensor x = uniform(-1, 1, {batch, 20});
      dense(x);
      CompiledTrace c = compile(trace(dense, x));
      CHECK(c.executable().plan().with(codegen::Strategy::kPacked).size() == 1);
      CHECK(c.executable().plan().with(codegen::Strategy::kDnnl).empty());
      check_near(c.run({x}).outputs.at(0), dense(x), Tol{1e-5, 1e-6});
    }
  }
  // A ReLU gradient's shape: g [m, k] times W [k, n] (k <= kSkinnyRowK, B as stored), masked by
  // h > 0. The mask's operand h is computed in the graph and read last by the epilogue (so the
  // result takes its bytes). NaN and infinities in g and h, +-0 in h; n past a vector (37, 16
  // per vector) and past the stack scratch (8200 columns: through memory); even and odd row
  // counts (rows in pairs, or one at a time).
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{300, 10, 37}, {257, 16, 256}, {3, 4, 8200}, {4, 3, 8200}}) {
    CAPTURE(m);
    CAPTURE(n);
    std::vector<float> g = uniform(-1, 1, {m, k}).to_vector(), pre = uniform(-1, 1, {m, n}).to_vector();
    g[3] = inf;
    g[static_cast<size_t>(k + 1)] = nan;
    pre[0] = -0.0f;
    pre[1] = 0.0f;
    pre[2] = nan;
    pre[static_cast<size_t>(n)] = -inf;
    const V in{tensor(g, {m, k}), uniform(-1, 1, {k, n}), tensor(pre, {m, n})};
    auto body = [](const V& v) {
      const Tensor h = relu(v[2]);
      const Tensor s = h.sum({0});  // read before the product's epilogue, which reads h last
      return V{matmul(v[0], v[1]) * (h > zeros({})).to(DType::kF32), s};
    };
    CompiledTrace c = compile(trace("masked", body, in));
    CHECK(c.executable().plan().with(codegen::Strategy::kDnnl).empty());
    CHECK(c.executable().plan().with(codegen::Strategy::kRuntimeProduct).empty());
    GraphRun compiled = c.run(in);
    REQUIRE(compiled.guards_hold);
    const V eager = body(in);
    check_near(compiled.outputs.at(0), eager[0], Tol{1e-5, 1e-6});
    check_near(compiled.outputs.at(1), eager[1], Tol{1e-5, 1e-6});
  }
  // Few columns of A times a transposed B, both inputs (narrow_dot): 16-lane sums along k, each
  // row's columns summed by one transposing reduction; with an epilogue (tanh of a bias add) and
  // without; k with and without a tail, rows in pairs (at most 12 columns, even rows) or one by one.
  for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{300, 256, 10}, {301, 17, 12}, {300, 33, 13}, {64, 16, 16},
                         {300, 40, 1}}) {
    CAPTURE(m);
    CAPTURE(k);
    CAPTURE(n);
    std::vector<float> a = uniform(-1, 1, {m, k}).to_vector();
    a[5] = nan;  // row 0: every column NaN
    a[static_cast<size_t>(k + 2)] = inf;
    const V in{tensor(a, {m, k}), uniform(-1, 1, {n, k}), uniform(-1, 1, {n})};
    for (bool with_epilogue : {true, false}) {
      CAPTURE(with_epilogue);
      auto body = [&](const V& v) {
        const Tensor p = matmul(v[0], v[1], false, true);
        return V{with_epilogue ? tanh(p + v[2]) : p};
      };
      CompiledTrace c = compile(trace("narrow", body, in));
      CHECK(c.executable().plan().with(codegen::Strategy::kDnnl).empty());
      CHECK(c.executable().plan().with(codegen::Strategy::kRuntimeProduct).empty());
      GraphRun compiled = c.run(in);
      REQUIRE(compiled.guards_hold);
      check_near(compiled.outputs.at(0), body(in)[0], Tol{1e-5, 1e-5});
    }
  }
}

TEST_CASE("reductions over an empty axis compiled: +0 for sum (not the accumulator's -0), 1 for prod") {
  const V in{zeros({3, 0})};
  Trace t = trace("empty", [](const V& v) { return V{v[0].sum({1}), prod(v[0], {1})}; }, in);
  CompiledTrace c = compile(t);
  GraphRun compiled = c.run(in), eager = run(t, in);
  REQUIRE(compiled.guards_hold);
  for (int i = 0; i < 3; ++i) {
    CHECK(!std::signbit(compiled.outputs[0].data<float>()[i]));
    CHECK(std::signbit(compiled.outputs[0].data<float>()[i]) == std::signbit(eager.outputs[0].data<float>()[i]));
    CHECK(compiled.outputs[1].data<float>()[i] == 1.0f);
  }
}

TEST_CASE("max and min are IEEE 754-2019's (-0 below +0, NaN wins): the same bits eager, interpreted and compiled in vectors") {
  // Rows of 67 (vectors and a tail) holding zeros of both signs at random places, -inf, NaN;
  // compiled code reduces them in vectors and in another order than eager's one element at a
  // time, so the answer must not depend on the order.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::mt19937 gen(7);
  const int64_t rows = 9, cols = 67;
  std::vector<float> a(rows * cols), b(rows * cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const bool neg = gen() % 2;
      a[i * cols + j] = i < 4 ? (neg ? -0.0f : 0.0f) : i < 6 ? (neg ? -inf : -0.0f) : float(int(gen() % 7) - 3);
      b[i * cols + j] = gen() % 2 ? -0.0f : 0.0f;
    }
  for (int64_t j = 0; j < cols; ++j) a[1 * cols + j] = -0.0f;  // a row of -0 only
  a[2 * cols + 66] = 0.0f;                                    // one +0, in the tail
  a[3 * cols + 5] = nan;
  a[7 * cols + 66] = nan;
  const V in{tensor(a, {rows, cols}), tensor(b, {rows, cols})};
  const Fn fns[] = {
      [](const V& v) { return max(v[0], {1}, false); },
      [](const V& v) { return min(v[0], {1}, false); },
      [](const V& v) { return max(v[0], {0}, false); },
      [](const V& v) { return min(v[0], {0}, false); },
      [](const V& v) { return v[0] - max(v[0], {1}, true); },  // a row region, as softmax's
      [](const V& v) { return maximum(v[0], v[1]) + minimum(v[1], v[0]) * 2; },
      [](const V& v) { return maximum(v[1], v[0]) - minimum(v[0], v[1]); },
  };
  for (size_t f = 0; f < std::size(fns); ++f) {
    CAPTURE(f);
    Trace t = trace("ieee_max", [&](const V& v) { return V{fns[f](v)}; }, in);
    CompiledTrace c = compile(t);
    GraphRun compiled = c.run(in), interpreted = run(t, in);
    REQUIRE(compiled.guards_hold);
    const Tensor eager = fns[f](in);
    const std::vector<float> e = eager.to_vector(), ci = compiled.outputs[0].to_vector(), ii = interpreted.outputs[0].to_vector();
    REQUIRE(ci.size() == e.size());
    for (size_t i = 0; i < e.size(); ++i) {
      CAPTURE(i);
      CHECK(std::isnan(ci[i]) == std::isnan(e[i]));
      CHECK(std::isnan(ii[i]) == std::isnan(e[i]));
      if (!std::isnan(e[i])) {
        CHECK(std::bit_cast<uint32_t>(ci[i]) == std::bit_cast<uint32_t>(e[i]));
        CHECK(std::bit_cast<uint32_t>(ii[i]) == std::bit_cast<uint32_t>(e[i]));
      }
    }
  }
  // The values themselves, eager.
  const Tensor zeros_row = tensor(std::vector<float>{-0.0f, 0.0f, -0.0f}, {3});
  CHECK(!std::signbit(max(zeros_row).item()));
  CHECK(std::signbit(min(zeros_row).item()));
  const Tensor pz = tensor(std::vector<float>{0.0f}, {1}), nz = tensor(std::vector<float>{-0.0f}, {1});
  CHECK(!std::signbit(maximum(pz, nz).item()));
  CHECK(!std::signbit(maximum(nz, pz).item()));
  CHECK(std::signbit(minimum(pz, nz).item()));
  CHECK(std::signbit(minimum(nz, pz).item()));
  CHECK(std::isnan(max(tensor(std::vector<float>{1.0f, nan, inf}, {3})).item()));
  CHECK(std::isnan(minimum(tensor(std::vector<float>{-inf}, {1}), tensor(std::vector<float>{nan}, {1})).item()));
}

TEST_CASE("cross-entropy compiled as loops: a well-fitted batch's small loss keeps its digits, special rows as eager") {
  // Compiled code computes the rows' sums of exponentials and the total in double, as the kernel
  // does; exp and log are the f32 approximations, so the loss and the gradient agree with eager's
  // to about 1e-6 relative even where the loss is 1e-8.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  auto check = [&](const Tensor& logits, const Tensor& labels, bool nan_loss) {
    const V in{logits, labels};
    Trace t = trace("ce", [](const V& v) {
      Tensor loss = cross_entropy_unchecked(v[0], v[1]);
      return V{loss, cross_entropy_grad(v[0], v[1], loss * 0 + 1)};
    }, in);
    CompiledTrace c = compile(t);
    GraphRun compiled = c.run(in), eager = run(t, in);
    REQUIRE(compiled.guards_hold);
    const float lc = compiled.outputs[0].item(), le = eager.outputs[0].item();
    CHECK(std::isnan(lc) == nan_loss);
    CHECK(std::isnan(le) == nan_loss);
    if (!nan_loss) CHECK(std::fabs(lc - le) <= 2e-6 * std::fabs(le) + 1e-30);
    const std::vector<float> gc = compiled.outputs[1].to_vector(), ge = eager.outputs[1].to_vector();
    REQUIRE(gc.size() == ge.size());
    for (size_t i = 0; i < gc.size(); ++i) {
      CAPTURE(i);
      CHECK(std::isnan(gc[i]) == std::isnan(ge[i]));
      if (!std::isnan(ge[i])) CHECK(std::fabs(gc[i] - ge[i]) <= 2e-6 * std::fabs(ge[i]) + 1e-12);
    }
  };
  manual_seed(5);
  for (int64_t classes : {int64_t{1}, int64_t{10}, int64_t{37}, int64_t{5000}}) {
    CAPTURE(classes);
    const int64_t rows = 33;
    std::vector<float> x = uniform(-3, 3, {rows, classes}).to_vector();
    std::vector<int64_t> y(rows);
    for (int64_t i = 0; i < rows; ++i) {
      y[i] = (i * 7) % classes;
      x[i * classes + y[i]] += 20;  // fitted: each row's loss is about (classes - 1) e^-20
    }
    check(tensor(x, {rows, classes}), tensor(y, {rows}), false);
    // A row with +inf, one with -inf everywhere, one with NaN: NaN as eager; a target out of range.
    for (int64_t j = 0; j < classes; ++j) x[1 * classes + j] = -inf;
    x[0] = inf;
    x[2 * classes + classes - 1] = nan;
    check(tensor(x, {rows, classes}), tensor(y, {rows}), true);
    y[3] = classes;
    check(uniform(-3, 3, {rows, classes}), tensor(y, {rows}), true);
  }
  check(zeros({0, 4}), tensor(std::vector<int64_t>{}, {0}), true);  // the mean over no row
}

TEST_CASE("cross-entropy and its gradient right after it compile to one pass over the rows, equal to eager") {
  // A training step's loss: the loss and its gradient (from an output gradient g) are adjacent ops on
  // the same logits; codegen makes both in one loop (each row's maximum and sum found once).
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  manual_seed(9);
  for (int64_t classes : {int64_t{1}, int64_t{10}, int64_t{16}, int64_t{37}}) {
    for (int64_t rows : {int64_t{1}, int64_t{5}, int64_t{64}}) {
      CAPTURE(classes);
      CAPTURE(rows);
      std::vector<float> x = uniform(-4, 4, {rows, classes}).to_vector();
      std::vector<int64_t> y(static_cast<size_t>(rows));
      for (int64_t i = 0; i < rows; ++i) y[static_cast<size_t>(i)] = (i * 3) % classes;
      if (rows > 2) {  // a row with +inf, one with NaN, one target out of range
        x[0] = inf;
        x[static_cast<size_t>(classes + classes - 1)] = nan;
        y[2] = classes;
      }
      const V in{tensor(x, {rows, classes}), tensor(y, {rows}), tensor(std::vector<float>{0.5f}, {})};
      auto body = [](const V& v) {
        return V{cross_entropy_unchecked(v[0], v[1]), cross_entropy_grad(v[0], v[1], v[2])};
      };
      Trace t = trace("loss", body, in);
      codegen::CompileOptions co;
      co.use_cache = false;
      co.keep_ir = true;
      CompiledTrace c = compile(t, co);
      CHECK(c.executable().llvm_ir().find("cross_entropy_and_grad") != std::string::npos);
      // At most 16 classes and at least 16 rows: 16 rows at a time, a vector per class.
      CHECK((c.executable().llvm_ir().find("masked.gather") != std::string::npos) == (classes <= 16 && rows >= 16));
      GraphRun compiled = c.run(in), eager = run(t, in);
      REQUIRE(compiled.guards_hold);
      for (size_t o = 0; o < 2; ++o) {
        const std::vector<float> gc = compiled.outputs[o].to_vector(), ge = eager.outputs[o].to_vector();
        REQUIRE(gc.size() == ge.size());
        for (size_t i = 0; i < gc.size(); ++i) {
          CAPTURE(o);
          CAPTURE(i);
          CHECK(std::isnan(gc[i]) == std::isnan(ge[i]));
          if (!std::isnan(ge[i])) CHECK(std::fabs(gc[i] - ge[i]) <= 2e-6 * std::fabs(ge[i]) + 1e-7);
        }
      }
    }
  }
  // The gradient alone over rows enough to split among threads (at row boundaries that are not
  // multiples of 16), 16 rows at a time: equal to eager's, NaN rows where eager's are.
  {
    const int64_t rows = 2 * rt::kParallelGrain / 30 + 11, classes = 10;
    std::vector<float> x = uniform(-4, 4, {rows, classes}).to_vector();
    std::vector<int64_t> y(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) y[static_cast<size_t>(i)] = (i * 7) % classes;
    y[static_cast<size_t>(rows / 2 + 1)] = -1;
    x[static_cast<size_t>((rows - 1) * classes)] = nan;
    const V in{tensor(x, {rows, classes}), tensor(y, {rows}), tensor(std::vector<float>{2.0f}, {})};
    Trace t = trace("grad", [](const V& v) { return V{cross_entropy_grad(v[0], v[1], v[2])}; }, in);
    codegen::CompileOptions co;
    co.use_cache = false;
    CompiledTrace c = compile(t, co);
    const std::vector<float> got = c.run(in).outputs.at(0).to_vector(), want = run(t, in).outputs.at(0).to_vector();
    REQUIRE(got.size() == want.size());
    size_t bad = 0, nans = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      nans += std::isnan(want[i]);
      bad += std::isnan(got[i]) != std::isnan(want[i]) ||
             (!std::isnan(want[i]) && std::fabs(got[i] - want[i]) > 2e-6 * std::fabs(want[i]) + 1e-10);
    }
    CHECK(nans == 2 * static_cast<size_t>(classes));
    CHECK(bad == 0);
  }
  // The gradient of the loss itself (g is the loss) cannot be made in the loss's pass: two loops.
  const V in{uniform(-1, 1, {3, 10}), tensor(std::vector<int64_t>{1, 2, 3}, {3})};
  Trace t = trace("self", [](const V& v) { return V{cross_entropy_grad(v[0], v[1], cross_entropy_unchecked(v[0], v[1]))}; }, in);
  codegen::CompileOptions co;
  co.use_cache = false;
  co.keep_ir = true;
  CompiledTrace c = compile(t, co);
  CHECK(c.executable().llvm_ir().find("cross_entropy_and_grad") == std::string::npos);
  const std::vector<float> got = c.run(in).outputs.at(0).to_vector(), want = run(t, in).outputs.at(0).to_vector();
  for (size_t i = 0; i < got.size(); ++i) CHECK(std::fabs(got[i] - want[i]) <= 2e-6 * std::fabs(want[i]) + 1e-7);
}

TEST_CASE("products with an empty inner dimension are +0 in every strategy (loops, packed, runtime), as eager") {
  // A parameter with a 0 dimension cannot come from a Block (0 means "not known yet"), but a graph
  // in text can hold one: x[4,0] times w[units,0] transposed.
  for (int64_t units : {16, 20, 300}) {  // packed whole vectors, packed padded rows, too large to inline
    CAPTURE(units);
    const std::string text = fmt::format(
        "graph @g(%x: f32[4,0]) -> (f32[4,{0}]) {{\n  param %w: f32[{0},0]\n"
        "  %0: f32[4,{0}] = matmul(%x, %w) {{transpose_b}}\n  return %0\n}}\n", units);
    auto g = ir::parse(text);
    auto exe = codegen::compile(*g);
    Tensor x = zeros({4, 0}), w = zeros({units, 0});
    const rt::ConstView in[] = {{x.raw_data(), x.type()}}, params[] = {{w.raw_data(), w.type()}};
    codegen::Executable::Result r = exe->run(in, params, {});
    REQUIRE(r.failed_guard == -1);
    Tensor eager = matmul(x, w, false, true);
    for (int64_t i = 0; i < 4 * units; ++i) {
      CAPTURE(i);
      const float got = static_cast<const float*>(r.outputs.at(0)->data())[i];
      CHECK(got == 0.0f);
      CHECK(std::signbit(got) == std::signbit(eager.data<float>()[i]));
    }
  }
}
