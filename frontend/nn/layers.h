// The standard layers: Dense, activations, Sequential, Flatten, Dropout,
// the chapter exercises' Parallel block and repeat() factory, and the
// convolutional ones: Conv2D, pooling, BatchNorm and the ResNet Residual.
#pragma once

#include <optional>
#include <string_view>

#include "frontend/nn/block.h"

namespace bj::nn {

/// An activation function, named as in Gluon ("relu", "sigmoid", "tanh"; "" or "none" for none).
enum class Activation { kNone, kRelu, kSigmoid, kTanh };
/// Parses an activation name; ValueError naming `op` if unknown.
Activation parse_activation(std::string_view name, const char* op);
std::string_view activation_name(Activation a);
/// Applies `a` to x.
Tensor activate(Activation a, const Tensor& x);

/// Fully connected layer: y = activation(x · weightᵀ + bias), over x's last
/// axis. weight is [units, in_units]; in_units may be left to the first call.
class Dense : public Block {
 public:
  explicit Dense(int64_t units, std::string_view activation = "none", bool use_bias = true, int64_t in_units = 0);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  int64_t units() const { return units_; }

 private:
  int64_t units_;
  Activation act_;

 public:
  Parameter& weight;  ///< [units, in_units]
  Parameter& bias;    ///< [units]; unbound when use_bias is false
};

/// An activation as a block: ReLU(), Sigmoid(), Tanh().
class ActivationBlock : public Block {
 public:
  explicit ActivationBlock(Activation a) : act_(a) {}
  Tensor forward(const Tensor& x) override { return activate(act_, x); }
  std::string extra_repr() const override { return std::string(activation_name(act_)); }

 private:
  Activation act_;
};
struct ReLU : ActivationBlock {
  ReLU() : ActivationBlock(Activation::kRelu) {}
};
struct Sigmoid : ActivationBlock {
  Sigmoid() : ActivationBlock(Activation::kSigmoid) {}
};
struct Tanh : ActivationBlock {
  Tanh() : ActivationBlock(Activation::kTanh) {}
};

/// Chains blocks: each one's output is the next one's input. Children are named "0", "1", ...
class Sequential : public Block {
 public:
  Sequential() = default;
  template <BlockType... Bs>
  explicit Sequential(Bs&&... blocks) {
    add(std::forward<Bs>(blocks)...);
  }
  using Block::add;
  /// Appends one or more blocks (by value: moved in; an lvalue already in a tree: shared).
  template <BlockType B, BlockType... Bs>
  Sequential& add(B&& block, Bs&&... more) {
    Block::add(std::to_string(children().size()), std::forward<B>(block));
    if constexpr (sizeof...(Bs) > 0) add(std::forward<Bs>(more)...);
    return *this;
  }
  Tensor forward(const Tensor& x) override;

  size_t size() const { return children().size(); }
  Block& operator[](size_t i) const;
  /// The i-th block as its concrete type; ValueError if it is another type.
  template <BlockType B>
  B& at(size_t i) const {
    auto* p = dynamic_cast<B*>(&(*this)[i]);
    if (!p) throw ValueError("Sequential::at", "block " + std::to_string(i) + " is a " + (*this)[i].type_name());
    return *p;
  }
  /// Iterates the blocks in order.
  struct Iterator {
    std::vector<std::pair<std::string, std::shared_ptr<Block>>>::const_iterator it;
    Block& operator*() const { return *it->second; }
    Iterator& operator++() { return ++it, *this; }
    bool operator!=(const Iterator& o) const { return it != o.it; }
  };
  Iterator begin() const { return {children().begin()}; }
  Iterator end() const { return {children().end()}; }
};

/// Merges axes from `start_axis` on (default: all but the batch axis).
class Flatten : public Block {
 public:
  explicit Flatten(int64_t start_axis = 1) : start_(start_axis) {}
  Tensor forward(const Tensor& x) override { return x.flatten(start_, -1); }

