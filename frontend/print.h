// Printing tensors with fmt (`fmt::format("{}", t)`) and iostreams, in the
// style of the seed's outputs: values, then shape and dtype; large tensors
// are summarized with "..." (the first and last 3 entries of each axis).
#pragma once

#include <fmt/format.h>

#include <ostream>
#include <string>

#include "frontend/tensor.h"

namespace bj {

/// "tensor([[0.1, 0.2], ...], shape=[2, 2], dtype=f32)".
std::string to_string(const Tensor& t);
std::ostream& operator<<(std::ostream& os, const Tensor& t);
std::ostream& operator<<(std::ostream& os, const Shape& s);

}  // namespace bj

template <>
struct fmt::formatter<bj::Tensor> : fmt::formatter<std::string> {
  auto format(const bj::Tensor& t, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(bj::to_string(t), ctx);
  }
};
template <>
struct fmt::formatter<bj::Shape> : fmt::formatter<std::string> {
  auto format(const bj::Shape& s, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(s.str(), ctx);
  }
};
