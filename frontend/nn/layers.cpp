// Layer implementations.
#include "frontend/nn/layers.h"

#include <fmt/format.h>

#include "frontend/autograd.h"
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

namespace {
std::string pair_str(Size2 s) { return s.h == s.w ? std::to_string(s.h) : fmt::format("({}, {})", s.h, s.w); }

void require_image(const char* op, const Tensor& x) {
  if (x.dim() != 4) throw ShapeError(op, "expects NCHW input (rank 4: batch, channels, height, width), got " + x.type().str());
}

Conv2DOptions checked(int64_t channels, Size2 kernel, Size2 strides, Size2 padding, Conv2DOptions o) {
  auto positive = [](Size2 s, int64_t least) { return s.h >= least && s.w >= least; };
  if (channels <= 0) throw ValueError("Conv2D", "channels must be positive, got " + std::to_string(channels));
  if (!positive(kernel, 1) || !positive(strides, 1) || !positive(padding, 0) || !positive(o.dilation, 1))
    throw ValueError("Conv2D", fmt::format("kernel {}, strides {} and dilation {} must be >= 1 and padding {} >= 0",
                                           pair_str(kernel), pair_str(strides), pair_str(o.dilation), pair_str(padding)));
  if (o.groups < 1 || channels % o.groups != 0)
    throw ValueError("Conv2D", fmt::format("groups ({}) must divide channels ({})", o.groups, channels));
  if (o.in_channels < 0 || o.in_channels % o.groups != 0)
    throw ValueError("Conv2D", fmt::format("in_channels ({}) must be 0 (inferred) or a multiple of groups ({})",
                                           o.in_channels, o.groups));
  return o;
}
}  // namespace

Conv2D::Conv2D(int64_t channels, Size2 kernel_size, Size2 strides, Size2 padding, std::string_view activation,
               Conv2DOptions options)
    : channels_(channels),
      kernel_(kernel_size),
      strides_(strides),
      padding_(padding),
      options_(checked(channels, kernel_size, strides, padding, options)),
      act_(parse_activation(activation, "Conv2D")),
      weight(add_parameter("weight", Parameter({channels, options.in_channels / options.groups, kernel_size.h,
                                                kernel_size.w}))),
      bias(add_parameter("bias", options.use_bias ? Parameter({channels}, init::zeros()) : Parameter())) {}

Tensor Conv2D::forward(const Tensor& x) {
  require_image("Conv2D", x);
  const int64_t in = x.shape()[1], g = options_.groups;
  const int64_t expect = weight.shape()[1] * g;
  if (in % g != 0 || (expect != 0 && expect != in))
    throw ShapeError("Conv2D", fmt::format("input has {} channels, the layer expects {} (input {}, weight {}, {} groups)",
                                           in, expect ? std::to_string(expect) : "a multiple of groups", x.type().str(),
                                           Type{kF32, weight.shape()}.str(), g));
  weight.infer_shape({channels_, in / g, kernel_.h, kernel_.w}, "Conv2D");
  Tensor y = conv2d(x, weight.data(), strides_.shape(), padding_.shape(), options_.dilation.shape(), g);
  if (bias.defined()) y = y + bias.data().reshape({channels_, 1, 1});
  return activate(act_, y);
}

std::string Conv2D::extra_repr() const {
  const int64_t in = weight.shape()[1] * options_.groups;
  std::string s = fmt::format("{} -> {}, kernel_size={}", in ? std::to_string(in) : std::string("?"), channels_,
                              pair_str(kernel_));
  if (strides_.h != 1 || strides_.w != 1) s += ", strides=" + pair_str(strides_);
  if (padding_.h || padding_.w) s += ", padding=" + pair_str(padding_);
  if (options_.dilation.h != 1 || options_.dilation.w != 1) s += ", dilation=" + pair_str(options_.dilation);
  if (options_.groups != 1) s += fmt::format(", groups={}", options_.groups);
  if (act_ != Activation::kNone) s += ", " + std::string(activation_name(act_));
  if (!bias.defined()) s += ", no bias";
  return s;
}

Pool2D::Pool2D(Kind kind, Size2 pool_size, std::optional<Size2> strides, Size2 padding)
    : kind_(kind), pool_(pool_size), strides_(strides.value_or(pool_size)), padding_(padding) {
  const char* op = kind == Kind::kMax ? "MaxPool2D" : "AvgPool2D";
  if (pool_.h < 1 || pool_.w < 1 || strides_.h < 1 || strides_.w < 1 || padding_.h < 0 || padding_.w < 0)
    throw ValueError(op, fmt::format("pool size {} and strides {} must be >= 1 and padding {} >= 0", pair_str(pool_),
                                     pair_str(strides_), pair_str(padding_)));
  if (2 * padding_.h > pool_.h || 2 * padding_.w > pool_.w)
    throw ValueError(op, fmt::format("padding {} exceeds half the pool size {}", pair_str(padding_), pair_str(pool_)));
}

