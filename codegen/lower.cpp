// Lowering to LLVM IR: the whole optimized graph becomes one function over
// the arena memory planning laid out (the Lowerer, in parts: lowerer.h).
// Each top-level node runs as its plan's Strategy says: a fused region (or an
// op alone) as a loop nest in a function of its own, called directly for
// small work or through bj_rt_parallel_for for large work; a large product as
// one oneDNN primitive; anything else as calls to bj_rt_call_node (eager
// mode's kernels). Guards compare their predicate and return the guard's
// index; the graph's commits are written after the last node, once every
// guard held (those computed in place were written by their loop, which no
// guard follows). This file holds the entry function and the dispatch.
#include "codegen/lower.h"

#include <llvm/IR/MDBuilder.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>

#include "codegen/jit_internal.h"
#include "codegen/lowerer.h"
#include "ir/error.h"

namespace bj::codegen {

Lowerer::Lowerer(const ir::Graph& g, const Plan& plan, llvm::LLVMContext& ctx, llvm::Module& m)
    : g_(g), plan_(plan), llvm_(ctx), module_(m), b_(ctx) {
  f32_ = b_.getFloatTy();
  i8_ = b_.getInt8Ty();
  i32_ = b_.getInt32Ty();
  i64_ = b_.getInt64Ty();
  ptr_ = b_.getPtrTy();
}

void Lowerer::run() {
  auto* fty = llvm::FunctionType::get(i32_, {ptr_, ptr_}, false);
  main_ = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, kEntrySymbol, module_);
  attributes(*main_);
  main_->addParamAttr(0, llvm::Attribute::NoAlias);
  b_.SetInsertPoint(llvm::BasicBlock::Create(llvm_, "entry", main_));
  bufs_ = main_->getArg(0);
  ctx_ = main_->getArg(1);
  bind_buffers();
  int guard = 0;
  const auto& nodes = g_.nodes();
  for (size_t i = 0; i < nodes.size(); ++i) {
    const ir::Node& n = *nodes[i];
    if (i + 1 < nodes.size() && fusible_losses(n, *nodes[i + 1])) {  // the loss and, right after it, its gradient
      emit_cross_entropy(n, nodes[++i].get());
      continue;
    }
    switch (n.kind) {
      case ir::NodeKind::kLiteral: break;  // globals, made on first use
      case ir::NodeKind::kGuard: emit_guard(n, guard++); break;
      case ir::NodeKind::kOp:
      case ir::NodeKind::kRegion: emit_planned(n); break;
    }
  }
  emit_output_copies();
  emit_commits();
  b_.CreateRet(llvm::ConstantInt::getSigned(i32_, -1));
}

void Lowerer::attributes(llvm::Function& f) {
  f.addFnAttr("target-cpu", target_cpu());
  f.addFnAttr("target-features", target_features());
  // Full-width vectors where the CPU has them (LLVM tunes some AVX-512 CPUs to 256 bits).
  if (target_features().find("+avx512f") != std::string::npos) f.addFnAttr("prefer-vector-width", "512");
  f.addFnAttr(llvm::Attribute::NoUnwind);
}

void Lowerer::bind_buffers() {
  int k = 0;
  auto load = [&](int index) {
    LV* slot = b_.CreateConstInBoundsGEP1_64(ptr_, bufs_, static_cast<uint64_t>(index));
    return b_.CreateLoad(ptr_, slot);
  };
  for (auto* list : {&g_.inputs(), &g_.params(), &g_.consts()})
    for (const ir::Value* v : *list) addr_[v] = load(k++);
  for (const ir::Value* v : g_.outputs()) {
    LV* p = load(k++);
    output_addr_.push_back(p);
    // A value produced here is written straight into its (first) output buffer.
    if (v->kind == ir::ValueKind::kResult && v->def->kind != ir::NodeKind::kLiteral && !addr_.count(v)) addr_[v] = p;
  }
  arena_ = load(k++);
  for (size_t i = 0; i < plan_.packings.size(); ++i) packed_.push_back(load(k++));
  if (dynamic()) batch_main_ = b_.CreatePtrToInt(load(k++), i64_);  // the call's batch size (ir/batch.h)
  for (size_t i = 0; i < g_.commits().size(); ++i)  // state computed straight into its memory
    if (plan_.commit_in_place[i]) addr_[g_.commits()[i].value] = addr_.at(g_.commits()[i].target);
}

