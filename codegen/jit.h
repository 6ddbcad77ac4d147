// A small wrapper over LLVM 19's LLJIT (after LLVM's KaleidoscopeJIT):
// each loaded object gets its own JITDylib, removed (with its code) when the
// LoadedCode is dropped. The interface carries no LLVM types.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace bj::codegen {

/// Code loaded into the process; its symbol stays callable while this lives.
class LoadedCode {
 public:
  virtual ~LoadedCode() = default;
  /// The address of the entry symbol.
  virtual void* entry() const = 0;
};

/// Links `object` (an object file made by lower()) into the process and
/// looks up `symbol`. Throws bj::Error if linking fails.
std::unique_ptr<LoadedCode> load_object(std::string_view object, const std::string& symbol);

}  // namespace bj::codegen
