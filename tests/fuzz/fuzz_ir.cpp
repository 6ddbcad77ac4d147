// libFuzzer target: IR text through the parser and the verifier, the printer
// (whose text must parse back to the same text) and, for graphs small enough
// to run in milliseconds, the reference interpreter on seeded data: the path
// `blockjit ir FILE --run` takes. Only bj::Error may come out; anything else
// (a crash, a sanitizer report, another exception, a print that does not
// round-trip) is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ir/graph.h"
#include "runtime/kernels.h"
#include "tools/cli.h"

namespace {

/// Elements a run of g touches, counting a product as m*n*k: inputs above a budget are checked
/// but not interpreted (a fuzzer must not spend seconds or gigabytes on one input).
double work(const bj::ir::Graph& g) {
  double w = 0;
  for (const auto* vs : {&g.inputs(), &g.params(), &g.consts()})
    for (const bj::ir::Value* v : *vs) w += static_cast<double>(v->type.numel());
  bj::ir::for_each_node(g.nodes(), [&](const bj::ir::Node& n) {
    if (!n.result) return;
    double per_element = 1;
    for (const bj::ir::Value* in : n.inputs) per_element += static_cast<double>(in->type.numel());
    if (n.kind == bj::ir::NodeKind::kOp && n.op == bj::ir::OpKind::Matmul && !n.inputs.empty())
      per_element += static_cast<double>(n.inputs[0]->type.shape.numel());
    w += static_cast<double>(n.result->type.numel()) * per_element;
  });
  return w;
}

[[noreturn]] void finding(const char* what, const std::string& a, const std::string& b = "") {
  std::fprintf(stderr, "fuzz_ir: %s\n--- first\n%s\n--- second\n%s\n", what, a.c_str(), b.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bj::rt::set_num_threads(1);  // one input at a time, each on one thread: reproducible, and no pool to leak
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<bj::ir::Graph> g;
  try {
    g = bj::cli::load_ir(text);
  } catch (const bj::Error&) {
    return 0;  // a clean, typed rejection
  }
  const std::string printed = bj::ir::print(*g);
  std::unique_ptr<bj::ir::Graph> again;
  try {
    again = bj::cli::load_ir(printed);
  } catch (const bj::Error& e) {
    finding("the printed graph does not parse back", printed, e.what());
  }
  if (const std::string reprinted = bj::ir::print(*again); reprinted != printed)
    finding("printing the parsed print differs", printed, reprinted);
  if (work(*g) > 2e6) return 0;
  try {
    bj::cli::run_ir(*g);
  } catch (const bj::Error&) {
  }
  return 0;
}
