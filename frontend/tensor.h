// bj::Tensor: a handle to shared, contiguous, row-major storage with a
// shape and a dtype. Copies of the handle share storage (as in torch);
// clone() copies the data; reshape/flatten are views of the same storage.
// Math is in frontend/ops.h; creation in frontend/creation.h.
#pragma once

#include <memory>
#include <source_location>
#include <string>
#include <vector>

#include "frontend/scalar.h"
#include "ir/error.h"
#include "ir/shape.h"

namespace bj {

namespace rt {
class Storage;
}

namespace autograd {
struct AutogradMeta;
}

namespace detail {
struct TensorImpl {
  std::shared_ptr<rt::Storage> storage;
  Type type;
  std::shared_ptr<autograd::AutogradMeta> autograd;  ///< null until the tensor requires grad
};
}  // namespace detail

class Tensor {
 public:
  /// An undefined tensor (no storage); most uses raise ValueError.
  Tensor() = default;
  explicit Tensor(std::shared_ptr<detail::TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Type& type() const;
  DType dtype() const { return type().dtype; }
  const Shape& shape() const { return type().shape; }
  int dim() const { return shape().size(); }
  int64_t numel() const { return shape().numel(); }
  /// Size of one axis (negative counts from the back).
  int64_t size(int64_t axis) const;

  // ---- Host reads of the data: each is a guard point when tracing. ----
  /// The value of a one-element tensor; ValueError otherwise.
  Scalar item(std::source_location where = std::source_location::current()) const;
  /// Truth of a one-element tensor (`while (x.norm() > 1)`); ValueError otherwise.
  explicit operator bool() const;
  /// Raw read access; DTypeError if T does not match the dtype (bool reads as uint8_t).
  template <class T>
  const T* data(std::source_location where = std::source_location::current()) const;
  /// Raw write access (writes are seen through every handle and view; autograd
  /// counts it as an in-place change).
  template <class T>
  T* mutable_data();
  /// All elements as floats, row-major.
  std::vector<float> to_vector(std::source_location where = std::source_location::current()) const;

  // ---- Autograd (see frontend/autograd.h). ----
  bool requires_grad() const;
  /// Makes this (f32) tensor a leaf whose gradient backward() accumulates in grad().
  Tensor& set_requires_grad(bool on = true);
  /// The accumulated gradient (undefined before any backward reached it).
  Tensor grad() const;
  /// Forgets the accumulated gradient.
  void zero_grad() const;
  /// True for tensors not computed by recorded ops (inputs, parameters).
  bool is_leaf() const;
  /// The op that computed this tensor under recording ("mul"), or "" for a leaf.
  std::string grad_fn_name() const;
  /// Gradients of this tensor with respect to every leaf that requires grad,
  /// accumulated into their grad(). `grad` defaults to 1 for one-element tensors.
  void backward(const Tensor& grad = Tensor()) const;
  /// The same storage, cut from the recorded graph (requires no grad).
  Tensor detach() const;

  // ---- Copies and views. ----
  /// A copy of the data (recorded by autograd).
  Tensor clone() const;
  /// Same storage, new shape (one -1 is inferred).
  Tensor reshape(const Shape& shape) const;
  /// Merges axes start..end into one (a view).
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor permute(const Shape& perm) const;
  /// Swaps two axes (default: the last two).
  Tensor transpose(int64_t a = -2, int64_t b = -1) const;
  /// Elements start, start+step, ... < end along `axis` (negative bounds count from the back).
  Tensor slice(int64_t axis, int64_t start, int64_t end, int64_t step = 1) const;
  /// The i-th entry along the first axis, with that axis removed.
  Tensor operator[](int64_t i) const;
  /// Converted to another dtype (a copy; the same handle if already of that dtype).
  Tensor to(DType dtype) const;
  /// True if both handles see the same storage.
  bool shares_storage(const Tensor& other) const;

  // ---- Math as methods (see ops.h for the free functions). ----
  Tensor sum() const;
  Tensor sum(const Shape& axes, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const Shape& axes, bool keepdim = false) const;
  Tensor max() const;
  Tensor max(const Shape& axes, bool keepdim = false) const;
  Tensor min() const;
  Tensor min(const Shape& axes, bool keepdim = false) const;
  /// Frobenius norm over all elements.
  Tensor norm() const;
  Tensor abs() const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor tanh() const;
  Tensor pow(double exponent) const;

  // ---- In place: the result is written into this tensor's storage. ----
  Tensor& operator+=(const Tensor& o);
  Tensor& operator-=(const Tensor& o);
  Tensor& operator*=(const Tensor& o);
  Tensor& operator/=(const Tensor& o);
  Tensor& operator+=(double v);
  Tensor& operator-=(double v);
  Tensor& operator*=(double v);
  Tensor& operator/=(double v);

  /// The implementation, for the dispatcher and the tracer.
  const std::shared_ptr<detail::TensorImpl>& impl() const { return impl_; }
  /// Storage address (no host read is implied; kernels use it).
  void* raw_data() const;

 private:
  const void* host_read(const char* what) const;
  std::shared_ptr<detail::TensorImpl> impl_;
};

/// Several tensors: the inputs or outputs of a block with more than one (Block::forward_many).
using Tensors = std::vector<Tensor>;

}  // namespace bj
