// Lowering to LLVM IR: the whole optimized graph becomes one function over
// the arena memory planning laid out. Each fused region (and each op left
// on its own) becomes a loop nest in a function of its own, called directly
// for small work or through bj_rt_parallel_for for large work:
//   elementwise  a loop nest over the output shape with broadcasting strides
//                baked in (dimensions collapsed where every operand is
//                contiguous), one scalar expression per element
//   reduction    the producers' expression accumulated into the output;
//                sums carry `reassoc` so the loop vectorizes
//   contraction  small products whose right operand is a packed parameter
//                as a register-blocked kernel, other small ones as i/j/k
//                loops (dot products along k), the epilogue applied per
//                element; large ones call one oneDNN primitive with bias and
//                ReLU fused (else an epilogue loop follows)
// Guards compare their predicate and return the guard's index. Nodes the
// plan sends to the runtime are calls to bj_rt_call_node. exp, log, tanh and
// sigmoid come from lower_math.cpp, as IR that vectorizes.
#include "codegen/lower.h"

#include <llvm/ADT/SmallVector.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/MDBuilder.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>

#include <cmath>
#include <functional>
#include <limits>
#include <unordered_map>

#include "codegen/jit_internal.h"
#include "codegen/lower_math.h"
#include "ir/error.h"
#include "ir/semantics.h"
#include "runtime/kernels.h"

namespace bj::codegen {

namespace {

using llvm::IRBuilder;
using LV = llvm::Value;

using Space = StridedSpace;  // a loop nest's iteration space and its operands' strides (ir/shape.h)

class Lowerer {
 public:
  Lowerer(const ir::Graph& g, const Plan& plan, llvm::LLVMContext& ctx, llvm::Module& m)
      : g_(g), plan_(plan), C(ctx), M(m), B(ctx) {
    f32_ = B.getFloatTy();
    i8_ = B.getInt8Ty();
    i32_ = B.getInt32Ty();
    i64_ = B.getInt64Ty();
    ptr_ = B.getPtrTy();
  }

  void run() {
    auto* fty = llvm::FunctionType::get(i32_, {ptr_, ptr_}, false);
    main_ = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, kEntrySymbol, M);
    attributes(*main_);
    main_->addParamAttr(0, llvm::Attribute::NoAlias);
    B.SetInsertPoint(llvm::BasicBlock::Create(C, "entry", main_));
    bufs_ = main_->getArg(0);
    ctx_ = main_->getArg(1);
    bind_buffers();
    int guard = 0;
    for (const auto& n : g_.nodes()) {
      switch (n->kind) {
        case ir::NodeKind::kLiteral: break;  // globals, made on first use
        case ir::NodeKind::kGuard: emit_guard(*n, guard++); break;
        case ir::NodeKind::kOp:
        case ir::NodeKind::kRegion: emit_planned(*n); break;
      }
    }
    emit_output_copies();
    B.CreateRet(llvm::ConstantInt::getSigned(i32_, -1));
  }

 private:
  // ---- function setup -------------------------------------------------------
  void attributes(llvm::Function& f) {
    f.addFnAttr("target-cpu", target_cpu());
    f.addFnAttr("target-features", target_features());
    // Full-width vectors where the CPU has them (LLVM tunes some AVX-512 CPUs to 256 bits).
    if (target_features().find("+avx512f") != std::string::npos) f.addFnAttr("prefer-vector-width", "512");
    f.addFnAttr(llvm::Attribute::NoUnwind);
  }

