// Lowering an optimized, memory-planned graph to one LLVM function (see
// lower.cpp). The interface carries no LLVM types.
#pragma once

#include <string>

#include "codegen/plan.h"
#include "ir/graph.h"

namespace bj::codegen {

/// The entry point's name in every compiled object.
inline constexpr const char* kEntrySymbol = "bj_graph_main";

struct LoweredCode {
  std::string object;    ///< the relocatable object file
  std::string llvm_ir;   ///< optimized LLVM IR text, if asked for
  std::string assembly;  ///< assembly text, if asked for
};

/// Generates, optimizes (O3 for the host CPU) and emits `g`. The entry is
///   int32_t bj_graph_main(void* const* buffers, const void* context)
/// with buffers = inputs, params, consts, outputs, arena, packed weights (in
/// that order; see Plan::packings) and
/// context = plan.context; it returns -1, or the index of the first guard
/// that failed (having written no output). Throws bj::Error if LLVM fails.
/// `entry` names the entry (ahead-of-time libraries hold several graphs, each under its own name).
/// `fast`: the first tier, compiled in a fraction of the time (O1, fast instruction selection)
/// into slower code.
LoweredCode lower(const ir::Graph& g, const Plan& plan, bool want_ir, bool want_asm,
                  const std::string& entry = kEntrySymbol, bool fast = false);

}  // namespace bj::codegen
