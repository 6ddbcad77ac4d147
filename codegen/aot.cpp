// Ahead-of-time libraries (see aot.h): each path lowered as the JIT lowers it
// (entry NAME_pathK), one more object holding the graphs' text, the tensors
// and the struct bj_aot_model (codegen/aot_abi.h), and an archive of them.
#include "codegen/aot.h"

#include <llvm/IR/Constants.h>
#include <llvm/IR/DerivedTypes.h>
#include <llvm/IR/GlobalVariable.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Object/ArchiveWriter.h>
#include <llvm/Support/MemoryBuffer.h>

#include <fmt/format.h>

#include <cctype>
#include <filesystem>
#include <fstream>

#include "codegen/aot_abi.h"
#include "codegen/host.h"
#include "codegen/jit_internal.h"
#include "codegen/lower.h"
#include "codegen/object_cache.h"
#include "codegen/optimize.h"
#include "codegen/plan.h"
#include "ir/error.h"

namespace bj::codegen {

namespace {

bool c_identifier(const std::string& s) {
  if (s.empty() || s.size() > 64 || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

/// The graph's inputs' and outputs' types, as a header comment lists them.
std::string signature(const ir::Graph& g) {
  std::string in, out;
  for (const ir::Value* v : g.inputs()) in += (in.empty() ? "" : ", ") + v->type.str();
  for (const ir::Value* v : g.outputs()) out += (out.empty() ? "" : ", ") + v->type.str();
  return "(" + in + ") -> (" + out + ")";
}

/// The object holding the model's description: graphs, offsets, tensors and bj_aot_model.
std::string model_object(const AotModel& m, const std::vector<std::string>& graphs, const HostInfo& host) {
  llvm::LLVMContext ctx;
  llvm::Module mod("bj_aot_" + m.name, ctx);
  prepare_module(mod);
  auto* i64 = llvm::Type::getInt64Ty(ctx);
  auto* ptr = llvm::PointerType::get(ctx, 0);
  auto private_global = [&](llvm::Constant* init, const std::string& name, unsigned align = 1) {
    auto* gv = new llvm::GlobalVariable(mod, init->getType(), true, llvm::GlobalValue::PrivateLinkage, init, name);
    gv->setAlignment(llvm::Align(align));
    return gv;
  };
  auto text = [&](const std::string& s, const std::string& name) {
    return private_global(llvm::ConstantDataArray::getString(ctx, s, /*AddNull=*/true), name);
  };
  auto u64 = [&](uint64_t v) { return llvm::ConstantInt::get(i64, v); };
  auto* path_type = llvm::StructType::get(ctx, {ptr, i64, ptr, ptr, i64});
  std::vector<llvm::Constant*> paths;
  for (size_t k = 0; k < m.paths.size(); ++k) {
    auto* entry = llvm::Function::Create(llvm::FunctionType::get(llvm::Type::getInt32Ty(ctx), {ptr, ptr}, false),
                                         llvm::Function::ExternalLinkage, fmt::format("{}_path{}", m.name, k + 1), mod);
    auto* offsets = private_global(llvm::ConstantDataArray::get(ctx, llvm::ArrayRef<uint64_t>(m.paths[k].offsets)),
                                   "offsets", 8);
    paths.push_back(llvm::ConstantStruct::get(
        path_type, {text(graphs[k], "graph"), u64(graphs[k].size()), entry, offsets, u64(m.paths[k].offsets.size())}));
  }
  auto* path_array = private_global(llvm::ConstantArray::get(llvm::ArrayType::get(path_type, paths.size()), paths),
                                    "paths", 8);
  auto* blob = private_global(
      llvm::ConstantDataArray::getRaw(llvm::StringRef(m.blob.data(), m.blob.size()), m.blob.size(), llvm::Type::getInt8Ty(ctx)),
      "blob", 64);
  const ir::Graph& g = *m.paths[0].graph;
  auto* model_type = llvm::StructType::get(ctx, {i64, ptr, ptr, ptr, ptr, i64, i64, i64, i64, ptr, ptr, i64});
  auto* model = llvm::ConstantStruct::get(
      model_type, {u64(BJ_AOT_ABI_VERSION), text(m.name, "name"), text(codegen_source_hash(), "source_hash"),
                   text(host.cpu, "cpu"), text(host.features, "features"), u64(m.exact ? 1 : 0), u64(g.inputs().size()),
                   u64(g.outputs().size()), u64(paths.size()), path_array, blob, u64(m.blob.size())});
  auto* gv = new llvm::GlobalVariable(mod, model_type, true, llvm::GlobalValue::ExternalLinkage, model, m.name + "_model");
  gv->setAlignment(llvm::Align(8));
  std::lock_guard lock(target_mutex());
  return emit(mod, /*assembly=*/false);
}

std::string header(const AotModel& m, const HostInfo& host) {
  const ir::Graph& g = *m.paths[0].graph;
  std::string io;
  for (size_t i = 0; i < g.inputs().size(); ++i) io += fmt::format(" *   input {}: {}\n", i, g.inputs()[i]->type.str());
  for (size_t i = 0; i < g.outputs().size(); ++i) io += fmt::format(" *   output {}: {}\n", i, g.outputs()[i]->type.str());
  const bool simple = g.inputs().size() == 1 && g.outputs().size() == 1 && g.inputs()[0]->type.dtype == DType::kF32 &&
                      g.outputs()[0]->type.dtype == DType::kF32;
  const std::string& n = m.name;
  std::string out = fmt::format(
      "/* {n}: made by `blockjit aot` from {src} for a {cpu} CPU ({paths} path{s}).\n"
      " * Link lib{n}.a with blockjit's AOT runtime (CMake: target_link_libraries(app blockjit::aot)).\n"
      " * Row-major data:\n{io}"
      " * {n}_run returns 0 when a recorded path ran; a positive code when the data takes a path the\n"
      " * export did not record (outputs unspecified); a negative code when the library cannot run\n"
      " * here. {n}_message(code) says which, naming the guard. */\n"
      "#ifndef BJ_AOT_{N}_H\n#define BJ_AOT_{N}_H\n\n#include \"codegen/aot_abi.h\"\n\n"
      "#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
      "extern const struct bj_aot_model {n}_model;\n\n"
      "enum {{ {n}_num_inputs = {ni}, {n}_num_outputs = {no} }};\n\n"
      "static inline int {n}_run_n(const void* const* inputs, void* const* outputs) {{\n"
      "  return bj_aot_run(&{n}_model, inputs, outputs);\n}}\n",
      fmt::arg("n", n), fmt::arg("src", m.source), fmt::arg("cpu", host.cpu), fmt::arg("paths", m.paths.size()),
      fmt::arg("s", m.paths.size() == 1 ? "" : "s"), fmt::arg("io", io), fmt::arg("ni", g.inputs().size()),
      fmt::arg("no", g.outputs().size()), fmt::arg("N", [&] {
        std::string up = n;
        for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        return up;
      }()));
  if (simple)
    out += fmt::format(
        "\n/* in: {} ({} floats), out: {} ({} floats). */\n"
        "enum {{ {n}_in_size = {}, {n}_out_size = {} }};\n"
        "static inline int {n}_run(const float* in, float* out) {{\n"
        "  const void* inputs[1] = {{in}};\n  void* outputs[1] = {{out}};\n"
        "  return bj_aot_run(&{n}_model, inputs, outputs);\n}}\n",
        g.inputs()[0]->type.str(), g.inputs()[0]->type.numel(), g.outputs()[0]->type.str(), g.outputs()[0]->type.numel(),
        g.inputs()[0]->type.numel(), g.outputs()[0]->type.numel(), fmt::arg("n", n));
  out += fmt::format(
      "\nstatic inline const char* {n}_message(int code) {{ return bj_aot_message(&{n}_model, code); }}\n\n"
      "#ifdef __cplusplus\n}}\n#endif\n\n#endif\n",
      fmt::arg("n", n));
  return out;
}

}  // namespace

AotFiles write_aot_library(const AotModel& m, const std::string& dir) {
  if (!c_identifier(m.name))
    throw ValueError("aot", "the name '" + m.name + "' is not a C identifier (letters, digits and _, at most 64)");
  if (m.paths.empty()) throw ValueError("aot", m.name + " has no path to compile");
  for (const AotPath& p : m.paths)
    if (!p.graph->commits().empty())
      throw ValueError("aot", fmt::format("a path of {} updates state in place (BatchNorm's running statistics in "
                                          "training mode), which a library's read-only tensors cannot hold: export "
                                          "the model in eval mode",
                                          m.name));
  for (const AotPath& p : m.paths)
    if (signature(*p.graph) != signature(*m.paths[0].graph))
      throw ValueError("aot", fmt::format("{}'s paths take different inputs or give different outputs ({} and {}); "
                                          "a library's entry takes one signature: export one kind of input",
                                          m.name, signature(*m.paths[0].graph), signature(*p.graph)));
  const HostInfo& host = host_info();
  std::vector<std::string> objects, graphs;
  for (size_t k = 0; k < m.paths.size(); ++k) {
    std::unique_ptr<ir::Graph> g = optimized_copy(*m.paths[k].graph, m.exact);
    const Plan plan = make_plan(*g, {.params_change = false, .exact = m.exact});
    objects.push_back(lower(*g, plan, false, false, fmt::format("{}_path{}", m.name, k + 1)).object);
    graphs.push_back(ir::print(*g));
  }
  objects.push_back(model_object(m, graphs, host));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  AotFiles files{(std::filesystem::path(dir) / ("lib" + m.name + ".a")).string(),
                 (std::filesystem::path(dir) / (m.name + ".h")).string()};
  std::vector<std::string> names;
  for (size_t k = 0; k < objects.size(); ++k)
    names.push_back(k + 1 < objects.size() ? fmt::format("{}_path{}.o", m.name, k + 1) : m.name + "_model.o");
  std::vector<llvm::NewArchiveMember> members;
  for (size_t k = 0; k < objects.size(); ++k)
    members.emplace_back(llvm::MemoryBufferRef(llvm::StringRef(objects[k]), names[k]));
  if (llvm::Error err = llvm::writeArchive(files.library, members, llvm::SymtabWritingMode::NormalSymtab,
                                           llvm::object::Archive::K_GNU, /*Deterministic=*/true, /*Thin=*/false)) {
    std::string why = llvm::toString(std::move(err));
    throw Error("aot", "cannot write " + files.library + ": " + why);
  }
  const std::string h = header(m, host);
  std::ofstream out(files.header, std::ios::binary | std::ios::trunc);
  out << h;
  out.close();
  if (!out) throw Error("aot", "cannot write " + files.header);
  return files;
}

}  // namespace bj::codegen
