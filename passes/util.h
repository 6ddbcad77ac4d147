// Helpers the passes share: who uses what, literal values, stable
// topological order. Internal to passes/.
#pragma once

#include <optional>
#include <unordered_map>

#include "ir/graph.h"

namespace bj::passes {

/// For each value, the top-level nodes using it (a use inside a region
/// counts as a use by the region), and whether it is a graph output.
struct Uses {
  std::unordered_map<const ir::Value*, std::vector<ir::Node*>> users;
  std::unordered_map<const ir::Value*, bool> output;
  const std::vector<ir::Node*>& of(const ir::Value* v) const;
};
Uses compute_uses(ir::Graph& g);

/// Each top-level node's position in the graph.
std::unordered_map<const ir::Node*, size_t> positions(const ir::Graph& g);

/// The value every element of a literal holds, if it is a literal with one
/// repeated value (as a double); nullopt otherwise.
std::optional<double> literal_splat(const ir::Value* v);
/// True for a literal whose elements are all `value`, compared bitwise (so -0 and +0 differ).
bool literal_is(const ir::Value* v, float value);

/// Reorders the top-level nodes so every value is defined before its uses,
/// keeping the current order wherever it already is valid; guards keep
/// their relative order. Returns whether anything moved.
bool stable_topological_sort(ir::Graph& g);

/// Puts the top-level nodes in `order` (a permutation of their positions); true if any moved.
bool apply_order(ir::Graph& g, const std::vector<size_t>& order);

/// Removes top-level nodes for which `dead` is true.
void erase_nodes(ir::Graph& g, const std::unordered_map<const ir::Node*, bool>& dead);

}  // namespace bj::passes
