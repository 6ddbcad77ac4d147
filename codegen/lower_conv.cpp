// Convolutions with few taps per output (in_channels * kernel area at most
// kInlineConvTaps, plan.h: LeNet's first layer, 1 channel and 5x5) as loops
// over NCHW, where oneDNN's kernels, made for many channels, run at a tenth
// of the machine's speed and reorder every image to a blocked layout and back.
//
// conv2d: one output row (image n, row oh) for a block of output channels at
// a time, the row 16 columns per vector; each tap's input vector is loaded
// once (masked where the window leaves the image: padding adds nothing) and
// multiplied into every channel of the block, so the block's accumulators
// are independent chains. conv2d_grad_weight: per output channel, one vector
// accumulator per tap summing gy * x along each output row; an image's sums
// are added to a double total per tap, so the result does not lose digits
// over large batches.
//
// The sums run in tap order with fused multiply-adds, not in oneDNN's order:
// results differ from eager's in the last bits, so guard cones and exact mode
// keep the runtime kernel (plan.cpp).
#include <llvm/IR/Intrinsics.h>

#include "codegen/lowerer.h"
#include "runtime/kernels.h"

namespace bj::codegen {

namespace {
constexpr int kLanes = 16;
/// The weight gradient's accumulators per pass (of 32 vector registers).
constexpr int64_t kGroupTaps = 12;
}  // namespace

Lowerer::ConvShape Lowerer::conv_shape(const ir::Node& n) {
  // conv2d(x, w) -> y, conv2d_grad_weight(x, gy) -> dw: x and the window's geometry are the same.
  const bool grad = n.op == ir::OpKind::Conv2dGradWeight;
  const Shape& xs = n.inputs[0]->type.shape;
  const Shape& ws = grad ? n.result->type.shape : n.inputs[1]->type.shape;
  const Shape& ys = grad ? n.inputs[1]->type.shape : n.result->type.shape;
  return {xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], ys[2], ys[3],
          n.attrs.stride[0], n.attrs.padding[0], n.attrs.padding[1], n.attrs.dilation[0], n.attrs.dilation[1]};
}

LV* Lowerer::conv_column_mask(const ConvShape& s, int64_t v, int64_t kw) {
  // Lane l of vector v is output column ow = 16 v + l, reading input column ow - pw + kw * dw.
  std::vector<llvm::Constant*> lanes;
  for (int l = 0; l < kLanes; ++l) {
    const int64_t ow = v * kLanes + l, iw = ow - s.pw + kw * s.dw;
    lanes.push_back(b_.getInt1(ow < s.ow && iw >= 0 && iw < s.w));
  }
  return llvm::ConstantVector::get(lanes);
}

