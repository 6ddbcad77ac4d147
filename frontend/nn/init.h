// Parameter initializers, as in Gluon's mx.init: net.initialize(bj::init::xavier()).
#pragma once

#include <memory>
#include <string>

#include "frontend/tensor.h"

namespace bj::init {

/// Fills a parameter's tensor in place.
class Initializer {
 public:
  virtual ~Initializer() = default;
  virtual void fill(Tensor& t) const = 0;
  virtual std::string name() const = 0;
};
using Init = std::shared_ptr<const Initializer>;

/// Uniform in [-scale, scale] (Gluon's default, scale 0.07).
Init uniform(double scale = 0.07);
/// Normal with mean 0 and standard deviation sigma.
Init normal(double sigma = 0.01);
/// Xavier/Glorot uniform: [-c, c] with c = sqrt(6 / (fan_in + fan_out)) * gain.
Init xavier(double gain = 1.0);
Init zeros();
Init ones();
Init constant(double value);

}  // namespace bj::init
