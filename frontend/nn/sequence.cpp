// Sequence-model layers (see sequence.h).
#include "frontend/nn/sequence.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <numbers>

#include "frontend/creation.h"
#include "frontend/nn/ids.h"
#include "frontend/ops.h"

namespace bj::nn {

Tensor embedding(const Tensor& table, const Tensor& ids) {
  if (!table.defined() || !ids.defined()) throw ValueError("embedding", "an input is undefined");
  if (ids.dtype() != kI64)
    throw DTypeError("embedding", "token ids must be i64, got " + ids.type().str());
  if (table.dim() != 2)
    throw ShapeError("embedding", "expects a table [vocab, dim], got " + table.type().str());
  const int64_t vocab = table.shape()[0];
  if (const auto bad = ids_outside(ids, vocab))
    throw IndexError("embedding", fmt::format("token id {} is outside [0, {}) for the table {}",
                                              bad->first < 0 ? bad->first : bad->second, vocab, table.type().str()));
  return embedding_unchecked(table, ids);
}

namespace {
int64_t positive(const char* op, const char* what, int64_t v, bool zero_ok = false) {
  if (v < 0 || (v == 0 && !zero_ok))
    throw ValueError(op, fmt::format("{} must be positive{}, got {}", what, zero_ok ? " (or 0 to infer)" : "", v));
  return v;
}
}  // namespace

Embedding::Embedding(int64_t vocab, int64_t dim, init::Init init)
    : weight(add_parameter("weight", Parameter({positive("Embedding", "vocab", vocab),
                                                 positive("Embedding", "dim", dim)},
                                                init ? std::move(init) : init::normal(1.0)))) {}

Tensor Embedding::forward(const Tensor& ids) { return embedding(weight.data(), ids); }

std::string Embedding::extra_repr() const { return fmt::format("{} -> {}", weight.shape()[0], weight.shape()[1]); }

LayerNorm::LayerNorm(int64_t dim, double eps)
    : eps_(eps),
      gamma(add_parameter("gamma", Parameter({positive("LayerNorm", "dim", dim, true)}, init::ones()))),
      beta(add_parameter("beta", Parameter({dim}, init::zeros()))) {
  if (!(eps > 0)) throw ValueError("LayerNorm", fmt::format("eps must be positive, got {}", eps));
}

Tensor LayerNorm::forward(const Tensor& x) {
  if (x.dim() < 1) throw ShapeError("LayerNorm", "expects input of rank >= 1, got " + x.type().str());
  const int64_t d = x.shape().back();
  if (gamma.shape()[0] != 0 && gamma.shape()[0] != d)
    throw ShapeError("LayerNorm", fmt::format("input's last axis has {} features, the layer normalizes {} (input {})",
                                              d, gamma.shape()[0], x.type().str()));
  gamma.infer_shape({d}, "LayerNorm");
  beta.infer_shape({d}, "LayerNorm");
  Tensor centered = x - x.mean({-1}, true);
  Tensor var = (centered * centered).mean({-1}, true);
  return centered / sqrt(var + eps_) * gamma.data() + beta.data();
}

std::string LayerNorm::extra_repr() const {
  const int64_t d = gamma.shape()[0];
  return fmt::format("{}, eps={}", d ? std::to_string(d) : std::string("?"), eps_);
}

Tensor gelu(const Tensor& x) {
  const double k = std::sqrt(2.0 / std::numbers::pi);
  return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * (x * x * x))));
}

MultiHeadAttention::MultiHeadAttention(int64_t d_model, int64_t heads, bool causal)
    : d_model_(positive("MultiHeadAttention", "d_model", d_model)),
      heads_(positive("MultiHeadAttention", "heads", heads)),
      causal_(causal),
      qkv(add("qkv", Dense(3 * d_model, "none", true, d_model))),
      out(add("out", Dense(d_model, "none", true, d_model))) {
  if (d_model % heads != 0)
    throw ValueError("MultiHeadAttention",
                     fmt::format("{} heads do not divide the model width {}", heads, d_model));
}

