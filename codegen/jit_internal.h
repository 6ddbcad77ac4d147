// Internal to codegen/: the LLVM pieces lower.cpp and jit.cpp share. LLVM
// headers are included only where codegen/CMakeLists.txt lists (~10 s each to compile).
#pragma once

#include <llvm/IR/Module.h>

#include <mutex>
#include <string>

namespace bj::codegen {

/// Held while optimizing or emitting: the target machine is shared and not thread-safe.
std::mutex& target_mutex();

/// Host target triple and data layout on a fresh module.
void prepare_module(llvm::Module& m);
/// LLVM's O3 pipeline for the host CPU; `fast` (the first tier): O1.
void optimize_module(llvm::Module& m, bool fast = false);
/// The module as an object file or as assembly text; `fast`: without the backend's optimizations
/// (fast instruction selection), for the first tier.
std::string emit(llvm::Module& m, bool assembly, bool fast = false);
/// The host CPU name and features, as function attributes want them.
std::string target_cpu();
std::string target_features();

}  // namespace bj::codegen
