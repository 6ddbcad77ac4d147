// Layer implementations.
#include "frontend/nn/layers.h"

#include <fmt/format.h>

#include "frontend/creation.h"
#include "frontend/ops.h"

namespace bj::nn {

Activation parse_activation(std::string_view name, const char* op) {
  if (name.empty() || name == "none") return Activation::kNone;
  if (name == "relu") return Activation::kRelu;
  if (name == "sigmoid") return Activation::kSigmoid;
  if (name == "tanh") return Activation::kTanh;
  throw ValueError(op, "unknown activation '" + std::string(name) + "' (expected relu, sigmoid, tanh or none)");
}

std::string_view activation_name(Activation a) {
  switch (a) {
    case Activation::kRelu: return "relu";
    case Activation::kSigmoid: return "sigmoid";
    case Activation::kTanh: return "tanh";
    case Activation::kNone: break;
  }
  return "none";
}

Tensor activate(Activation a, const Tensor& x) {
  switch (a) {
    case Activation::kRelu: return relu(x);
    case Activation::kSigmoid: return sigmoid(x);
    case Activation::kTanh: return tanh(x);
    case Activation::kNone: break;
  }
  return x;
}

namespace {
int64_t checked_units(int64_t units, int64_t in_units) {
  if (units <= 0) throw ValueError("Dense", "units must be positive, got " + std::to_string(units));
  if (in_units < 0) throw ValueError("Dense", "in_units must be positive (or 0 to infer), got " + std::to_string(in_units));
  return units;
}
}  // namespace

Dense::Dense(int64_t units, std::string_view activation, bool use_bias, int64_t in_units)
    : units_(checked_units(units, in_units)),
      act_(parse_activation(activation, "Dense")),
      weight(add_parameter("weight", Parameter({units, in_units}))),
      bias(add_parameter("bias", use_bias ? Parameter({units}, init::zeros()) : Parameter())) {}

Tensor Dense::forward(const Tensor& x) {
  if (x.dim() < 2)
    throw ShapeError("Dense", "expects input of rank >= 2 (batch, features), got " + x.type().str());
  const int64_t in = x.shape().back();
  const int64_t expect = weight.shape()[1];
  if (expect != 0 && expect != in)
    throw ShapeError("Dense", fmt::format("input has {} features, weight expects {} (input {}, weight {})", in,
                                          expect, x.type().str(), Type{kF32, weight.shape()}.str()));
  weight.infer_shape({units_, in}, "Dense");
  Tensor y = matmul(x, weight.data(), false, /*transpose_b=*/true);
  if (bias.defined()) y = y + bias.data();
  return activate(act_, y);
}

std::string Dense::extra_repr() const {
  int64_t in = weight.shape()[1];
  std::string s = (in ? std::to_string(in) : std::string("?")) + " -> " + std::to_string(units_);
  if (act_ != Activation::kNone) s += ", " + std::string(activation_name(act_));
  if (!bias.defined()) s += ", no bias";
  return s;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (Block& b : *this) y = b(y);
  return y;
}

Block& Sequential::operator[](size_t i) const {
  if (i >= size())
    throw IndexError("Sequential", "index " + std::to_string(i) + " out of range for " + std::to_string(size()) + " blocks");
  return *children()[i].second;
}

Dropout::Dropout(double p) : p_(p) {
  if (p < 0 || p >= 1) throw ValueError("Dropout", "p must be in [0, 1), got " + std::to_string(p));
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p_ == 0) return x;
  Tensor keep = cast(rand(x.shape()) >= p_, x.dtype());
  return x * keep * (1.0 / (1.0 - p_));
}

std::string Dropout::extra_repr() const { return fmt::format("p={}", p_); }

Tensor Parallel::forward(const Tensor& x) {
  std::vector<Tensor> outs;
  for (const auto& [n, c] : children()) outs.push_back((*c)(x));
  return concat(outs, axis_);
}

}  // namespace bj::nn
