// Parameter files: save and load of large-mlp's parameters (about 96 MB of
// f32) as safetensors, median of repeated rounds in GB/s, and the speed of
// copying the same bytes in memory beside it for scale. No assertions.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <unistd.h>
#include <vector>

#include "examples/zoo.h"
#include "frontend/serialize.h"

namespace {

template <class F>
double median_s(F&& f, int rounds) {
  std::vector<double> t;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main() {
  using namespace bj;
  const auto& m = examples::zoo_model("large-mlp");
  auto net = m.make();
  net->call_eager(examples::example_input(m, m.input, 1));
  const std::string path = (std::filesystem::temp_directory_path() / fmt::format("bj-bench-{}.safetensors", getpid())).string();
  net->save_parameters(path);
  const double bytes = static_cast<double>(std::filesystem::file_size(path));
  auto fresh = m.make();
  const double save_s = median_s([&] { net->save_parameters(path); }, 5);
  const double load_s = median_s([&] { fresh->load_parameters(path); }, 7);
  std::vector<char> a(static_cast<size_t>(bytes)), b(static_cast<size_t>(bytes), 1);
  const double copy_s = median_s([&] { std::memcpy(a.data(), b.data(), a.size()); }, 7);
  std::filesystem::remove(path);
  fmt::print("large-mlp parameters: {:.1f} MB\n", bytes / 1e6);
  fmt::print("  save_parameters {:.1f} ms ({:.2f} GB/s), load_parameters {:.1f} ms ({:.2f} GB/s); memcpy of the same bytes {:.1f} ms ({:.2f} GB/s)\n",
             save_s * 1e3, bytes / save_s / 1e9, load_s * 1e3, bytes / load_s / 1e9, copy_s * 1e3, bytes / copy_s / 1e9);
}
