// Tensor handle methods. Every read of tensor data by host code goes through
// Tensor::host_read, the hook where the tracer will record guards.
#include "frontend/tensor.h"

#include <cstring>

#include "frontend/autograd.h"
#include "frontend/dispatch.h"
#include "frontend/trace.h"
#include "frontend/ops.h"
#include "ir/infer.h"
#include "runtime/allocator.h"

namespace bj {

namespace {
[[noreturn]] void undefined(const char* what) {
  throw ValueError(what, "the tensor is undefined (default-constructed)");
}
template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return DType::kF32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return DType::kI64;
  else
    return DType::kBool;
}
}  // namespace

const Type& Tensor::type() const {
  if (!impl_) undefined("type");
  return impl_->type;
}

int64_t Tensor::size(int64_t axis) const { return shape()[ir::normalize_axis("size", axis, dim())]; }

void* Tensor::raw_data() const {
  if (!impl_) undefined("data");
  return impl_->storage->data();
}

const void* Tensor::host_read(const char* what) const {
  if (!impl_) undefined(what);
  return impl_->storage->data();
}

namespace {
/// The value of a one-element tensor, read without any tracer involvement.
double read_one(const Tensor& t, const void* p) {
  switch (t.dtype()) {
    case DType::kF32: return *static_cast<const float*>(p);
    case DType::kI64: return static_cast<double>(*static_cast<const int64_t*>(p));
    case DType::kBool: return *static_cast<const uint8_t*>(p) ? 1.0 : 0.0;
    default: throw DTypeError("item", "cannot read " + t.type().str());
  }
}
}  // namespace

Scalar Tensor::item(std::source_location where) const {
  const void* p = host_read("item");
  if (numel() != 1)
    throw ValueError("item", "needs a one-element tensor, got " + type().str() + " (" + std::to_string(numel()) +
                                 " elements)");
  auto [traced, epoch] = detail::trace_scalar_source(*this);
  return Scalar(read_one(*this, p), traced, epoch, where);
}

Tensor::operator bool() const {
  const void* p = host_read("bool");
  if (numel() != 1)
    throw ValueError("bool", "the truth of a tensor with " + std::to_string(numel()) +
                                 " elements is ambiguous (" + type().str() + "); reduce it first, e.g. with sum() or max()");
  bool b = read_one(*this, p) != 0.0;
  detail::trace_truth(*this, b, __builtin_return_address(0));  // C++ gives a conversion no source_location
  return b;
}

template <class T>
const T* Tensor::data(std::source_location where) const {
  const void* p = host_read("data");
  detail::trace_raw_read(*this, where);
  if (dtype() != dtype_of<T>())
    throw DTypeError("data", "requested " + std::string(dtype_name(dtype_of<T>())) + " elements of " + type().str());
  return static_cast<const T*>(p);
}

template <class T>
T* Tensor::mutable_data() {
  T* p = const_cast<T*>(data<T>());
  impl_->storage->bump_version();
  return p;
}

template const float* Tensor::data<float>(std::source_location) const;
template const int64_t* Tensor::data<int64_t>(std::source_location) const;
template const uint8_t* Tensor::data<uint8_t>(std::source_location) const;
template float* Tensor::mutable_data<float>();
template int64_t* Tensor::mutable_data<int64_t>();
template uint8_t* Tensor::mutable_data<uint8_t>();

std::vector<float> Tensor::to_vector(std::source_location where) const {
  host_read("to_vector");
  detail::trace_raw_read(*this, where);
  Tensor f = to(DType::kF32);
  const float* p = static_cast<const float*>(f.raw_data());
  return std::vector<float>(p, p + numel());
}

Tensor Tensor::clone() const { return bj::cast(*this, dtype()); }

bool Tensor::requires_grad() const { return defined() && impl_->autograd && impl_->autograd->requires_grad; }

Tensor& Tensor::set_requires_grad(bool on) {
  if (!impl_) undefined("set_requires_grad");
  if (on && dtype() != DType::kF32)
    throw DTypeError("set_requires_grad", "only f32 tensors can require grad, got " + type().str());
  if (!is_leaf())
    throw AutogradError("set_requires_grad", "only leaf tensors can change requires_grad; use detach() first");
  if (!impl_->autograd) impl_->autograd = std::make_shared<autograd::AutogradMeta>();
  impl_->autograd->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return defined() && impl_->autograd ? impl_->autograd->grad : Tensor(); }
