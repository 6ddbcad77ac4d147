// bj::nn::Parameter: a handle to a trainable tensor owned by blocks; its
// value requires grad. Copies of the handle are the same parameter. A
// parameter's shape may be partly unknown (0) until the first call fills it
// in (deferred initialization, as in Gluon).
#pragma once

#include <memory>
#include <string>

#include "frontend/nn/init.h"
#include "frontend/tensor.h"

namespace bj::nn {

namespace detail {
/// Counts changes to any block tree's structure (children, parameter and
/// constant slots, training flags), so hybridized blocks re-check theirs.
uint64_t structure_epoch();
void bump_structure_epoch();
}  // namespace detail

class Parameter {
 public:
  /// An unbound handle.
  Parameter() = default;
  /// A parameter of `shape` (0 marks a dimension learned on the first call);
  /// `own_init` (e.g. zeros for biases) wins over the initializer given to initialize().
  explicit Parameter(Shape shape, init::Init own_init = nullptr);

  bool defined() const { return impl_ != nullptr; }
  /// Known so far (0 for dimensions still deferred).
  const Shape& shape() const;
  bool shape_known() const;
  bool initialized() const;
  /// The value; NotInitializedError (naming `name`) before initialize() and the first call.
  const Tensor& data() const;
  /// Replaces the value (same shape, f32), as a load does; the parameter
  /// stays a leaf that requires grad.
  void set_data(const Tensor& value);
  /// The gradient accumulated by backward() (undefined before one reached it).
  Tensor grad() const { return data().grad(); }

  /// Fills the value with own_init or else `fallback` now if the shape is
  /// known, otherwise on the call that completes the shape. With `force`,
  /// re-initializes an initialized parameter.
  void initialize(const init::Init& fallback, bool force = false);
  /// Completes deferred dimensions from the first input (and initializes if
  /// requested). ShapeError, naming `op`, if a known dimension disagrees.
  void infer_shape(const Shape& full, const char* op);

  /// The name under which the parameter was first registered ("weight").
  const std::string& name() const;
  void set_name(const std::string& name);
  /// True if both handles are the same parameter.
  bool same(const Parameter& o) const { return impl_ == o.impl_; }
  /// Identifies the parameter (equal for handles of the same one).
  const void* id() const { return impl_.get(); }

  Parameter(const Parameter&) = default;
  Parameter(Parameter&&) = default;
  /// Assigning to a block's parameter slot re-ties it (a structure change for hybridized blocks).
  Parameter& operator=(const Parameter& o);
  Parameter& operator=(Parameter&& o);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace bj::nn