LV* Lowerer::address(const ir::Value* v) {
  auto it = addr_.find(v);
  if (it != addr_.end()) return it->second;
  LV* a = nullptr;
  if (v->def && v->def->kind == ir::NodeKind::kLiteral) {
    const auto& d = v->def->data;
    auto* arr = llvm::ConstantDataArray::getRaw(llvm::StringRef(reinterpret_cast<const char*>(d.data()), d.size()),
                                                d.size(), i8_);
    auto* gv = new llvm::GlobalVariable(module_, arr->getType(), true, llvm::GlobalValue::PrivateLinkage, arr, "literal");
    gv->setAlignment(llvm::Align(64));
    a = gv;
  } else if (v->offset >= 0 || plan_.scratch.count(v)) {
    const int64_t at = v->offset >= 0 ? v->offset : plan_.scratch.at(v);
    if (dynamic() && v->batch)  // per unit of batch size, after the static part
      a = b_.CreateInBoundsGEP(i8_, arena_, b_.CreateAdd(b_.getInt64(static_cast<uint64_t>(plan_.arena_bytes)),
                                                         b_.CreateMul(batch_main_, b_.getInt64(static_cast<uint64_t>(at)))));
    else
      a = b_.CreateConstInBoundsGEP1_64(i8_, arena_, static_cast<uint64_t>(at));
  } else {
    throw Error("codegen", "value of type " + v->type.str() + " has no memory (internal error in the plan)");
  }
  // Addresses are computed in the entry block so every later use is dominated.
  return addr_[v] = a;
}

void Lowerer::emit_guard(const ir::Node& n, int index) {
  LV* p = b_.CreateICmpNE(b_.CreateLoad(i8_, address(n.inputs[0])), b_.getInt8(0));
  LV* ok = n.expect ? p : b_.CreateNot(p);
  auto* fail = llvm::BasicBlock::Create(llvm_, "guard_failed", main_);
  auto* cont = llvm::BasicBlock::Create(llvm_, "guard_held", main_);
  b_.CreateCondBr(ok, cont, fail, llvm::MDBuilder(llvm_).createLikelyBranchWeights());
  b_.SetInsertPoint(fail);
  b_.CreateRet(b_.getInt32(static_cast<uint32_t>(index)));
  b_.SetInsertPoint(cont);
}

void Lowerer::emit_callback(const ir::Node& n) {
  std::vector<LV*> inputs;
  for (const ir::Value* v : n.inputs) inputs.push_back(address(v));
  emit_call_node(plan_.callback.at(&n), inputs, address(n.result));
}

void Lowerer::emit_call_node(int32_t id, const std::vector<LV*>& inputs, LV* out) {
  auto* arr = entry_alloca(llvm::ArrayType::get(ptr_, std::max<size_t>(inputs.size(), 1)));
  for (size_t i = 0; i < inputs.size(); ++i)
    b_.CreateStore(inputs[i], b_.CreateConstInBoundsGEP2_64(arr->getAllocatedType(), arr, 0, i));
  if (dynamic()) {  // the runtime gives batched operands the call's batch size
    auto* fty = llvm::FunctionType::get(b_.getVoidTy(), {ptr_, i32_, ptr_, ptr_, i64_}, false);
    b_.CreateCall(module_.getOrInsertFunction("bj_rt_call_node_batch", fty),
                  {ctx_, b_.getInt32(static_cast<uint32_t>(id)), arr, out, batch_main_});
    return;
  }
  auto* fty = llvm::FunctionType::get(b_.getVoidTy(), {ptr_, i32_, ptr_, ptr_}, false);
  llvm::FunctionCallee fn = module_.getOrInsertFunction("bj_rt_call_node", fty);
  b_.CreateCall(fn, {ctx_, b_.getInt32(static_cast<uint32_t>(id)), arr, out});
}

void Lowerer::emit_dnnl_product(const ir::Node& n, const DnnlProduct& d) {
  const ir::Node& mm = n.kind == ir::NodeKind::kRegion ? *n.body.front() : n;
  std::vector<LV*> inputs{address(mm.inputs[0]),
                          d.packing >= 0 ? packed_[static_cast<size_t>(d.packing)] : address(mm.inputs[1])};
  if (d.bias) inputs.push_back(address(d.bias));
  emit_call_node(d.callback, inputs, address(d.result));
  if (n.kind == ir::NodeKind::kRegion && d.fused < n.body.size()) {
    std::vector<const ir::Node*> rest;
    for (size_t i = d.fused; i < n.body.size(); ++i) rest.push_back(n.body[i].get());
    emit_elementwise(rest, {n.yields.begin(), n.yields.end()}, d.result->type.shape);
  }
}

void Lowerer::emit_output_copies() {
  std::unordered_map<const ir::Value*, bool> written;
  for (size_t i = 0; i < g_.outputs().size(); ++i) {
    const ir::Value* v = g_.outputs()[i];
    LV* dst = output_addr_[i];
    if (address(v) == dst && !written[v]) {
      written[v] = true;
      continue;
    }
    b_.CreateMemCpy(dst, llvm::MaybeAlign(4), address(v), llvm::MaybeAlign(4), bytes_of(v));
  }
}

