// Ahead-of-time compilation: a model's paths (graphs as traced, with their
// tensors) compiled into a static library and a C header, run by the AOT
// runtime without LLVM (codegen/aot_abi.h). `blockjit aot` drives it from an
// exported model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace bj::codegen {

struct AotPath {
  const ir::Graph* graph = nullptr;  ///< as traced; optimized here as compile() would
  /// Per parameter, then per constant of the graph: its data's offset in AotModel::blob.
  std::vector<uint64_t> offsets;
};

struct AotModel {
  std::string name;  ///< a C identifier: the library is libNAME.a, the header NAME.h, the entry NAME_run
  std::string source;  ///< where it came from, for the header's comment
  bool exact = false;
  std::vector<AotPath> paths;  ///< all with the same input and output types
  std::string blob;            ///< every tensor's bytes, each at an offset that is a multiple of 64
};

struct AotFiles {
  std::string library, header;
};

/// Compiles `m` for this CPU and writes DIR/libNAME.a and DIR/NAME.h. ValueError for a name that
/// is not a C identifier, paths of different signatures or a path that writes state (commits);
/// bj::Error if LLVM fails.
AotFiles write_aot_library(const AotModel& m, const std::string& dir);

}  // namespace bj::codegen
