// The element semantics of compiled code: each elementwise op's scalar
// expression, comparisons, NaN-propagating maximum and minimum, and how
// reductions start and combine. The facts come from ir/semantics.h; only
// their LLVM spelling is here. The switches list every op: a new op does not
// compile until it says what it is here.
#include <llvm/IR/Intrinsics.h>

#include "codegen/lower_math.h"
#include "codegen/lowerer.h"
#include "ir/error.h"

namespace bj::codegen {

LV* Lowerer::scalar(const ir::Node& n, const Scalars& val) {
  auto in = [&](int i) { return val.at(n.inputs[static_cast<size_t>(i)]); };
  auto fp = [&](double v) { return llvm::ConstantFP::get(f32_, v); };
  using K = ir::OpKind;
  switch (n.op) {
    case K::Neg: return b_.CreateFNeg(in(0));
    case K::Abs: return b_.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, in(0));
    case K::Relu: return b_.CreateSelect(b_.CreateFCmpOLT(in(0), fp(0)), fp(0), in(0));
    case K::Exp: return math::exp(b_, in(0));
    case K::Log: return math::log(b_, in(0));
    case K::Tanh: return math::tanh(b_, in(0));
    case K::Sigmoid: return math::sigmoid(b_, in(0));
    case K::Sqrt: return b_.CreateUnaryIntrinsic(llvm::Intrinsic::sqrt, in(0));
    case K::Pow: return math::pow(b_, in(0), n.attrs.scalar);
    case K::Cast: {
      DType from = n.inputs[0]->type.dtype, to = n.attrs.dtype;
      if (from == to) return in(0);
      if (from == DType::kI64) return to == DType::kBool ? b_.CreateICmpNE(in(0), b_.getInt64(0)) : b_.CreateSIToFP(in(0), f32_);
      if (to == DType::kBool) return b_.CreateFCmpUNE(in(0), fp(0));
      return b_.CreateUIToFP(in(0), f32_);
    }
    case K::Add: return b_.CreateFAdd(in(0), in(1));
    case K::Sub: return b_.CreateFSub(in(0), in(1));
    case K::Mul: return b_.CreateFMul(in(0), in(1));
    case K::Div: return b_.CreateFDiv(in(0), in(1));
    case K::Maximum: return maximum(in(0), in(1), true);
    case K::Minimum: return maximum(in(0), in(1), false);
    case K::Gt: case K::Lt: case K::Ge: case K::Le: case K::Eq:
      return compare(*ir::comparison(n.op), in(0), in(1), n.inputs[0]->type.dtype == DType::kBool);
    case K::Where: return b_.CreateSelect(in(0), in(1), in(2));
    case K::Expand: return in(0);  // a loop over the result, reading the input with broadcast strides
    case K::Sum: case K::Prod: case K::Max: case K::Min: case K::Matmul: case K::Permute: case K::Reshape:
    case K::Concat: case K::Slice: case K::RandUniform: case K::CrossEntropy: case K::CrossEntropyGrad: case K::Embedding: case K::EmbeddingGrad: case K::Conv2d: case K::Conv2dGradInput:
    case K::Conv2dGradWeight: case K::MaxPool2d: case K::MaxPool2dGrad: case K::AvgPool2d: case K::AvgPool2dGrad:
      break;  // not elementwise: the plan never inlines them here
  }
  throw Error("codegen", std::string(ir::op_name(n.op)) + " is not an elementwise op (internal error in the plan)");
}

LV* Lowerer::compare(ir::Cmp c, LV* a, LV* b, bool boolean) {
  using P = llvm::CmpInst::Predicate;
  auto pick = [&](P f, P i) { return boolean ? b_.CreateICmp(i, a, b) : b_.CreateFCmp(f, a, b); };
  switch (c) {
    case ir::Cmp::kGt: return pick(P::FCMP_OGT, P::ICMP_UGT);
    case ir::Cmp::kLt: return pick(P::FCMP_OLT, P::ICMP_ULT);
    case ir::Cmp::kGe: return pick(P::FCMP_OGE, P::ICMP_UGE);
    case ir::Cmp::kLe: return pick(P::FCMP_OLE, P::ICMP_ULE);
    case ir::Cmp::kEq: return pick(P::FCMP_OEQ, P::ICMP_EQ);
  }
  throw Error("codegen", "unknown comparison");
}

LV* Lowerer::maximum(LV* a, LV* b, bool max) {
  // llvm.maximum/minimum are IEEE 754-2019's, as ir::maximum: the loop vectorizer reduces them.
  return max ? b_.CreateBinaryIntrinsic(llvm::Intrinsic::maximum, a, b) : b_.CreateBinaryIntrinsic(llvm::Intrinsic::minimum, a, b);
}

LV* Lowerer::identity(ir::Combine c, bool empty) {
  if (empty) return llvm::ConstantFP::get(f32_, ir::empty_reduction<float>(c));
  return llvm::ConstantFP::get(f32_, ir::identity<float>(c));
}

LV* Lowerer::combine(ir::Combine c, LV* acc, LV* v) {
  llvm::IRBuilderBase::FastMathFlagGuard guard(b_);
  llvm::FastMathFlags fmf;
  fmf.setAllowReassoc();
  switch (c) {
    case ir::Combine::kAdd: b_.setFastMathFlags(fmf); return b_.CreateFAdd(acc, v);
    case ir::Combine::kMul: b_.setFastMathFlags(fmf); return b_.CreateFMul(acc, v);
    case ir::Combine::kMax: return maximum(v, acc, true);
    case ir::Combine::kMin: return maximum(v, acc, false);
  }
  throw Error("codegen", "unknown reduction");
}

}  // namespace bj::codegen
