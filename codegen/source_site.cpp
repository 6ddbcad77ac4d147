// source_site(): return addresses to file:line with LLVM's symbolizer.
#include "codegen/source_site.h"

#include <link.h>

#include <llvm/DebugInfo/Symbolize/Symbolize.h>
#include <llvm/Support/Error.h>

#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace bj::codegen {

namespace {

/// The loaded object holding `addr`: its file and load bias (dl_iterate_phdr knows both, for
/// position-independent and fixed-address executables alike).
struct Module {
  uintptr_t addr = 0;
  std::string path;
  uintptr_t bias = 0;
  bool found = false;
};

int find_module(dl_phdr_info* info, size_t, void* data) {
  auto* m = static_cast<Module*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && m->addr >= lo && m->addr < lo + ph.p_memsz) {
      m->path = info->dlpi_name && *info->dlpi_name ? info->dlpi_name : "/proc/self/exe";
      m->bias = info->dlpi_addr;
      m->found = true;
      return 1;
    }
  }
  return 0;
}

}  // namespace

std::optional<SourceSite> source_site(const void* return_address) {
  static std::mutex mu;
  static auto* cache = new std::unordered_map<const void*, std::optional<SourceSite>>;
  static auto* symbolizer = new llvm::symbolize::LLVMSymbolizer();
  std::lock_guard lock(mu);
  if (auto it = cache->find(return_address); it != cache->end()) return it->second;
  std::optional<SourceSite> site;
  // The call instruction is just before its return address.
  Module m;
  m.addr = reinterpret_cast<uintptr_t>(return_address) - 1;
  dl_iterate_phdr(find_module, &m);
  if (m.found) {
    auto frames = symbolizer->symbolizeInlinedCode(m.path, {m.addr - m.bias, llvm::object::SectionedAddress::UndefSection});
    if (!frames) {
      llvm::consumeError(frames.takeError());
    } else {
      for (uint32_t i = 0; i < frames->getNumberOfFrames(); ++i) {
        const llvm::DILineInfo& f = frames->getFrame(i);
        if (f.Line == 0 || f.FileName == llvm::DILineInfo::BadString) continue;
        if (f.FileName.find("/frontend/") != std::string::npos) continue;  // our own inlined plumbing
        site = SourceSite{f.FileName.substr(f.FileName.rfind('/') + 1), static_cast<int>(f.Line)};
        break;
      }
    }
  }
  return (*cache)[return_address] = site;
}

}  // namespace bj::codegen
