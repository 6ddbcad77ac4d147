// What the three fusion passes share: turning a group of top-level op
// nodes into one region node. Internal to passes/.
#pragma once

#include <vector>

#include "passes/util.h"

namespace bj::passes {

/// Moves the top-level nodes `members` into a new region of `kind`, placed
/// where the last of them was in the graph, its body in program order (or
/// with `in_order`, in the order given: producers first, and every member's
/// operands defined before that place). Values used outside the group (or
/// returned) become its yields. Returns the region.
ir::Node* make_region(ir::Graph& g, ir::RegionKind kind, const std::vector<ir::Node*>& members, const Uses& uses,
                      bool in_order = false);

/// True for a top-level op node that fusion may take: elementwise, with
/// `shape` as its result shape.
bool fusible_elementwise(const ir::Node* n, const Shape& shape);

}  // namespace bj::passes
