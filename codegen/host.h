// What codegen knows of the machine it compiles for: LLVM's version and the
// host CPU's name and features (the target of generated code, and part of
// every on-disk cache key).
#pragma once

#include <string>

namespace bj::codegen {

struct HostInfo {
  std::string llvm_version;  ///< "19.1.7"
  std::string cpu;           ///< LLVM's name for the host CPU, e.g. "znver4"
  std::string features;      ///< enabled features, "+avx2,+avx512f,..." (sorted)
};

/// Detected once, through LLVM.
const HostInfo& host_info();

}  // namespace bj::codegen
