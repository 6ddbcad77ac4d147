// The C ABI compiled code calls (see jit_abi.h).
#include "runtime/jit_abi.h"

#include <algorithm>

#include "runtime/kernels.h"
#include "runtime/threads.h"

extern "C" void bj_rt_call_node(const void* ctx, int32_t id, const void* const* inputs, void* out) {
  const auto& node = static_cast<const bj::rt::JitContext*>(ctx)->nodes[static_cast<size_t>(id)];
  if (node.fused) {
    const auto* bias = node.fused->bias ? static_cast<const float*>(inputs[2]) : nullptr;
    bj::rt::matmul_fused(*node.fused, static_cast<const float*>(inputs[0]), inputs[1], bias, static_cast<float*>(out));
    return;
  }
  if (node.conv) {
    bj::rt::conv_packed(*node.conv, static_cast<const float*>(inputs[0]), inputs[1], static_cast<float*>(out));
    return;
  }
  std::vector<bj::rt::ConstView> views;
  views.reserve(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) views.push_back({inputs[i], node.inputs[i]});
  bj::rt::run_kernel(node.op, views, node.attrs, bj::rt::View{out, node.output});
}

extern "C" void bj_rt_call_node_batch(const void* ctx, int32_t id, const void* const* inputs, void* out,
                                      int64_t batch) {
  const auto& node = static_cast<const bj::rt::JitContext*>(ctx)->nodes[static_cast<size_t>(id)];
  if (node.input_batch.empty()) return bj_rt_call_node(ctx, id, inputs, out);
  std::vector<bj::rt::ConstView> views;
  views.reserve(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    bj::Type t = node.inputs[i];
    if (node.input_batch[i]) t.shape[0] = node.input_batch[i] * batch;
    views.push_back({inputs[i], t});
  }
  bj::Type t = node.output;
  if (node.output_batch) t.shape[0] = node.output_batch * batch;
  bj::rt::run_kernel(node.op, views, node.attrs, bj::rt::View{out, t});
}

extern "C" void bj_rt_parallel_for(void (*fn)(int64_t, int64_t, void* const*), int64_t n, void* const* bufs) {
  const int threads = static_cast<int>(std::min<int64_t>(bj::rt::num_threads(), n));
  bj::rt::parallel_chunks(n, threads, [&](int64_t begin, int64_t end) { fn(begin, end, bufs); });
}
