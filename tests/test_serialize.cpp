// Parameters in files (frontend/serialize.h, Block::save_parameters and
// load_parameters): every zoo model round-trips bit for bit, deferred shapes
// complete from the file, BatchNorm's running statistics travel along, a
// file that does not fit the block changes nothing and says why, files
// written by an independent writer (Python's struct and json) load and ours
// read back there, and truncated, mutated and lying files are FileErrors,
// never crashes.
#include <doctest/doctest.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>

#include "examples/zoo.h"
#include "tests/helpers.h"

using namespace bj;
namespace fs = std::filesystem;

namespace {

using test::Scratch;
using test::same_bits;
using test::read_bytes;
using test::write_bytes;

/// A safetensors file from a header text and data bytes, as any writer would lay it out.
std::string safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i));
  return out + header + data;
}

}  // namespace

TEST_CASE("save_parameters and load_parameters: every zoo model into a fresh instance gives the same outputs bit for bit") {
  NoGradGuard no_grad;
  Scratch tmp("serialize");
  for (const auto& m : examples::zoo()) {
    CAPTURE(m.name);
    manual_seed(1);
    auto net = m.make();
    Tensor x = examples::example_input(m, m.input, 5);
    net->call_eager(x);  // completes deferred shapes; BatchNorm's statistics move (training mode)
    net->eval();
    const Tensor want = net->call_eager(x);
    net->save_parameters(tmp / (m.name + ".safetensors"));
    manual_seed(2);
    auto fresh = m.make();  // other initial values, shapes still deferred
    fresh->load_parameters(tmp / (m.name + ".safetensors"));
    fresh->eval();
    CHECK(same_bits(fresh->call_eager(x), want));
    // A BatchNorm model keeps its statistics: constants are saved under their paths.
    for (const auto& [name, c] : net->named_constants()) {
      CAPTURE(name);
      bool found = false;
      for (const auto& [n2, c2] : fresh->named_constants()) found |= n2 == name && same_bits(c, c2);
      CHECK(found);
    }
  }
}

TEST_CASE("load_parameters: missing, extra and mismatched names are listed, options allow the first two, and a failed load changes nothing") {
  Scratch tmp("serialize");
  manual_seed(3);
  nn::Sequential a;
  a.add(nn::Dense(4, "relu"), nn::Dense(2));
  a.initialize();
  a(uniform(-1, 1, {1, 3}));
  a.save_parameters(tmp / "a.safetensors");
  // Names and shapes: "0.weight" is [4, 3] as PyTorch's Linear keeps it.
  const SafetensorsHeader h = load_header(tmp / "a.safetensors");
  REQUIRE(h.tensors.size() == 4);
  CHECK(h.tensors[0].first == "0.weight");
  CHECK(h.tensors[0].second.shape == Shape{4, 3});
  CHECK(h.metadata.at("format") == "blockjit");

  nn::Sequential wider;  // 0.weight [5, 3]: mismatched; and a third layer: missing
  wider.add(nn::Dense(5, "relu"), nn::Dense(2), nn::Dense(2));
  wider.initialize();
  wider(uniform(-1, 1, {1, 3}));
  const std::vector<float> before = wider.named_parameters()[1].second.data().to_vector();
  test::check_error<FileError>([&] { wider.load_parameters(tmp / "a.safetensors"); },
                               {"a.safetensors", "'0.weight' is f32[4,3] in the file, the block's is f32[5,3]",
                                "missing from the file (2 of the block's): '2.weight', '2.bias'", "nothing was loaded"});
  CHECK(wider.named_parameters()[1].second.data().to_vector() == before);  // 0.bias untouched

  nn::Sequential three;  // the same first two layers and one more
  three.add(nn::Dense(4, "relu"), nn::Dense(2), nn::Dense(2));
  three.initialize();
  three(uniform(-1, 1, {1, 3}));
  test::check_error<FileError>([&] { three.load_parameters(tmp / "a.safetensors"); }, {"missing from the file", "'2.bias'"});
  three.load_parameters(tmp / "a.safetensors", {.allow_missing = true});
  CHECK(same_bits(three.named_parameters()[0].second.data(), a.named_parameters()[0].second.data()));

  nn::Sequential one;
  one.add(nn::Dense(4, "relu"));
  test::check_error<FileError>([&] { one.load_parameters(tmp / "a.safetensors"); }, {"in the file but not in the block (2): '1.weight', '1.bias'"});
  one.load_parameters(tmp / "a.safetensors", {.allow_extra = true});  // and the deferred input width comes from the file
  CHECK(one.named_parameters()[0].second.shape() == Shape{4, 3});

  nn::Dense never(3);  // deferred and never called: nothing to save
  test::check_error<NotInitializedError>([&] { never.save_parameters(tmp / "never.safetensors"); }, {"weight", "no value yet"});
  CHECK_FALSE(fs::exists(tmp / "never.safetensors"));
}