void Lowerer::emit_conv(const ir::Node& n) {
  const ConvShape s = conv_shape(n);
  if (n.result->type.shape.numel() == 0) return;
  auto* vty = llvm::FixedVectorType::get(f32_, kLanes);
  const int64_t nv = (s.ow + kLanes - 1) / kLanes;
  // Output channels per step: about 24 accumulators, so that each load feeds several chains.
  const int64_t block = std::clamp<int64_t>(24 / nv, 1, s.oc), blocks = (s.oc + block - 1) / block;
  const std::vector<LV*> operands{address(n.inputs[0]), address(n.inputs[1]), address(n.result)};
  auto saved = b_.saveIP();
  std::vector<LV*> ptrs;
  LoopFunction lf = begin_loop_function("conv2d", operands.size(), ptrs);
  LV *x = ptrs[0], *w = ptrs[1], *y = ptrs[2];
  auto i64 = [&](int64_t v) { return b_.getInt64(static_cast<uint64_t>(v)); };
  const llvm::Align align(4);
  LV* zero = llvm::ConstantAggregateZero::get(vty);
  loop(lf.body->getArg(0), lf.body->getArg(1), [&](LV* q) {  // q: (image, channel block, output row)
    LV* oh = b_.CreateURem(q, i64(s.oh));
    LV* blk = b_.CreateURem(b_.CreateUDiv(q, i64(s.oh)), i64(blocks));
    LV* img = b_.CreateUDiv(q, i64(s.oh * blocks));
    std::vector<LV*> oc(static_cast<size_t>(block)), live(static_cast<size_t>(block));
    for (int64_t o = 0; o < block; ++o) {  // the last block may be short: its extra channels repeat the last one, unstored
      LV* c = b_.CreateAdd(b_.CreateMul(blk, i64(block)), i64(o));
      live[static_cast<size_t>(o)] = b_.CreateICmpULT(c, i64(s.oc));
      oc[static_cast<size_t>(o)] = b_.CreateSelect(live[static_cast<size_t>(o)], c, i64(s.oc - 1));
    }
    Accumulators acc(static_cast<size_t>(block * nv), zero);
    for (int64_t ic = 0; ic < s.c; ++ic)
      for (int64_t kh = 0; kh < s.kh; ++kh) {
        // A window row in the padding adds nothing: skipped, so every mask below is a constant.
        LV* ih = b_.CreateAdd(b_.CreateMul(oh, i64(s.sh)), i64(kh * s.dh - s.ph));
        acc = when(b_.CreateICmpULT(ih, i64(s.h)), acc, [&](const Accumulators& in) {  // unsigned: a negative row is out too
          Accumulators a = in;
          LV* row = b_.CreateInBoundsGEP(
              f32_, x, b_.CreateMul(b_.CreateAdd(b_.CreateMul(b_.CreateAdd(b_.CreateMul(img, i64(s.c)), i64(ic)), i64(s.h)), ih), i64(s.w)));
          for (int64_t kw = 0; kw < s.kw; ++kw) {
            std::vector<LV*> wv(static_cast<size_t>(block));
            for (int64_t o = 0; o < block; ++o) {
              LV* at = b_.CreateAdd(b_.CreateMul(oc[static_cast<size_t>(o)], i64(s.c * s.kh * s.kw)), i64((ic * s.kh + kh) * s.kw + kw));
              wv[static_cast<size_t>(o)] = b_.CreateVectorSplat(kLanes, b_.CreateLoad(f32_, b_.CreateInBoundsGEP(f32_, w, at)));
            }
            for (int64_t v = 0; v < nv; ++v) {
              LV* mask = conv_column_mask(s, v, kw);
              // Not inbounds: the vector may start left of the row (padding); its masked lanes are never read.
              LV* xv = b_.CreateMaskedLoad(vty, b_.CreateGEP(f32_, row, i64(v * kLanes - s.pw + kw * s.dw)), align, mask, zero);
              for (int64_t o = 0; o < block; ++o) {
                LV*& t = a[static_cast<size_t>(o * nv + v)];
                // A padded cell adds nothing (not 0 * w, which is NaN for w = inf).
                t = b_.CreateSelect(mask, b_.CreateIntrinsic(llvm::Intrinsic::fma, {vty}, {xv, wv[static_cast<size_t>(o)], t}), t);
              }
            }
          }
          return a;
        });
      }
    for (int64_t o = 0; o < block; ++o) {
      LV* out_row = b_.CreateInBoundsGEP(
          f32_, y,
          b_.CreateMul(b_.CreateAdd(b_.CreateMul(b_.CreateAdd(b_.CreateMul(img, i64(s.oc)), oc[static_cast<size_t>(o)]), i64(s.oh)), oh),
                       i64(s.ow)));
      LV* store_ok = b_.CreateVectorSplat(kLanes, live[static_cast<size_t>(o)]);
      for (int64_t v = 0; v < nv; ++v) {
        std::vector<llvm::Constant*> lanes;
        for (int l = 0; l < kLanes; ++l) lanes.push_back(b_.getInt1(v * kLanes + l < s.ow));
        b_.CreateMaskedStore(acc[static_cast<size_t>(o * nv + v)], b_.CreateInBoundsGEP(f32_, out_row, i64(v * kLanes)), align,
                             b_.CreateAnd(llvm::ConstantVector::get(lanes), store_ok));
      }
    }
  });
  b_.CreateRetVoid();
  b_.restoreIP(saved);
  const int64_t rows = s.n * blocks * s.oh;
  call_loop_function(lf.wrapper, operands, rows, rows > 1 && n.result->type.shape.numel() * s.c * s.kh * s.kw >= 2 * rt::kParallelGrain);
}

