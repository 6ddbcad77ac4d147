// Export and import (Block::export_model, nn::SymbolBlock::imports): every
// zoo model's compiled paths come back as a block without its class that
// gives the same outputs bit for bit, compiled at once; an unrecorded path is
// a GuardError naming the guard, never a wrong answer; an imported block
// nests in a larger hybridized model and fine-tunes like the original; and
// hostile export files are typed errors naming the file.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

#include "examples/seed_models.h"
#include "examples/zoo.h"
#include "tests/helpers.h"

using namespace bj;
namespace fs = std::filesystem;

namespace {

using test::Scratch;
using test::same_bits;
using test::read_bytes;
using test::write_bytes;

std::vector<const examples::ZooModel*> every_model() {
  std::vector<const examples::ZooModel*> out;
  for (const auto* list : {&examples::zoo(), &examples::vision_zoo(), &examples::sequence_zoo()})
    for (const auto& m : *list) out.push_back(&m);
  return out;
}

/// A fixed-hidden-mlp hybridized with two recorded paths (inputs `x` and `x * 64` halve a
/// different number of times), exported to `prefix`.
std::shared_ptr<nn::Block> exported_fixed_hidden(const std::string& prefix, const Tensor& x) {
  manual_seed(7);
  auto net = examples::zoo_model("fixed-hidden-mlp").make();
  NoGradGuard no_grad;
  net->call_eager(x);
  net->eval();
  net->hybridize();
  (*net)(x);
  (*net)(x * 64.0);
  net->wait_for_compiles();  // the optimized code, which the import runs
  net->export_model(prefix);
  return net;
}

}  // namespace

TEST_CASE("export and import: every zoo model runs compiled at once with the original's outputs bit for bit") {
  Scratch tmp("export");
  for (const examples::ZooModel* m : every_model()) {
    CAPTURE(m->name);
    manual_seed(1);
    auto net = m->make();
    Shape shape = m->input;
    if (shape.size() > 0 && shape[0] > 2) shape[0] = 2;  // small calls: the point is the round trip
    Tensor x = examples::example_input(*m, shape, 5);
    NoGradGuard no_grad;
    net->call_eager(x);  // deferred shapes; BatchNorm's statistics move
    net->eval();
    net->hybridize();
    (*net)(x);                   // traced and compiled
    net->wait_for_compiles();    // optimized code, as the import runs
    const Tensor want = (*net)(x);  // compiled
    REQUIRE(net->stats().compiled_hits == 1);
    net->export_model(tmp / m->name);
    CHECK(fs::exists(tmp / (m->name + ".ir")));
    auto imported = nn::SymbolBlock::imports(tmp / m->name);
    CHECK(imported->name() == m->name);
    CHECK(!imported->is_training());
    CHECK(same_bits((*imported)(x), want));
    // A call with a list of the one input runs the same compiled path.
    CHECK(same_bits((*imported)(Tensors{x}).at(0), want));
    const nn::HybridStats s = imported->stats();
    CHECK(s.compiled_hits == 2);
    CHECK(s.eager_fallbacks == 0);
    // Eagerly, the import replays the traced ops: eager mode's result, bit for bit.
    CHECK(same_bits(imported->call_eager(x), net->call_eager(x)));
    // Its parameters are the original's, by the same names (save_parameters files interchange).
    const auto a = net->named_parameters(), b = imported->named_parameters();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CAPTURE(a[i].first);
      bool found = false;
      for (const auto& [name, p] : b) found |= name == a[i].first && same_bits(p.data(), a[i].second.data());
      CHECK(found);
    }
  }
}

