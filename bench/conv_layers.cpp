// A CNN's compiled forward against oneDNN alone on the same convolutions:
// every conv2d of the traced model runs as a oneDNN forward primitive in the
// layouts oneDNN prefers, its input already in that layout (no reorders, no
// other ops), one after another: the time a runtime made only of those
// convolutions would take. Each round runs that chain, the model's eager
// forward and its compiled forward; medians over the rounds.
// Usage: bench_conv_layers [MODEL] [BATCH] [THREADS] (default resnet18 1 2).
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

/// One convolution as oneDNN alone runs it: a forward primitive in the layouts it prefers, with
/// its own input, weights and output memory already in those layouts.
struct DnnlConv {
  dnnl::convolution_forward conv;
  dnnl::memory src, wei, dst;
};

DnnlConv make_dnnl_conv(const ir::Node& n, const dnnl::engine& engine) {
  using dnnl::memory;
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
  DnnlConv c{dnnl::convolution_forward(pd), memory(pd.src_desc(), engine), memory(pd.weights_desc(), engine),
             memory(pd.dst_desc(), engine)};
  for (dnnl::memory* m : {&c.src, &c.wei, &c.dst}) {  // finite values, pages touched
    float* p = static_cast<float*>(m->get_data_handle());
    std::fill_n(p, m->get_desc().get_size() / sizeof(float), 0.01f);
  }
  return c;
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
  const int rounds = batch > 8 ? 7 : 31;
  double flops = 0;
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  std::vector<DnnlConv> convs;
  ir::for_each_node(compiled.executable().graph().nodes(), [&](const ir::Node& n) {
    if (n.kind != ir::NodeKind::kOp || n.op != ir::OpKind::Conv2d) return;
    const Shape& w = n.inputs[1]->type.shape;
    flops += 2.0 * static_cast<double>(n.result->type.numel() * w[1] * w[2] * w[3]);
    convs.push_back(make_dnnl_conv(n, engine));
  });
  net->hybridize({.adaptive = false});  // timed as compiled, always
  (*net)(x);
  net->wait_for_compiles();
  // Each round runs the three one after another, so that each meets the caches the others left:
  // a network's convolutions run in sequence, each layer's weights read once per call.
  std::vector<double> dnnl_alone, eager, hybrid;
  for (int r = 0; r < rounds + 1; ++r) {
    const double d = time_us([&] {
      for (DnnlConv& c : convs)
        c.conv.execute(stream, {{DNNL_ARG_SRC, c.src}, {DNNL_ARG_WEIGHTS, c.wei}, {DNNL_ARG_DST, c.dst}});
      stream.wait();
    });
    const double e = time_us([&] { net->call_eager(x); });
    const double h = time_us([&] { (*net)(x); });
    if (r == 0) continue;  // warm-up
    dnnl_alone.push_back(d);
    eager.push_back(e);
    hybrid.push_back(h);
  }
  const double dnnl_us = median(dnnl_alone);
  const int n_convs = static_cast<int>(convs.size());
  const double e = median(eager), h = median(hybrid);
  fmt::print("{} inference, batch {}, {} thread(s), {} convolutions ({:.2f} GFLOP), medians of {} rounds:\n", name,
             batch, threads, n_convs,
             flops / 1e9, rounds);
  fmt::print("  oneDNN alone, the convolutions only: {:9.0f} us  {:6.1f} GFLOP/s\n", dnnl_us, flops / dnnl_us / 1e3);
  fmt::print("  compiled (hybridized), whole model:  {:9.0f} us  {:6.1f} GFLOP/s  ({:.2f}x oneDNN's time)\n", h,
             flops / h / 1e3, h / dnnl_us);
  fmt::print("  eager, whole model:                  {:9.0f} us  {:6.1f} GFLOP/s  (compiled {:.2f}x faster)\n", e,
             flops / e / 1e3, e / h);
  fmt::print("  hybridized: {}\n", net->stats().str());
}