void Lowerer::emit_commits() {
  for (int i : plan_.commit_order) {
    const ir::Commit& c = g_.commits()[static_cast<size_t>(i)];
    if (c.value != c.target)
      b_.CreateMemCpy(address(c.target), llvm::MaybeAlign(4), address(c.value), llvm::MaybeAlign(4), c.value->type.bytes());
  }
}

llvm::AllocaInst* Lowerer::entry_alloca(llvm::Type* t) {
  llvm::Function* f = b_.GetInsertBlock()->getParent();
  llvm::IRBuilder<> eb(&f->getEntryBlock(), f->getEntryBlock().begin());
  return eb.CreateAlloca(t);
}

void Lowerer::emit_planned(const ir::Node& n) {
  const NodePlan& np = plan_.at(n);
  std::vector<const ir::Node*> body;
  std::vector<const ir::Value*> stores;
  if (n.kind == ir::NodeKind::kRegion) {
    for (const auto& b : n.body) body.push_back(b.get());
    stores.assign(n.yields.begin(), n.yields.end());
  } else {
    body = {&n};
    stores = {n.result};
  }
  const bool exact = np.strategy == Strategy::kExactLoops;
  if (n.kind == ir::NodeKind::kOp && n.op == ir::OpKind::Reshape && n.result->offset >= 0 &&
      n.result->offset == n.inputs[0]->offset)
    return;  // a view: memory planning gave it its input's bytes
  if ((np.strategy == Strategy::kLoops || exact) && inline_movement(n)) {
    if (n.op == ir::OpKind::Reshape)  // the same bytes in the same order
      b_.CreateMemCpy(address(n.result), llvm::MaybeAlign(1), address(n.inputs[0]), llvm::MaybeAlign(1),
                      bytes_of(n.result));
    else
      emit_elementwise(body, stores, n.result->type.shape);
    return;
  }
  switch (np.strategy) {
    case Strategy::kRuntime:
      for (const ir::Node* b : body) emit_callback(*b);
      return;
    case Strategy::kDnnl: return emit_dnnl_product(n, *np.dnnl);
    case Strategy::kRuntimeProduct: {  // the runtime computes the product into memory; the epilogue is a loop over it
      emit_callback(*body.front());
      const std::vector<const ir::Node*> epilogue(body.begin() + 1, body.end());
      if (!epilogue.empty()) emit_elementwise(epilogue, stores, body.front()->result->type.shape);
      return;
    }
    case Strategy::kPacked: return emit_packed_contraction(*body.front(), {body.begin() + 1, body.end()}, stores, np);
    case Strategy::kLoops:
    case Strategy::kExactLoops: break;
  }
  if (inline_loss(n)) return emit_cross_entropy(n);
  if (inline_conv(n)) return n.op == ir::OpKind::Conv2d ? emit_conv(n) : emit_conv_grad_weight(n);
  if (inline_pool(n)) return emit_avg_pool(n);
  switch (nest_kind(n)) {
    case ir::RegionKind::kElementwise: return emit_elementwise(body, stores, body.front()->result->type.shape);
    case ir::RegionKind::kReduction:  // max and min are exact in any order
      return exact && body.back()->op == ir::OpKind::Sum ? emit_exact_row_sum(body, stores) : emit_reduction(body, stores);
    case ir::RegionKind::kContraction: return emit_contraction(body, stores, exact);
    case ir::RegionKind::kRow: return emit_row(body, stores, exact);
  }
}

ir::RegionKind Lowerer::nest_kind(const ir::Node& n) {
  if (n.kind == ir::NodeKind::kRegion) return n.region;
  if (ir::has_trait(n.op, ir::kReduction)) return ir::RegionKind::kReduction;
  if (ir::has_trait(n.op, ir::kContraction)) return ir::RegionKind::kContraction;
  return ir::RegionKind::kElementwise;
}

LoweredCode lower(const ir::Graph& g, const Plan& plan, bool want_ir, bool want_asm, const std::string& entry,
                  bool fast) {
  llvm::LLVMContext ctx;
  auto m = std::make_unique<llvm::Module>("bj_" + g.name(), ctx);
  prepare_module(*m);
  Lowerer(g, plan, ctx, *m).run();
  if (entry != kEntrySymbol) m->getFunction(kEntrySymbol)->setName(entry);
  std::string err;
  llvm::raw_string_ostream es(err);
  if (llvm::verifyModule(*m, &es)) throw Error("codegen", "generated LLVM IR for " + g.name() + " is invalid: " + es.str());
  LoweredCode out;
  std::lock_guard lock(target_mutex());
  optimize_module(*m, fast);
  if (want_ir) {
    llvm::raw_string_ostream os(out.llvm_ir);
    m->print(os, nullptr);
  }
  if (want_asm) out.assembly = emit(*m, /*assembly=*/true, fast);
  out.object = emit(*m, /*assembly=*/false, fast);
  return out;
}

}  // namespace bj::codegen