TEST_CASE("an imported block runs every recorded path compiled, and an unrecorded one is a GuardError naming the guard") {
  Scratch tmp("export");
  manual_seed(3);
  const Tensor x = uniform(0, 1, {2, 20});
  auto net = exported_fixed_hidden(tmp / "fh", x);
  NoGradGuard no_grad;
  auto imported = nn::SymbolBlock::imports(tmp / "fh");
  CHECK(imported->paths().size() == 2);
  for (double scale : {1.0, 64.0, 1.0}) {
    CAPTURE(scale);
    CHECK(same_bits((*imported)(x * scale), (*net)(x * scale)));
  }
  CHECK(imported->stats().compiled_hits == 3);
  CHECK(imported->stats().eager_fallbacks == 0);
  // 4096 halves more often than either recorded path: no code for it, so a typed error.
  test::check_error<GuardError>([&] { (*imported)(x * 4096.0); },
                                {"fixed-hidden-mlp", "path 1", "path 2", "guard %", "seed_models.h:"});
  test::check_error<GuardError>([&] { imported->call_eager(x * 4096.0); }, {"did not record"});
  // The original, with its class, falls back to eager and is right.
  CHECK(bj::allclose((*net)(x * 4096.0), net->call_eager(x * 4096.0), 1e-5, 1e-6));
  // Wrong types and modes are shape errors listing what the paths take.
  test::check_error<ShapeError>([&] { (*imported)(uniform(0, 1, {3, 20})); }, {"f32[3,20]", "f32[2,20]"});
  imported->train();
  test::check_error<ShapeError>([&] { (*imported)(x); }, {"training mode"});
  imported->eval();
  // Without hybridization, every call replays a graph: eager results.
  auto plain = nn::SymbolBlock::imports(tmp / "fh", {.hybridize = false});
  CHECK(!plain->is_hybridized());
  CHECK(same_bits((*plain)(x * 64.0), net->call_eager(x * 64.0)));
}

TEST_CASE("an imported block nests in a hybridized model: its guards join the outer graph, and its paths stay right") {
  Scratch tmp("export");
  manual_seed(4);
  const Tensor x = uniform(0, 1, {2, 20});
  auto original = exported_fixed_hidden(tmp / "fh", x);
  auto imported = nn::SymbolBlock::imports(tmp / "fh");
  struct Outer : nn::Block {
    explicit Outer(nn::Block& inner) : inner(add("inner", inner)) {}
    nn::Block& inner;
    nn::Dense& head = add("head", nn::Dense(3));
    Tensor forward(const Tensor& x) override { return head(inner(x).reshape({1, 1}) * x.sum({1}, true)); }
  };
  auto outer = std::make_shared<Outer>(*imported);
  outer->initialize();
  NoGradGuard no_grad;
  outer->eval();
  outer->call_eager(x);
  outer->hybridize();
  for (double scale : {1.0, 64.0, 1.0, 64.0}) {
    CAPTURE(scale);
    const Tensor got = (*outer)(x * scale);
    CHECK(bj::allclose(got, outer->call_eager(x * scale), 1e-5, 1e-6));
  }
  const nn::HybridStats s = outer->stats();
  CHECK(s.variants == 2);  // one per inner path: the inner guards decide
  CHECK(s.compiled_hits == 2);
  // The traced outer graph names the inner parameters by path and keeps the guards' lines.
  const Trace t = trace(*outer, x);
  const std::string text = ir::print(*t.graph);
  CHECK(text.find("param %inner.linear.weight") != std::string::npos);
  CHECK(text.find("seed_models.h:") != std::string::npos);
  // The unrecorded path: the outer block falls back to eager, which is the inner replay's error.
  test::check_error<GuardError>([&] { (*outer)(x * 4096.0); }, {"did not record"});
}

TEST_CASE("an imported block fine-tunes: eager replay trains exactly as the original class, hybridized close to it") {
  Scratch tmp("export");
  manual_seed(5);
  auto net = examples::zoo_model("mlp").make();
  const Tensor x = uniform(-1, 1, {4, 20}), target = uniform(-1, 1, {4, 10});
  {
    NoGradGuard no_grad;
    net->call_eager(x);
    net->hybridize();
    (*net)(x);
  }
  net->export_model(tmp / "mlp");
  auto eager_import = nn::SymbolBlock::imports(tmp / "mlp", {.hybridize = false});
  auto compiled_import = nn::SymbolBlock::imports(tmp / "mlp");
  net->hybridize(false);
  auto train = [&](nn::Block& b) {
    optim::SGD opt(b.parameters(), {.lr = 0.1});
    Tensor loss;
    for (int step = 0; step < 5; ++step) {
      opt.zero_grad();
      Tensor d = b(x) - target;
      loss = (d * d).mean();
      loss.backward();
      opt.step();
    }
    return static_cast<double>(loss.item());
  };
  const double l0 = train(*net), l1 = train(*eager_import), l2 = train(*compiled_import);
  CHECK(l1 == l0);
  CHECK(l2 == doctest::Approx(l0).epsilon(1e-5));
  CHECK(compiled_import->stats().compiled_hits >= 4);  // forward and backward compiled from the replay's trace
  for (const auto& [name, p] : net->named_parameters()) {
    CAPTURE(name);
    for (const auto& [n1, p1] : eager_import->named_parameters())
      if (n1 == name) CHECK(same_bits(p1.data(), p.data()));
    for (const auto& [n2, p2] : compiled_import->named_parameters())
      if (n2 == name) CHECK(bj::allclose(p2.data(), p.data(), 1e-5, 1e-6));
  }
}

