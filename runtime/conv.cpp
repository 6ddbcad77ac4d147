// 2-D convolution over NCHW images: oneDNN's forward, backward-data and
// backward-weights primitives in the layouts oneDNN chooses (blocked
// channels; channels-last or plain for the few passes measured faster that
// way), with reorders from and to the plain layouts (nchw images, [g]oihw
// weights) the rest of the project uses; created once per distinct shape
// and window, kept, and shared by every thread.
#include <dnnl.hpp>

#include <array>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <mutex>
#include <tuple>

#include "runtime/dnnl_scratch.h"
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

/// The primitives of one convolution pass, created with the layouts oneDNN prefers (format
/// `any`: blocked channels, which its fast kernels need; see entry() for the few passes given
/// another layout), and the reorders between those and the plain NCHW/[G]OIHW tensors every
/// kernel of the project reads and writes.
class DnnlConvs {
 public:
  using Key = std::tuple<int, std::vector<int64_t>>;
  /// Operands in the kernel's order: two inputs, then the output.
  struct Operand {
    int arg;
    memory::desc plain, chosen;
    std::optional<Primitive> convert;  ///< a reorder: plain -> chosen for inputs, chosen -> plain for the output
  };
  struct Entry {
    Primitive prim;
    std::array<Operand, 3> ops;
  };

  /// Runs the pass; with `in1_chosen`, the second input is already in the layout oneDNN chose.
  void run(Pass pass, const Shape& xs, const Shape& ws, const Shape& ys, const ir::OpAttrs& a, const void* in0,
           const void* in1, void* out, bool in1_chosen = false) {
    const Entry& e = entry(pass, xs, ws, ys, a);
    thread_local dnnl::stream stream(engine_);
    const void* given[3] = {in0, in1, out};
    std::unordered_map<int, memory> args;
    for (int i = 0; i < 3; ++i) {
      const Operand& o = e.ops[static_cast<size_t>(i)];
      if (i == 1 && in1_chosen) {
        args.emplace(o.arg, memory(o.chosen, engine_, const_cast<void*>(given[i])));
        continue;
      }
      memory plain(o.plain, engine_, const_cast<void*>(given[i]));
      if (!o.convert) {
        args.emplace(o.arg, plain);
        continue;
      }
      memory chosen(o.chosen, engine_, thread_scratch(i, o.chosen.get_size()));
      if (i < 2) o.convert->execute(stream, plain, chosen);  // an input, in oneDNN's layout
      args.emplace(o.arg, chosen);
    }
    e.prim.execute(stream, args);
    const Operand& o = e.ops[2];
    if (o.convert) {
      memory result(o.plain, engine_, out);
      o.convert->execute(stream, args.at(o.arg), result);
    }
    stream.wait();
  }

  /// The forward pass's weights, reordered into `packed` (chosen layout; its size is packed_bytes).
  void pack(const Shape& xs, const Shape& ws, const Shape& ys, const ir::OpAttrs& a, const float* w, void* packed) {
    const Operand& o = entry(Pass::kForward, xs, ws, ys, a).ops[1];
    if (!o.convert) {
      std::copy_n(w, ws.numel(), static_cast<float*>(packed));
      return;
    }
    thread_local dnnl::stream stream(engine_);
    memory plain(o.plain, engine_, const_cast<float*>(w)), chosen(o.chosen, engine_, packed);
    o.convert->execute(stream, plain, chosen);
    stream.wait();
  }
  size_t packed_bytes(const Shape& xs, const Shape& ws, const Shape& ys, const ir::OpAttrs& a) {
    return entry(Pass::kForward, xs, ws, ys, a).ops[1].chosen.get_size();
  }