namespace {
/// {x} or {x, mask}: the mask, or undefined.
Tensor padding_input(const char* block, const Tensors& inputs) {
  if (inputs.empty() || inputs.size() > 2 || !inputs[0].defined())
    throw ValueError(block, fmt::format("takes x and an optional padding mask, got {} input{}{}", inputs.size(),
                                        inputs.size() == 1 ? "" : "s",
                                        !inputs.empty() && !inputs[0].defined() ? " without x" : ""));
  return inputs.size() == 2 ? inputs[1] : Tensor();
}
}  // namespace

Tensor MultiHeadAttention::forward(const Tensor& x) { return attend(x, Tensor()); }

Tensors MultiHeadAttention::forward_many(const Tensors& inputs) {
  const Tensor padding = padding_input("MultiHeadAttention", inputs);
  return {attend(inputs[0], padding)};
}

Tensor MultiHeadAttention::attend(const Tensor& x, const Tensor& padding) {
  if (x.dim() != 3 || x.shape()[2] != d_model_)
    throw ShapeError("MultiHeadAttention",
                     fmt::format("expects [batch, time, {}], got {}", d_model_, x.type().str()));
  const int64_t b = x.shape()[0], t = x.shape()[1], dh = d_model_ / heads_;
  // [b, t, 3, heads, dh] -> [3, b, heads, t, dh]: queries, keys and values of every head.
  Tensor all = qkv(x).reshape({b, t, 3, heads_, dh}).permute({2, 0, 3, 1, 4});
  Tensor q = all.slice(0, 0, 1).reshape({b, heads_, t, dh});
  Tensor k = all.slice(0, 1, 2).reshape({b, heads_, t, dh});
  Tensor v = all.slice(0, 2, 3).reshape({b, heads_, t, dh});
  Tensor scores = matmul(q, k, false, /*transpose_b=*/true) * (1.0 / std::sqrt(static_cast<double>(dh)));
  const Tensor minus_inf = full({}, -std::numeric_limits<double>::infinity());
  if (causal_) {
    Tensor keep = ge(arange(static_cast<double>(t)).reshape({t, 1}), arange(static_cast<double>(t)).reshape({1, t}));
    scores = where(keep, scores, minus_inf);
  }
  if (padding.defined()) {
    if (padding.dtype() != kBool)
      throw DTypeError("MultiHeadAttention", "the padding mask must be bool (true: a padding position), got " +
                                                 padding.type().str());
    if (padding.dim() != 2 || (padding.shape()[0] != b && padding.shape()[0] != 1) || padding.shape()[1] != t)
      throw ShapeError("MultiHeadAttention", fmt::format("the padding mask {} does not fit the input {}: expected "
                                                         "bool[{}, {}] or bool[1, {}]",
                                                         padding.type().str(), x.type().str(), b, t, t));
    scores = where(padding.reshape({padding.shape()[0], 1, 1, t}), minus_inf, scores);
  }
  Tensor heads = matmul(softmax(scores, -1), v);  // [b, heads, t, dh]
  return out(heads.permute({0, 2, 1, 3}).reshape({b, t, d_model_}));
}

std::string MultiHeadAttention::extra_repr() const {
  return fmt::format("{}, heads={}{}", d_model_, heads_, causal_ ? ", causal" : "");
}

TransformerEncoderLayer::TransformerEncoderLayer(int64_t d_model, int64_t heads, int64_t ff, bool pre_norm,
                                                 bool causal)
    : pre_norm_(pre_norm),
      attention(add("attention", MultiHeadAttention(d_model, heads, causal))),
      norm1(add("norm1", LayerNorm(d_model))),
      norm2(add("norm2", LayerNorm(d_model))),
      ff1(add("ff1", Dense(positive("TransformerEncoderLayer", "ff", ff), "none", true, d_model))),
      ff2(add("ff2", Dense(d_model, "none", true, ff))) {}

Tensor TransformerEncoderLayer::forward(const Tensor& x) { return layer(x, Tensor()); }

Tensors TransformerEncoderLayer::forward_many(const Tensors& inputs) {
  const Tensor padding = padding_input("TransformerEncoderLayer", inputs);
  return {layer(inputs[0], padding)};
}

