// Parsing and checking of blockjit's environment variables (see env.h).
#include "ir/env.h"

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>

namespace bj::env {

namespace {

std::optional<std::string> get(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::optional<std::string>(v) : std::nullopt;
}

/// One warning per variable and value.
void warn(const char* name, const std::string& value, const std::string& accepted) {
  static std::mutex mu;
  static auto* seen = new std::set<std::string>;
  std::lock_guard lock(mu);
  if (!seen->insert(std::string(name) + "=" + value).second) return;
  std::fprintf(stderr, "blockjit: warning: %s='%s' is ignored: %s\n", name, value.c_str(), accepted.c_str());
}

std::optional<int64_t> integer(const char* name, int64_t lo, int64_t hi, const std::string& accepted) {
  auto v = get(name);
  if (!v) return std::nullopt;
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || end != v->data() + v->size() || v->empty() || n < lo || n > hi) {
    warn(name, *v, accepted);
    return std::nullopt;
  }
  return n;
}

std::optional<bool> flag(const char* name) {
  auto v = get(name);
  if (!v) return std::nullopt;
  if (*v == "0" || *v == "1") return *v == "1";
  warn(name, *v, "expected 0 or 1");
  return std::nullopt;
}

/// A directory named by variable `name`; empty is ignored with a warning.
std::optional<std::string> directory(const char* name) {
  auto v = get(name);
  if (v && v->empty()) {
    warn(name, *v, "expected a directory (empty does not mean the current directory)");
    return std::nullopt;
  }
  return v;
}

}  // namespace

std::optional<int> num_threads() {
  const int64_t max = 4 * static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  auto n = integer("BJ_NUM_THREADS", 1, max, "expected a whole number of threads from 1 to " + std::to_string(max));
  return n ? std::optional<int>(static_cast<int>(*n)) : std::nullopt;
}

std::optional<int64_t> alloc_cache_mb() {
  return integer("BJ_ALLOC_CACHE_MB", 0, int64_t{1} << 20, "expected a whole number of MiB from 0 to 1048576");
}

bool verify() { return flag("BJ_VERIFY").value_or(false); }

std::optional<std::string> print_after() { return get("BJ_PRINT_AFTER"); }

bool cache() { return flag("BJ_CACHE").value_or(true); }

std::optional<std::string> cache_dir() { return directory("BJ_CACHE_DIR"); }

int64_t cache_mb() {
  return integer("BJ_CACHE_MB", 1, int64_t{1} << 20, "expected a whole number of MiB from 1 to 1048576").value_or(512);
}

LogFlags log() {
  LogFlags f;
  auto v = get("BJ_LOG");
  if (!v) return f;
  for (size_t start = 0; start <= v->size();) {
    size_t end = std::min(v->find(',', start), v->size());
    std::string word = v->substr(start, end - start);
    if (word == "stats" || word == "all") f.stats = true;
    if (word == "recompiles" || word == "all") f.recompiles = true;
    if (word != "stats" && word != "recompiles" && word != "all" && !word.empty())
      warn("BJ_LOG", *v, "expected stats, recompiles or all, separated by commas");
    start = end + 1;
  }
  return f;
}

std::optional<std::string> data_dir() { return directory("BJ_DATA_DIR"); }

std::optional<std::string> fortunes_dir() { return directory("BJ_FORTUNES_DIR"); }

bool perf_map() { return flag("BJ_PERF_MAP").value_or(false); }

bool fault(std::string_view what) {
  auto v = get("BJ_FAULT");
  if (!v) return false;
  if (*v != "compile" && *v != "slow-compiled") warn("BJ_FAULT", *v, "expected compile or slow-compiled (test hooks)");
  return *v == what;
}

}  // namespace bj::env
