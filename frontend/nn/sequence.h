// Layers of sequence models: token embeddings, layer normalization, GELU,
// multi-head self-attention, the Transformer encoder layer and the GRU.
#pragma once

#include "frontend/nn/block.h"
#include "frontend/nn/layers.h"

namespace bj::nn {

/// Rows of `table` (f32[V, D]) for integer ids (i64, any shape), giving f32[..., D], with the
/// ids checked: an id outside [0, V) is an IndexError naming it (in a trace, the check is a pair
/// of guards that every valid batch passes). A non-i64 id tensor is a DTypeError.
Tensor embedding(const Tensor& table, const Tensor& ids);

/// A token embedding: forward(ids i64[...]) -> f32[..., dim], row ids[i] of `weight`.
/// Initialized from a normal distribution (sigma 1), as PyTorch's nn.Embedding, unless `init`
/// is given.
class Embedding : public Block {
 public:
  Embedding(int64_t vocab, int64_t dim, init::Init init = nullptr);
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

/// Multi-head self-attention over x [batch, time, d_model] -> [batch, time, d_model]: one Dense
/// gives queries, keys and values for every head, softmax(q k^T / sqrt(d_head)) weights the
/// values, a Dense mixes the heads. `causal`: position t attends to positions <= t only.
/// Called with a list {x, mask}, `mask` (bool [batch, time] or [1, time]; undefined: none)
/// marks padding positions, which no query attends to (PyTorch's key_padding_mask); a query
/// whose every key is masked gets NaN, as in PyTorch.
class MultiHeadAttention : public Block {
 public:
  MultiHeadAttention(int64_t d_model, int64_t heads, bool causal = false);
  Tensor forward(const Tensor& x) override;
  Tensors forward_many(const Tensors& inputs) override;
  std::string extra_repr() const override;

 private:
  Tensor attend(const Tensor& x, const Tensor& padding);
  int64_t d_model_, heads_;
  bool causal_;

 public:
  Dense& qkv;  ///< d_model -> 3 d_model: queries, keys, values
  Dense& out;  ///< d_model -> d_model
};

/// A Transformer encoder layer on x [batch, time, d_model]: self-attention and a feed-forward
/// network (Dense(ff) -> GELU -> Dense(d_model)), each added to its input. Pre-norm (the
/// default, as GPT-style models): x + attn(norm1(x)), then x + ff(norm2(x)); post-norm (the
/// original): norm1(x + attn(x)), then norm2(x + ff(x)). No dropout. Called with a list
/// {x, mask}, the padding mask goes to the attention (see MultiHeadAttention).
class TransformerEncoderLayer : public Block {
 public:
  TransformerEncoderLayer(int64_t d_model, int64_t heads, int64_t ff, bool pre_norm = true, bool causal = false);
  Tensor forward(const Tensor& x) override;
  Tensors forward_many(const Tensors& inputs) override;

 private:
  Tensor layer(const Tensor& x, const Tensor& padding);
  bool pre_norm_;

 public:
  MultiHeadAttention& attention;
  LayerNorm& norm1;
  LayerNorm& norm2;
  Dense& ff1;
  Dense& ff2;
};

/// A decoder-only Transformer language model: token and learned position embeddings, `layers`
/// causal pre-norm encoder layers, a final LayerNorm and logits through the token embedding's
/// weights (tied; both embeddings start from a normal distribution of sigma 0.02, as GPT-2's). forward(ids i64[batch, time]) -> logits f32[batch, time, vocab]. A sequence
/// longer than `max_len` is a ShapeError; ids outside the vocabulary an IndexError.
class TransformerLM : public Block {
 public:
  TransformerLM(int64_t vocab, int64_t d_model, int64_t heads, int64_t ff, int64_t layers, int64_t max_len);
  Tensor forward(const Tensor& ids) override;
  std::string extra_repr() const override;

 private:
  int64_t max_len_;

 public:
  Embedding& tokens;
  Parameter& positions;  ///< [max_len, d_model]
  Sequential& blocks;
  LayerNorm& norm;
};

/// A gated recurrent unit over x [batch, time, inputs] -> every step's state [batch, time,
/// hidden], from a zero state, with PyTorch's gates: r = sigmoid(Wir x + Whr h), z likewise,
/// n = tanh(Win x + r * (Whn h)) (biases included), h' = (1 - z) n + z h. Forward loops over time
/// in C++: tracing unrolls the loop, so each sequence length is its own compiled key. `step`
/// runs one step from a given state (the cell).
class GRU : public Block {
 public:
  explicit GRU(int64_t hidden, int64_t inputs = 0);
  Tensor forward(const Tensor& x) override;
  /// One step: x [batch, inputs], h [batch, hidden] -> the next h.
  Tensor step(const Tensor& x, const Tensor& h);
  std::string extra_repr() const override;

 private:
  /// The next state from the input's projection gi = i2h(x) [batch, 3 hidden] and the state.
  Tensor next(const Tensor& gi, const Tensor& h);
  int64_t hidden_;

 public:
  Dense& i2h;  ///< inputs -> 3 hidden: the r, z and n rows, in that order
  Dense& h2h;  ///< hidden -> 3 hidden
};

}  // namespace bj::nn