TEST_CASE("save and load of named tensors: every dtype, empty and scalar shapes, metadata, and no half-written file") {
  Scratch tmp("serialize");
  NamedTensors t = {{"f", uniform(-1, 1, {2, 3})},
                    {"ids", tensor(std::vector<int64_t>{-5, 0, int64_t{1} << 40}, {3})},
                    {"mask", gt(uniform(0, 1, {4}), full({}, 0.5))},
                    {"empty", zeros({0, 7})},
                    {"scalar", full({}, 2.5)}};
  save(tmp / "t.safetensors", t, {{"note", "hello"}});
  const std::string bytes = read_bytes(tmp / "t.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);  // the data starts aligned
  NamedTensors back = load(tmp / "t.safetensors");
  REQUIRE(back.size() == t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    CAPTURE(t[i].first);
    CHECK(back[i].first == t[i].first);
    CHECK(same_bits(back[i].second, t[i].second));
  }
  CHECK(load_header(tmp / "t.safetensors").metadata.at("note") == "hello");
  test::check_error<ValueError>([&] { save(tmp / "d.safetensors", {{"a", zeros({1})}, {"a", zeros({1})}}); }, {"'a' is given twice"});
  test::check_error<ValueError>([&] { save(tmp / "d.safetensors", {{"__metadata__", zeros({1})}}); }, {"reserved"});
  CHECK_FALSE(fs::exists(tmp / "d.safetensors"));
  test::check_error<FileError>([&] { save((tmp.dir / "no" / "such" / "dir.safetensors").string(), t); }, {"cannot write"});
  for (const auto& e : fs::directory_iterator(tmp.dir)) CHECK(e.path().string().find(".tmp") == std::string::npos);
}

TEST_CASE("safetensors interoperability: a file from Python's struct and json loads, and ours reads back there") {
  Scratch tmp("serialize");
  const std::string in = tmp / "py.safetensors", out = tmp / "ours.safetensors", script = tmp / "st.py";
  write_bytes(script, R"PY(
import json, struct, sys
def write(path):
    tensors = {"layer.weight": ("F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0, -0.0, 1e-30)),
               "layer.bias": ("F32", [2], struct.pack("<2f", 0.25, -7)),
               "steps": ("I64", [1], struct.pack("<q", 123456789012))}
    header, data = {"__metadata__": {"written_by": "python"}}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + data)
def read(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    for name in sorted(k for k in header if k != "__metadata__"):
        e = header[name]
        b, end = e["data_offsets"]
        fmt = {"F32": "f", "I64": "q", "BOOL": "?"}[e["dtype"]]
        values = struct.unpack("<%d%s" % ((end - b) // struct.calcsize(fmt), fmt), data[b:end])
        print(name, e["dtype"], e["shape"], " ".join(repr(v) for v in values))
write(sys.argv[1]) if sys.argv[2] == "write" else read(sys.argv[1])
)PY");
  int status = 0;
  test::run_command("python3 " + script + " " + in + " write", &status);
  REQUIRE(status == 0);
  NamedTensors t = load(in);
  REQUIRE(t.size() == 3);
  std::map<std::string, Tensor> by;
  for (auto& [n, v] : t) by[n] = v;
  CHECK(by.at("layer.weight").to_vector() == std::vector<float>{1, -2, 3.5f, 0, -0.0f, 1e-30f});
  CHECK(std::signbit(by.at("layer.weight").to_vector()[4]));
  CHECK(by.at("steps").dtype() == kI64);
  CHECK(load_header(in).metadata.at("written_by") == "python");
  save(out, {{"w", tensor(std::vector<float>{0.5f, -1.25f}, {2})}, {"flags", gt(tensor(std::vector<float>{1, 0, 1}, {3}), full({}, 0.5))}});
  const std::string printed = test::run_command("python3 " + script + " " + out + " read", &status);
  CHECK(status == 0);
  CHECK(printed == "flags BOOL [3] True False True\nw F32 [2] 0.5 -1.25\n");
}

TEST_CASE("hostile safetensors files are FileErrors naming the file: truncated at every length, lying headers, a few thousand mutations") {
  Scratch tmp("serialize");
  const std::string path = tmp / "h.safetensors";
  auto expect = [&](const std::string& bytes, std::initializer_list<std::string> parts) {
    write_bytes(path, bytes);
    test::check_error<FileError>([&] { load(path); }, parts);
  };
  const std::string data(24, '\0');
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
  write_bytes(path, safetensors(ok, data));
  CHECK(load(path).size() == 1);
  expect("", {"h.safetensors", "truncated: 0 bytes"});
  expect(safetensors(ok, data).substr(0, 20), {"truncated"});
  expect(safetensors(ok, data.substr(0, 20)), {"'a'", "outside the 20 bytes of data"});
  expect(safetensors(ok, data + "xxxx"), {"the data has 28 bytes, but its tensors cover 24"});
  expect(safetensors("[1, 2]", ""), {"must be a JSON object"});
  expect(safetensors("{\"a\":", ""), {"not valid JSON"});
  expect(safetensors(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}})", data),
         {"names 'a' twice"});
  expect(safetensors(R"({"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}})", data.substr(0, 12)), {"dtype 'F16'"});
  expect(safetensors(R"({"a":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]}})", data), {"non-negative whole number"});
  expect(safetensors(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,24]}})", data), {"cannot fit"});
  expect(safetensors(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[24,0]}})", data), {"outside"});
  expect(safetensors(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[3],"data_offsets":[8,20]}})", data.substr(0, 20)),
         {"overlap or leave a gap"});
  expect(safetensors(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24],"extra":1}})", data), {"unknown field 'extra'"});
  expect(safetensors(R"({"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", std::string("\x01\x07", 2)), {"BOOL", "holds 7"});
  std::string huge(8, '\xff');
  expect(huge, {"over the format's limit"});
  test::check_error<FileError>([&] { load(tmp / "absent.safetensors"); }, {"absent.safetensors", "cannot open"});
  test::check_error<FileError>([&] { load(tmp.dir.string()); }, {"is a directory"});

  // Every prefix of a real file, and random mutations of it: a FileError or a load, nothing else.
  manual_seed(4);
  NamedTensors t = {{"w", uniform(-1, 1, {3, 4})}, {"b", zeros({4})}, {"m", gt(ones({2}), zeros({}))}};
  save(path, t);
  const std::string good = read_bytes(path);
  for (size_t len = 0; len < good.size(); ++len) {
    write_bytes(path, good.substr(0, len));
    CHECK_THROWS_AS(load(path), FileError);
  }
  std::mt19937_64 rng(9);
  int loaded = 0, rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string bad = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % bad.size();
      switch (rng() % 3) {
        case 0: bad[at] = static_cast<char>(rng()); break;                     // flip a byte
        case 1: bad.erase(at, 1 + rng() % 8); break;                            // cut
        case 2: bad.insert(at, std::string(1 + rng() % 4, static_cast<char>(rng()))); break;  // grow
      }
      if (bad.empty()) bad = "x";
    }
    write_bytes(path, bad);
    try {
      load(path);
      ++loaded;
    } catch (const FileError&) {
      ++rejected;
    }
  }
  CHECK(rejected > 1000);
  CHECK(loaded + rejected == 3000);
}

