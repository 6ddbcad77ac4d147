// Host detection through LLVM (one of the few files that include LLVM headers).
#include "codegen/host.h"

#include <llvm/ADT/StringMap.h>
#include <llvm/ADT/StringRef.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/TargetParser/Host.h>

#include <algorithm>
#include <vector>

namespace bj::codegen {

const HostInfo& host_info() {
  static const HostInfo info = [] {
    HostInfo h;
    h.llvm_version = LLVM_VERSION_STRING;
    h.cpu = llvm::sys::getHostCPUName().str();
    std::vector<std::string> on;
    for (const auto& f : llvm::sys::getHostCPUFeatures())
      if (f.second) on.push_back("+" + f.first().str());
    std::sort(on.begin(), on.end());
    for (size_t i = 0; i < on.size(); ++i) h.features += (i ? "," : "") + on[i];
    return h;
  }();
  return info;
}

}  // namespace bj::codegen