void Tensor::zero_grad() const {
  if (defined() && impl_->autograd) impl_->autograd->grad = Tensor();
}
bool Tensor::is_leaf() const { return !defined() || !impl_->autograd || !impl_->autograd->grad_fn; }
std::string Tensor::grad_fn_name() const { return is_leaf() ? "" : impl_->autograd->grad_fn->name(); }
void Tensor::backward(const Tensor& grad) const { autograd::backward(*this, grad); }
Tensor Tensor::detach() const {
  if (!impl_) undefined("detach");
  return Tensor(std::make_shared<detail::TensorImpl>(detail::TensorImpl{impl_->storage, impl_->type, nullptr}));
}

Tensor Tensor::reshape(const Shape& s) const { return bj::reshape(*this, s); }
Tensor Tensor::flatten(int64_t start, int64_t end) const { return bj::flatten(*this, start, end); }
Tensor Tensor::permute(const Shape& perm) const { return bj::permute(*this, perm); }
Tensor Tensor::transpose(int64_t a, int64_t b) const { return bj::transpose(*this, a, b); }
Tensor Tensor::slice(int64_t axis, int64_t start, int64_t end, int64_t step) const {
  return bj::slice(*this, axis, start, end, step);
}
Tensor Tensor::operator[](int64_t i) const {
  if (dim() == 0) throw IndexError("index", "cannot index a rank-0 tensor");
  int64_t n = shape()[0];
  if (i < -n || i >= n)
    throw IndexError("index", "index " + std::to_string(i) + " out of range for " + type().str());
  if (i < 0) i += n;
  Shape rest(shape().span().subspan(1));
  return bj::slice(*this, 0, i, i + 1).reshape(rest);
}
Tensor Tensor::to(DType t) const { return dtype() == t ? *this : bj::cast(*this, t); }
bool Tensor::shares_storage(const Tensor& o) const {
  return defined() && o.defined() && impl_->storage == o.impl_->storage;
}

Tensor Tensor::sum() const { return bj::sum(*this); }
Tensor Tensor::sum(const Shape& axes, bool keepdim) const { return bj::sum(*this, axes, keepdim); }
Tensor Tensor::mean() const { return bj::mean(*this); }
Tensor Tensor::mean(const Shape& axes, bool keepdim) const { return bj::mean(*this, axes, keepdim); }
Tensor Tensor::max() const { return bj::max(*this); }
Tensor Tensor::max(const Shape& axes, bool keepdim) const { return bj::max(*this, axes, keepdim); }
Tensor Tensor::min() const { return bj::min(*this); }
Tensor Tensor::min(const Shape& axes, bool keepdim) const { return bj::min(*this, axes, keepdim); }
Tensor Tensor::norm() const { return bj::norm(*this); }
Tensor Tensor::abs() const { return bj::abs(*this); }
Tensor Tensor::exp() const { return bj::exp(*this); }
Tensor Tensor::log() const { return bj::log(*this); }
Tensor Tensor::sqrt() const { return bj::sqrt(*this); }
Tensor Tensor::relu() const { return bj::relu(*this); }
Tensor Tensor::sigmoid() const { return bj::sigmoid(*this); }
Tensor Tensor::tanh() const { return bj::tanh(*this); }
Tensor Tensor::pow(double e) const { return bj::pow(*this, e); }

using ir::OpKind;
Tensor& Tensor::operator+=(const Tensor& o) { return detail::apply_inplace(OpKind::Add, *this, {o}), *this; }
Tensor& Tensor::operator-=(const Tensor& o) { return detail::apply_inplace(OpKind::Sub, *this, {o}), *this; }
Tensor& Tensor::operator*=(const Tensor& o) { return detail::apply_inplace(OpKind::Mul, *this, {o}), *this; }
Tensor& Tensor::operator/=(const Tensor& o) { return detail::apply_inplace(OpKind::Div, *this, {o}), *this; }
Tensor& Tensor::operator+=(double v) { return *this += scalar_like(v, *this); }
Tensor& Tensor::operator-=(double v) { return *this -= scalar_like(v, *this); }
Tensor& Tensor::operator*=(double v) { return *this *= scalar_like(v, *this); }
Tensor& Tensor::operator/=(double v) { return *this /= scalar_like(v, *this); }

}  // namespace bj