TEST_CASE("export needs a hybridized block with a path outside grad mode") {
  Scratch tmp("export");
  manual_seed(6);
  auto net = examples::zoo_model("mlp").make();
  test::check_error<ValueError>([&] { net->export_model(tmp / "m"); }, {"not hybridized"});
  net->hybridize();
  test::check_error<ValueError>([&] { net->export_model(tmp / "m"); }, {"no compiled path", "NoGradGuard"});
  (*net)(uniform(0, 1, {2, 20}));  // grad mode: a training variant, not exported
  test::check_error<ValueError>([&] { net->export_model(tmp / "m"); }, {"no compiled path"});
  CHECK(!fs::exists(tmp / "m.ir"));
}

TEST_CASE("hostile export files: wrong magic, newer version, lying graphs and missing tensors are FileErrors naming the file") {
  Scratch tmp("export");
  manual_seed(8);
  const Tensor x = uniform(0, 1, {2, 20});
  exported_fixed_hidden(tmp / "fh", x);
  const std::string ir_text = read_bytes(tmp / "fh.ir"), st = read_bytes(tmp / "fh.safetensors");
  auto with_ir = [&](const std::string& text) {
    write_bytes(tmp / "bad.ir", text);
    write_bytes(tmp / "bad.safetensors", st);
    return nn::SymbolBlock::imports(tmp / "bad", {.hybridize = false});
  };
  auto replace = [](std::string s, const std::string& from, const std::string& to) {
    const size_t at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
  };
  test::check_error<FileError>([&] { with_ir("PK\x03\x04 zip"); }, {"bad.ir", "not a blockjit export"});
  test::check_error<FileError>([&] { with_ir(replace(ir_text, "blockjit-export 1", "blockjit-export 7")); },
                               {"bad.ir", "line 1", "version 7 is newer"});
  test::check_error<FileError>([&] { with_ir(ir_text.substr(0, ir_text.size() / 2)); }, {"bad.ir"});
  test::check_error<FileError>([&] { with_ir(replace(ir_text, "f32[20,20]", "f32[20,21]")); }, {"bad.ir", "line"});
  test::check_error<FileError>([&] { with_ir(replace(ir_text, "= matmul(", "= matmull(")); }, {"bad.ir", "line", "column"});
  test::check_error<FileError>([&] { with_ir(replace(ir_text, "inputs=1", "inputs=11")); }, {"bad.ir"});
  test::check_error<FileError>([&] { with_ir(replace(ir_text, "rng=-1", "rng=5")); }, {"bad.ir", "inputs"});
  test::check_error<FileError>([&] { with_ir(replace(ir_text, "model fixed-hidden-mlp", "modle x")); }, {"bad.ir", "line 3"});
  std::string renamed = ir_text;  // a parameter the tensors file lacks
  for (size_t at; (at = renamed.find("%linear.weight")) != std::string::npos;) renamed.replace(at, 14, "%linear.w");
  test::check_error<FileError>([&] { with_ir(renamed); }, {"bad.safetensors", "no tensor 'linear.w'", "bad.ir:"});
  test::check_error<FileError>([&] { nn::SymbolBlock::imports(tmp / "absent"); }, {"absent.ir"});
  write_bytes(tmp / "nost.ir", ir_text);
  test::check_error<FileError>([&] { nn::SymbolBlock::imports(tmp / "nost"); }, {"nost.safetensors"});
  // A directory or a FIFO is never read (or waited on).
  fs::create_directories(tmp / "dir.ir");
  test::check_error<FileError>([&] { nn::SymbolBlock::imports(tmp / "dir"); }, {"dir.ir", "directory"});
  REQUIRE(mkfifo((tmp / "fifo.ir").c_str(), 0600) == 0);
  test::check_error<FileError>([&] { nn::SymbolBlock::imports(tmp / "fifo"); }, {"fifo.ir", "not a regular file"});
}

