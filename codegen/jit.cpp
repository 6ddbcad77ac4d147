// The LLJIT wrapper and the target machine.
#include "codegen/jit.h"

#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Object/ELFObjectFile.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Target/TargetMachine.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <optional>
#include <mutex>

#include "codegen/host.h"
#include "codegen/jit_internal.h"
#include "ir/env.h"
#include "ir/error.h"
#include "runtime/jit_abi.h"

namespace bj::codegen {

namespace {

std::string message(llvm::Error e) {
  std::string s;
  llvm::handleAllErrors(std::move(e), [&](const llvm::ErrorInfoBase& info) { s += info.message(); });
  return s;
}

template <class T>
T check(llvm::Expected<T> v, const char* what) {
  if (!v) throw Error("codegen", std::string(what) + ": " + message(v.takeError()));
  return std::move(*v);
}
template <class T>
T& check(llvm::Expected<T&> v, const char* what) {
  if (!v) throw Error("codegen", std::string(what) + ": " + message(v.takeError()));
  return *v;
}

llvm::orc::JITTargetMachineBuilder host_builder() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
  });
  auto jtmb = check(llvm::orc::JITTargetMachineBuilder::detectHost(), "detecting the host");
  jtmb.setCodeModel(llvm::CodeModel::Small);
  jtmb.setRelocationModel(llvm::Reloc::PIC_);
  jtmb.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  return jtmb;
}

/// The shared LLJIT instance, with the runtime's ABI symbols defined in its main dylib.
class Jit {
 public:
  static Jit& get() {
    static Jit* jit = new Jit;  // lives as long as the process (loaded code may outlive statics)
    return *jit;
  }
  llvm::orc::LLJIT& lljit() { return *jit_; }
  std::mutex mu;
  std::atomic<uint64_t> next_id{0};

 private:
  Jit() {
    jit_ = check(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(host_builder()).create(), "creating LLJIT");
    auto& jd = jit_->getMainJITDylib();
    llvm::orc::SymbolMap syms;
    auto add = [&](const char* name, void* addr) {
      syms[jit_->mangleAndIntern(name)] = {llvm::orc::ExecutorAddr::fromPtr(addr), llvm::JITSymbolFlags::Exported};
    };
    add("bj_rt_call_node", reinterpret_cast<void*>(&bj_rt_call_node));
    add("bj_rt_call_node_batch", reinterpret_cast<void*>(&bj_rt_call_node_batch));
    add("bj_rt_parallel_for", reinterpret_cast<void*>(&bj_rt_parallel_for));
    add("memcpy", reinterpret_cast<void*>(&::memcpy));
    add("memset", reinterpret_cast<void*>(&::memset));
    if (auto err = jd.define(llvm::orc::absoluteSymbols(std::move(syms))))
      throw Error("codegen", "defining runtime symbols: " + message(std::move(err)));
  }
  std::unique_ptr<llvm::orc::LLJIT> jit_;
};

class LoadedObject final : public LoadedCode {
 public:
  LoadedObject(llvm::orc::JITDylib& jd, void* entry) : jd_(jd), entry_(entry) {}
  ~LoadedObject() override {
    Jit& jit = Jit::get();
    std::lock_guard lock(jit.mu);
    if (auto err = jit.lljit().getExecutionSession().removeJITDylib(jd_)) llvm::consumeError(std::move(err));
  }
  void* entry() const override { return entry_; }

 private:
  llvm::orc::JITDylib& jd_;
  void* entry_;
};

llvm::TargetMachine& machine(bool fast = false) {
  static std::unique_ptr<llvm::TargetMachine> tm = check(host_builder().createTargetMachine(), "creating the target machine");
  static std::unique_ptr<llvm::TargetMachine> fast_tm = [] {
    auto b = host_builder();
    b.setCodeGenOptLevel(llvm::CodeGenOptLevel::None);
    return check(b.createTargetMachine(), "creating the target machine");
  }();
  return fast ? *fast_tm : *tm;
}

