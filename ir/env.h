// The environment variables blockjit reads, each parsed and checked here
// and nowhere else. A value that is not valid is ignored (the default
// applies) with one warning on standard error per variable and value,
// naming the variable and what it accepts. Read at each use, so a program
// (or a test) may change them while it runs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bj::env {

/// BJ_NUM_THREADS: threads for large kernels and oneDNN, 1 to 4 per core (unset: all cores).
std::optional<int> num_threads();
/// BJ_ALLOC_CACHE_MB: free memory the caching allocator keeps, 0 to 1048576 MiB (unset: 4096).
std::optional<int64_t> alloc_cache_mb();
/// BJ_VERIFY: 1 verifies the graph after every pass, 0 does not (default 0; always on in debug builds).
bool verify();
/// BJ_PRINT_AFTER: `all` or pass names separated by commas (the pass manager checks the names).
std::optional<std::string> print_after();
/// BJ_CACHE: 0 turns the on-disk object cache off, 1 on (default 1).
bool cache();
/// BJ_CACHE_DIR: the object cache's directory (unset or empty: the per-user default).
std::optional<std::string> cache_dir();
/// BJ_CACHE_MB: the object cache's size limit, 1 to 1048576 MiB (default 512); least recently
/// used entries go first.
int64_t cache_mb();
/// BJ_LOG: `stats`, `recompiles` or `all`, separated by commas.
struct LogFlags {
  bool stats = false, recompiles = false;
};
LogFlags log();
/// BJ_DATA_DIR: where bj::data::fashion_mnist looks for the data set (unset or empty: Debian's
/// /usr/share/datasets/fashion-mnist).
std::optional<std::string> data_dir();
/// BJ_FORTUNES_DIR: where bj::data::fortunes_text looks for the fortune files (unset or empty:
/// Debian's /usr/share/games/fortunes).
std::optional<std::string> fortunes_dir();
/// BJ_PERF_MAP: 1 appends every compiled function to /tmp/perf-PID.map, so `perf report` names
/// the code of each graph and region (default 0).
bool perf_map();
/// BJ_FAULT: test hooks (`compile` makes every compilation fail; `slow-compiled` makes every
/// compiled call of a block hybridized from then on wait 2 ms, for the adaptive fallback's tests).
bool fault(std::string_view what);

}  // namespace bj::env