TEST_CASE("mutated export files: thousands of byte flips, cuts and swapped lines import or raise a typed error") {
  Scratch tmp("export");
  manual_seed(9);
  const Tensor x = uniform(0, 1, {2, 20});
  auto net = exported_fixed_hidden(tmp / "fh", x);
  const std::string ir_text = read_bytes(tmp / "fh.ir"), st = read_bytes(tmp / "fh.safetensors");
  std::mt19937_64 rng(42);
  int imported = 0, refused = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string ir = ir_text, s = st;
    std::string& victim = i % 4 == 3 ? s : ir;
    switch (rng() % 4) {
      case 0: victim[rng() % victim.size()] ^= static_cast<char>(1 << (rng() % 8)); break;
      case 1: victim.resize(rng() % victim.size()); break;
      case 2: victim[rng() % victim.size()] = "0123456789-[],:%@ \n}{e"[rng() % 22]; break;
      default: victim.insert(rng() % victim.size(), victim.substr(rng() % victim.size(), rng() % 40)); break;
    }
    write_bytes(tmp / "m.ir", ir);
    write_bytes(tmp / "m.safetensors", s);
    try {
      auto b = nn::SymbolBlock::imports(tmp / "m", {.hybridize = false});
      ++imported;
      NoGradGuard no_grad;
      try {  // a mutation may change a literal, a shape that still verifies, an attribute...
        (*b)(x);
      } catch (const bj::Error&) {
      }
    } catch (const FileError& e) {
      ++refused;
      const std::string what = e.what();
      CHECK((what.find("m.ir") != std::string::npos || what.find("m.safetensors") != std::string::npos));
    }
  }
  MESSAGE(imported << " mutated exports imported, " << refused << " refused");
  CHECK(refused > 1000);
}

TEST_CASE("an exported training-mode path updates BatchNorm's running statistics as the original does, compiled and replayed") {
  Scratch tmp("export");
  manual_seed(10);
  auto make = [] {
    auto net = std::make_shared<nn::Sequential>();
    net->add(nn::Dense(6), nn::BatchNorm());
    return net;
  };
  auto net = make();
  net->initialize();
  const Tensor x = uniform(-1, 1, {8, 5});
  NoGradGuard no_grad;  // training mode (batch statistics), outside grad mode
  net->call_eager(x);
  net->hybridize();
  (*net)(x);
  net->wait_for_compiles();
  net->export_model(tmp / "bn");
  auto compiled = nn::SymbolBlock::imports(tmp / "bn");
  auto replayed = nn::SymbolBlock::imports(tmp / "bn", {.hybridize = false});
  CHECK(compiled->is_training());  // its one path was recorded in training mode
  const Tensor want = (*net)(x);   // compiled: the statistics move once more
  CHECK(same_bits((*compiled)(x), want));
  CHECK(compiled->stats().compiled_hits == 1);
  replayed->call_eager(x);
  auto stat = [](const nn::Block& b, const std::string& suffix) {
    for (const auto& [name, c] : b.named_constants())
      if (name.ends_with(suffix)) return c;
    FAIL("no constant " << suffix);
    return Tensor();
  };
  // Exported after two updates (the eager call, the traced one); the original's third ran compiled,
  // as did the compiled import's first: the same code on the same values. The replay is eager's.
  for (const char* s : {"running_mean", "running_var"}) {
    CAPTURE(s);
    CHECK(same_bits(stat(*compiled, s), stat(*net, s)));
    CHECK(bj::allclose(stat(*replayed, s), stat(*net, s), 1e-5, 1e-6));
    for (const auto& [name, t] : load(tmp / "bn.safetensors"))
      if (name.ends_with(s)) CHECK(!same_bits(stat(*replayed, s), t));  // the replay moved them
  }
}