Tensor TransformerEncoderLayer::layer(const Tensor& x, const Tensor& padding) {
  auto feed_forward = [&](const Tensor& h) { return ff2(gelu(ff1(h))); };
  auto attend = [&](const Tensor& h) { return padding.defined() ? attention({h, padding})[0] : attention(h); };
  if (pre_norm_) {
    Tensor h = x + attend(norm1(x));
    return h + feed_forward(norm2(h));
  }
  Tensor h = norm1(x + attend(x));
  return norm2(h + feed_forward(h));
}

TransformerLM::TransformerLM(int64_t vocab, int64_t d_model, int64_t heads, int64_t ff, int64_t layers,
                             int64_t max_len)
    : max_len_(positive("TransformerLM", "max_len", max_len)),
      tokens(add("tokens", Embedding(vocab, d_model, init::normal(0.02)))),
      positions(add_parameter("positions", Parameter({max_len, d_model}, init::normal(0.02)))),
      blocks(add("blocks", Sequential())),
      norm(add("norm", LayerNorm(d_model))) {
  for (int64_t i = 0; i < positive("TransformerLM", "layers", layers); ++i)
    blocks.add(TransformerEncoderLayer(d_model, heads, ff, /*pre_norm=*/true, /*causal=*/true));
}

Tensor TransformerLM::forward(const Tensor& ids) {
  if (ids.dim() != 2) throw ShapeError("TransformerLM", "expects token ids [batch, time], got " + ids.type().str());
  const int64_t t = ids.shape()[1];
  if (t > max_len_)
    throw ShapeError("TransformerLM", fmt::format("a sequence of {} tokens is longer than the position table ({})", t,
                                                  max_len_));
  Tensor h = tokens(ids) + positions.data().slice(0, 0, t);
  h = norm(blocks(h));
  return matmul(h, tokens.weight.data(), false, /*transpose_b=*/true);
}

std::string TransformerLM::extra_repr() const {
  return fmt::format("vocab {}, d_model {}, max_len {}", tokens.weight.shape()[0], tokens.weight.shape()[1], max_len_);
}

GRU::GRU(int64_t hidden, int64_t inputs)
    : hidden_(positive("GRU", "hidden", hidden)),
      i2h(add("i2h", Dense(3 * hidden, "none", true, positive("GRU", "inputs", inputs, true)))),
      h2h(add("h2h", Dense(3 * hidden, "none", true, hidden))) {}

Tensor GRU::next(const Tensor& gi, const Tensor& h) {
  const int64_t n = hidden_;
  Tensor gh = h2h(h);
  auto gate = [n](const Tensor& g, int64_t k) { return g.slice(1, k * n, (k + 1) * n); };
  Tensor r = sigmoid(gate(gi, 0) + gate(gh, 0));
  Tensor z = sigmoid(gate(gi, 1) + gate(gh, 1));
  Tensor c = tanh(gate(gi, 2) + r * gate(gh, 2));
  return (1.0 - z) * c + z * h;
}

Tensor GRU::step(const Tensor& x, const Tensor& h) {
  if (x.dim() != 2 || h.dim() != 2 || h.shape() != Shape{x.shape()[0], hidden_})
    throw ShapeError("GRU", fmt::format("a step takes x [batch, inputs] and h [batch, {}], got {} and {}", hidden_,
                                        x.type().str(), h.type().str()));
  return next(i2h(x), h);
}

Tensor GRU::forward(const Tensor& x) {
  if (x.dim() != 3)
    throw ShapeError("GRU", "expects [batch, time, inputs], got " + x.type().str());
  const int64_t b = x.shape()[0], t = x.shape()[1];
  Tensor gi = i2h(x);  // every step's input projection in one product
  Tensor h = zeros({b, hidden_});
  std::vector<Tensor> states;
  for (int64_t i = 0; i < t; ++i) {
    h = next(gi.slice(1, i, i + 1).reshape({b, 3 * hidden_}), h);
    states.push_back(h);
  }
  if (states.empty()) return zeros({b, 0, hidden_});
  return stack(states, 1);
}

std::string GRU::extra_repr() const {
  const int64_t in = i2h.weight.shape()[1];
  return fmt::format("{} -> {}", in ? std::to_string(in) : std::string("?"), hidden_);
}

}  // namespace bj::nn
