// Where in the user's source a host read of tensor data happened, from the
// read's return address: LLVM's symbolizer reads the binary's line tables
// (compile with -g or -g1), so a guard recorded by `if (t)` or `while (t)`,
// which C++ cannot hand a std::source_location, still gets its file:line.
#pragma once

#include <optional>
#include <string>

namespace bj::codegen {

struct SourceSite {
  std::string file;  ///< base name
  int line = 0;
};

/// The innermost source frame at `return_address` that is not blockjit's own
/// frontend (its headers inline into user code); nothing if the binary has no
/// line tables there. Cached per address; thread-safe.
std::optional<SourceSite> source_site(const void* return_address);

}  // namespace bj::codegen
