// Test helpers: element access, closeness checks and naive reference loops
// that the kernels are compared against.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <unistd.h>
#include <functional>
#include <string>
#include <vector>

#include "frontend/blockjit.h"

namespace bj::test {

/// Elements as doubles (any dtype).
inline std::vector<double> values(const Tensor& t) {
  std::vector<double> v;
  for (float f : t.to_vector()) v.push_back(f);
  return v;
}

/// Every element within atol + rtol*|expected|; reports the first mismatch.
inline void check_close(const Tensor& got, const std::vector<double>& expected, double rtol = 1e-5, double atol = 1e-6) {
  auto g = values(got);
  REQUIRE(g.size() == expected.size());
  for (size_t i = 0; i < g.size(); ++i) {
    bool nan_both = std::isnan(g[i]) && std::isnan(expected[i]);
    INFO("element " << i << ": got " << g[i] << ", expected " << expected[i]);
    CHECK((nan_both || std::fabs(g[i] - expected[i]) <= atol + rtol * std::fabs(expected[i])));
    if (!(nan_both || std::fabs(g[i] - expected[i]) <= atol + rtol * std::fabs(expected[i]))) return;
  }
}
inline void check_close(const Tensor& got, const Tensor& expected, double rtol = 1e-5, double atol = 1e-6) {
  REQUIRE(got.shape() == expected.shape());
  check_close(got, values(expected), rtol, atol);
}

/// Runs a shell command; its standard output (and error if the command redirects it).
inline std::string run_command(const std::string& cmd, int* status = nullptr) {
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  int rc = pclose(p);
  if (status) *status = rc;
  return out;
}

struct Tol {
  double rtol = 0, atol = 0;
};

/// Elementwise |got - want| <= atol + rtol |want|, with NaNs and infinities matching exactly
/// (compiled code against the interpreter or eager mode).
inline bool near(const Tensor& got, const Tensor& want, Tol tol, std::string* why = nullptr) {
  if (!(got.type() == want.type())) {
    if (why) *why = "type " + got.type().str() + " against " + want.type().str();
    return false;
  }
  auto g = values(got), w = values(want);
  for (size_t i = 0; i < g.size(); ++i) {
    bool ok = (std::isnan(g[i]) && std::isnan(w[i])) || g[i] == w[i] ||
              (std::isfinite(w[i]) && std::fabs(g[i] - w[i]) <= tol.atol + tol.rtol * std::fabs(w[i]));
    if (!ok) {
      if (why) *why = "element " + std::to_string(i) + ": " + std::to_string(g[i]) + " against " + std::to_string(w[i]);
      return false;
    }
  }
  return true;
}
inline void check_near(const Tensor& got, const Tensor& want, Tol tol) {
  std::string why;
  bool ok = near(got, want, tol, &why);
  INFO(why);
  CHECK(ok);
}

/// Naive NumPy broadcasting: element `i` of `out` reads which element of `in`.
inline int64_t broadcast_index(int64_t i, const Shape& out, const Shape& in) {
  int64_t idx = 0, stride = 1;
  for (int d = 1; d <= out.size(); ++d) {
    int64_t coord = i % out[out.size() - d];
    i /= out[out.size() - d];
    if (d <= in.size()) {
      int64_t n = in[in.size() - d];
      idx += (n == 1 ? 0 : coord) * stride;
      stride *= n;
    }
  }
  return idx;
}

/// Reference for a broadcasting binary op.
inline std::vector<double> reference_binary(const Tensor& a, const Tensor& b, const Shape& out,
                                            const std::function<double(double, double)>& f) {
  auto va = values(a), vb = values(b);
  std::vector<double> r(out.numel());
  for (int64_t i = 0; i < out.numel(); ++i)
    r[i] = f(va[broadcast_index(i, out, a.shape())], vb[broadcast_index(i, out, b.shape())]);
  return r;
}

/// Reference matmul of 2-D row-major matrices (double accumulation).
inline std::vector<double> reference_matmul(const std::vector<double>& a, const std::vector<double>& b, int64_t m,
                                            int64_t k, int64_t n) {
  std::vector<double> c(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t p = 0; p < k; ++p) c[i * n + j] += a[i * k + p] * b[p * n + j];
  return c;
}

/// Runs `f` expecting an exception of type E whose message contains every one of `parts`.
template <class E, class F>
void check_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    FAIL("expected an exception");
  } catch (const E& e) {
    std::string msg = e.what();
    for (const std::string& p : parts) {
      INFO("message: " << msg << "\nmissing: " << p);
      CHECK(msg.find(p) != std::string::npos);
    }
  }
}

/// Same type and the same bytes.
inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.type() == b.type() && std::memcmp(a.raw_data(), b.raw_data(), a.type().bytes()) == 0;
}

/// A fresh folder of this process under the system's temporary folder, removed at the end:
/// `tmp / "name"` is a path in it.
struct Scratch {
  std::filesystem::path dir;
  explicit Scratch(const std::string& tag = "test")
      : dir(std::filesystem::temp_directory_path() / ("bj-" + tag + "-" + std::to_string(::getpid()))) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    std::filesystem::create_directories(dir);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

}  // namespace bj::test
