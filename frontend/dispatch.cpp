// Eager dispatch (see dispatch.h).
#include "frontend/dispatch.h"

#include <array>
#include <cstring>
#include <vector>

#include "frontend/autograd.h"
#include "frontend/trace.h"
#include "ir/infer.h"
#include "runtime/allocator.h"
#include "runtime/kernels.h"

namespace bj::detail {

namespace {

constexpr size_t kInline = 4;  // inputs handled without heap allocation

/// Types and views of the inputs, on the stack for the usual arities.
struct InputSet {
  explicit InputSet(ir::OpKind op, std::span<const Tensor> inputs) {
    n = inputs.size();
    if (n > kInline) {
      big_types.resize(n);
      big_views.resize(n);
    }
    Type* t = n > kInline ? big_types.data() : types.data();
    rt::ConstView* v = n > kInline ? big_views.data() : views.data();
    for (size_t i = 0; i < n; ++i) {
      if (!inputs[i].defined())
        throw ValueError(std::string(ir::op_name(op)), "input " + std::to_string(i) + " is an undefined tensor");
      t[i] = inputs[i].type();
      v[i] = rt::ConstView{inputs[i].raw_data(), t[i]};
    }
  }
  std::span<const Type> type_span() const { return {n > kInline ? big_types.data() : types.data(), n}; }
  std::span<const rt::ConstView> view_span() const { return {n > kInline ? big_views.data() : views.data(), n}; }

  size_t n;
  std::array<Type, kInline> types;
  std::array<rt::ConstView, kInline> views;
  std::vector<Type> big_types;
  std::vector<rt::ConstView> big_views;
};

}  // namespace

Tensor tensor_over(std::shared_ptr<rt::Storage> storage, const Type& type) {
  return Tensor(std::make_shared<TensorImpl>(TensorImpl{std::move(storage), type, nullptr}));
}

Tensor empty(const Type& type) {
  Tensor t(std::make_shared<TensorImpl>(TensorImpl{rt::make_storage(type.bytes()), type, nullptr}));
  if (is_tracing()) trace_created(t, false);
  return t;
}

Tensor apply(ir::OpKind op, std::span<const Tensor> inputs, ir::OpAttrs attrs) {
  InputSet in(op, inputs);
  Type out = ir::infer(op, in.type_span(), attrs);
  Tensor result;
  if (ir::has_trait(op, ir::kView)) {  // same bytes, new type: share the storage
    result = Tensor(std::make_shared<TensorImpl>(TensorImpl{inputs[0].impl()->storage, out, nullptr}));
  } else {
    result = empty(out);
    rt::run_kernel(op, in.view_span(), attrs, rt::View{result.raw_data(), out});
  }
  if (autograd::must_record(op, inputs, out.dtype)) autograd::record(op, attrs, inputs, result);
  if (is_tracing()) trace_op(op, attrs, inputs, result);
  return result;
}

void apply_inplace(ir::OpKind op, Tensor& self, std::initializer_list<Tensor> others) {
  std::vector<Tensor> all{self};
  all.insert(all.end(), others);
  InputSet in(op, all);
  ir::OpAttrs attrs;
  Type out = ir::infer(op, in.type_span(), attrs);
  if (!(out == self.type()))
    throw ShapeError(std::string(ir::op_name(op)) + " (in place)",
                     "result " + out.str() + " does not fit into the updated tensor " + self.type().str());
  autograd::InplaceRecord rec = autograd::begin_inplace(op, attrs, all);
  std::vector<const void*> traced = is_tracing() ? trace_inplace_begin(op, all) : std::vector<const void*>{};
  rt::run_kernel(op, in.view_span(), attrs, rt::View{self.raw_data(), out});
  self.impl()->storage->bump_version();
  autograd::finish_inplace(rec, self);
  if (!traced.empty()) trace_inplace_end(op, attrs, traced, self);
}

void assign_state(const Tensor& target, const Tensor& value) {
  if (!target.defined() || !value.defined()) throw ValueError("assign", "an undefined tensor");
  if (!(target.type() == value.type()))
    throw ShapeError("assign", "value " + value.type().str() + " does not fit the state " + target.type().str());
  if (target.requires_grad() && is_grad_enabled())
    throw AutogradError("assign", "a tensor that requires grad is assigned in grad mode; use NoGradGuard");
  std::memcpy(target.raw_data(), value.raw_data(), value.type().bytes());
  target.impl()->storage->bump_version();
  if (is_tracing()) trace_assign(target, value);
}

}  // namespace bj::detail
