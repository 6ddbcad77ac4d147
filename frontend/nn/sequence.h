// Layers of sequence models: token embeddings, layer normalization, GELU.
#pragma once

#include "frontend/nn/block.h"

namespace bj::nn {

/// Rows of `table` (f32[V, D]) for integer ids (i64, any shape), giving f32[..., D], with the
/// ids checked: an id outside [0, V) is an IndexError naming it (in a trace, the check is a pair
/// of guards that every valid batch passes). A non-i64 id tensor is a DTypeError.
Tensor embedding(const Tensor& table, const Tensor& ids);

/// A token embedding: forward(ids i64[...]) -> f32[..., dim], row ids[i] of `weight`.
/// Initialized from a normal distribution (sigma 1), as PyTorch's nn.Embedding.
class Embedding : public Block {
 public:
  Embedding(int64_t vocab, int64_t dim);
  Tensor forward(const Tensor& ids) override;
  std::string extra_repr() const override;

 public:
  Parameter& weight;  ///< [vocab, dim]
};

/// Layer normalization over the last axis: (x - mean) / sqrt(var + eps) * gamma + beta, with the
/// biased variance, as PyTorch's nn.LayerNorm(dim). `dim` 0 takes the size from the first input.
class LayerNorm : public Block {
 public:
  explicit LayerNorm(int64_t dim = 0, double eps = 1e-5);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

 private:
  double eps_;

 public:
  Parameter& gamma;  ///< [dim], ones
  Parameter& beta;   ///< [dim], zeros
};

/// GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (PyTorch's
/// approximate="tanh"; within 1e-3 of the erf form).
Tensor gelu(const Tensor& x);
struct GELU : Block {
  Tensor forward(const Tensor& x) override { return gelu(x); }
};

}  // namespace bj::nn
