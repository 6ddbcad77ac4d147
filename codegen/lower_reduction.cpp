// Reduction regions (and reductions alone): the producers' expression
// accumulated into the output, the innermost reduced dimension in a register;
// sums may be reassociated (so they vectorize) except in a guard's input cone,
// where each row is summed in the canonical order (emit_exact_row_sum).
#include "codegen/lowerer.h"
#include "runtime/kernels.h"

namespace bj::codegen {

void Lowerer::emit_reduction(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores) {
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
  auto saved = b_.saveIP();
  std::vector<LV*> ptrs;
  LoopFunction lf = begin_loop_function("reduce", ops.addrs.size(), ptrs);
  LV* out = ptrs[out_k];
  const ir::Combine how = *ir::reduction(red.op);
  LV* start = identity(how, in.numel() == 0);
  // Batched (ir/batch.h): dim 0, which is not reduced, takes the call's batch size.
  const bool rows_vary = dynamic() && red.inputs[0]->batch;
  loop(b_.getInt64(0), extent(out_count, rows_vary),
       [&](LV* i) { b_.CreateStore(start, b_.CreateInBoundsGEP(f32_, out, i)); });
  std::vector<LV*> ivs;
  auto element = [&](const std::vector<LV*>& at) {  // the reduced operand's value at `at`, storing yields
    Scalars val;
    load_externals(ext, ptrs, at, space, val);
    for (const ir::Node* n : producers) val[n->result] = scalar(*n, val);
    store_values(elem_stores, ext.size(), ptrs, at, space, val);
    return val.at(red.inputs[0]);
  };
  std::function<void(int)> nest = [&](int d) {
    LV* hi = extent(space.dims[d], rows_vary && d == 0);
    if (d == last && inner_reduced) {
      LV* total = accumulate(space.dims[d], 1, {identity(how, false)}, [&](LV* iv, const Accumulators& acc) {
        ivs.push_back(iv);
        LV* next = combine(how, acc[0], element(ivs));
        ivs.pop_back();
        return Accumulators{next};
      })[0];
      ivs.push_back(b_.getInt64(0));
      LV* p = b_.CreateInBoundsGEP(f32_, out, offset(ivs, space.strides[out_k]));
      ivs.pop_back();
      b_.CreateStore(combine(how, b_.CreateLoad(f32_, p), total), p);
      return;
    }
    loop(b_.getInt64(0), hi, [&](LV* iv) {
      ivs.push_back(iv);
      if (d == last) {
        LV* p = b_.CreateInBoundsGEP(f32_, out, offset(ivs, space.strides[out_k]));
        b_.CreateStore(combine(how, b_.CreateLoad(f32_, p), element(ivs)), p);
      } else {
        nest(d + 1);
      }
      ivs.pop_back();
    });
  };
  nest(0);
  b_.CreateRetVoid();
  b_.restoreIP(saved);
  call_loop_function(lf.wrapper, ops.addrs, 1, false);  // whole reductions stay on one thread: sums stay in one order
}

void Lowerer::emit_exact_row_sum(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores) {
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
  auto saved = b_.saveIP();
  std::vector<LV*> ptrs;
  LoopFunction lf = begin_loop_function("exact_sum", ops.addrs.size(), ptrs);
  loop(b_.getInt64(0), b_.getInt64(static_cast<uint64_t>(outer)), [&](LV* o) {
    std::vector<LV*> ivs(static_cast<size_t>(rank));
    auto split = [&](LV* flat, int lo, int hi) {  // flat index over dims [lo, hi) -> one index per dim
      for (int d = hi - 1; d >= lo; --d) {
        ivs[static_cast<size_t>(d)] = b_.CreateURem(flat, b_.getInt64(static_cast<uint64_t>(in[d])));
        flat = b_.CreateUDiv(flat, b_.getInt64(static_cast<uint64_t>(in[d])));
      }
    };
    split(o, 0, first);
    LV* sum = canonical_sum(R, [&](LV* r) {
      split(r, first, rank);
      Scalars val;
      load_externals(ext, ptrs, ivs, space, val);
      for (const ir::Node* n : producers) val[n->result] = scalar(*n, val);
      store_values(elem_stores, ext.size(), ptrs, ivs, space, val);
      return val.at(red.inputs[0]);
    });
    b_.CreateStore(sum, b_.CreateInBoundsGEP(f32_, ptrs.back(), o));
  });
  b_.CreateRetVoid();
  b_.restoreIP(saved);
  call_loop_function(lf.wrapper, ops.addrs, 1, false);
}

}  // namespace bj::codegen
