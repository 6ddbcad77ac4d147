// Internal to codegen/: transcendental functions as vectorizable LLVM IR
// (see lower_math.cpp), for lower.cpp's scalar expressions. Each takes an f32
// or a vector of f32 and computes lane by lane.
#pragma once

#include <llvm/IR/IRBuilder.h>

#include <initializer_list>

namespace bj::codegen::math {

/// Horner's rule in f32, coefficients from the highest degree down.
llvm::Value* poly(llvm::IRBuilder<>& B, llvm::Value* x, std::initializer_list<double> coeffs);
llvm::Value* exp(llvm::IRBuilder<>& B, llvm::Value* x);
llvm::Value* log(llvm::IRBuilder<>& B, llvm::Value* x);
llvm::Value* tanh(llvm::IRBuilder<>& B, llvm::Value* x);
llvm::Value* sigmoid(llvm::IRBuilder<>& B, llvm::Value* x);
/// x^p for a constant p that inline_pow() (plan.h) accepts.
llvm::Value* pow(llvm::IRBuilder<>& B, llvm::Value* x, double p);

}  // namespace bj::codegen::math