 private:
  int64_t start_;
};

/// Zeroes each element with probability p in training mode and scales the
/// rest by 1/(1-p); the identity in eval mode.
class Dropout : public Block {
 public:
  explicit Dropout(double p);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  double p_;
};

/// A [height, width] pair given as one number (both) or two: Conv2D(6, 5) or Conv2D(6, {3, 5}).
struct Size2 {
  int64_t h, w;
  Size2(int64_t both) : h(both), w(both) {}  // NOLINT: implicit on purpose
  Size2(int64_t height, int64_t width) : h(height), w(width) {}
  Shape shape() const { return {h, w}; }
};

/// Conv2D's less common settings.
struct Conv2DOptions {
  Size2 dilation = 1;
  int64_t groups = 1;
  bool use_bias = true;
  int64_t in_channels = 0;  ///< 0: taken from the first input
};

/// 2-D convolution over NCHW input: y = activation(conv2d(x, weight) + bias), as Gluon's Conv2D.
/// weight is [channels, in_channels / groups, kernel height, kernel width].
class Conv2D : public Block {
 public:
  Conv2D(int64_t channels, Size2 kernel_size, Size2 strides = 1, Size2 padding = 0, std::string_view activation = "none",
         Conv2DOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  int64_t channels_;
  Size2 kernel_, strides_, padding_;
  Conv2DOptions options_;
  Activation act_;

 public:
  Parameter& weight;
  Parameter& bias;  ///< [channels]; unbound without use_bias
};

/// Max or average pooling over NCHW input; strides default to the pool size.
class Pool2D : public Block {
 public:
  enum class Kind { kMax, kAvg };
  Pool2D(Kind kind, Size2 pool_size, std::optional<Size2> strides, Size2 padding);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  Kind kind_;
  Size2 pool_, strides_, padding_;
};
struct MaxPool2D : Pool2D {
  explicit MaxPool2D(Size2 pool_size = 2, std::optional<Size2> strides = std::nullopt, Size2 padding = 0)
      : Pool2D(Kind::kMax, pool_size, strides, padding) {}
};
struct AvgPool2D : Pool2D {
  explicit AvgPool2D(Size2 pool_size = 2, std::optional<Size2> strides = std::nullopt, Size2 padding = 0)
      : Pool2D(Kind::kAvg, pool_size, strides, padding) {}
};

/// The mean of each channel over its whole image: [N, C, H, W] -> [N, C, 1, 1].
class GlobalAvgPool2D : public Block {
 public:
  Tensor forward(const Tensor& x) override;
};

/// Batch normalization over axis 1 (channels) of [N, C] or [N, C, H, W] input, as Gluon's
/// BatchNorm: in training, each channel is normalized by the batch's mean and (biased) variance
/// and the running statistics move toward them (running = momentum * running + (1 - momentum) *
/// batch, the variance unbiased); in eval mode the running statistics normalize. Then y = gamma
/// * x_hat + beta. The channel count may be left to the first call. The running statistics are
/// constants the block writes in place, so a hybridized call writes them as compiled commits.
class BatchNorm : public Block {
 public:
  explicit BatchNorm(int64_t channels = 0, double momentum = 0.9, double eps = 1e-5);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  double momentum_, eps_;

 public:
  Parameter& gamma;
  Parameter& beta;
  Tensor& running_mean;
  Tensor& running_var;
};

/// The ResNet block of the book: two 3x3 convolutions with BatchNorm and ReLU, added to the input
/// (through a strided 1x1 convolution when the shape changes), then ReLU. The 3x3 convolutions
/// have no bias: BatchNorm's mean would cancel it (its gradient is zero, all rounding noise).
class Residual : public Block {
 public:
  explicit Residual(int64_t channels, bool use_1x1conv = false, int64_t strides = 1);
  Tensor forward(const Tensor& x) override;

 private:
  Conv2D& conv1_;
  BatchNorm& bn1_;
  Conv2D& conv2_;
  BatchNorm& bn2_;
  Conv2D* conv3_ = nullptr;  ///< the 1x1 shortcut, when the shape changes
};

/// Runs every child on the same input and concatenates their outputs along
/// `axis` (the exercise's parallel block: Parallel(net1, net2)).
class Parallel : public Block {
 public:
  template <BlockType... Bs>
  explicit Parallel(Bs&&... blocks) {
    int i = 0;
    (Block::add(std::to_string(i++), std::forward<Bs>(blocks)), ...);
  }
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override { return "axis=" + std::to_string(axis_); }
  Parallel& set_axis(int64_t axis) { return axis_ = axis, *this; }

 private:
  int64_t axis_ = -1;
};

/// The exercise's factory: `n` fresh blocks from `make()`, chained.
/// bj::nn::repeat(4, [] { return Dense(20, "relu"); })
template <class Make>
Sequential repeat(int n, Make make) {
  Sequential s;
  for (int i = 0; i < n; ++i) s.add(make());
  return s;
}

}  // namespace bj::nn
