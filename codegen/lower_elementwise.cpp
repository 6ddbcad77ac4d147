// Elementwise regions (and elementwise ops alone): one loop nest over the
// output shape, broadcasting strides baked in, dimensions collapsed where
// every operand is contiguous, one scalar expression per element; split
// among threads when large.
#include "codegen/lowerer.h"
#include "runtime/kernels.h"

namespace bj::codegen {

void Lowerer::emit_elementwise(const std::vector<const ir::Node*>& body, const std::vector<const ir::Value*>& stores,
                               const Shape& shape) {
  std::vector<const ir::Value*> ext = externals(body);
  Operands ops;
  for (const ir::Value* v : ext) add_operand(ops, v, broadcast_strides(v->type.shape, shape));
  for (const ir::Value* v : stores) add_operand(ops, v, contiguous_strides(shape));
  Space space = collapse(shape, ops.strides);
  // In code for every batch size, the call's batch size decides (emit_loop_function).
  const bool rows_vary = dynamic() && batched(body, stores);
  bool parallel = rows_vary || (shape.numel() >= 2 * rt::kParallelGrain && space.dims[0] > 1);
  emit_loop_function(space, ops.addrs, parallel, [&](const std::vector<LV*>& ivs, const std::vector<LV*>& ptrs) {
    Scalars val;
    load_externals(ext, ptrs, ivs, space, val);
    // No contraction across ops: a multiply feeding an add rounds as eager's two kernels do, so
    // overflow, infinities and NaN come out as eager's (`a*b + a` with a*b = -inf stays -inf).
    for (const ir::Node* n : body) val[n->result] = scalar(*n, val);
    store_values(stores, ext.size(), ptrs, ivs, space, val);
  }, rows_vary);
}

}  // namespace bj::codegen
