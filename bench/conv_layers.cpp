// A CNN's compiled forward against oneDNN alone on the same convolutions:
// every conv2d of the traced model runs as a oneDNN forward primitive in the
// layouts oneDNN prefers, its input already in that layout (no reorders, no
// other ops), and the sum of their medians is the time a runtime made only of
// those convolutions would take. Then the model's compiled forward and eager
// forward, interleaved. Usage: bench_conv_layers [MODEL] [BATCH] [THREADS]
// (default resnet18 1 2).
#include <dnnl.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "examples/zoo.h"
#include "frontend/blockjit.h"
#include "runtime/kernels.h"

using namespace bj;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_us(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
}

/// One convolution as oneDNN alone runs it: its median time over `rounds` runs, in microseconds.
double dnnl_conv_us(const ir::Node& n, int rounds) {
  using dnnl::memory;
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  static dnnl::stream stream(engine);
  const Shape &xs = n.inputs[0]->type.shape, &ws = n.inputs[1]->type.shape, &ys = n.result->type.shape;
  const ir::OpAttrs& a = n.attrs;
  const auto f32 = memory::data_type::f32;
  const auto any = memory::format_tag::any;
  const int64_t g = a.groups;
  memory::desc x({xs[0], xs[1], xs[2], xs[3]}, f32, any), y({ys[0], ys[1], ys[2], ys[3]}, f32, any);
  memory::desc w = g == 1 ? memory::desc({ws[0], ws[1], ws[2], ws[3]}, f32, any)
                          : memory::desc({g, ws[0] / g, ws[1], ws[2], ws[3]}, f32, any);
  memory::dims pr(2);
  for (size_t i = 0; i < 2; ++i)
    pr[i] = (ys[2 + i] - 1) * a.stride[i] + a.dilation[i] * (ws[2 + i] - 1) + 1 - xs[2 + i] - a.padding[i];
  dnnl::convolution_forward::primitive_desc pd(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, x, w,
                                      y, {a.stride[0], a.stride[1]}, {a.dilation[0] - 1, a.dilation[1] - 1},
                                      {a.padding[0], a.padding[1]}, pr),
      engine);
  memory src(pd.src_desc(), engine), wei(pd.weights_desc(), engine), dst(pd.dst_desc(), engine);
  dnnl::convolution_forward conv(pd);
  std::vector<double> t;
  for (int r = 0; r < rounds + 2; ++r) {
    const double us = time_us([&] {
      conv.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
      stream.wait();
    });
    if (r >= 2) t.push_back(us);  // after warm-up
  }
  return median(t);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "resnet18";
  const int64_t batch = argc > 2 ? std::stoll(argv[2]) : 1;
  const int threads = argc > 3 ? std::stoi(argv[3]) : 2;
  rt::set_num_threads(threads);
  const examples::ZooModel& m = examples::zoo_model(name);
  Shape input = m.input;
  input[0] = batch;
  manual_seed(0);
  auto net = m.make();
  net->eval();
  NoGradGuard no_grad;
  Tensor x = uniform(0, 1, input);
  net->call_eager(x);
  const CompiledTrace compiled = compile(trace(*net, x));
  const int rounds = batch > 8 ? 5 : 20;
  double dnnl_us = 0, flops = 0;
  int convs = 0;
  ir::for_each_node(compiled.executable().graph().nodes(), [&](const ir::Node& n) {
    if (n.kind != ir::NodeKind::kOp || n.op != ir::OpKind::Conv2d) return;
    const Shape& w = n.inputs[1]->type.shape;
    flops += 2.0 * static_cast<double>(n.result->type.numel() * w[1] * w[2] * w[3]);
    dnnl_us += dnnl_conv_us(n, rounds);
    ++convs;
  });
  net->hybridize();
  (*net)(x);
  std::vector<double> eager, hybrid;
  for (int r = 0; r < rounds; ++r) {
    eager.push_back(time_us([&] { net->call_eager(x); }));
    hybrid.push_back(time_us([&] { (*net)(x); }));
  }
  const double e = median(eager), h = median(hybrid);
  fmt::print("{} inference, batch {}, {} thread(s), {} convolutions ({:.2f} GFLOP):\n", name, batch, threads, convs,
             flops / 1e9);
  fmt::print("  oneDNN alone, the convolutions only: {:9.0f} us  {:6.1f} GFLOP/s\n", dnnl_us, flops / dnnl_us / 1e3);
  fmt::print("  compiled (hybridized), whole model:  {:9.0f} us  {:6.1f} GFLOP/s  ({:.2f}x oneDNN's time)\n", h,
             flops / h / 1e3, h / dnnl_us);
  fmt::print("  eager, whole model:                  {:9.0f} us  {:6.1f} GFLOP/s  (compiled {:.2f}x faster)\n", e,
             flops / e / 1e3, e / h);
  fmt::print("  hybridized: {}\n", net->stats().str());
}
