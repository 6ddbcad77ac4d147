// Initializers: each draws a fresh tensor of the parameter's shape and
// copies it into the parameter's storage.
#include "frontend/nn/init.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "frontend/creation.h"

namespace bj::init {

namespace {

class Drawn final : public Initializer {
 public:
  Drawn(std::string name, std::function<Tensor(const Shape&)> draw) : name_(std::move(name)), draw_(std::move(draw)) {}
  void fill(Tensor& t) const override {
    Tensor v = draw_(t.shape());
    std::memcpy(t.raw_data(), v.raw_data(), v.type().bytes());
  }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  std::function<Tensor(const Shape&)> draw_;
};

Init drawn(std::string name, std::function<Tensor(const Shape&)> draw) {
  return std::make_shared<Drawn>(std::move(name), std::move(draw));
}

}  // namespace

Init uniform(double scale) {
  return drawn(fmt::format("uniform({})", scale), [scale](const Shape& s) { return bj::uniform(-scale, scale, s); });
}

Init normal(double sigma) {
  return drawn(fmt::format("normal({})", sigma), [sigma](const Shape& s) { return bj::normal(0, sigma, s); });
}

Init xavier(double gain) {
  return drawn(fmt::format("xavier({})", gain), [gain](const Shape& s) {
    // Weights are [out, in, ...]: fan_out = out * receptive field, fan_in = in * receptive field.
    int64_t out = s.size() > 0 ? s[0] : 1, in = s.size() > 1 ? s[1] : 1, field = 1;
    for (int i = 2; i < s.size(); ++i) field *= s[i];
    double c = gain * std::sqrt(6.0 / static_cast<double>(std::max<int64_t>((in + out) * field, 1)));
    return bj::uniform(-c, c, s);
  });
}

Init constant(double value) {
  return drawn(fmt::format("constant({})", value), [value](const Shape& s) { return bj::full(s, value); });
}
Init zeros() { return constant(0); }
Init ones() { return constant(1); }

}  // namespace bj::init