/// Appends the object's functions to /tmp/perf-PID.map ("address size name", perf's format for
/// JIT code). The code is one text section: each function's address is the entry's, moved by
/// the difference of their offsets in the object.
void write_perf_map(std::string_view object, const std::string& entry, const char* entry_addr, const std::string& dylib) {
  auto obj = llvm::object::ObjectFile::createObjectFile(
      llvm::MemoryBufferRef(llvm::StringRef(object.data(), object.size()), dylib));
  if (!obj) return llvm::consumeError(obj.takeError());
  struct Fn {
    std::string name;
    uint64_t offset, size;
  };
  std::vector<Fn> fns;
  std::optional<uint64_t> entry_offset;
  for (const llvm::object::SymbolRef& sym : (*obj)->symbols()) {
    auto type = sym.getType();
    auto name = sym.getName();
    auto value = sym.getValue();
    if (!type || !name || !value) {
      llvm::consumeError(type.takeError());
      llvm::consumeError(name.takeError());
      llvm::consumeError(value.takeError());
      continue;
    }
    if (*type != llvm::object::SymbolRef::ST_Function) continue;
    const uint64_t size = llvm::object::ELFSymbolRef(sym).getSize();
    if (*name == entry) entry_offset = *value;
    fns.push_back({dylib + ":" + name->str(), *value, size});
  }
  if (!entry_offset) return;
  std::FILE* f = std::fopen(("/tmp/perf-" + std::to_string(::getpid()) + ".map").c_str(), "a");
  if (!f) return;
  for (const Fn& fn : fns)
    std::fprintf(f, "%lx %lx %s\n", reinterpret_cast<uintptr_t>(entry_addr) - *entry_offset + fn.offset,
                 static_cast<unsigned long>(fn.size), fn.name.c_str());
  std::fclose(f);
}

}  // namespace


std::string target_cpu() { return host_info().cpu; }
std::string target_features() { return host_info().features; }

void prepare_module(llvm::Module& m) {
  m.setTargetTriple(machine().getTargetTriple().str());
  m.setDataLayout(machine().createDataLayout());
}

void optimize_module(llvm::Module& m, bool fast) {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(&machine());
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  if (fast)
    pb.buildO0DefaultPipeline(llvm::OptimizationLevel::O0).run(m, mam);
  else
    pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(m, mam);
}

std::mutex& target_mutex() {
  static std::mutex mu;
  return mu;
}

std::string emit(llvm::Module& m, bool assembly, bool fast) {
  llvm::SmallVector<char, 0> buf;
  llvm::raw_svector_ostream os(buf);
  llvm::legacy::PassManager pm;
  if (machine(fast).addPassesToEmitFile(pm, os, nullptr,
                                    assembly ? llvm::CodeGenFileType::AssemblyFile : llvm::CodeGenFileType::ObjectFile))
    throw Error("codegen", "the target cannot emit this file type");
  pm.run(m);
  return std::string(buf.begin(), buf.end());
}

std::unique_ptr<LoadedCode> load_object(std::string_view object, const std::string& symbol) {
  Jit& jit = Jit::get();
  std::lock_guard lock(jit.mu);
  auto& lljit = jit.lljit();
  std::string name = "bj_exe_" + std::to_string(jit.next_id++);
  auto& jd = check(lljit.createJITDylib(name), "creating a JITDylib");
  jd.addToLinkOrder(lljit.getMainJITDylib());
  auto buffer = llvm::MemoryBuffer::getMemBufferCopy(llvm::StringRef(object.data(), object.size()), name);
  // On failure the JITDylib is removed again; an error removing it is added to the message.
  auto fail = [&](const std::string& what) {
    std::string why = what;
    if (auto err = lljit.getExecutionSession().removeJITDylib(jd)) why += " (and removing it: " + message(std::move(err)) + ")";
    return Error("codegen", why);
  };
  if (auto err = lljit.addObjectFile(jd, std::move(buffer))) throw fail("linking compiled code: " + message(std::move(err)));
  auto addr = lljit.lookup(jd, symbol);
  if (!addr) throw fail("looking up " + symbol + ": " + message(addr.takeError()));
  if (env::perf_map()) write_perf_map(object, symbol, addr->toPtr<char*>(), name);
  return std::make_unique<LoadedObject>(jd, addr->toPtr<void*>());
}

}  // namespace bj::codegen
