// The cross-entropy ops (ir/ops.def) as loops, one row of logits at a time:
// a pass for the row's maximum, one summing exp(x - max), then the row's
// loss (forward) or its gradient row (backward), with exp and log as the
// IR of lower_math.cpp instead of the runtime kernel's libm calls. Each pass
// takes the row 16 lanes at a time (the last vector masked), so a row of 10
// classes is one vector per pass rather than a chain of 10 scalar steps;
// with at most 16 classes and at least 16 rows, 16 rows at a time instead
// (a vector per class, gathered down the rows), so that rows' reductions do
// not wait on each other. As the kernel: a target outside [0, C) makes the loss NaN (its
// gradient row NaN) and is never used as an index; each row's sum of
// exponentials and the forward's total over rows (in row order, divided by
// N: NaN for N = 0) are kept in double, so a well-fitted batch's small loss
// keeps its digits.
// The row sums reassociate and exp and log are approximations, so results
// differ from eager's in the last bits; guard cones and exact mode keep the
// runtime kernel (plan.cpp: inline_loss).
#include "codegen/lower_math.h"
#include "codegen/lowerer.h"
#include "runtime/kernels.h"

#include <functional>
#include <limits>

namespace bj::codegen {

bool Lowerer::fusible_losses(const ir::Node& ce, const ir::Node& grad) const {
  return ce.kind == ir::NodeKind::kOp && ce.op == ir::OpKind::CrossEntropy && grad.kind == ir::NodeKind::kOp &&
         grad.op == ir::OpKind::CrossEntropyGrad && ce.inputs[0] == grad.inputs[0] && ce.inputs[1] == grad.inputs[1] &&
         grad.inputs[2] != ce.result &&  // the gradient of the loss itself is read before the loss exists
         plan_.at(ce).strategy == Strategy::kLoops && plan_.at(grad).strategy == Strategy::kLoops &&
         inline_loss(ce) && !parallel_gradient(grad);
}

bool Lowerer::parallel_gradient(const ir::Node& grad) const {
  const int64_t rows = grad.inputs[0]->type.shape[0], cols = grad.inputs[0]->type.shape[1];
  return rows > 1 && rows * cols * 3 >= 2 * rt::kParallelGrain;
}

void Lowerer::emit_cross_entropy(const ir::Node& n, const ir::Node* with_grad) {
  // `n` is the loss, its gradient, or (with_grad) the loss with its gradient right after it: one
  // pass over the rows then makes both, each row's maximum and sum found once.
  const ir::Node* loss_node = n.op == ir::OpKind::CrossEntropy ? &n : nullptr;
  const ir::Node* grad_node = with_grad ? with_grad : loss_node ? nullptr : &n;
  const bool grad = grad_node != nullptr;
  const ir::Value *logits = n.inputs[0], *targets = n.inputs[1];
  const int64_t rows = logits->type.shape[0], cols = logits->type.shape[1];
  auto fp = [&](double v) { return llvm::ConstantFP::get(f32_, v); };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (rows == 0 || cols == 0) {  // the mean over no row, or every target out of range; an empty gradient
    if (loss_node) b_.CreateStore(fp(nan), address(loss_node->result));
    return;
  }
  std::vector<LV*> operands{address(logits), address(targets)};
  if (grad) operands.push_back(address(grad_node->inputs[2]));
  if (loss_node) operands.push_back(address(loss_node->result));
  if (grad) operands.push_back(address(grad_node->result));
  auto saved = b_.saveIP();
  std::vector<LV*> ptrs;
  LoopFunction lf = begin_loop_function(!grad ? "cross_entropy" : loss_node ? "cross_entropy_and_grad" : "cross_entropy_grad",
                                        operands.size(), ptrs);
  llvm::Function* fn = lf.body;
  LV *x = ptrs[0], *t = ptrs[1], *out = ptrs.back();
  LV* loss_out = loss_node ? ptrs[grad ? 3 : 2] : nullptr;
  LV* cols_v = b_.getInt64(static_cast<uint64_t>(cols));
  // The forward's running total over rows, in double (as the kernel's).
  llvm::Type* f64 = b_.getDoubleTy();
  llvm::AllocaInst* total = nullptr;
  if (loss_node) {
    total = b_.CreateAlloca(f64);
    b_.CreateStore(llvm::ConstantFP::get(f64, 0.0), total);
  }
  LV* scale = grad ? b_.CreateFDiv(b_.CreateFPExt(b_.CreateLoad(f32_, ptrs[2]), f64),
                                   llvm::ConstantFP::get(f64, static_cast<double>(rows)))
                   : nullptr;
  // The row 16 lanes at a time: whole vectors, then the masked rest.
  constexpr int kLanes = 16;
  auto* vty = llvm::FixedVectorType::get(f32_, kLanes);
  auto* dty = llvm::FixedVectorType::get(f64, kLanes);
  const int64_t whole = cols / kLanes * kLanes, rest = cols % kLanes;
  std::vector<llvm::Constant*> lanes;
  for (int l = 0; l < kLanes; ++l) lanes.push_back(b_.getInt1(l < rest));
  llvm::Constant* rest_mask = llvm::ConstantVector::get(lanes);
  LV* lowest = llvm::ConstantFP::getInfinity(vty, true);  // max's identity, in the masked lanes
  auto vectors = [&](const Accumulators& init, const std::function<Accumulators(LV* j, LV* mask, const Accumulators&)>& next) {
    Accumulators acc = accumulate(whole, kLanes, init, [&](LV* j, const Accumulators& a) { return next(j, nullptr, a); });
    return rest ? next(b_.getInt64(static_cast<uint64_t>(whole)), rest_mask, acc) : acc;
  };
  if (cols <= kLanes && rows >= kLanes) {
    // Few classes: 16 rows at a time, one vector per class (gathered down the rows), so that no
    // step waits on a row's reductions: the row maxima, sums and losses are lane-wise.
    emit_cross_entropy_across_rows(fn->getArg(0), fn->getArg(1), {x, t, out}, cols, loss_node != nullptr, grad, scale, total);
  } else {
    loop(fn->getArg(0), fn->getArg(1), [&](LV* i) {
      LV* row = b_.CreateInBoundsGEP(f32_, x, b_.CreateMul(i, cols_v));
      LV* target = b_.CreateLoad(i64_, b_.CreateInBoundsGEP(i64_, t, i));
      LV* valid = b_.CreateAnd(b_.CreateICmpSGE(target, b_.getInt64(0)), b_.CreateICmpSLT(target, cols_v));
      LV* at = b_.CreateSelect(valid, target, b_.getInt64(0));  // never an index outside the row
      auto element = [&](LV* j) { return b_.CreateLoad(f32_, b_.CreateInBoundsGEP(f32_, row, j)); };
      auto load = [&](LV* j, LV* mask) -> LV* {
        LV* p = b_.CreateInBoundsGEP(f32_, row, j);
        return mask ? static_cast<LV*>(b_.CreateMaskedLoad(vty, p, llvm::Align(4), mask, lowest))
                    : static_cast<LV*>(b_.CreateAlignedLoad(vty, p, llvm::Align(4)));
      };
      LV* mv = vectors({lowest}, [&](LV* j, LV* mask, const Accumulators& a) {
                 return Accumulators{b_.CreateBinaryIntrinsic(llvm::Intrinsic::maximum, a[0], load(j, mask))};
               })[0];
      LV* m = b_.CreateUnaryIntrinsic(llvm::Intrinsic::vector_reduce_fmaximum, mv);  // NaN wins, as ir::maximum
      LV* m_v = b_.CreateVectorSplat(kLanes, m);
      auto exps = [&](LV* j, LV* mask) {  // exp(x - m); 0 in masked lanes
        LV* zero = llvm::ConstantAggregateZero::get(vty);
        LV* d = b_.CreateFSub(load(j, mask), m_v);
        if (!mask) return math::exp(b_, d);
        // exp(0) where no element is: exp(-inf) would go through subnormal arithmetic, which costs
        // about a hundred cycles a lane on some CPUs.
        return b_.CreateSelect(mask, math::exp(b_, b_.CreateSelect(mask, d, zero)), zero);
      };
      // s in double, as the kernel's: a well-fitted row's s is 1 + (a little), and its loss is that little.
      LV* sv = vectors({llvm::ConstantFP::get(dty, -0.0)}, [&](LV* j, LV* mask, const Accumulators& a) {
                 return Accumulators{b_.CreateFAdd(a[0], b_.CreateFPExt(exps(j, mask), dty))};
               })[0];
      LV* s;
      {
        llvm::IRBuilderBase::FastMathFlagGuard reassoc(b_);
        llvm::FastMathFlags fmf;
        fmf.setAllowReassoc();
        b_.setFastMathFlags(fmf);
        s = b_.CreateFAddReduce(llvm::ConstantFP::get(f64, -0.0), sv);
      }
      if (loss_node) {  // loss_i = log(s) + m - x[t], added up in double
        // log(s) = log(f) + log(s / f) for f = s rounded to float; the second term is (s - f) / f to
        // well below float's precision, so the f32 log's relative error (8e-8) is all that is left.
        LV* f = b_.CreateFPTrunc(s, f32_);
        LV* fd = b_.CreateFPExt(f, f64);
        LV* log_s = b_.CreateFAdd(b_.CreateFPExt(math::log(b_, f), f64), b_.CreateFDiv(b_.CreateFSub(s, fd), fd));
        LV* loss = b_.CreateFSub(b_.CreateFAdd(log_s, b_.CreateFPExt(m, f64)), b_.CreateFPExt(element(at), f64));
        loss = b_.CreateSelect(valid, loss, llvm::ConstantFP::getNaN(f64));
        b_.CreateStore(b_.CreateFAdd(b_.CreateLoad(f64, total), loss), total);
        if (!grad) return;
      }
      // The gradient row: k exp(x - m) with k = g / (N s), and g / N less at the target.
      LV* k_d = b_.CreateFDiv(scale, s);
      LV* k_or_nan = b_.CreateVectorSplat(kLanes, b_.CreateSelect(valid, b_.CreateFPTrunc(k_d, f32_), fp(nan)));
      LV* out_row = b_.CreateInBoundsGEP(f32_, out, b_.CreateMul(i, cols_v));
      vectors({}, [&](LV* j, LV* mask, const Accumulators&) {
        LV* v = b_.CreateFMul(k_or_nan, exps(j, mask));
        LV* p = b_.CreateInBoundsGEP(f32_, out_row, j);
        if (mask)
          b_.CreateMaskedStore(v, p, llvm::Align(4), mask);
        else
          b_.CreateAlignedStore(v, p, llvm::Align(4));
        return Accumulators{};
      });
      // At the target, k exp(x - m) - g / N in double: for a well-fitted row the two nearly cancel.
      LV* e_t = b_.CreateFPExt(math::exp(b_, b_.CreateFSub(element(at), m)), f64);
      LV* fixed = b_.CreateFPTrunc(b_.CreateFSub(b_.CreateFMul(k_d, e_t), scale), f32_);
      b_.CreateStore(b_.CreateSelect(valid, fixed, fp(nan)), b_.CreateInBoundsGEP(f32_, out_row, at));
    });
  }
  if (loss_node)
    b_.CreateStore(b_.CreateFPTrunc(b_.CreateFDiv(b_.CreateLoad(f64, total), llvm::ConstantFP::get(f64, static_cast<double>(rows))), f32_),
                   loss_out);
  b_.CreateRetVoid();
  b_.restoreIP(saved);
  // The forward's total runs over every row in order, so one call; gradient rows split among threads.
  call_loop_function(lf.wrapper, operands, rows, !loss_node && parallel_gradient(n));
}

void Lowerer::emit_cross_entropy_across_rows(LV* begin, LV* end, std::array<LV*, 3> logits_targets_out, int64_t cols,
                                             bool loss, bool grad, LV* scale, llvm::AllocaInst* total) {
  constexpr int kLanes = 16;
  auto [x, t, out] = logits_targets_out;
  llvm::Type* f64 = b_.getDoubleTy();
  auto* vty = llvm::FixedVectorType::get(f32_, kLanes);
  auto* dty = llvm::FixedVectorType::get(f64, kLanes);
  auto* tty = llvm::FixedVectorType::get(i64_, kLanes);
  const llvm::Align align(4);
  auto splat = [&](LV* v) { return b_.CreateVectorSplat(kLanes, v); };
  auto fsplat = [&](double v) { return llvm::ConstantFP::get(vty, v); };
  auto dsplat = [&](double v) { return llvm::ConstantFP::get(dty, v); };
  // Element offsets in a block of rows: lane * cols + j.
  auto offsets = [&](int64_t j) {
    std::vector<llvm::Constant*> o;
    for (int l = 0; l < kLanes; ++l) o.push_back(b_.getInt32(static_cast<uint32_t>(l * cols + j)));
    return llvm::ConstantVector::get(o);
  };
  std::vector<llvm::Constant*> lane_ids;
  for (int l = 0; l < kLanes; ++l) lane_ids.push_back(b_.getInt64(static_cast<uint64_t>(l)));
  LV* lanes = llvm::ConstantVector::get(lane_ids);
  LV* blocks = b_.CreateUDiv(b_.CreateAdd(b_.CreateSub(end, begin), b_.getInt64(kLanes - 1)), b_.getInt64(kLanes));
  LV* cols_v = b_.getInt64(static_cast<uint64_t>(cols));
  loop(b_.getInt64(0), blocks, [&](LV* blk) {
    LV* i0 = b_.CreateAdd(begin, b_.CreateMul(blk, b_.getInt64(kLanes)));
    LV* live = b_.CreateICmpSLT(b_.CreateAdd(splat(i0), lanes), splat(end));  // rows past the end: no access
    LV* base = b_.CreateInBoundsGEP(f32_, x, b_.CreateMul(i0, cols_v));
    LV* out_base = grad ? b_.CreateInBoundsGEP(f32_, out, b_.CreateMul(i0, cols_v)) : nullptr;
    // Dead lanes read 0 (a row whose exp is 1, never the subnormal path) and are never stored.
    auto gather = [&](LV* idx) { return b_.CreateMaskedGather(vty, b_.CreateInBoundsGEP(f32_, base, idx), align, live, fsplat(0)); };
    std::vector<LV*> v;
    LV* m = nullptr;
    for (int64_t j = 0; j < cols; ++j) {
      v.push_back(gather(offsets(j)));
      m = m ? b_.CreateBinaryIntrinsic(llvm::Intrinsic::maximum, m, v.back()) : v.back();  // NaN wins, as ir::maximum
    }
    std::vector<LV*> e;
    LV* s = dsplat(-0.0);  // in double, in class order
    for (int64_t j = 0; j < cols; ++j) {
      e.push_back(math::exp(b_, b_.CreateFSub(v[static_cast<size_t>(j)], m)));
      s = b_.CreateFAdd(s, b_.CreateFPExt(e.back(), dty));
    }
    LV* target = b_.CreateMaskedLoad(tty, b_.CreateInBoundsGEP(i64_, t, i0), llvm::Align(8), live,
                                     llvm::ConstantAggregateZero::get(tty));
    LV* valid = b_.CreateAnd(b_.CreateICmpSGE(target, splat(b_.getInt64(0))), b_.CreateICmpSLT(target, splat(cols_v)));
    LV* at = b_.CreateTrunc(b_.CreateSelect(valid, target, llvm::ConstantAggregateZero::get(tty)),
                            llvm::FixedVectorType::get(b_.getInt32Ty(), kLanes));  // never an index outside the row
    LV* at_offsets = b_.CreateAdd(offsets(0), at);
    LV* x_t = gather(at_offsets);
    if (loss) {  // as the row loop: log(s) + m - x[t], the rows added to the total in order
      LV* f = b_.CreateFPTrunc(s, vty);
      LV* fd = b_.CreateFPExt(f, dty);
      LV* log_s = b_.CreateFAdd(b_.CreateFPExt(math::log(b_, f), dty), b_.CreateFDiv(b_.CreateFSub(s, fd), fd));
      LV* l = b_.CreateFSub(b_.CreateFAdd(log_s, b_.CreateFPExt(m, dty)), b_.CreateFPExt(x_t, dty));
      l = b_.CreateSelect(valid, l, llvm::ConstantFP::getNaN(dty));
      l = b_.CreateSelect(live, l, dsplat(-0.0));  // t + -0 is t
      b_.CreateStore(b_.CreateFAddReduce(b_.CreateLoad(f64, total), l), total);  // ordered: no reassociation
    }
    if (!grad) return;
    LV* scale_v = splat(scale);
    LV* k_d = b_.CreateFDiv(scale_v, s);
    LV* k = b_.CreateSelect(valid, b_.CreateFPTrunc(k_d, vty), fsplat(std::numeric_limits<float>::quiet_NaN()));
    for (int64_t j = 0; j < cols; ++j)
      b_.CreateMaskedScatter(b_.CreateFMul(k, e[static_cast<size_t>(j)]), b_.CreateInBoundsGEP(f32_, out_base, offsets(j)),
                             align, live);
    // At the target, k exp(x - m) - g / N in double (stored last, over the column's value).
    LV* e_t = b_.CreateFPExt(math::exp(b_, b_.CreateFSub(x_t, m)), dty);
    LV* fixed = b_.CreateFPTrunc(b_.CreateFSub(b_.CreateFMul(k_d, e_t), scale_v), vty);
    fixed = b_.CreateSelect(valid, fixed, fsplat(std::numeric_limits<float>::quiet_NaN()));
    b_.CreateMaskedScatter(fixed, b_.CreateInBoundsGEP(f32_, out_base, at_offsets), align, live);
  });
}

}  // namespace bj::codegen
