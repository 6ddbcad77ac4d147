// Sequence-model layers (see sequence.h).
#include "frontend/nn/sequence.h"

#include <fmt/format.h>

#include <cmath>
#include <numbers>

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

Embedding::Embedding(int64_t vocab, int64_t dim)
    : weight(add_parameter("weight", Parameter({positive("Embedding", "vocab", vocab),
                                                 positive("Embedding", "dim", dim)},
                                                init::normal(1.0)))) {}

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

}  // namespace bj::nn
