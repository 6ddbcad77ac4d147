// Row regions (passes/fuse_row.cpp): softmax, LayerNorm and their kin, one
// row at a time. Per row of the region's space: a pass over the row for each
// reduction, in body order, then one pass that computes and stores the row
// values the region yields. What there is once per row (the reductions'
// results and the arithmetic on them) is a scalar computed once; the row's
// elementwise values are recomputed in each pass that needs them instead of
// stored, so the region reads its inputs from memory about once (the row
// stays in cache between passes) and writes only its yields. Rows are
// independent, so they split among threads, and each row is reduced in one
// order whatever the split. In a guard's input cone (`exact`) every
// reduction is a sum, summed in the canonical order as eager mode's kernel
// sums a row.
#include "codegen/lowerer.h"
#include "ir/error.h"
#include "runtime/kernels.h"

namespace bj::codegen {

void Lowerer::emit_row(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores, bool exact) {
  const ir::Node* first = *std::find_if(body.begin(), body.end(), [](const ir::Node* n) { return ir::has_trait(n->op, ir::kReduction); });
  const Shape &space = first->inputs[0]->type.shape, &rows = first->result->type.shape;
  const int rank = space.size(), split = rank - ir::row_reduction_axes(*first);
  // Values there is one of per row: the reductions and elementwise members of the reduced shape.
  std::unordered_set<const ir::Value*> per_row;
  int passes = 1;
  for (const ir::Node* n : body)
    if (ir::has_trait(n->op, ir::kReduction) || n->result->type.shape == rows) {
      per_row.insert(n->result);
      passes += ir::has_trait(n->op, ir::kReduction);
    }
  const std::vector<const ir::Value*> ext = externals(body);
  Operands ops;
  for (const ir::Value* v : ext) add_operand(ops, v, broadcast_strides(v->type.shape, space));
  for (const ir::Value* v : stores)
    add_operand(ops, v, per_row.count(v) ? broadcast_strides(rows, space) : contiguous_strides(space));
  // The space splits into the rows (outer dims) and each row (the reduced dims), collapsed apart.
  Shape outer_dims, row_dims;
  for (int d = 0; d < rank; ++d) (d < split ? outer_dims : row_dims).push_back(space[d]);
  std::vector<Shape> outer_strides, row_strides;
  for (const Shape& st : ops.strides) {
    Shape o, r;
    for (int d = 0; d < rank; ++d) (d < split ? o : r).push_back(st[d]);
    outer_strides.push_back(o);
    row_strides.push_back(r);
  }
  const Space outer = collapse(outer_dims, outer_strides), row = collapse(row_dims, row_strides);
  const int64_t row_size = row_dims.numel();
  const int row_rank = row.dims.size();

  auto saved = b_.saveIP();
  std::vector<LV*> ptrs;
  LoopFunction lf = begin_loop_function("row", ops.addrs.size(), ptrs);
  std::vector<LV*> outer_ivs;
  auto operand_type = [&](size_t i) { return i < ext.size() ? ext[i]->type : stores[i - ext.size()]->type; };
  auto at_row = [&](const std::vector<LV*>& base) {  // one row: everything it computes and stores
    Scalars once;  // the per-row scalars
    auto load = [&](const ir::Value* v, const std::vector<LV*>& ivs) {
      const size_t i = std::find(ext.begin(), ext.end(), v) - ext.begin();
      return load_element(v->type, base[i], offset(ivs, row.strides[i]));
    };
    const std::vector<LV*> row_start(static_cast<size_t>(row_rank), b_.getInt64(0));
    // The row values `targets` need at row position `ivs`, computed from the per-row scalars.
    auto row_values = [&](const std::vector<const ir::Value*>& targets, const std::vector<LV*>& ivs) {
      std::unordered_set<const ir::Value*> needed(targets.begin(), targets.end());
      for (auto it = body.rbegin(); it != body.rend(); ++it)
        if (needed.count((*it)->result) && !per_row.count((*it)->result))
          needed.insert((*it)->inputs.begin(), (*it)->inputs.end());
      Scalars val = once;
      for (const ir::Value* v : ext)
        if (needed.count(v)) val[v] = load(v, ivs);
      for (const ir::Node* n : body)
        if (needed.count(n->result) && !per_row.count(n->result)) val[n->result] = scalar(*n, val);
      return val;
    };
    for (const ir::Node* n : body) {
      if (!per_row.count(n->result)) continue;  // a row value: computed in the passes that need it
      if (ir::has_trait(n->op, ir::kElementwise)) {
        Scalars val = once;
        for (const ir::Value* v : n->inputs)
          if (!val.count(v)) val[v] = load(v, row_start);  // constant along the row
        once[n->result] = scalar(*n, val);
        continue;
      }
      const ir::Combine how = *ir::reduction(n->op);
      const ir::Value* operand = n->inputs[0];
      if (row_size == 0) {
        once[n->result] = identity(how, true);
      } else if (exact) {
        if (how != ir::Combine::kAdd) throw Error("codegen", "an exact row reduction must be a sum (internal error in the plan)");
        once[n->result] = canonical_sum(row_size, [&](LV* flat) {
          std::vector<LV*> ivs(static_cast<size_t>(row_rank));
          for (int d = row_rank - 1; d >= 0; --d) {
            ivs[static_cast<size_t>(d)] = b_.CreateURem(flat, b_.getInt64(static_cast<uint64_t>(row.dims[d])));
            flat = b_.CreateUDiv(flat, b_.getInt64(static_cast<uint64_t>(row.dims[d])));
          }
          return row_values({operand}, ivs).at(operand);
        });
      } else {  // nested accumulator loops, the innermost vectorized (sums reassociate)
        std::vector<LV*> ivs;
        std::function<LV*(int, LV*)> over = [&](int d, LV* acc) {
          return accumulate(row.dims[d], 1, {acc}, [&](LV* iv, const Accumulators& a) {
            ivs.push_back(iv);
            LV* next = d + 1 == row_rank ? combine(how, a[0], row_values({operand}, ivs).at(operand)) : over(d + 1, a[0]);
            ivs.pop_back();
            return Accumulators{next};
          })[0];
        };
        once[n->result] = over(0, identity(how, false));
      }
    }
    // The yields: per-row scalars once, row values in a last pass.
    std::vector<const ir::Value*> row_yields;
    for (size_t j = 0; j < stores.size(); ++j) {
      const size_t i = ext.size() + j;
      if (per_row.count(stores[j]))
        store_element(stores[j]->type, once.at(stores[j]), base[i], b_.getInt64(0));
      else
        row_yields.push_back(stores[j]);
    }
    if (row_yields.empty() || row_size == 0) return;
    std::vector<LV*> ivs;
    std::function<void(int)> nest = [&](int d) {
      loop(b_.getInt64(0), b_.getInt64(static_cast<uint64_t>(row.dims[d])), [&](LV* iv) {
        ivs.push_back(iv);
        if (d + 1 < row_rank) {
          nest(d + 1);
        } else {
          Scalars val = row_values(row_yields, ivs);
          for (size_t j = 0; j < stores.size(); ++j)
            if (!per_row.count(stores[j]))
              store_element(stores[j]->type, val.at(stores[j]), base[ext.size() + j], offset(ivs, row.strides[ext.size() + j]));
        }
        ivs.pop_back();
      });
    };
    nest(0);
  };
  llvm::Function* fn = lf.body;
  std::function<void(int)> outer_nest = [&](int d) {
    if (d == static_cast<int>(outer.dims.size())) {
      std::vector<LV*> base;
      for (size_t i = 0; i < ptrs.size(); ++i) {
        llvm::Type* t = element_type(operand_type(i).dtype);
        base.push_back(b_.CreateInBoundsGEP(t, ptrs[i], offset(outer_ivs, outer.strides[i])));
      }
      return at_row(base);
    }
    LV* lo = d == 0 ? static_cast<LV*>(fn->getArg(0)) : b_.getInt64(0);
    LV* hi = d == 0 ? static_cast<LV*>(fn->getArg(1)) : b_.getInt64(static_cast<uint64_t>(outer.dims[d]));
    loop(lo, hi, [&](LV* iv) {
      outer_ivs.push_back(iv);
      outer_nest(d + 1);
      outer_ivs.pop_back();
    });
  };
  outer_nest(0);
  b_.CreateRetVoid();
  b_.restoreIP(saved);
  if (dynamic() && first->inputs[0]->batch) {  // the call's batch size gives the rows, and decides the pool
    call_loop_function(lf.wrapper, ops.addrs, extent(outer.dims[0], true), true,
                       space.numel() * passes / std::max<int64_t>(outer.dims[0], 1));
    return;
  }
  const bool parallel = space.numel() * passes >= 2 * rt::kParallelGrain && outer.dims[0] > 1;
  call_loop_function(lf.wrapper, ops.addrs, outer.dims[0], parallel);
}

}  // namespace bj::codegen
