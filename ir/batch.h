// Graphs for every batch size. Two traces of one block at batch sizes a and
// b (a != b) that are the same program but for sizes that scale with the
// batch (the same nodes, ops, operands, attributes, literals and guards;
// every dim equal, except dims 0 that are k*a in one and k*b in the other)
// give one graph whose batched values (Value::batch = k) take the call's
// batch size: codegen emits their loops with a run-time trip count and
// their memory at run-time offsets. Only dim 0 may scale; a literal or a
// non-leading dim that differs between the traces means the program itself
// depends on the batch size, and the traces do not unify.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace bj::ir {

/// Every value of `g` in a fixed order: inputs, parameters, constants, then node results in
/// program order (region bodies in place).
std::vector<const Value*> values_in_order(const Graph& g);

/// If `a` (traced at batch size `ba`) and `b` (at `bb`; ba != bb, both > 0) are one program but
/// for their batch sizes: per value of `b` (values_in_order), how many times the batch size its
/// dim 0 is (0: a static dim). nullopt otherwise, with the first difference in `why` if given.
std::optional<std::vector<int32_t>> unify_batch(const Graph& a, int64_t ba, const Graph& b, int64_t bb,
                                                std::string* why = nullptr);

/// Makes `g` a graph for every batch size: its types are at batch size `batch` and value i
/// (values_in_order) scales by `factors[i]`.
void set_batch(Graph& g, int64_t batch, const std::vector<int32_t>& factors);

/// True if `other` (traced at batch size `n`, any n >= 0) is `g`, a graph for every batch size
/// (or a graph traced at `g_batch` whose values scale by `factors`), at batch size n.
bool fits_batch(const Graph& g, int64_t g_batch, const std::vector<int32_t>& factors, const Graph& other, int64_t n,
                std::string* why = nullptr);

/// The type of batched value `v` of a graph for every batch size at batch size `n`.
Type type_at(const Graph& g, const Value& v, int64_t n);

}  // namespace bj::ir
