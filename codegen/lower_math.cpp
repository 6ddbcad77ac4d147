// exp, log, tanh, sigmoid and pow as LLVM IR that vectorizes: polynomial
// and rational approximations (Cephes' and Eigen's single-precision
// coefficients) built from multiply-adds, selects and exponent-bit
// arithmetic, never a libm call. Their measured maximum relative errors are
// in the comments; tests/test_codegen.cpp checks the bounds.
#include "codegen/lower_math.h"

#include <llvm/IR/Intrinsics.h>

#include <cmath>

namespace bj::codegen::math {

using llvm::IRBuilder;
using LV = llvm::Value;

namespace {

/// Within approximations: fused multiply-adds (their error budget allows it).
llvm::FastMathFlags approximation_flags() {
  llvm::FastMathFlags f;
  f.setAllowContract();
  return f;
}

/// i32 of x's shape (a scalar, or a vector of as many lanes): the type of x's bits.
llvm::Type* bits_type(IRBuilder<>& B, LV* x) { return x->getType()->getWithNewType(B.getInt32Ty()); }

}  // namespace

LV* poly(IRBuilder<>& B, LV* x, std::initializer_list<double> coeffs) {  // Horner, highest degree first
  LV* p = nullptr;
  for (double c : coeffs) p = p ? B.CreateFAdd(B.CreateFMul(p, x), llvm::ConstantFP::get(x->getType(), c))
                                : static_cast<LV*>(llvm::ConstantFP::get(x->getType(), c));
  return p;
}

/// exp of x already clamped to [-104, 88.72283] (to [-87, 88.72283] without `subnormals`):
/// x = n ln2 + r, |r| <= ln2/2 (n rounded to nearest); exp(r) by a degree-6 polynomial; 2^n
/// assembled in the exponent bits as 2^(n-1+a) * 2^(1-a), with a = 0 normally (so n up to 128
/// stays finite) and, with `subnormals`, a = 64 for n < -60 (so 2^n down to 2^-150 is reached
/// through a normal factor and one final rounding into the subnormals). NaN stays NaN.
LV* exp_clamped(IRBuilder<>& B, LV* xc, bool subnormals) {
  auto fp = [&](double v) { return llvm::ConstantFP::get(xc->getType(), v); };
  llvm::Type* ity = bits_type(B, xc);
  auto i32 = [&](int64_t v) { return llvm::ConstantInt::get(ity, static_cast<uint64_t>(v)); };
  llvm::IRBuilderBase::FastMathFlagGuard guard(B);
  B.setFastMathFlags(approximation_flags());
  // n = round(x / ln2) by the 1.5 * 2^23 shifter: t's low mantissa bits hold n as an integer.
  LV* t = B.CreateFAdd(B.CreateFMul(xc, fp(1.44269504088896341)), fp(12582912.0));
  LV* n = B.CreateFSub(t, fp(12582912.0));
  LV* r = B.CreateFSub(B.CreateFSub(xc, B.CreateFMul(n, fp(0.693359375))), B.CreateFMul(n, fp(-2.12194440e-4)));
  LV* z = B.CreateFMul(r, r);
  LV* p = poly(B, r, {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3, 4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1});
  LV* y = B.CreateFAdd(B.CreateFAdd(B.CreateFMul(p, z), r), fp(1.0));
  LV* bits = B.CreateAdd(B.CreateShl(B.CreateBitCast(t, ity), 23), i32(126 << 23));
  LV* scale = fp(2.0);  // 2^(1-a)
  if (subnormals) {
    LV* tiny = B.CreateFCmpOLT(n, fp(-60.0));
    bits = B.CreateAdd(bits, B.CreateSelect(tiny, i32(64 << 23), i32(0)));
    scale = B.CreateSelect(tiny, fp(std::ldexp(1.0, -63)), scale);
  }
  return B.CreateFMul(B.CreateFMul(y, B.CreateBitCast(bits, xc->getType())), scale);
}

/// x clamped to [lo, hi] (NaN stays NaN).
LV* clamp(IRBuilder<>& B, LV* x, double lo, double hi) {
  auto fp = [&](double v) { return llvm::ConstantFP::get(x->getType(), v); };
  LV* c = B.CreateSelect(B.CreateFCmpOGT(x, fp(hi)), fp(hi), x);
  return B.CreateSelect(B.CreateFCmpOLT(c, fp(lo)), fp(lo), c);
}

/// The largest float whose exp is finite, and the threshold below which exp rounds to 0.
constexpr double kExpMax = 88.72283172607421875;  // 0x42b17217
constexpr double kExpMin = -103.972084045410156;  // 0xc2cff1b5: exp(x) < 2^-150 below it

/// exp(x) for all floats: relative error at most 1.2e-7 where the result is normal (x >= -87.33);
/// below that the result is subnormal, within 1 unit of 2^-149 of the exact value, and 0 for
/// x < -103.97 (where the exact value rounds to 0); +inf above 88.7228317 exactly where
/// the correctly rounded exp overflows; NaN stays NaN.
LV* exp(IRBuilder<>& B, LV* x) {
  auto fp = [&](double v) { return llvm::ConstantFP::get(x->getType(), v); };
  LV* res = exp_clamped(B, clamp(B, x, kExpMin, kExpMax), true);
  res = B.CreateSelect(B.CreateFCmpOGT(x, fp(kExpMax)), llvm::ConstantFP::getInfinity(x->getType()), res);
  res = B.CreateSelect(B.CreateFCmpOLT(x, fp(kExpMin)), fp(0.0), res);
  return B.CreateSelect(B.CreateFCmpUNO(x, x), x, res);
}

/// log(x): x = m 2^e with m in [sqrt(1/2), sqrt(2)); log(m) by a degree-9
/// polynomial in m-1. Max relative error measured 8e-8; log(0) = -inf, log(x<0) =
/// NaN, log(inf) = inf; subnormal inputs are scaled by 2^23 first.
LV* log(IRBuilder<>& B, LV* x) {
  auto fp = [&](double v) { return llvm::ConstantFP::get(x->getType(), v); };
  llvm::Type *fty = x->getType(), *ity = bits_type(B, x);
  auto i32 = [&](int64_t v) { return llvm::ConstantInt::get(ity, static_cast<uint64_t>(v)); };
  llvm::IRBuilderBase::FastMathFlagGuard guard(B);
  B.setFastMathFlags(approximation_flags());
  LV* tiny = B.CreateFCmpOLT(x, fp(1.17549435e-38));
  LV* xs = B.CreateSelect(tiny, B.CreateFMul(x, fp(8388608.0)), x);
  LV* bits = B.CreateBitCast(xs, ity);
  LV* e = B.CreateSub(B.CreateAnd(B.CreateLShr(bits, 23), i32(0xff)), i32(126));
  e = B.CreateSub(e, B.CreateSelect(tiny, i32(23), i32(0)));
  LV* m = B.CreateBitCast(B.CreateOr(B.CreateAnd(bits, i32(0x807fffff)), i32(0x3f000000)), fty);
  LV* small = B.CreateFCmpOLT(m, fp(0.707106781186547524));
  LV* ef = B.CreateSIToFP(B.CreateSub(e, B.CreateSelect(small, i32(1), i32(0))), fty);
  LV* mm = B.CreateFSub(B.CreateSelect(small, B.CreateFAdd(m, m), m), fp(1.0));
  LV* z = B.CreateFMul(mm, mm);
  LV* p = poly(B, mm, {7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1,
                    -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1});
  LV* y = B.CreateFMul(B.CreateFMul(p, mm), z);
  y = B.CreateFAdd(y, B.CreateFMul(ef, fp(-2.12194440e-4)));
  y = B.CreateFSub(y, B.CreateFMul(z, fp(0.5)));
  LV* r = B.CreateFAdd(B.CreateFAdd(mm, y), B.CreateFMul(ef, fp(0.693359375)));
  r = B.CreateSelect(B.CreateFCmpOEQ(x, fp(0.0)), llvm::ConstantFP::getInfinity(fty, true), r);
  r = B.CreateSelect(B.CreateFCmpOLT(x, fp(0.0)), llvm::ConstantFP::getNaN(fty), r);
  r = B.CreateSelect(B.CreateFCmpOEQ(x, llvm::ConstantFP::getInfinity(fty)), x, r);
  return B.CreateSelect(B.CreateFCmpUNO(x, x), x, r);
}

/// tanh(x) = x p(x^2)/q(x^2) (odd degree 13 over even degree 6, Eigen's
/// coefficients) on x clamped to +-7.9053, where tanh rounds to +-1; x
/// multiplies the quotient last, so tiny and subnormal x keep their bits
/// (x times a number within 1.3e-7 of 1). Max relative error ~2.5e-7; zeros
/// keep their sign, NaN stays NaN; no exp, one division.
LV* tanh(IRBuilder<>& B, LV* x) {
  llvm::IRBuilderBase::FastMathFlagGuard guard(B);
  B.setFastMathFlags(approximation_flags());
  LV* xc = clamp(B, x, -7.90531110763549805, 7.90531110763549805);
  LV* z = B.CreateFMul(xc, xc);
  LV* p = poly(B, z, {-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
                      1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03});
  LV* q = poly(B, z, {1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03});
  return B.CreateFMul(B.CreateFDiv(p, q), xc);
}

/// sigmoid(x) = 1 / (1 + exp(-x)), computed as eager computes it: with -x clamped to
/// [-87, 88.72283] exp needs none of its special cases (below -87, 1 + exp(-x) rounds to 1
/// anyway), and for -x above 88.72283 exp(-x) is +inf and the result 0, as in eager mode; between
/// x = -87.33 and -88.72 the result is subnormal. Relative error at most 2.5e-7 where the result is
/// normal; NaN stays NaN.
LV* sigmoid(IRBuilder<>& B, LV* x) {
  auto fp = [&](double v) { return llvm::ConstantFP::get(x->getType(), v); };
  LV* nx = B.CreateFNeg(x);
  LV* d = B.CreateFAdd(fp(1.0), exp_clamped(B, clamp(B, nx, -87.0, kExpMax), false));
  return B.CreateSelect(B.CreateFCmpOGT(nx, fp(kExpMax)), fp(0.0), B.CreateFDiv(fp(1.0), d));
}

/// x^p for the exponents pow_inline() accepts: sqrt for 1/2 (with pow's +0 for -0 and +inf for
/// -inf), else binary powering of x (of 1/x for negative p). Squaring doubles a relative error, so
/// x^k carries at most (k - 1) roundings' worth, and 1/x adds k more: the relative error is at most
/// |p| * 2^-23 where the result is normal (1.9e-6 for |p| = 16; exact for powers of 2 and small
/// integers). Overflow, zeros, infinities and NaN behave as powf's.
LV* pow(IRBuilder<>& B, LV* x, double p) {
  auto fp = [&](double v) { return llvm::ConstantFP::get(x->getType(), v); };
  const float q = static_cast<float>(p);
  if (q == 0.5f) {
    LV* r = B.CreateFAdd(B.CreateUnaryIntrinsic(llvm::Intrinsic::sqrt, x), fp(0.0));  // sqrt(-0) + 0 = +0
    return B.CreateSelect(B.CreateFCmpOEQ(x, llvm::ConstantFP::getInfinity(x->getType(), true)),
                          llvm::ConstantFP::getInfinity(x->getType()), r);
  }
  auto k = static_cast<int64_t>(std::fabs(q));
  LV* base = q < 0 ? B.CreateFDiv(fp(1.0), x) : x;
  LV* r = nullptr;
  for (LV* sq = base; k > 0; k >>= 1) {
    if (k & 1) r = r ? B.CreateFMul(r, sq) : sq;
    if (k > 1) sq = B.CreateFMul(sq, sq);
  }
  return r;
}

}  // namespace bj::codegen::math