 private:
  const Entry& entry(Pass pass, const Shape& xs, const Shape& ws, const Shape& ys, const ir::OpAttrs& a) {
    std::vector<int64_t> k;
    for (const Shape* s : {&xs, &ws, &ys, &a.stride, &a.padding, &a.dilation}) k.insert(k.end(), s->begin(), s->end());
    k.push_back(a.groups);
    Key key{static_cast<int>(pass), k};
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    const Geometry g(xs, ws, ys, a);
    const memory::dims pr = g.pad_right(xs, ws, ys);
    const auto algo = dnnl::algorithm::convolution_direct;
    auto layout = [](const memory::desc& d, memory::format_tag t) { return memory::desc(d.dims(), d.data_type(), t); };
    // oneDNN's blocked layouts suit most passes. A layer with one or a few input channels and a
    // real window (LeNet's and ResNet's first) runs its weight gradient 3-7x faster with
    // channels-last images and output gradients, reorders included, and its forward pass 1.5x
    // faster when it also has few output channels (LeNet's 6: the reorder of channels-last
    // output back to NCHW is then cheap; for ResNet's 64 it costs more than it saves). Measured
    // on AVX2. On AVX-512 (a Zen 5) the weight gradient of LeNet's second layer (6 input
    // channels) is 2.5x faster channels-last too (0.84 against 2.15 ms at batch 256, where oneDNN
    // picks an AVX2 kernel for its blocked layouts), so the weight gradient takes channels-last
    // up to 8 input channels. Not for 1x1 windows: oneDNN 2.6's channels-last 1x1 weight
    // gradient with a stride gives wrong sums.
    // The weight gradient of a layer whose output images are tiny (ResNet's last, 3x3 at 96x96
    // input) runs 2x faster as oneDNN's GEMM-based convolution on the plain layouts, which also
    // writes the gradient with no reorder.
    const bool window = a.groups == 1 && ws[2] * ws[3] > 1;
    const bool channels_last = window && ((pass == Pass::kGradWeight && xs[1] <= 8) ||
                                          (pass == Pass::kForward && xs[1] <= 4 && ws[0] <= 16));
    const bool plain = pass == Pass::kGradWeight && a.groups == 1 && ys[2] * ys[3] < 16 && !channels_last;
    const auto images = channels_last ? memory::format_tag::nhwc : memory::format_tag::any;
    const memory::desc x = plain ? g.x : layout(g.x, images), y = plain ? g.y : layout(g.y, images),
                       w = plain ? g.w : layout(g.w, memory::format_tag::any);
    const dnnl::primitive_attr attr = dnnl_attr();
    dnnl::convolution_forward::primitive_desc fwd(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algo, x, w, y, g.stride, g.dilate, g.pad,
                                        pr),
        attr, engine_);
    Entry e;
    switch (pass) {
      case Pass::kForward:
        e.prim = Primitive::make<dnnl::convolution_forward>(fwd);
        e.ops = {Operand{DNNL_ARG_SRC, g.x, fwd.src_desc(), {}}, Operand{DNNL_ARG_WEIGHTS, g.w, fwd.weights_desc(), {}},
                 Operand{DNNL_ARG_DST, g.y, fwd.dst_desc(), {}}};
        break;
      case Pass::kGradInput: {
        dnnl::convolution_backward_data::primitive_desc pd(
            dnnl::convolution_backward_data::desc(algo, x, w, y, g.stride, g.dilate, g.pad, pr), attr, engine_, fwd);
        e.prim = Primitive::make<dnnl::convolution_backward_data>(pd);
        e.ops = {Operand{DNNL_ARG_DIFF_DST, g.y, pd.diff_dst_desc(), {}},
                 Operand{DNNL_ARG_WEIGHTS, g.w, pd.weights_desc(), {}},
                 Operand{DNNL_ARG_DIFF_SRC, g.x, pd.diff_src_desc(), {}}};
        break;
      }
      case Pass::kGradWeight: {
        dnnl::convolution_backward_weights::primitive_desc pd(
            dnnl::convolution_backward_weights::desc(algo, x, w, y, g.stride, g.dilate, g.pad, pr), attr, engine_,
            fwd);
        e.prim = Primitive::make<dnnl::convolution_backward_weights>(pd);
        e.ops = {Operand{DNNL_ARG_SRC, g.x, pd.src_desc(), {}}, Operand{DNNL_ARG_DIFF_DST, g.y, pd.diff_dst_desc(), {}},
                 Operand{DNNL_ARG_DIFF_WEIGHTS, g.w, pd.diff_weights_desc(), {}}};
        break;
      }
    }
    for (size_t i = 0; i < 3; ++i) {
      Operand& o = e.ops[i];
      if (o.chosen == o.plain) continue;
      const memory::desc& from = i < 2 ? o.plain : o.chosen;
      const memory::desc& to = i < 2 ? o.chosen : o.plain;
      o.convert = Primitive::make<dnnl::reorder>(dnnl::reorder::primitive_desc(engine_, from, engine_, to, attr));
    }
    return cache_.emplace(key, std::move(e)).first->second;
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

size_t conv_packed_weight_bytes(const PackedConv& c) { return convs().packed_bytes(c.x, c.w, c.y, c.window); }

void conv_pack_weight(const PackedConv& c, const float* w, void* packed) {
  if (c.w.numel() > 0) convs().pack(c.x, c.w, c.y, c.window, w, packed);
}

void conv_packed(const PackedConv& c, const float* x, const void* packed_w, float* y) {
  if (c.y.numel() == 0) return;
  if (c.x.numel() == 0 || c.w.numel() == 0) {
    std::fill_n(y, c.y.numel(), 0.0f);
    return;
  }
  convs().run(Pass::kForward, c.x, c.w, c.y, c.window, x, packed_w, y, /*in1_chosen=*/true);
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
