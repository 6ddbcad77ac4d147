// Average pooling and its gradient as loops over NCHW (inline_pool, plan.h),
// one row of the output (or, for the gradient, of the input) at a time, 16
// columns per vector.
//
// avg_pool2d adds each window's cells in the kernel's row-major order from
// +0 (a cell in the padding adds +0, which changes no sum that starts at +0)
// and multiplies by 1 / (kernel area), exactly as the runtime kernel does,
// so the result is eager's bit for bit. avg_pool2d_grad is planned here only
// for windows that do not overlap (stride at least the kernel, as LeNet's
// 2x2 pools): each cell of the input gradient then receives at most one
// window's share, 0 + g / area, again as the kernel computes it.
#include <algorithm>

#include "codegen/lowerer.h"
#include "runtime/kernels.h"

namespace bj::codegen {

namespace {
constexpr int kLanes = 16;
}  // namespace

LV* Lowerer::load_columns(LV* row, const std::vector<int64_t>& cols, int64_t length, LV* row_ok) {
  // Lane l reads row[cols[l]] where cols[l] is in [0, length) and row_ok holds; else it is 0 and
  // nothing is read. Columns within 32 of each other (a stride-2 window, a gradient's repeated
  // cells) are one or two contiguous loads and a shuffle; others a gather.
  auto* vty = llvm::FixedVectorType::get(f32_, kLanes);
  LV* zero = llvm::ConstantAggregateZero::get(vty);
  LV* rows_ok = b_.CreateVectorSplat(kLanes, row_ok);
  int64_t lo = length, hi = -1;
  for (int64_t c : cols)
    if (c >= 0 && c < length) lo = std::min(lo, c), hi = std::max(hi, c);
  if (hi < 0) return zero;
  std::vector<llvm::Constant*> lane_ok;
  for (int64_t c : cols) lane_ok.push_back(b_.getInt1(c >= 0 && c < length));
  if (hi - lo < 2 * kLanes) {
    const int parts = hi - lo < kLanes ? 1 : 2;
    std::vector<LV*> part;
    for (int p = 0; p < parts; ++p) {
      std::vector<llvm::Constant*> used;  // element j of this part: read if some lane wants it
      for (int j = 0; j < kLanes; ++j) {
        const int64_t c = lo + p * kLanes + j;
        used.push_back(b_.getInt1(c <= hi && std::find(cols.begin(), cols.end(), c) != cols.end()));
      }
      part.push_back(b_.CreateMaskedLoad(vty, b_.CreateInBoundsGEP(f32_, row, b_.getInt64(static_cast<uint64_t>(lo + p * kLanes))),
                                         llvm::Align(4), b_.CreateAnd(llvm::ConstantVector::get(used), rows_ok), zero));
    }
    std::vector<int> pick;
    for (int64_t c : cols) pick.push_back(c >= 0 && c < length ? static_cast<int>(c - lo) : 0);
    LV* v = b_.CreateShuffleVector(part[0], parts == 2 ? part[1] : zero, pick);
    return b_.CreateSelect(b_.CreateAnd(llvm::ConstantVector::get(lane_ok), rows_ok), v, zero);
  }
  std::vector<llvm::Constant*> at;
  for (int64_t c : cols) at.push_back(b_.getInt32(static_cast<uint32_t>(c >= 0 && c < length ? c : 0)));
  return b_.CreateMaskedGather(vty, b_.CreateInBoundsGEP(f32_, row, llvm::ConstantVector::get(at)), llvm::Align(4),
                               b_.CreateAnd(llvm::ConstantVector::get(lane_ok), rows_ok), zero);
}

void Lowerer::emit_avg_pool(const ir::Node& n) {
  const bool grad = n.op == ir::OpKind::AvgPool2dGrad;
  // x [N, C, H, W] -> y [N, C, OH, OW]; the gradient maps gy (y's shape) to gx (x's).
  const Shape& xs = grad ? n.result->type.shape : n.inputs[0]->type.shape;
  const Shape& ys = grad ? n.inputs[0]->type.shape : n.result->type.shape;
  const int64_t planes = xs[0] * xs[1], H = xs[2], W = xs[3], OH = ys[2], OW = ys[3];
  const int64_t KH = n.attrs.kernel[0], KW = n.attrs.kernel[1], SH = n.attrs.stride[0], SW = n.attrs.stride[1];
  const int64_t PH = n.attrs.padding[0], PW = n.attrs.padding[1];
  if (n.result->type.shape.numel() == 0) return;
  auto* vty = llvm::FixedVectorType::get(f32_, kLanes);
  LV* inv_area = llvm::ConstantFP::get(vty, 1.0f / static_cast<float>(KH * KW));  // as the kernel's
  const int64_t rows = planes * (grad ? H : OH), cols = grad ? W : OW, nv = (cols + kLanes - 1) / kLanes;
  const std::vector<LV*> operands{address(n.inputs[0]), address(n.result)};
  auto saved = b_.saveIP();
  std::vector<LV*> ptrs;
  LoopFunction lf = begin_loop_function(grad ? "avg_pool2d_grad" : "avg_pool2d", operands.size(), ptrs);
  LV *in = ptrs[0], *out = ptrs[1];
  auto i64 = [&](int64_t v) { return b_.getInt64(static_cast<uint64_t>(v)); };
  auto lanes_below = [&](int64_t v, int64_t limit) {  // lanes of vector v whose column exists
    std::vector<llvm::Constant*> m;
    for (int l = 0; l < kLanes; ++l) m.push_back(b_.getInt1(v * kLanes + l < limit));
    return llvm::ConstantVector::get(m);
  };
  loop(lf.body->getArg(0), lf.body->getArg(1), [&](LV* q) {  // q: (plane, output row) or (plane, input row)
    const int64_t per_plane = grad ? H : OH;
    LV* plane = b_.CreateUDiv(q, i64(per_plane));
    LV* r = b_.CreateURem(q, i64(per_plane));
    LV* out_row = b_.CreateInBoundsGEP(f32_, out, b_.CreateMul(q, i64(cols)));
    for (int64_t v = 0; v < nv; ++v) {
      LV* result;
      if (!grad) {
        LV* acc = llvm::ConstantAggregateZero::get(vty);
        for (int64_t kh = 0; kh < KH; ++kh) {
          LV* ih = b_.CreateAdd(b_.CreateMul(r, i64(SH)), i64(kh - PH));
          LV* row_ok = b_.CreateICmpULT(ih, i64(H));  // unsigned: a row above the image is out too
          LV* row = b_.CreateInBoundsGEP(f32_, in, b_.CreateMul(b_.CreateAdd(b_.CreateMul(plane, i64(H)), b_.CreateSelect(row_ok, ih, i64(0))), i64(W)));
          for (int64_t kw = 0; kw < KW; ++kw) {
            std::vector<int64_t> at;  // the input column of lane l's window cell kw (-1: no such output)
            for (int64_t l = 0; l < kLanes; ++l) at.push_back(v * kLanes + l < OW ? (v * kLanes + l) * SW - PW + kw : -1);
            acc = b_.CreateFAdd(acc, load_columns(row, at, W, row_ok));
          }
        }
        result = b_.CreateFMul(acc, inv_area);
      } else {
        // Input row r is in window row (r + PH) / SH when (r + PH) % SH < KH; column w likewise.
        LV* oh = b_.CreateUDiv(b_.CreateAdd(r, i64(PH)), i64(SH));
        LV* row_ok = b_.CreateAnd(b_.CreateICmpULT(b_.CreateURem(b_.CreateAdd(r, i64(PH)), i64(SH)), i64(KH)), b_.CreateICmpULT(oh, i64(OH)));
        LV* gy_row = b_.CreateInBoundsGEP(f32_, in, b_.CreateMul(b_.CreateAdd(b_.CreateMul(plane, i64(OH)), b_.CreateSelect(row_ok, oh, i64(0))), i64(OW)));
        std::vector<int64_t> at;  // the window column covering lane l's cell (-1: none)
        for (int64_t l = 0; l < kLanes; ++l) {
          const int64_t w = v * kLanes + l, ow = (w + PW) / SW;
          at.push_back(w < W && (w + PW) % SW < KW ? ow : -1);
        }
        LV* g = load_columns(gy_row, at, OW, row_ok);
        result = b_.CreateFAdd(llvm::ConstantAggregateZero::get(vty), b_.CreateFMul(g, inv_area));  // 0 + g / area: -0 gives +0
      }
      b_.CreateMaskedStore(result, b_.CreateInBoundsGEP(f32_, out_row, i64(v * kLanes)), llvm::Align(4), lanes_below(v, cols));
    }
  });
  b_.CreateRetVoid();
  b_.restoreIP(saved);
  call_loop_function(lf.wrapper, operands, rows, rows > 1 && n.result->type.shape.numel() * (grad ? 1 : KH * KW) >= 2 * rt::kParallelGrain);
}

}  // namespace bj::codegen