Tensor Pool2D::forward(const Tensor& x) {
  require_image(kind_ == Kind::kMax ? "MaxPool2D" : "AvgPool2D", x);
  return kind_ == Kind::kMax ? max_pool2d(x, pool_.shape(), strides_.shape(), padding_.shape())
                             : avg_pool2d(x, pool_.shape(), strides_.shape(), padding_.shape());
}

std::string Pool2D::extra_repr() const {
  return fmt::format("pool_size={}, strides={}{}", pair_str(pool_), pair_str(strides_),
                     padding_.h || padding_.w ? ", padding=" + pair_str(padding_) : std::string());
}

Tensor GlobalAvgPool2D::forward(const Tensor& x) {
  require_image("GlobalAvgPool2D", x);
  return mean(x, {2, 3}, true);
}

BatchNorm::BatchNorm(int64_t channels, double momentum, double eps)
    : momentum_(momentum),
      eps_(eps),
      gamma(add_parameter("gamma", Parameter({channels}, init::ones()))),
      beta(add_parameter("beta", Parameter({channels}, init::zeros()))),
      running_mean(add_constant("running_mean", channels > 0 ? zeros({channels}) : Tensor())),
      running_var(add_constant("running_var", channels > 0 ? ones({channels}) : Tensor())) {
  if (channels < 0) throw ValueError("BatchNorm", "channels must be positive (or 0 to infer), got " + std::to_string(channels));
  if (!(momentum >= 0 && momentum <= 1)) throw ValueError("BatchNorm", fmt::format("momentum must be in [0, 1], got {}", momentum));
  if (!(eps > 0)) throw ValueError("BatchNorm", fmt::format("eps must be positive, got {}", eps));
}

Tensor BatchNorm::forward(const Tensor& x) {
  if (x.dim() != 2 && x.dim() != 4)
    throw ShapeError("BatchNorm", "expects [N, C] or NCHW input, got " + x.type().str());
  const int64_t c = x.shape()[1];
  gamma.infer_shape({c}, "BatchNorm");
  beta.infer_shape({c}, "BatchNorm");
  if (!running_mean.defined()) {  // the channel count was left to this first call
    running_mean = zeros({c});
    running_var = ones({c});
  }
  if (running_mean.numel() != c)
    throw ShapeError("BatchNorm", fmt::format("input has {} channels, the running statistics have {} (input {})", c,
                                              running_mean.numel(), x.type().str()));
  const Shape axes = x.dim() == 4 ? Shape{0, 2, 3} : Shape{0};
  const Shape per_channel = x.dim() == 4 ? Shape{1, c, 1, 1} : Shape{1, c};
  Tensor mu, var;
  if (is_training()) {
    const int64_t n = x.numel() / std::max<int64_t>(c, 1);
    if (n < 2)
      throw ValueError("BatchNorm", "training needs more than one value per channel to estimate a variance, got " +
                                        x.type().str());
    mu = mean(x, axes, true);
    Tensor centered = x - mu;
    var = mean(centered * centered, axes, true);
    NoGradGuard no_grad;  // the running statistics are state, not part of the graph's gradient
    running_mean *= momentum_;
    running_mean += mu.detach().reshape({c}) * (1 - momentum_);
    running_var *= momentum_;
    running_var += var.detach().reshape({c}) * ((1 - momentum_) * static_cast<double>(n) / static_cast<double>(n - 1));
  } else {
    mu = running_mean.reshape(per_channel);
    var = running_var.reshape(per_channel);
  }
  Tensor x_hat = (x - mu) / sqrt(var + eps_);
  return x_hat * gamma.data().reshape(per_channel) + beta.data().reshape(per_channel);
}

std::string BatchNorm::extra_repr() const {
  const int64_t c = gamma.shape()[0];
  return fmt::format("{}, momentum={}, eps={}", c ? std::to_string(c) : std::string("?"), momentum_, eps_);
}

Residual::Residual(int64_t channels, bool use_1x1conv, int64_t strides)
    : conv1_(add("conv1", Conv2D(channels, 3, strides, 1, "none", {.use_bias = false}))),
      bn1_(add("bn1", BatchNorm())),
      conv2_(add("conv2", Conv2D(channels, 3, 1, 1, "none", {.use_bias = false}))),
      bn2_(add("bn2", BatchNorm())) {
  if (use_1x1conv) conv3_ = &add("conv3", Conv2D(channels, 1, strides));  // not normalized: keeps its bias
}

Tensor Residual::forward(const Tensor& x) {
  Tensor y = relu(bn1_(conv1_(x)));
  y = bn2_(conv2_(y));
  return relu(y + (conv3_ ? (*conv3_)(x) : x));
}

Tensor Parallel::forward(const Tensor& x) {
  std::vector<Tensor> outs;
  for (const auto& [n, c] : children()) outs.push_back((*c)(x));
  return concat(outs, axis_);
}

}  // namespace bj::nn
