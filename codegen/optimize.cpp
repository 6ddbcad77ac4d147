// Pipeline wiring (see optimize.h).
#include "codegen/optimize.h"

#include "ir/env.h"
#include "runtime/kernels.h"

namespace bj::codegen {

passes::PassContext pass_context() {
  passes::PassContext ctx;
  ctx.evaluate = [](const ir::Node& n, std::span<const std::byte* const> inputs) {
    std::vector<rt::ConstView> views;
    for (size_t i = 0; i < inputs.size(); ++i) views.push_back({inputs[i], n.inputs[i]->type});
    std::vector<std::byte> out(n.result->type.bytes());
    rt::run_kernel(n.op, views, n.attrs, rt::View{out.data(), n.result->type});
    return out;
  };
  return ctx;
}

passes::PipelineReport optimize(ir::Graph& g, const passes::PipelineOptions& options) {
  return passes::run_pipeline(g, passes::default_pipeline(), pass_context(), options);
}

std::unique_ptr<ir::Graph> optimized_copy(const ir::Graph& g, bool exact) {
  std::unique_ptr<ir::Graph> copy = ir::parse(ir::print(g));
  passes::PipelineOptions quiet;  // prints nothing; `blockjit dump` shows the passes
  quiet.verify = env::verify();
  quiet.exact = exact;
  optimize(*copy, quiet);
  return copy;
}

}  // namespace bj::codegen