TEST_CASE("training resumes from saved parameters and optimizer state: SGD with momentum and Adam continue bit for bit") {
  Scratch tmp("serialize");
  for (const char* kind : {"sgd", "adam"}) {
    CAPTURE(std::string(kind));
    auto make = [] {
      auto net = std::make_shared<nn::Sequential>();
      net->add(nn::Dense(8, "relu"), nn::Dense(3));
      net->initialize();
      return net;
    };
    auto optimizer = [&](nn::Block& net) -> std::unique_ptr<optim::Optimizer> {
      if (std::string(kind) == "sgd") return std::make_unique<optim::SGD>(net.parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
      return std::make_unique<optim::Adam>(net.parameters(), optim::AdamOptions{.lr = 0.01});
    };
    manual_seed(7);
    Tensor x = uniform(-1, 1, {16, 5}), y = tensor(std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0}, {16});
    auto net = make();
    (*net)(x);
    auto opt = optimizer(*net);
    auto step = [&](nn::Block& n, optim::Optimizer& o) {
      o.zero_grad();
      nn::cross_entropy(n(x), y).backward();
      o.step();
    };
    for (int i = 0; i < 3; ++i) step(*net, *opt);
    net->save_parameters(tmp / "net.safetensors");
    opt->save_state(tmp / "opt.safetensors");
    for (int i = 0; i < 3; ++i) step(*net, *opt);
    manual_seed(8);
    auto again = make();
    again->load_parameters(tmp / "net.safetensors");
    auto opt2 = optimizer(*again);
    opt2->load_state(tmp / "opt.safetensors");
    for (int i = 0; i < 3; ++i) step(*again, *opt2);
    for (size_t i = 0; i < net->parameters().size(); ++i)
      CHECK(same_bits(net->parameters()[i].data(), again->parameters()[i].data()));
  }
  // A state file for another optimizer, or other parameters, is refused before anything changes.
  nn::Dense d(2);
  d.initialize();
  d(zeros({1, 3}));
  optim::SGD sgd(d.parameters(), {.lr = 0.1, .momentum = 0.9});
  optim::Adam adam(d.parameters());
  sgd.save_state(tmp / "sgd.safetensors");
  test::check_error<FileError>([&] { adam.load_state(tmp / "sgd.safetensors"); }, {"holds the state of SGD over 2 parameter(s); this is Adam over 2"});
  nn::Dense wide(4);
  wide.initialize();
  wide(zeros({1, 3}));
  optim::SGD other(wide.parameters(), {.lr = 0.1, .momentum = 0.9});
  d.zero_grad();
  nn::mse_loss(d(ones({1, 3})), zeros({1, 2})).backward();
  sgd.step();  // now it has velocities of d's shapes
  sgd.save_state(tmp / "sgd.safetensors");
  test::check_error<FileError>([&] { other.load_state(tmp / "sgd.safetensors"); }, {"'velocity.0' is f32[2,3], parameter 0 is f32[4,3]"});
}
