// Checking integer ids (class labels, token ids) against a range, in eager
// mode and under the tracer alike.
#pragma once

#include <optional>
#include <utility>

#include "frontend/tensor.h"

namespace bj::nn {

/// The smallest and largest of the i64 `ids` if one of them is outside [0, bound), else nullopt.
/// Eager mode reads the values; under the tracer the check compares tensors, which records two
/// guards that every valid batch passes (reading the exact extremes would make each distinct
/// pair another compiled path).
std::optional<std::pair<int64_t, int64_t>> ids_outside(const Tensor& ids, int64_t bound);

}  // namespace bj::nn
