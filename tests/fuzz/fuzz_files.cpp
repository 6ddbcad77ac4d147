// libFuzzer target: model files as a user receives them. The first input byte picks the file:
//   even: the rest is a safetensors file, read by bj::load_header and bj::load;
//   odd:  the rest is an export's PREFIX.ir beside a valid PREFIX.safetensors (fixed-hidden-mlp's
//         tensors), imported by nn::SymbolBlock::imports without compiling, then called once on
//         an input of its first path's types.
// Property: a bj::Error (FileError for the files themselves) or success; never a crash, a hang
// or a read past a buffer (ASan).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "frontend/blockjit.h"

namespace {

std::string g_dir;

void write(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                static_cast<std::streamsize>(size));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char tmpl[] = "/tmp/bj_fuzz_files_XXXXXX";
  if (!::mkdtemp(tmpl)) std::abort();
  g_dir = tmpl;
  std::atexit([] { std::filesystem::remove_all(g_dir); });
  bj::manual_seed(0);
  bj::save(g_dir + "/m.safetensors",
           {{"linear.weight", bj::uniform(-1, 1, {20, 20})}, {"linear.bias", bj::zeros({20})},
            {"rand_weight", bj::uniform(0, 1, {20, 20})}},
           {{"format", "blockjit-export"}, {"constants", "[\"rand_weight\"]"}});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  try {
    if (data[0] % 2 == 0) {
      write(g_dir + "/t.safetensors", data + 1, size - 1);
      bj::load_header(g_dir + "/t.safetensors");
      bj::load(g_dir + "/t.safetensors");
    } else {
      write(g_dir + "/m.ir", data + 1, size - 1);
      auto b = bj::nn::SymbolBlock::imports(g_dir + "/m", {.hybridize = false});
      bj::Tensors in;
      for (const auto& t : b->paths().at(0).inputs) {
        if (t && t->numel() > (int64_t{1} << 20)) return 0;  // a huge input is not what is fuzzed here
        in.push_back(!t ? bj::Tensor() : t->dtype == bj::DType::kF32 ? bj::uniform(0, 1, t->shape)
                                                                       : bj::zeros(t->shape).to(t->dtype));
      }
      bj::NoGradGuard no_grad;
      (*b)(in);
    }
  } catch (const bj::Error&) {
  }
  return 0;
}
