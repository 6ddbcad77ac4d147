// Initializers: each draws a fresh tensor and copies it into the parameter.
#include "frontend/nn/init.h"

#include <cmath>
#include <cstring>

#include "frontend/creation.h"

namespace bj::init {

namespace {

void assign(Tensor& dst, const Tensor& src) { std::memcpy(dst.raw_data(), src.raw_data(), src.type().bytes()); }

class Uniform final : public Initializer {
 public:
  explicit Uniform(double s) : s_(s) {}
  void fill(Tensor& t) const override { assign(t, bj::uniform(-s_, s_, t.shape())); }
  std::string name() const override { return "uniform(" + std::to_string(s_) + ")"; }

 private:
  double s_;
};

class Normal final : public Initializer {
 public:
  explicit Normal(double s) : s_(s) {}
  void fill(Tensor& t) const override { assign(t, bj::normal(0, s_, t.shape())); }
  std::string name() const override { return "normal(" + std::to_string(s_) + ")"; }

 private:
  double s_;
};

class Xavier final : public Initializer {
 public:
  explicit Xavier(double g) : g_(g) {}
  void fill(Tensor& t) const override {
    // Weights are [out, in, ...]: fan_out = out * receptive field, fan_in = in * receptive field.
    int64_t out = t.dim() > 0 ? t.shape()[0] : 1, in = t.dim() > 1 ? t.shape()[1] : 1, field = 1;
    for (int i = 2; i < t.dim(); ++i) field *= t.shape()[i];
    double c = g_ * std::sqrt(6.0 / static_cast<double>(std::max<int64_t>((in + out) * field, 1)));
    assign(t, bj::uniform(-c, c, t.shape()));
  }
  std::string name() const override { return "xavier(" + std::to_string(g_) + ")"; }

 private:
  double g_;
};

class Constant final : public Initializer {
 public:
  explicit Constant(double v) : v_(v) {}
  void fill(Tensor& t) const override { assign(t, bj::full(t.shape(), v_, t.dtype())); }
  std::string name() const override { return "constant(" + std::to_string(v_) + ")"; }

 private:
  double v_;
};

}  // namespace

Init uniform(double scale) { return std::make_shared<Uniform>(scale); }
Init normal(double sigma) { return std::make_shared<Normal>(sigma); }
Init xavier(double gain) { return std::make_shared<Xavier>(gain); }
Init zeros() { return constant(0); }
Init ones() { return constant(1); }
Init constant(double value) { return std::make_shared<Constant>(value); }

}  // namespace bj::init
