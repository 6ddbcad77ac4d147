// 2-D convolution over NCHW images: oneDNN's forward, backward-data and
// backward-weights primitives on plain layouts (nchw images, [g]oihw
// weights), created once per distinct shape and window and kept.
#include <dnnl.hpp>

#include <map>
#include <mutex>
#include <tuple>

#include "runtime/kernel_impl.h"

namespace bj::rt {

namespace {

using dnnl::memory;

enum class Pass { kForward, kGradInput, kGradWeight };

/// One convolution's geometry: the image x, the weight w and the result y, as oneDNN describes them.
struct Geometry {
  memory::desc x, w, y;
  memory::dims stride, dilate, pad;
  Geometry(const Shape& xs, const Shape& ws, const Shape& ys, const ir::OpAttrs& a) {
    const auto f32 = memory::data_type::f32;
    x = memory::desc({xs[0], xs[1], xs[2], xs[3]}, f32, memory::format_tag::nchw);
    y = memory::desc({ys[0], ys[1], ys[2], ys[3]}, f32, memory::format_tag::nchw);
    const int64_t g = a.groups;
    w = g == 1 ? memory::desc({ws[0], ws[1], ws[2], ws[3]}, f32, memory::format_tag::oihw)
               : memory::desc({g, ws[0] / g, ws[1], ws[2], ws[3]}, f32, memory::format_tag::goihw);
    stride = {a.stride[0], a.stride[1]};
    dilate = {a.dilation[0] - 1, a.dilation[1] - 1};  // oneDNN counts the gaps between taps
    pad = {a.padding[0], a.padding[1]};
  }
  /// The right padding that makes oneDNN's output size the one ir::infer gave (the floor of the
  /// division drops what the last window would not cover).
  memory::dims pad_right(const Shape& xs, const Shape& ws, const Shape& ys) const {
    memory::dims r(2);
    for (int i = 0; i < 2; ++i)
      r[static_cast<size_t>(i)] = (ys[2 + i] - 1) * stride[static_cast<size_t>(i)] +
                                  (dilate[static_cast<size_t>(i)] + 1) * (ws[2 + i] - 1) + 1 - xs[2 + i] -
                                  pad[static_cast<size_t>(i)];
    return r;
  }
};

class DnnlConvs {
 public:
  using Key = std::tuple<int, std::vector<int64_t>>;
  struct Entry {
    dnnl::primitive prim;
  };

  void run(Pass pass, const Shape& xs, const Shape& ws, const Shape& ys, const ir::OpAttrs& a, const void* in0,
           const void* in1, void* out) {
    const dnnl::primitive& prim = primitive(pass, xs, ws, ys, a);
    thread_local dnnl::stream stream(engine_);
    const Geometry geo(xs, ws, ys, a);
    auto mem = [&](const memory::desc& d, const void* p) { return memory(d, engine_, const_cast<void*>(p)); };
    switch (pass) {
      case Pass::kForward:
        prim.execute(stream, {{DNNL_ARG_SRC, mem(geo.x, in0)}, {DNNL_ARG_WEIGHTS, mem(geo.w, in1)},
                              {DNNL_ARG_DST, mem(geo.y, out)}});
        break;
      case Pass::kGradInput:  // (gy, w) -> gx
        prim.execute(stream, {{DNNL_ARG_DIFF_DST, mem(geo.y, in0)}, {DNNL_ARG_WEIGHTS, mem(geo.w, in1)},
                              {DNNL_ARG_DIFF_SRC, mem(geo.x, out)}});
        break;
      case Pass::kGradWeight:  // (x, gy) -> gw
        prim.execute(stream, {{DNNL_ARG_SRC, mem(geo.x, in0)}, {DNNL_ARG_DIFF_DST, mem(geo.y, in1)},
                              {DNNL_ARG_DIFF_WEIGHTS, mem(geo.w, out)}});
        break;
    }
    stream.wait();
  }

 private:
  const dnnl::primitive& primitive(Pass pass, const Shape& xs, const Shape& ws, const Shape& ys,
                                   const ir::OpAttrs& a) {
    std::vector<int64_t> k;
    for (const Shape* s : {&xs, &ws, &ys, &a.stride, &a.padding, &a.dilation}) k.insert(k.end(), s->begin(), s->end());
    k.push_back(a.groups);
    Key key{static_cast<int>(pass), k};
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second.prim;
    const Geometry g(xs, ws, ys, a);
    const memory::dims pr = g.pad_right(xs, ws, ys);
    const auto algo = dnnl::algorithm::convolution_direct;
    dnnl::convolution_forward::primitive_desc fwd(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algo, g.x, g.w, g.y, g.stride, g.dilate,
                                        g.pad, pr),
        engine_);
    dnnl::primitive prim;
    switch (pass) {
      case Pass::kForward: prim = dnnl::convolution_forward(fwd); break;
      case Pass::kGradInput:
        prim = dnnl::convolution_backward_data(dnnl::convolution_backward_data::primitive_desc(
            dnnl::convolution_backward_data::desc(algo, g.x, g.w, g.y, g.stride, g.dilate, g.pad, pr), engine_, fwd));
        break;
      case Pass::kGradWeight:
        prim = dnnl::convolution_backward_weights(dnnl::convolution_backward_weights::primitive_desc(
            dnnl::convolution_backward_weights::desc(algo, g.x, g.w, g.y, g.stride, g.dilate, g.pad, pr), engine_,
            fwd));
        break;
    }
    return cache_.emplace(key, Entry{prim}).first->second.prim;
  }

  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  std::mutex mu_;
  std::map<Key, Entry> cache_;  // entries never move
};

DnnlConvs& convs() {
  static auto* c = new DnnlConvs;
  return *c;
}

bool empty(const View& out) { return out.type.numel() == 0; }

}  // namespace

void kernel_Conv2d(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  if (empty(out)) return;
  if (in[0].type.numel() == 0 || in[1].type.numel() == 0) {  // no channels: a sum of nothing
    std::fill_n(static_cast<float*>(out.data), out.type.numel(), 0.0f);
    return;
  }
  convs().run(Pass::kForward, in[0].type.shape, in[1].type.shape, out.type.shape, attrs, in[0].data, in[1].data,
              out.data);
}

void kernel_Conv2dGradInput(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  if (empty(out)) return;
  if (in[0].type.numel() == 0 || in[1].type.numel() == 0) {
    std::fill_n(static_cast<float*>(out.data), out.type.numel(), 0.0f);
    return;
  }
  convs().run(Pass::kGradInput, out.type.shape, in[1].type.shape, in[0].type.shape, attrs, in[0].data, in[1].data,
              out.data);
}

void kernel_Conv2dGradWeight(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  if (empty(out)) return;
  if (in[0].type.numel() == 0 || in[1].type.numel() == 0) {
    std::fill_n(static_cast<float*>(out.data), out.type.numel(), 0.0f);
    return;
  }
  convs().run(Pass::kGradWeight, in[0].type.shape, out.type.shape, in[1].type.shape, attrs, in[0].data, in[1].data,
              out.data);
}

}  // namespace bj::rt
