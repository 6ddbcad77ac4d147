// Parameter (see parameter.h).
#include "frontend/nn/parameter.h"

#include "frontend/creation.h"

namespace bj::nn {

struct Parameter::Impl {
  Shape shape;
  Tensor data;
  init::Init own_init;
  init::Init pending;  // set by initialize() while the shape is deferred
  std::string name;

  void fill(const init::Init& fallback) {
    data = zeros(shape);
    (own_init ? own_init : fallback)->fill(data);
    data.set_requires_grad(true);
    pending = nullptr;
  }
};

namespace {
[[noreturn]] void unbound() { throw ValueError("Parameter", "the parameter handle is unbound"); }
}  // namespace

Parameter& Parameter::operator=(const Parameter& o) {
  impl_ = o.impl_;
  detail::bump_structure_epoch();
  return *this;
}
Parameter& Parameter::operator=(Parameter&& o) {
  impl_ = std::move(o.impl_);
  detail::bump_structure_epoch();
  return *this;
}

Parameter::Parameter(Shape shape, init::Init own_init) : impl_(std::make_shared<Impl>()) {
  impl_->shape = shape;
  impl_->own_init = std::move(own_init);
}

const Shape& Parameter::shape() const {
  if (!impl_) unbound();
  return impl_->shape;
}
bool Parameter::shape_known() const {
  for (int64_t d : shape())
    if (d == 0) return false;
  return true;
}
bool Parameter::initialized() const { return impl_ && impl_->data.defined(); }
const std::string& Parameter::name() const {
  if (!impl_) unbound();
  return impl_->name;
}
void Parameter::set_name(const std::string& name) {
  if (!impl_) unbound();
  impl_->name = name;
}

const Tensor& Parameter::data() const {
  if (!impl_) unbound();
  if (!impl_->data.defined())
    throw NotInitializedError("parameter '" + impl_->name + "' " + impl_->shape.str(),
                              impl_->pending ? "its shape is not known yet; it is set on the first call"
                                             : "not initialized; call initialize() on the block first");
  return impl_->data;
}

void Parameter::set_data(const Tensor& value) {
  if (!impl_) unbound();
  if (!value.defined() || !(value.shape() == impl_->shape) || value.dtype() != DType::kF32)
    throw ShapeError("parameter '" + impl_->name + "'",
                     "set_data needs f32" + impl_->shape.str() + ", got " + (value.defined() ? value.type().str() : "undefined"));
  impl_->data = value.detach();
  impl_->data.set_requires_grad(true);
}

void Parameter::initialize(const init::Init& fallback, bool force) {
  if (!impl_) unbound();
  if (impl_->data.defined() && !force) return;
  if (shape_known())
    impl_->fill(fallback);
  else
    impl_->pending = impl_->own_init ? impl_->own_init : fallback;
}

void Parameter::infer_shape(const Shape& full, const char* op) {
  if (!impl_) unbound();
  Shape& s = impl_->shape;
  bool ok = s.size() == full.size();
  for (int i = 0; ok && i < s.size(); ++i) ok = s[i] == 0 || s[i] == full[i];
  if (!ok)
    throw ShapeError(op, "parameter '" + impl_->name + "' has shape " + s.str() + ", the input needs " + full.str());
  if (s == full) return;
  s = full;
  if (impl_->pending) impl_->fill(impl_->pending);
}

}  // namespace bj::nn
