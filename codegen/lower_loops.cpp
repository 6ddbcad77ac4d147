// Loop functions, counted and accumulator loops, operands, and the canonical
// summation order (see lowerer.h).
#include "codegen/lowerer.h"
#include "runtime/kernels.h"

namespace bj::codegen {

Lowerer::LoopFunction Lowerer::begin_loop_function(const char* name, size_t n, std::vector<LV*>& ptrs) {
  const size_t operands = n;
  if (dynamic()) ++n;  // the batch size, last
  auto* wty = llvm::FunctionType::get(b_.getVoidTy(), {i64_, i64_, ptr_}, false);
  auto* wrapper = llvm::Function::Create(wty, llvm::Function::InternalLinkage, name, module_);
  std::vector<llvm::Type*> params{i64_, i64_};
  params.insert(params.end(), n, ptr_);
  auto* bty = llvm::FunctionType::get(b_.getVoidTy(), params, false);
  auto* body = llvm::Function::Create(bty, llvm::Function::InternalLinkage, std::string(name) + ".body", module_);
  attributes(*wrapper);
  wrapper->addFnAttr(llvm::Attribute::NoInline);  // main stays small: the optimizer's cost grows faster than function size
  attributes(*body);
  body->addFnAttr(llvm::Attribute::AlwaysInline);
  for (size_t i = 0; i < n; ++i) body->addParamAttr(static_cast<unsigned>(i + 2), llvm::Attribute::NoAlias);
  b_.SetInsertPoint(llvm::BasicBlock::Create(llvm_, "entry", wrapper));
  std::vector<LV*> args{wrapper->getArg(0), wrapper->getArg(1)};
  for (size_t i = 0; i < n; ++i) args.push_back(b_.CreateLoad(ptr_, b_.CreateConstInBoundsGEP1_64(ptr_, wrapper->getArg(2), i)));
  b_.CreateCall(body, args);
  b_.CreateRetVoid();
  b_.SetInsertPoint(llvm::BasicBlock::Create(llvm_, "entry", body));
  ptrs.clear();
  for (size_t i = 0; i < operands; ++i) ptrs.push_back(body->getArg(static_cast<unsigned>(i + 2)));
  if (dynamic()) batch_fn_ = b_.CreatePtrToInt(body->getArg(static_cast<unsigned>(operands + 2)), i64_);
  return {wrapper, body};
}

void Lowerer::call_loop_function(llvm::Function* fn, const std::vector<LV*>& operands, int64_t outer, bool parallel) {
  call_loop_function(fn, operands, b_.getInt64(static_cast<uint64_t>(outer)), parallel);
}

void Lowerer::call_loop_function(llvm::Function* fn, const std::vector<LV*>& operands, LV* n, bool parallel,
                                 int64_t per_outer) {
  std::vector<LV*> all = operands;
  if (dynamic()) all.push_back(b_.CreateIntToPtr(batch_main_, ptr_));
  auto* arr = entry_alloca(llvm::ArrayType::get(ptr_, std::max<size_t>(all.size(), 1)));
  for (size_t i = 0; i < all.size(); ++i)
    b_.CreateStore(all[i], b_.CreateConstInBoundsGEP2_64(arr->getAllocatedType(), arr, 0, i));
  auto* pty = llvm::FunctionType::get(b_.getVoidTy(), {ptr_, i64_, ptr_}, false);
  auto pooled = [&] { b_.CreateCall(module_.getOrInsertFunction("bj_rt_parallel_for", pty), {fn, n, arr}); };
  auto direct = [&] { b_.CreateCall(fn, {b_.getInt64(0), n, arr}); };
  if (per_outer > 0 && !llvm::isa<llvm::ConstantInt>(n)) {  // the batch decides: enough work for the pool?
    const int64_t min_outer = std::max<int64_t>(2, (2 * rt::kParallelGrain + per_outer - 1) / per_outer);
    auto* pool_bb = llvm::BasicBlock::Create(llvm_, "pooled", main_);
    auto* direct_bb = llvm::BasicBlock::Create(llvm_, "direct", main_);
    auto* done = llvm::BasicBlock::Create(llvm_, "called", main_);
    b_.CreateCondBr(b_.CreateICmpSGE(n, b_.getInt64(static_cast<uint64_t>(min_outer))), pool_bb, direct_bb);
    b_.SetInsertPoint(pool_bb);
    pooled();
    b_.CreateBr(done);
    b_.SetInsertPoint(direct_bb);
    direct();
    b_.CreateBr(done);
    b_.SetInsertPoint(done);
  } else if (parallel) {
    pooled();
  } else {
    direct();
  }
}

LV* Lowerer::batch_size() {
  return b_.GetInsertBlock()->getParent() == main_ ? batch_main_ : batch_fn_;
}

LV* Lowerer::extent(int64_t n, bool batched) {
  if (!batched || !dynamic()) return b_.getInt64(static_cast<uint64_t>(n));
  return b_.CreateMul(batch_size(), b_.getInt64(static_cast<uint64_t>(n / g_.batch)), "", true, true);
}

LV* Lowerer::bytes_of(const ir::Value* v) { return extent(static_cast<int64_t>(v->type.bytes()), v->batch != 0); }

bool Lowerer::batched(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores) {
  for (const ir::Node* n : body)
    if (n->result && n->result->batch) return true;
  for (const ir::Value* v : stores)
    if (v->batch) return true;
  return false;
}

void Lowerer::emit_loop_function(const Space& space, const std::vector<LV*>& operands, bool parallel,
                                 const std::function<void(const std::vector<LV*>& ivs, const std::vector<LV*>& ptrs)>& body,
                                 bool batched) {
  auto saved = b_.saveIP();
  std::vector<LV*> ptrs;
  LoopFunction lf = begin_loop_function("loop", operands.size(), ptrs);
  llvm::Function* fn = lf.body;
  std::vector<LV*> ivs;
  std::function<void(int)> nest = [&](int d) {
    if (d == space.dims.size()) return body(ivs, ptrs);
    LV* lo = d == 0 ? static_cast<LV*>(fn->getArg(0)) : b_.getInt64(0);
    LV* hi = d == 0 ? static_cast<LV*>(fn->getArg(1)) : b_.getInt64(static_cast<uint64_t>(space.dims[d]));
    loop(lo, hi, [&](LV* iv) {
      ivs.push_back(iv);
      nest(d + 1);
      ivs.pop_back();
    });
  };
  nest(0);
  b_.CreateRetVoid();
  b_.restoreIP(saved);
  if (batched && dynamic())
    call_loop_function(lf.wrapper, operands, extent(space.dims[0], true), parallel,
                       parallel ? space.dims.numel() / std::max<int64_t>(space.dims[0], 1) : 0);
  else
    call_loop_function(lf.wrapper, operands, space.dims[0], parallel);
}

void Lowerer::limit_unroll(llvm::Instruction* latch, int count) {
  llvm::MDNode* self = llvm::MDNode::getTemporary(llvm_, {}).release();
  llvm::Metadata* hint = llvm::MDNode::get(llvm_, {llvm::MDString::get(llvm_, "llvm.loop.unroll.count"),
                                                llvm::ConstantAsMetadata::get(b_.getInt32(static_cast<uint32_t>(count)))});
  llvm::MDNode* id = llvm::MDNode::get(llvm_, {self, hint});
  id->replaceOperandWith(0, id);
  llvm::MDNode::deleteTemporary(self);
  latch->setMetadata(llvm::LLVMContext::MD_loop, id);
}

void Lowerer::loop(LV* lo, LV* hi, const std::function<void(LV*)>& body) {
  llvm::Function* f = b_.GetInsertBlock()->getParent();
  auto* pre = b_.GetInsertBlock();
  auto* head = llvm::BasicBlock::Create(llvm_, "loop", f);
  auto* exit = llvm::BasicBlock::Create(llvm_, "loop_end", f);
  b_.CreateCondBr(b_.CreateICmpSLT(lo, hi), head, exit);
  b_.SetInsertPoint(head);
  auto* iv = b_.CreatePHI(i64_, 2);
  iv->addIncoming(lo, pre);
  body(iv);
  LV* next = b_.CreateAdd(iv, b_.getInt64(1), "", true, true);
  iv->addIncoming(next, b_.GetInsertBlock());
  b_.CreateCondBr(b_.CreateICmpSLT(next, hi), head, exit);
  b_.SetInsertPoint(exit);
}

Lowerer::Accumulators Lowerer::accumulate(int64_t n, int64_t step, const Accumulators& init,
                                          const std::function<Accumulators(LV* k, const Accumulators& acc)>& next,
                                          llvm::BranchInst** latch) {
  if (n <= 0) return init;
  llvm::BasicBlock* pre = b_.GetInsertBlock();
  auto* head = llvm::BasicBlock::Create(llvm_, "acc", pre->getParent());
  auto* exit = llvm::BasicBlock::Create(llvm_, "acc_end", pre->getParent());
  b_.CreateBr(head);
  b_.SetInsertPoint(head);
  auto* k = b_.CreatePHI(i64_, 2);
  k->addIncoming(b_.getInt64(0), pre);
  std::vector<llvm::PHINode*> phis;
  for (LV* v : init) {
    phis.push_back(b_.CreatePHI(v->getType(), 2));
    phis.back()->addIncoming(v, pre);
  }
  Accumulators acc(phis.begin(), phis.end());
  acc = next(k, acc);
  LV* k_next = b_.CreateAdd(k, b_.getInt64(static_cast<uint64_t>(step)), "", true, true);
  k->addIncoming(k_next, b_.GetInsertBlock());
  for (size_t i = 0; i < phis.size(); ++i) phis[i]->addIncoming(acc[i], b_.GetInsertBlock());
  llvm::BranchInst* back = b_.CreateCondBr(b_.CreateICmpSLT(k_next, b_.getInt64(static_cast<uint64_t>(n))), head, exit);
  if (latch) *latch = back;
  b_.SetInsertPoint(exit);
  return acc;
}

Lowerer::Accumulators Lowerer::when(LV* cond, const Accumulators& acc,
                                    const std::function<Accumulators(const Accumulators&)>& then) {
  llvm::BasicBlock* pre = b_.GetInsertBlock();
  auto* yes = llvm::BasicBlock::Create(llvm_, "when", pre->getParent());
  auto* done = llvm::BasicBlock::Create(llvm_, "when_end", pre->getParent());
  b_.CreateCondBr(cond, yes, done);
  b_.SetInsertPoint(yes);
  const Accumulators after = then(acc);
  llvm::BasicBlock* last = b_.GetInsertBlock();
  b_.CreateBr(done);
  b_.SetInsertPoint(done);
  Accumulators out;
  for (size_t i = 0; i < acc.size(); ++i) {
    auto* phi = b_.CreatePHI(acc[i]->getType(), 2);
    phi->addIncoming(acc[i], pre);
    phi->addIncoming(after[i], last);
    out.push_back(phi);
  }
  return out;
}

LV* Lowerer::offset(const std::vector<LV*>& ivs, const Shape& strides) {
  LV* off = b_.getInt64(0);
  for (size_t d = 0; d < ivs.size(); ++d)
    if (strides[static_cast<int>(d)] != 0)
      off = b_.CreateAdd(off, b_.CreateMul(ivs[d], b_.getInt64(static_cast<uint64_t>(strides[static_cast<int>(d)]))));
  return off;
}

llvm::Type* Lowerer::element_type(DType t) const { return t == DType::kBool ? i8_ : t == DType::kI64 ? i64_ : f32_; }

LV* Lowerer::load_element(const Type& t, LV* base, LV* off) {
  if (t.dtype == DType::kBool)
    return b_.CreateICmpNE(b_.CreateLoad(i8_, b_.CreateInBoundsGEP(i8_, base, off)), b_.getInt8(0));
  if (t.dtype == DType::kI64) return b_.CreateLoad(i64_, b_.CreateInBoundsGEP(i64_, base, off));
  return b_.CreateLoad(f32_, b_.CreateInBoundsGEP(f32_, base, off));
}

void Lowerer::store_element(const Type& t, LV* v, LV* base, LV* off) {
  if (t.dtype == DType::kBool)
    b_.CreateStore(b_.CreateZExt(v, i8_), b_.CreateInBoundsGEP(i8_, base, off));
  else
    b_.CreateStore(v, b_.CreateInBoundsGEP(f32_, base, off));
}

void Lowerer::add_operand(Operands& o, const ir::Value* v, const Shape& strides) {
  o.addrs.push_back(address(v));
  o.strides.push_back(strides);
}

void Lowerer::load_externals(const std::vector<const ir::Value*>& ext, const std::vector<LV*>& ptrs,
                             const std::vector<LV*>& ivs, const Space& space, Scalars& val) {
  for (size_t i = 0; i < ext.size(); ++i) val[ext[i]] = load_element(ext[i]->type, ptrs[i], offset(ivs, space.strides[i]));
}

void Lowerer::store_values(const std::vector<const ir::Value*>& stores, size_t first, const std::vector<LV*>& ptrs,
                           const std::vector<LV*>& ivs, const Space& space, const Scalars& val) {
  for (size_t j = 0; j < stores.size(); ++j)
    store_element(stores[j]->type, val.at(stores[j]), ptrs[first + j], offset(ivs, space.strides[first + j]));
}

std::vector<const ir::Value*> Lowerer::externals(const std::vector<const ir::Node*>& body) {
  std::unordered_map<const ir::Value*, bool> inside, seen;
  for (const ir::Node* n : body) inside[n->result] = true;
  std::vector<const ir::Value*> out;
  for (const ir::Node* n : body)
    for (const ir::Value* v : n->inputs)
      if (!inside.count(v) && !seen[v]) {
        seen[v] = true;
        out.push_back(v);
      }
  return out;
}

LV* Lowerer::canonical_sum(int64_t n, const std::function<LV*(LV* k0)>& chunk, const std::function<LV*(LV* k)>& term) {
  llvm::IRBuilderBase::FastMathFlagGuard guard(b_);
  b_.setFastMathFlags(llvm::FastMathFlags());
  constexpr int kLanes = rt::kSumLanes;
  auto* vt = llvm::FixedVectorType::get(f32_, kLanes);
  LV* acc = llvm::ConstantFP::get(vt, -0.0);
  const int64_t chunks = n / kLanes;
  acc = accumulate(chunks, 1, {acc}, [&](LV* c, const Accumulators& a) {
    return Accumulators{b_.CreateFAdd(a[0], chunk(b_.CreateMul(c, b_.getInt64(kLanes))))};
  })[0];
  if (const int64_t tail = n % kLanes) {
    LV* t = llvm::ConstantFP::get(vt, -0.0);
    for (int64_t l = 0; l < tail; ++l)
      t = b_.CreateInsertElement(t, term(b_.getInt64(static_cast<uint64_t>(chunks * kLanes + l))), static_cast<uint64_t>(l));
    acc = b_.CreateFAdd(acc, t);
  }
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    llvm::SmallVector<int, 16> lo, hi;
    for (int l = 0; l < w; ++l) {
      lo.push_back(l);
      hi.push_back(l + w);
    }
    acc = b_.CreateFAdd(b_.CreateShuffleVector(acc, lo), b_.CreateShuffleVector(acc, hi));
  }
  return b_.CreateExtractElement(acc, uint64_t{0});
}

LV* Lowerer::canonical_sum(int64_t n, const std::function<LV*(LV* k)>& term) {
  auto chunk = [&](LV* k0) {
    LV* v = llvm::PoisonValue::get(llvm::FixedVectorType::get(f32_, rt::kSumLanes));
    for (int l = 0; l < rt::kSumLanes; ++l) v = b_.CreateInsertElement(v, term(b_.CreateAdd(k0, b_.getInt64(l))), static_cast<uint64_t>(l));
    return v;
  };
  return canonical_sum(n, chunk, term);
}

LV* Lowerer::canonical_dot(int64_t n, LV* a, LV* b) {
  auto* vt = llvm::FixedVectorType::get(f32_, rt::kSumLanes);
  auto at = [&](LV* base, LV* k, llvm::Type* t) { return b_.CreateAlignedLoad(t, b_.CreateInBoundsGEP(f32_, base, k), llvm::Align(4)); };
  return canonical_sum(
      n, [&](LV* k0) { return b_.CreateFMul(at(a, k0, vt), at(b, k0, vt)); },
      [&](LV* k) { return b_.CreateFMul(at(a, k, f32_), at(b, k, f32_)); });
}

}  // namespace bj::codegen