void Lowerer::emit_conv_grad_weight(const ir::Node& n) {
  const ConvShape s = conv_shape(n);
  const int64_t taps = s.c * s.kh * s.kw;
  auto* vty = llvm::FixedVectorType::get(f32_, kLanes);
  auto* dty = llvm::FixedVectorType::get(b_.getDoubleTy(), kLanes);
  const int64_t nv = (s.ow + kLanes - 1) / kLanes;
  const std::vector<LV*> operands{address(n.inputs[0]), address(n.inputs[1]), address(n.result)};
  auto saved = b_.saveIP();
  std::vector<LV*> ptrs;
  LoopFunction lf = begin_loop_function("conv2d_grad_weight", operands.size(), ptrs);
  LV *x = ptrs[0], *gy = ptrs[1], *dw = ptrs[2];
  auto i64 = [&](int64_t v) { return b_.getInt64(static_cast<uint64_t>(v)); };
  const llvm::Align align(4);
  LV* zero = llvm::ConstantAggregateZero::get(vty);
  // Each tap's total over the images so far, in double.
  llvm::AllocaInst* total = b_.CreateAlloca(dty, i64(taps));
  loop(lf.body->getArg(0), lf.body->getArg(1), [&](LV* oc) {
    for (int64_t t = 0; t < taps; ++t) b_.CreateStore(llvm::ConstantAggregateZero::get(dty), b_.CreateConstInBoundsGEP1_64(dty, total, t));
    // The taps in groups of whole window rows, at most kGroupTaps accumulators each (more spill
    // registers): each group reads the gradient again, which stays in cache.
    const int64_t rows_per_group = std::max<int64_t>(1, kGroupTaps / s.kw), window_rows = s.c * s.kh;
    for (int64_t first = 0; first < window_rows; first += rows_per_group) {
      const int64_t last = std::min(window_rows, first + rows_per_group), group = (last - first) * s.kw;
      loop(i64(0), i64(s.n), [&](LV* img) {
        LV* gy_plane = b_.CreateInBoundsGEP(f32_, gy, b_.CreateMul(b_.CreateAdd(b_.CreateMul(img, i64(s.oc)), oc), i64(s.oh * s.ow)));
        const Accumulators sums = accumulate(s.oh, 1, Accumulators(static_cast<size_t>(group), zero), [&](LV* oh, const Accumulators& a) {
          Accumulators next = a;
          std::vector<LV*> g;
          for (int64_t v = 0; v < nv; ++v) {
            std::vector<llvm::Constant*> lanes;
            for (int l = 0; l < kLanes; ++l) lanes.push_back(b_.getInt1(v * kLanes + l < s.ow));
            g.push_back(b_.CreateMaskedLoad(vty, b_.CreateInBoundsGEP(f32_, gy_plane, b_.CreateAdd(b_.CreateMul(oh, i64(s.ow)), i64(v * kLanes))),
                                            align, llvm::ConstantVector::get(lanes), zero));
          }
          for (int64_t wr = first; wr < last; ++wr) {  // window row wr: channel wr / kh, kernel row wr % kh
            const int64_t ic = wr / s.kh, kh = wr % s.kh;
            LV* ih = b_.CreateAdd(b_.CreateMul(oh, i64(s.sh)), i64(kh * s.dh - s.ph));
            next = when(b_.CreateICmpULT(ih, i64(s.h)), next, [&](const Accumulators& in) {  // a row in the padding adds nothing
              Accumulators t = in;
              LV* row = b_.CreateInBoundsGEP(
                  f32_, x, b_.CreateMul(b_.CreateAdd(b_.CreateMul(b_.CreateAdd(b_.CreateMul(img, i64(s.c)), i64(ic)), i64(s.h)), ih), i64(s.w)));
              for (int64_t v = 0; v < nv; ++v)
                for (int64_t kw = 0; kw < s.kw; ++kw) {
                  LV* mask = conv_column_mask(s, v, kw);
                  LV* xv = b_.CreateMaskedLoad(vty, b_.CreateGEP(f32_, row, i64(v * kLanes - s.pw + kw * s.dw)), align, mask, zero);
                  LV*& acc = t[static_cast<size_t>((wr - first) * s.kw + kw)];
                  acc = b_.CreateSelect(mask, b_.CreateIntrinsic(llvm::Intrinsic::fma, {vty}, {g[static_cast<size_t>(v)], xv, acc}), acc);
                }
              return t;
            });
          }
          return next;
        });
        for (int64_t t = 0; t < group; ++t) {
          LV* p = b_.CreateConstInBoundsGEP1_64(dty, total, first * s.kw + t);
          b_.CreateStore(b_.CreateFAdd(b_.CreateLoad(dty, p), b_.CreateFPExt(sums[static_cast<size_t>(t)], dty)), p);
        }
      });
    }
    llvm::IRBuilderBase::FastMathFlagGuard reassoc(b_);
    llvm::FastMathFlags fmf;
    fmf.setAllowReassoc();
    b_.setFastMathFlags(fmf);
    for (int64_t t = 0; t < taps; ++t) {
      LV* sum = b_.CreateFAddReduce(llvm::ConstantFP::get(b_.getDoubleTy(), -0.0), b_.CreateLoad(dty, b_.CreateConstInBoundsGEP1_64(dty, total, t)));
      b_.CreateStore(b_.CreateFPTrunc(sum, f32_), b_.CreateInBoundsGEP(f32_, dw, b_.CreateAdd(b_.CreateMul(oc, i64(taps)), i64(t))));
    }
  });
  b_.CreateRetVoid();
  b_.restoreIP(saved);
  call_loop_function(lf.wrapper, operands, s.oc, s.oc > 1 && n.inputs[1]->type.shape.numel() * taps >= 2 * rt::kParallelGrain);
}

}  // namespace bj::codegen