  /// Buffer addresses: inputs, params, consts, outputs, arena (see lower.h).
  void bind_buffers() {
    int k = 0;
    auto load = [&](int index) {
      LV* slot = B.CreateConstInBoundsGEP1_64(ptr_, bufs_, static_cast<uint64_t>(index));
      return B.CreateLoad(ptr_, slot);
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
  }

  /// The address of a value that lives in memory.
  LV* address(const ir::Value* v) {
    auto it = addr_.find(v);
    if (it != addr_.end()) return it->second;
    LV* a = nullptr;
    if (v->def && v->def->kind == ir::NodeKind::kLiteral) {
      const auto& d = v->def->data;
      auto* arr = llvm::ConstantDataArray::getRaw(llvm::StringRef(reinterpret_cast<const char*>(d.data()), d.size()),
                                                  d.size(), i8_);
      auto* gv = new llvm::GlobalVariable(M, arr->getType(), true, llvm::GlobalValue::PrivateLinkage, arr, "literal");
      gv->setAlignment(llvm::Align(64));
      a = gv;
    } else if (v->offset >= 0) {
      a = B.CreateConstInBoundsGEP1_64(i8_, arena_, static_cast<uint64_t>(v->offset));
    } else if (auto s = plan_.scratch.find(v); s != plan_.scratch.end()) {
      a = B.CreateConstInBoundsGEP1_64(i8_, arena_, static_cast<uint64_t>(s->second));
    } else {
      throw Error("codegen", "value of type " + v->type.str() + " has no memory (internal error in the plan)");
    }
    // Addresses are computed in the entry block so every later use is dominated.
    return addr_[v] = a;
  }

  // ---- guards, callbacks, copies ---------------------------------------------
  void emit_guard(const ir::Node& n, int index) {
    LV* p = B.CreateICmpNE(B.CreateLoad(i8_, address(n.inputs[0])), B.getInt8(0));
    LV* ok = n.expect ? p : B.CreateNot(p);
    auto* fail = llvm::BasicBlock::Create(C, "guard_failed", main_);
    auto* cont = llvm::BasicBlock::Create(C, "guard_held", main_);
    B.CreateCondBr(ok, cont, fail, llvm::MDBuilder(C).createLikelyBranchWeights());
    B.SetInsertPoint(fail);
    B.CreateRet(B.getInt32(static_cast<uint32_t>(index)));
    B.SetInsertPoint(cont);
  }

  void emit_callback(const ir::Node& n) {
    std::vector<LV*> inputs;
    for (const ir::Value* v : n.inputs) inputs.push_back(address(v));
    emit_call_node(plan_.callback.at(&n), inputs, address(n.result));
  }

  /// bj_rt_call_node(ctx, id, {inputs...}, out)
  void emit_call_node(int32_t id, const std::vector<LV*>& inputs, LV* out) {
    auto* fty = llvm::FunctionType::get(B.getVoidTy(), {ptr_, i32_, ptr_, ptr_}, false);
    llvm::FunctionCallee fn = M.getOrInsertFunction("bj_rt_call_node", fty);
    auto* arr = entry_alloca(llvm::ArrayType::get(ptr_, std::max<size_t>(inputs.size(), 1)));
    for (size_t i = 0; i < inputs.size(); ++i)
      B.CreateStore(inputs[i], B.CreateConstInBoundsGEP2_64(arr->getAllocatedType(), arr, 0, i));
    B.CreateCall(fn, {ctx_, B.getInt32(static_cast<uint32_t>(id)), arr, out});
  }

  /// A product (with its bias) run by one oneDNN primitive, B reordered when it is a parameter;
  /// the rest of its region as a loop over the primitive's result.
  void emit_dnnl_product(const ir::Node& n, const DnnlProduct& d) {
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

  void emit_output_copies() {
    std::unordered_map<const ir::Value*, bool> written;
    for (size_t i = 0; i < g_.outputs().size(); ++i) {
      const ir::Value* v = g_.outputs()[i];
      LV* dst = output_addr_[i];
      if (address(v) == dst && !written[v]) {
        written[v] = true;
        continue;
      }
      B.CreateMemCpy(dst, llvm::MaybeAlign(4), address(v), llvm::MaybeAlign(4), v->type.bytes());
    }
  }

  llvm::AllocaInst* entry_alloca(llvm::Type* t) {
    IRBuilder<> eb(&main_->getEntryBlock(), main_->getEntryBlock().begin());
    return eb.CreateAlloca(t);
  }

  // ---- top-level nodes --------------------------------------------------------
  /// A top-level op (a region of one) or region, as its plan says.
  void emit_planned(const ir::Node& n) {
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
    switch (nest_kind(n)) {
      case ir::RegionKind::kElementwise: return emit_elementwise(body, stores, body.front()->result->type.shape);
      case ir::RegionKind::kReduction: return exact ? emit_exact_row_sum(body, stores) : emit_reduction(body, stores);
      case ir::RegionKind::kContraction: return emit_contraction(body, stores, exact);
    }
  }

  /// The loop nest a top-level node needs: its region's kind, or for an op alone the kind of
  /// region it would anchor.
  static ir::RegionKind nest_kind(const ir::Node& n) {
    if (n.kind == ir::NodeKind::kRegion) return n.region;
    if (ir::has_trait(n.op, ir::kReduction)) return ir::RegionKind::kReduction;
    if (ir::has_trait(n.op, ir::kContraction)) return ir::RegionKind::kContraction;
    return ir::RegionKind::kElementwise;
  }

  // ---- loop functions -----------------------------------------------------------
  /// A loop function: `void name(i64 begin, i64 end, ptr bufs)` loads its
  /// `n` operand pointers and calls `name.body(begin, end, ptr noalias...)`
  /// (always inlined, so the noalias facts reach the loops and the
  /// vectorizer needs no runtime overlap checks: memory planning keeps
  /// every value a loop writes apart from what it reads). Returns the
  /// wrapper, with the builder at the start of the body function.
  struct LoopFunction {
    llvm::Function* wrapper;
    llvm::Function* body;
  };
  LoopFunction begin_loop_function(const char* name, size_t n, std::vector<LV*>& ptrs) {
    auto* wty = llvm::FunctionType::get(B.getVoidTy(), {i64_, i64_, ptr_}, false);
    auto* wrapper = llvm::Function::Create(wty, llvm::Function::InternalLinkage, name, M);
    std::vector<llvm::Type*> params{i64_, i64_};
    params.insert(params.end(), n, ptr_);
    auto* bty = llvm::FunctionType::get(B.getVoidTy(), params, false);
    auto* body = llvm::Function::Create(bty, llvm::Function::InternalLinkage, std::string(name) + ".body", M);
    attributes(*wrapper);
    wrapper->addFnAttr(llvm::Attribute::NoInline);  // main stays small: the optimizer's cost grows faster than function size
    attributes(*body);
    body->addFnAttr(llvm::Attribute::AlwaysInline);
    for (size_t i = 0; i < n; ++i) body->addParamAttr(static_cast<unsigned>(i + 2), llvm::Attribute::NoAlias);
    B.SetInsertPoint(llvm::BasicBlock::Create(C, "entry", wrapper));
    std::vector<LV*> args{wrapper->getArg(0), wrapper->getArg(1)};
    for (size_t i = 0; i < n; ++i) args.push_back(B.CreateLoad(ptr_, B.CreateConstInBoundsGEP1_64(ptr_, wrapper->getArg(2), i)));
    B.CreateCall(body, args);
    B.CreateRetVoid();
    B.SetInsertPoint(llvm::BasicBlock::Create(C, "entry", body));
    ptrs.clear();
    for (size_t i = 0; i < n; ++i) ptrs.push_back(body->getArg(static_cast<unsigned>(i + 2)));
    return {wrapper, body};
  }

  /// In main: fn(0, outer, addresses of `operands`), through the thread pool when `parallel`.
  void call_loop_function(llvm::Function* fn, const std::vector<LV*>& operands, int64_t outer, bool parallel) {
    auto* arr = entry_alloca(llvm::ArrayType::get(ptr_, std::max<size_t>(operands.size(), 1)));
    for (size_t i = 0; i < operands.size(); ++i)
      B.CreateStore(operands[i], B.CreateConstInBoundsGEP2_64(arr->getAllocatedType(), arr, 0, i));
    LV* n = B.getInt64(static_cast<uint64_t>(outer));
    if (parallel) {
      auto* pty = llvm::FunctionType::get(B.getVoidTy(), {ptr_, i64_, ptr_}, false);
      B.CreateCall(M.getOrInsertFunction("bj_rt_parallel_for", pty), {fn, n, arr});
    } else {
      B.CreateCall(fn, {B.getInt64(0), n, arr});
    }
  }

  /// A loop function over `space` (its outermost dim split by begin/end);
  /// `body(ivs, ptrs)` emits one innermost iteration. Called from main with
  /// the addresses of `operands`, in parallel when `parallel`.
  void emit_loop_function(const Space& space, const std::vector<LV*>& operands, bool parallel,
                          const std::function<void(const std::vector<LV*>& ivs, const std::vector<LV*>& ptrs)>& body) {
    auto saved = B.saveIP();
    std::vector<LV*> ptrs;
    LoopFunction lf = begin_loop_function("loop", operands.size(), ptrs);
    llvm::Function* fn = lf.body;
    std::vector<LV*> ivs;
    std::function<void(int)> nest = [&](int d) {
      if (d == space.dims.size()) return body(ivs, ptrs);
      LV* lo = d == 0 ? static_cast<LV*>(fn->getArg(0)) : B.getInt64(0);
      LV* hi = d == 0 ? static_cast<LV*>(fn->getArg(1)) : B.getInt64(static_cast<uint64_t>(space.dims[d]));
      loop(lo, hi, [&](LV* iv) {
        ivs.push_back(iv);
        nest(d + 1);
        ivs.pop_back();
      });
    };
    nest(0);
    B.CreateRetVoid();
    B.restoreIP(saved);
    call_loop_function(lf.wrapper, operands, space.dims[0], parallel);
  }

  /// Loop metadata on `latch`: LLVM unrolls that loop at most `count` times.
  void limit_unroll(llvm::Instruction* latch, int count) {
    llvm::MDNode* self = llvm::MDNode::getTemporary(C, {}).release();
    llvm::Metadata* hint = llvm::MDNode::get(C, {llvm::MDString::get(C, "llvm.loop.unroll.count"),
                                                  llvm::ConstantAsMetadata::get(B.getInt32(static_cast<uint32_t>(count)))});
    llvm::MDNode* id = llvm::MDNode::get(C, {self, hint});
    id->replaceOperandWith(0, id);
    llvm::MDNode::deleteTemporary(self);
    latch->setMetadata(llvm::LLVMContext::MD_loop, id);
  }

  /// for (iv = lo; iv < hi; ++iv) body(iv)
  void loop(LV* lo, LV* hi, const std::function<void(LV*)>& body) {
    llvm::Function* f = B.GetInsertBlock()->getParent();
    auto* pre = B.GetInsertBlock();
    auto* head = llvm::BasicBlock::Create(C, "loop", f);
    auto* exit = llvm::BasicBlock::Create(C, "loop_end", f);
    B.CreateCondBr(B.CreateICmpSLT(lo, hi), head, exit);
    B.SetInsertPoint(head);
    auto* iv = B.CreatePHI(i64_, 2);
    iv->addIncoming(lo, pre);
    body(iv);
    LV* next = B.CreateAdd(iv, B.getInt64(1), "", true, true);
    iv->addIncoming(next, B.GetInsertBlock());
    B.CreateCondBr(B.CreateICmpSLT(next, hi), head, exit);
    B.SetInsertPoint(exit);
  }

  /// Element offset sum(iv[d] * stride[d]).
  LV* offset(const std::vector<LV*>& ivs, const Shape& strides) {
    LV* off = B.getInt64(0);
    for (size_t d = 0; d < ivs.size(); ++d)
      if (strides[static_cast<int>(d)] != 0)
        off = B.CreateAdd(off, B.CreateMul(ivs[d], B.getInt64(static_cast<uint64_t>(strides[static_cast<int>(d)]))));
    return off;
  }

  LV* load_element(const Type& t, LV* base, LV* off) {
    if (t.dtype == DType::kBool)
      return B.CreateICmpNE(B.CreateLoad(i8_, B.CreateInBoundsGEP(i8_, base, off)), B.getInt8(0));
    return B.CreateLoad(f32_, B.CreateInBoundsGEP(f32_, base, off));
  }
  void store_element(const Type& t, LV* v, LV* base, LV* off) {
    if (t.dtype == DType::kBool)
      B.CreateStore(B.CreateZExt(v, i8_), B.CreateInBoundsGEP(i8_, base, off));
    else
      B.CreateStore(v, B.CreateInBoundsGEP(f32_, base, off));
  }

  /// The memory operands of a loop nest: addresses and element strides over its iteration space.
  struct Operands {
    std::vector<LV*> addrs;
    std::vector<Shape> strides;
  };
  void add_operand(Operands& o, const ir::Value* v, const Shape& strides) {
    o.addrs.push_back(address(v));
    o.strides.push_back(strides);
  }

  /// Loads the external values (operands [0, ext.size())) at the current iteration.
  void load_externals(const std::vector<const ir::Value*>& ext, const std::vector<LV*>& ptrs,
                      const std::vector<LV*>& ivs, const Space& space, std::unordered_map<const ir::Value*, LV*>& val) {
    for (size_t i = 0; i < ext.size(); ++i) val[ext[i]] = load_element(ext[i]->type, ptrs[i], offset(ivs, space.strides[i]));
  }
  /// Stores `stores` (operands from `first` on) at the current iteration.
  void store_values(const std::vector<const ir::Value*>& stores, size_t first, const std::vector<LV*>& ptrs,
                    const std::vector<LV*>& ivs, const Space& space, const std::unordered_map<const ir::Value*, LV*>& val) {
    for (size_t j = 0; j < stores.size(); ++j)
      store_element(stores[j]->type, val.at(stores[j]), ptrs[first + j], offset(ivs, space.strides[first + j]));
  }

  // ---- elementwise --------------------------------------------------------------
  /// External operands of `body` (values computed elsewhere), in first-use order.
  static std::vector<const ir::Value*> externals(const std::vector<const ir::Node*>& body) {
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

  /// One loop nest over `shape` computing `body`'s scalars per element and storing `stores`.
  void emit_elementwise(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores,
                        const Shape& shape) {
    std::vector<const ir::Value*> ext = externals(body);
    Operands ops;
    for (const ir::Value* v : ext) add_operand(ops, v, broadcast_strides(v->type.shape, shape));
    for (const ir::Value* v : stores) add_operand(ops, v, contiguous_strides(shape));
    Space space = collapse(shape, ops.strides);
    bool parallel = shape.numel() >= 2 * rt::kParallelGrain && space.dims[0] > 1;
    emit_loop_function(space, ops.addrs, parallel, [&](const std::vector<LV*>& ivs, const std::vector<LV*>& ptrs) {
      std::unordered_map<const ir::Value*, LV*> val;
      load_externals(ext, ptrs, ivs, space, val);
      // No contraction across ops: a multiply feeding an add rounds as eager's two kernels do, so
      // overflow, infinities and NaN come out as eager's (`a*b + a` with a*b = -inf stays -inf).
      for (const ir::Node* n : body) val[n->result] = scalar(*n, val);
      store_values(stores, ext.size(), ptrs, ivs, space, val);
    });
  }

  // ---- reductions ---------------------------------------------------------------
  /// The elementwise members (producers) and the final reduction, as one accumulation.
  void emit_reduction(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores) {
    const ir::Node& red = *body.back();
    const Shape& in = red.inputs[0]->type.shape;
    std::vector<const ir::Node*> producers(body.begin(), body.end() - 1);
    std::vector<const ir::Value*> ext = externals(producers.empty() ? std::vector<const ir::Node*>{&red} : producers);
    if (!producers.empty()) {  // the reduction's own operand is inside; anything else it reads is external
      for (const ir::Value* v : externals(body))
        if (std::find(ext.begin(), ext.end(), v) == ext.end()) ext.push_back(v);
    }
    // Output strides over the input space: 0 on reduced dims.
    Shape kept = in;
    for (int64_t ax : red.attrs.dims) kept[static_cast<int>(ax)] = 1;
    Shape out_st = contiguous_strides(kept);
    for (int64_t ax : red.attrs.dims) out_st[static_cast<int>(ax)] = 0;
    std::vector<const ir::Value*> elem_stores;  // yielded producers, stored per element
    for (const ir::Value* v : stores)
      if (v != red.result) elem_stores.push_back(v);
    Operands ops;
    for (const ir::Value* v : ext) add_operand(ops, v, broadcast_strides(v->type.shape, in));
    for (const ir::Value* v : elem_stores) add_operand(ops, v, contiguous_strides(in));
    add_operand(ops, red.result, out_st);
    Space space = collapse(in, ops.strides);
    const size_t out_k = ops.addrs.size() - 1;
    const int last = space.dims.size() - 1;
    const bool inner_reduced = space.strides[out_k][last] == 0 && space.dims[last] > 1;
    const int64_t out_count = red.result->type.numel();
    // Hand-built nest: the innermost reduced dim keeps a register accumulator.
    auto saved = B.saveIP();
    std::vector<LV*> ptrs;
    LoopFunction lf = begin_loop_function("reduce", ops.addrs.size(), ptrs);
    llvm::Function* fn = lf.body;
    LV* out = ptrs[out_k];
    const ir::Combine how = *ir::reduction(red.op);
    LV* start = identity(how, in.numel() == 0);
    loop(B.getInt64(0), B.getInt64(static_cast<uint64_t>(out_count)),
         [&](LV* i) { B.CreateStore(start, B.CreateInBoundsGEP(f32_, out, i)); });
    std::vector<LV*> ivs;
    auto element = [&](const std::vector<LV*>& at) {  // the reduced operand's value at `at`, storing yields
      std::unordered_map<const ir::Value*, LV*> val;
      load_externals(ext, ptrs, at, space, val);
      for (const ir::Node* n : producers) val[n->result] = scalar(*n, val);
      store_values(elem_stores, ext.size(), ptrs, at, space, val);
      return val.at(red.inputs[0]);
    };
    std::function<void(int)> nest = [&](int d) {
      LV* hi = B.getInt64(static_cast<uint64_t>(space.dims[d]));
      if (d == last && inner_reduced) {
        auto* pre = B.GetInsertBlock();
        auto* head = llvm::BasicBlock::Create(C, "acc", fn);
        auto* exit = llvm::BasicBlock::Create(C, "acc_end", fn);
        B.CreateBr(head);
        B.SetInsertPoint(head);
        auto* iv = B.CreatePHI(i64_, 2);
        auto* acc = B.CreatePHI(f32_, 2);
        iv->addIncoming(B.getInt64(0), pre);
        acc->addIncoming(identity(how, false), pre);
        ivs.push_back(iv);
        LV* next_acc = combine(how, acc, element(ivs));
        ivs.pop_back();
        LV* next = B.CreateAdd(iv, B.getInt64(1), "", true, true);
        iv->addIncoming(next, B.GetInsertBlock());
        acc->addIncoming(next_acc, B.GetInsertBlock());
        B.CreateCondBr(B.CreateICmpSLT(next, hi), head, exit);
        B.SetInsertPoint(exit);
        ivs.push_back(B.getInt64(0));
        LV* p = B.CreateInBoundsGEP(f32_, out, offset(ivs, space.strides[out_k]));
        ivs.pop_back();
        B.CreateStore(combine(how, B.CreateLoad(f32_, p), next_acc), p);
        return;
      }
      loop(B.getInt64(0), hi, [&](LV* iv) {
        ivs.push_back(iv);
        if (d == last) {
          LV* p = B.CreateInBoundsGEP(f32_, out, offset(ivs, space.strides[out_k]));
          B.CreateStore(combine(how, B.CreateLoad(f32_, p), element(ivs)), p);
        } else {
          nest(d + 1);
        }
        ivs.pop_back();
      });
    };
    nest(0);
    B.CreateRetVoid();
    B.restoreIP(saved);
    call_loop_function(lf.wrapper, ops.addrs, 1, false);  // whole reductions stay on one thread: sums stay in one order
  }

  /// Where reduction `c` starts (ir::identity), or, over an empty axis, its result.
  LV* identity(ir::Combine c, bool empty) {
    if (empty) return llvm::ConstantFP::get(f32_, ir::empty_reduction<float>(c));
    return llvm::ConstantFP::get(f32_, ir::identity<float>(c));
  }

  /// ir::combine(c, acc, v). Sums and products outside guard cones may be reassociated (so the
  /// loop vectorizes); max and min propagate NaN as ir::maximum and ir::minimum do.
  LV* combine(ir::Combine c, LV* acc, LV* v) {
    llvm::IRBuilderBase::FastMathFlagGuard guard(B);
    llvm::FastMathFlags fmf;
    fmf.setAllowReassoc();
    switch (c) {
      case ir::Combine::kAdd: B.setFastMathFlags(fmf); return B.CreateFAdd(acc, v);
      case ir::Combine::kMul: B.setFastMathFlags(fmf); return B.CreateFMul(acc, v);
      case ir::Combine::kMax: return maximum(v, acc, true);
      case ir::Combine::kMin: return maximum(v, acc, false);
    }
    throw Error("codegen", "unknown reduction");
  }

  /// ir::maximum(a, b) (or ir::minimum when !max): a if a is NaN or beyond b, else b.
  LV* maximum(LV* a, LV* b, bool max) {
    LV* beyond = max ? B.CreateFCmpOGT(a, b) : B.CreateFCmpOLT(a, b);
    return B.CreateSelect(B.CreateOr(B.CreateFCmpUNO(a, a), beyond), a, b);
  }

  /// The canonical sum (rt::kSumLanes, runtime/kernels.h) of n terms: 16 lanes from -0, lane l
  /// adding the terms k = l (mod 16) in order, then folded in halves. `chunk(k0)` gives the 16
  /// terms k0..k0+15 as a vector, `term(k)` one term (for the tail, which fills lanes 0..n%16;
  /// the other lanes add -0, which changes nothing). Eager mode's kernels sum in this order and
  /// no fast-math flag lets LLVM change it, so the result is theirs bit for bit.
  LV* canonical_sum(int64_t n, const std::function<LV*(LV* k0)>& chunk, const std::function<LV*(LV* k)>& term) {
    llvm::IRBuilderBase::FastMathFlagGuard guard(B);
    B.setFastMathFlags(llvm::FastMathFlags());
    constexpr int kLanes = rt::kSumLanes;
    auto* vt = llvm::FixedVectorType::get(f32_, kLanes);
    LV* acc = llvm::ConstantFP::get(vt, -0.0);
    const int64_t chunks = n / kLanes;
    if (chunks > 0) {
      auto* pre = B.GetInsertBlock();
      auto* head = llvm::BasicBlock::Create(C, "csum", pre->getParent());
      auto* exit = llvm::BasicBlock::Create(C, "csum_end", pre->getParent());
      B.CreateBr(head);
      B.SetInsertPoint(head);
      auto* iv = B.CreatePHI(i64_, 2);
      auto* phi = B.CreatePHI(vt, 2);
      iv->addIncoming(B.getInt64(0), pre);
      phi->addIncoming(acc, pre);
      acc = B.CreateFAdd(phi, chunk(B.CreateMul(iv, B.getInt64(kLanes))));
      LV* next = B.CreateAdd(iv, B.getInt64(1), "", true, true);
      iv->addIncoming(next, B.GetInsertBlock());
      phi->addIncoming(acc, B.GetInsertBlock());
      B.CreateCondBr(B.CreateICmpSLT(next, B.getInt64(static_cast<uint64_t>(chunks))), head, exit);
      B.SetInsertPoint(exit);
    }
    if (const int64_t tail = n % kLanes) {
      LV* t = llvm::ConstantFP::get(vt, -0.0);
      for (int64_t l = 0; l < tail; ++l)
        t = B.CreateInsertElement(t, term(B.getInt64(static_cast<uint64_t>(chunks * kLanes + l))), static_cast<uint64_t>(l));
      acc = B.CreateFAdd(acc, t);
    }
    for (int w = kLanes / 2; w >= 1; w /= 2) {
      llvm::SmallVector<int, 16> lo, hi;
      for (int l = 0; l < w; ++l) {
        lo.push_back(l);
        hi.push_back(l + w);
      }
      acc = B.CreateFAdd(B.CreateShuffleVector(acc, lo), B.CreateShuffleVector(acc, hi));
    }
    return B.CreateExtractElement(acc, uint64_t{0});
  }

  /// canonical_sum with scalar terms only (assembled into vectors a chunk at a time).
  LV* canonical_sum(int64_t n, const std::function<LV*(LV* k)>& term) {
    auto chunk = [&](LV* k0) {
      LV* v = llvm::PoisonValue::get(llvm::FixedVectorType::get(f32_, rt::kSumLanes));
      for (int l = 0; l < rt::kSumLanes; ++l) v = B.CreateInsertElement(v, term(B.CreateAdd(k0, B.getInt64(l))), static_cast<uint64_t>(l));
      return v;
    };
    return canonical_sum(n, chunk, term);
  }

  /// canonical_sum of a[k] * b[k] over two contiguous rows, loading 16 floats at a time.
  LV* canonical_dot(int64_t n, LV* a, LV* b) {
    auto* vt = llvm::FixedVectorType::get(f32_, rt::kSumLanes);
    auto at = [&](LV* base, LV* k, llvm::Type* t) { return B.CreateAlignedLoad(t, B.CreateInBoundsGEP(f32_, base, k), llvm::Align(4)); };
    return canonical_sum(
        n, [&](LV* k0) { return B.CreateFMul(at(a, k0, vt), at(b, k0, vt)); },
        [&](LV* k) { return B.CreateFMul(at(a, k, f32_), at(b, k, f32_)); });
  }

  /// A sum over trailing axes (at most rt::kSumBlock elements per row) with its producers, in a
  /// guard's input cone: each row summed in the canonical order, as eager mode's kernel does.
  void emit_exact_row_sum(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores) {
    const ir::Node& red = *body.back();
    const Shape& in = red.inputs[0]->type.shape;
    const int rank = in.size(), first = rank - static_cast<int>(red.attrs.dims.size());
    std::vector<const ir::Node*> producers(body.begin(), body.end() - 1);
    std::vector<const ir::Value*> ext = externals(body);
    std::vector<const ir::Value*> elem_stores;
    for (const ir::Value* v : stores)
      if (v != red.result) elem_stores.push_back(v);
    Operands ops;
    for (const ir::Value* v : ext) add_operand(ops, v, broadcast_strides(v->type.shape, in));
    for (const ir::Value* v : elem_stores) add_operand(ops, v, contiguous_strides(in));
    add_operand(ops, red.result, {});
    const Space space{in, ops.strides};
    int64_t outer = 1, R = 1;
    for (int d = 0; d < rank; ++d) (d < first ? outer : R) *= in[d];
    auto saved = B.saveIP();
    std::vector<LV*> ptrs;
    LoopFunction lf = begin_loop_function("exact_sum", ops.addrs.size(), ptrs);
    loop(B.getInt64(0), B.getInt64(static_cast<uint64_t>(outer)), [&](LV* o) {
      std::vector<LV*> ivs(static_cast<size_t>(rank));
      auto split = [&](LV* flat, int lo, int hi) {  // flat index over dims [lo, hi) -> one index per dim
        for (int d = hi - 1; d >= lo; --d) {
          ivs[static_cast<size_t>(d)] = B.CreateURem(flat, B.getInt64(static_cast<uint64_t>(in[d])));
          flat = B.CreateUDiv(flat, B.getInt64(static_cast<uint64_t>(in[d])));
        }
      };
      split(o, 0, first);
      LV* sum = canonical_sum(R, [&](LV* r) {
        split(r, first, rank);
        std::unordered_map<const ir::Value*, LV*> val;
        load_externals(ext, ptrs, ivs, space, val);
        for (const ir::Node* n : producers) val[n->result] = scalar(*n, val);
        store_values(elem_stores, ext.size(), ptrs, ivs, space, val);
        return val.at(red.inputs[0]);
      });
      B.CreateStore(sum, B.CreateInBoundsGEP(f32_, ptrs.back(), o));
    });
    B.CreateRetVoid();
    B.restoreIP(saved);
    call_loop_function(lf.wrapper, ops.addrs, 1, false);
  }

  // ---- contractions ---------------------------------------------------------------
  /// C[m,n] = A·B: its sizes and the element strides of A(i,k) and B(k,j) as stored.
  struct ProductShape {
    int64_t m, n, k, a_i, a_k, b_k, b_j;
  };
  static ProductShape product_shape(const ir::Node& mm) {
    const Shape &cs = mm.result->type.shape, &as = mm.inputs[0]->type.shape;
    const bool ta = mm.attrs.transpose_a, tb = mm.attrs.transpose_b;
    const int64_t m = cs[0], n = cs[1], k = ta ? as[0] : as[1];
    return {m, n, k, ta ? 1 : k, ta ? m : 1, tb ? 1 : n, tb ? k : 1};
  }

  /// `exact`: in a guard's input cone, each element summed as eager mode's small-product kernel
  /// sums it (the canonical order for dot products, increasing k otherwise; no fused multiply-adds).
  void emit_contraction(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores,
                        bool exact = false) {
    const ir::Node& mm = *body.front();
    std::vector<const ir::Node*> epilogue(body.begin() + 1, body.end());
    const Shape& cs = mm.result->type.shape;
    const ProductShape ps = product_shape(mm);
    const int64_t K_ = ps.k, a_i = ps.a_i, a_k = ps.a_k, b_k = ps.b_k, b_j = ps.b_j;
    std::vector<const ir::Value*> ext = externals(epilogue);
    std::erase(ext, mm.result);
    Operands ops;
    add_operand(ops, mm.inputs[0], {});
    add_operand(ops, mm.inputs[1], {});
    for (const ir::Value* v : ext) add_operand(ops, v, broadcast_strides(v->type.shape, cs));
    for (const ir::Value* v : stores) add_operand(ops, v, contiguous_strides(cs));
    Space space{cs, ops.strides};
    emit_loop_function(space, ops.addrs, false, [&](const std::vector<LV*>& ivs, const std::vector<LV*>& ptrs) {
      LV *i = ivs[0], *j = ivs[1];
      LV* a_row = B.CreateInBoundsGEP(f32_, ptrs[0], B.CreateMul(i, B.getInt64(static_cast<uint64_t>(a_i))));
      LV* b_col = B.CreateInBoundsGEP(f32_, ptrs[1], B.CreateMul(j, B.getInt64(static_cast<uint64_t>(b_j))));
      auto a_at = [&](LV* k) {
        return B.CreateLoad(f32_, B.CreateInBoundsGEP(f32_, a_row, B.CreateMul(k, B.getInt64(static_cast<uint64_t>(a_k)))));
      };
      auto b_at = [&](LV* k) {
        return B.CreateLoad(f32_, B.CreateInBoundsGEP(f32_, b_col, B.CreateMul(k, B.getInt64(static_cast<uint64_t>(b_k)))));
      };
      // acc = sum_k A(i,k) * B(k,j): as eager sums it when exact, else reassociable so it vectorizes over k.
      LV* sum = llvm::ConstantFP::get(f32_, exact && K_ == 0 ? 0.0 : -0.0);
      if (exact && K_ > 0 && mm.attrs.transpose_b && a_k == 1 && b_k == 1) {
        sum = canonical_dot(K_, a_row, b_col);
      } else if (exact && K_ > 0 && mm.attrs.transpose_b) {
        sum = canonical_sum(K_, [&](LV* k) { return B.CreateFMul(a_at(k), b_at(k)); });
      } else if (K_ > 0) {  // exact: in increasing k, one rounding per multiply and per add
        auto* pre = B.GetInsertBlock();
        llvm::Function* f = pre->getParent();
        auto* head = llvm::BasicBlock::Create(C, "dot", f);
        auto* exit = llvm::BasicBlock::Create(C, "dot_end", f);
        B.CreateBr(head);
        B.SetInsertPoint(head);
        auto* k = B.CreatePHI(i64_, 2);
        auto* acc = B.CreatePHI(f32_, 2);
        k->addIncoming(B.getInt64(0), pre);
        acc->addIncoming(sum, pre);
        LV* a = a_at(k);
        LV* b = b_at(k);
        llvm::IRBuilderBase::FastMathFlagGuard guard(B);
        llvm::FastMathFlags fmf;
        if (!exact) {
          fmf.setAllowReassoc();
          fmf.setAllowContract();
        }
        B.setFastMathFlags(fmf);
        LV* next_acc = B.CreateFAdd(acc, B.CreateFMul(a, b));
        LV* next = B.CreateAdd(k, B.getInt64(1), "", true, true);
        k->addIncoming(next, B.GetInsertBlock());
        acc->addIncoming(next_acc, B.GetInsertBlock());
        B.CreateCondBr(B.CreateICmpSLT(next, B.getInt64(static_cast<uint64_t>(K_))), head, exit);
        B.SetInsertPoint(exit);
        sum = next_acc;
      }
      std::unordered_map<const ir::Value*, LV*> val{{mm.result, sum}};
      for (size_t e = 0; e < ext.size(); ++e)  // operands 0 and 1 are the matrices
        val[ext[e]] = load_element(ext[e]->type, ptrs[2 + e], offset(ivs, space.strides[2 + e]));
      for (const ir::Node* n : epilogue) val[n->result] = scalar(*n, val);
      store_values(stores, 2 + ext.size(), ptrs, ivs, space, val);
    });
  }

  /// C = A * B with B packed as [K, N16] (N padded to a multiple of 16): a register-blocked
  /// kernel. Each tile of MR rows x NR 16-float vectors keeps its MR*NR
  /// accumulators in registers over the k loop (one broadcast of A and one
  /// fused multiply-add per accumulator and k), then stores them to C; the
  /// epilogue then runs over the tile's rows, reading their first N columns
  /// (vectorized by LLVM).
  void emit_packed_contraction(const ir::Node& mm, const std::vector<const ir::Node*>& epilogue,
                               const std::vector<const ir::Value*>& stores, const NodePlan& np) {
    const Shape& cs = mm.result->type.shape;
    const ProductShape ps = product_shape(mm);
    const int64_t M_ = ps.m, N_ = ps.n, K_ = ps.k, a_i = ps.a_i, a_k = ps.a_k;
    LV* packed = packed_[static_cast<size_t>(np.packing)];
    std::vector<const ir::Value*> ext = externals(epilogue);
    std::erase(ext, mm.result);
    // The product's rows: the result itself, or padded rows in scratch when N is not a multiple of 16.
    const int64_t NP = (N_ + 15) / 16 * 16;
    LV* product = np.padded_offset < 0 ? address(mm.result)
                                       : B.CreateConstInBoundsGEP1_64(i8_, arena_, static_cast<uint64_t>(np.padded_offset));
    Operands ops;
    add_operand(ops, mm.inputs[0], {});
    for (LV* p : {packed, product}) {
      ops.addrs.push_back(p);
      ops.strides.push_back({});
    }
    for (const ir::Value* v : ext) add_operand(ops, v, broadcast_strides(v->type.shape, cs));
    for (const ir::Value* v : stores) add_operand(ops, v, contiguous_strides(cs));
    const bool direct = epilogue.empty() && stores.size() == 1 && stores[0] == mm.result && NP == N_;
    // Tile: NR vectors (a divisor of N/16, at most 8) by MR rows (a divisor of M, at most 24/NR accumulators).
    const int64_t V = NP / 16;
    int64_t NR = std::min<int64_t>(V, 8), MR = 1;
    while (V % NR) --NR;
    for (int64_t r = std::min<int64_t>(4, 24 / NR); r > 1; --r)
      if (M_ % r == 0) {
        MR = r;
        break;
      }
    // Few accumulators would wait on each other's multiply-add latency: with U (a divisor of K) sets
    // of partial sums over interleaved k, about 12 independent chains are in flight.
    int64_t U = 1;
    for (int64_t u = std::min<int64_t>(8, (12 + MR * NR - 1) / (MR * NR)); u > 1; --u)
      if (K_ % u == 0) {
        U = u;
        break;
      }
    auto i64c = [&](int64_t v) { return B.getInt64(static_cast<uint64_t>(v)); };
    auto* vty = llvm::FixedVectorType::get(f32_, 16);
    llvm::Function* fma = llvm::Intrinsic::getDeclaration(&M, llvm::Intrinsic::fmuladd, {vty});
    emit_loop_function(Space{{M_ / MR}, {}}, ops.addrs, false, [&](const std::vector<LV*>& ivs, const std::vector<LV*>& ptrs) {
      LV* i0 = B.CreateMul(ivs[0], i64c(MR));
      loop(i64c(0), i64c(V / NR), [&](LV* jt) {
        LV* col = B.CreateMul(jt, i64c(NR * 16));  // first column of the tile
        // k loop with the accumulators as phis
        auto* pre = B.GetInsertBlock();
        llvm::Function* f = pre->getParent();
        auto* head = llvm::BasicBlock::Create(C, "kloop", f);
        auto* exit = llvm::BasicBlock::Create(C, "kloop_end", f);
        B.CreateBr(head);
        B.SetInsertPoint(head);
        auto* k = B.CreatePHI(i64_, 2);  // steps of U
        k->addIncoming(i64c(0), pre);
        const int64_t T = MR * NR;  // accumulators per k
        std::vector<llvm::PHINode*> acc;
        for (int64_t t = 0; t < U * T; ++t) {
          acc.push_back(B.CreatePHI(vty, 2));
          acc.back()->addIncoming(llvm::ConstantAggregateZero::get(vty), pre);
        }
        std::vector<LV*> next(acc.begin(), acc.end());
        for (int64_t u = 0; u < U; ++u) {
          LV* kk = B.CreateAdd(k, i64c(u));
          LV* brow = B.CreateInBoundsGEP(f32_, ptrs[1], B.CreateAdd(B.CreateMul(kk, i64c(NP)), col));
          std::vector<LV*> b;
          for (int64_t c = 0; c < NR; ++c)
            b.push_back(B.CreateAlignedLoad(vty, B.CreateConstInBoundsGEP1_64(f32_, brow, static_cast<uint64_t>(c * 16)),
                                            llvm::Align(4)));
          for (int64_t r = 0; r < MR; ++r) {
            LV* ai = B.CreateAdd(B.CreateMul(B.CreateAdd(i0, i64c(r)), i64c(a_i)), B.CreateMul(kk, i64c(a_k)));
            LV* a = B.CreateVectorSplat(16, B.CreateLoad(f32_, B.CreateInBoundsGEP(f32_, ptrs[0], ai)));
            for (int64_t c = 0; c < NR; ++c) {
              LV*& sum = next[u * T + r * NR + c];
              sum = B.CreateCall(fma, {a, b[c], sum});
            }
          }
        }
        LV* k1 = B.CreateAdd(k, i64c(U), "", true, true);
        k->addIncoming(k1, B.GetInsertBlock());
        for (int64_t t = 0; t < U * T; ++t) acc[t]->addIncoming(next[t], B.GetInsertBlock());
        // The body is already U*MR*NR multiply-adds: unrolled by 2 at most.
        limit_unroll(B.CreateCondBr(B.CreateICmpSLT(k1, i64c(K_)), head, exit), 2);
        B.SetInsertPoint(exit);
        for (int64_t t = 0; t < T; ++t)  // the U partial sums of each accumulator
          for (int64_t u = 1; u < U; ++u) next[t] = B.CreateFAdd(next[t], next[u * T + t]);
        for (int64_t r = 0; r < MR; ++r) {
          LV* row = B.CreateInBoundsGEP(f32_, ptrs[2], B.CreateAdd(B.CreateMul(B.CreateAdd(i0, i64c(r)), i64c(NP)), col));
          for (int64_t c = 0; c < NR; ++c)
            B.CreateAlignedStore(next[r * NR + c], B.CreateConstInBoundsGEP1_64(f32_, row, static_cast<uint64_t>(c * 16)),
                                 llvm::Align(4));
        }
      });
      if (direct) return;
      loop(i64c(0), i64c(MR), [&](LV* r) {
        LV* i = B.CreateAdd(i0, r);
        LV* row = B.CreateInBoundsGEP(f32_, ptrs[2], B.CreateMul(i, i64c(NP)));
        loop(i64c(0), i64c(N_), [&](LV* j) {
          std::vector<LV*> at{i, j};
          std::unordered_map<const ir::Value*, LV*> val{{mm.result, B.CreateLoad(f32_, B.CreateInBoundsGEP(f32_, row, j))}};
          for (size_t e = 0; e < ext.size(); ++e)
            val[ext[e]] = load_element(ext[e]->type, ptrs[3 + e], offset(at, ops.strides[3 + e]));
          for (const ir::Node* n : epilogue) val[n->result] = scalar(*n, val);
          for (size_t s = 0; s < stores.size(); ++s)
            store_element(stores[s]->type, val.at(stores[s]), ptrs[3 + ext.size() + s], offset(at, ops.strides[3 + ext.size() + s]));
        });
      });
    });
  }

  // ---- scalar semantics of elementwise ops ------------------------------------------
  LV* scalar(const ir::Node& n, const std::unordered_map<const ir::Value*, LV*>& val) {
    auto in = [&](int i) { return val.at(n.inputs[static_cast<size_t>(i)]); };
    auto fp = [&](double v) { return llvm::ConstantFP::get(f32_, v); };
    using K = ir::OpKind;
    switch (n.op) {
      case K::Neg: return B.CreateFNeg(in(0));
      case K::Abs: return B.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, in(0));
      case K::Relu: return B.CreateSelect(B.CreateFCmpOLT(in(0), fp(0)), fp(0), in(0));
      case K::Exp: return math::exp(B, in(0));
      case K::Log: return math::log(B, in(0));
      case K::Tanh: return math::tanh(B, in(0));
      case K::Sigmoid: return math::sigmoid(B, in(0));
      case K::Sqrt: return B.CreateUnaryIntrinsic(llvm::Intrinsic::sqrt, in(0));
      case K::Pow: return math::pow(B, in(0), n.attrs.scalar);
      case K::Cast: {
        DType from = n.inputs[0]->type.dtype, to = n.attrs.dtype;
        if (from == to) return in(0);
        if (to == DType::kBool) return B.CreateFCmpUNE(in(0), fp(0));
        return B.CreateUIToFP(in(0), f32_);
      }
      case K::Add: return B.CreateFAdd(in(0), in(1));
      case K::Sub: return B.CreateFSub(in(0), in(1));
      case K::Mul: return B.CreateFMul(in(0), in(1));
      case K::Div: return B.CreateFDiv(in(0), in(1));
      case K::Maximum: return maximum(in(0), in(1), true);
      case K::Minimum: return maximum(in(0), in(1), false);
      case K::Gt: case K::Lt: case K::Ge: case K::Le: case K::Eq:
        return compare(*ir::comparison(n.op), in(0), in(1), n.inputs[0]->type.dtype == DType::kBool);
      case K::Where: return B.CreateSelect(in(0), in(1), in(2));
      case K::Sum: case K::Prod: case K::Max: case K::Min: case K::Matmul: case K::Permute: case K::Reshape:
      case K::Expand: case K::Concat: case K::Slice:
        break;  // not elementwise: the plan never inlines them here
    }
    throw Error("codegen", std::string(ir::op_name(n.op)) + " is not an elementwise op (internal error in the plan)");
  }

  /// ir::holds(c, a, b): ordered float predicates (false with NaN), unsigned ones for bools.
  LV* compare(ir::Cmp c, LV* a, LV* b, bool boolean) {
    using P = llvm::CmpInst::Predicate;
    auto pick = [&](P f, P i) { return boolean ? B.CreateICmp(i, a, b) : B.CreateFCmp(f, a, b); };
    switch (c) {
      case ir::Cmp::kGt: return pick(P::FCMP_OGT, P::ICMP_UGT);
      case ir::Cmp::kLt: return pick(P::FCMP_OLT, P::ICMP_ULT);
      case ir::Cmp::kGe: return pick(P::FCMP_OGE, P::ICMP_UGE);
      case ir::Cmp::kLe: return pick(P::FCMP_OLE, P::ICMP_ULE);
      case ir::Cmp::kEq: return pick(P::FCMP_OEQ, P::ICMP_EQ);
    }
    throw Error("codegen", "unknown comparison");
  }

  const ir::Graph& g_;
  const Plan& plan_;
  llvm::LLVMContext& C;
  llvm::Module& M;
  IRBuilder<> B;
  llvm::Type *f32_, *i8_, *i32_, *i64_;
  llvm::PointerType* ptr_;
  llvm::Function* main_ = nullptr;
  LV *bufs_ = nullptr, *ctx_ = nullptr, *arena_ = nullptr;
  std::unordered_map<const ir::Value*, LV*> addr_;
  std::vector<LV*> output_addr_;
  std::vector<LV*> packed_;  // packed weights, one per plan_.packings entry
};

}  // namespace


LoweredCode lower(const ir::Graph& g, const Plan& plan, bool want_ir, bool want_asm) {
  llvm::LLVMContext ctx;
  auto m = std::make_unique<llvm::Module>("bj_" + g.name(), ctx);
  prepare_module(*m);
  Lowerer(g, plan, ctx, *m).run();
  std::string err;
  llvm::raw_string_ostream es(err);
  if (llvm::verifyModule(*m, &es)) throw Error("codegen", "generated LLVM IR for " + g.name() + " is invalid: " + es.str());
  LoweredCode out;
  std::lock_guard lock(target_mutex());
  optimize_module(*m);
  if (want_ir) {
    llvm::raw_string_ostream os(out.llvm_ir);
    m->print(os, nullptr);
  }
  if (want_asm) out.assembly = emit(*m, /*assembly=*/true);
  out.object = emit(*m, /*assembly=*/false);
  return out;
}

}  // namespace bj::codegen
