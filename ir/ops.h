// OpKind, traits and attributes, all derived from ir/ops.def.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ir/dtype.h"
#include "ir/shape.h"

namespace bj::ir {

/// Every operator (one enumerator per line of ops.def).
enum class OpKind : uint8_t {
#define OP(Name, ...) Name,
#include "ir/ops.def"
};

inline constexpr int kNumOps = 0
#define OP(Name, ...) +1
#include "ir/ops.def"
    ;

/// Properties passes and dispatch test instead of op names.
enum Trait : uint32_t {
  kElementwise = 1u << 0,   ///< output element i depends on input element i (after broadcasting)
  kReduction = 1u << 2,     ///< reduces over OpAttrs::dims
  kContraction = 1u << 3,   ///< matrix product
  kView = 1u << 5,          ///< eager mode may alias the input's storage
  kPure = 1u << 6,          ///< no side effects; same inputs give same outputs
  kCommutative = 1u << 7,   ///< the two inputs may be swapped
};

/// The OpAttrs fields an op reads.
enum Attr : uint32_t {
  kNoAttrs = 0,
  kAxes = 1u << 0,         ///< dims: reduced axes (sorted, non-negative)
  kKeepdim = 1u << 1,      ///< keepdim
  kPerm = 1u << 2,         ///< dims: a permutation of the axes
  kShape = 1u << 3,        ///< dims: the target shape
  kAxis = 1u << 4,         ///< axis
  kStart = 1u << 5,        ///< start
  kEnd = 1u << 6,          ///< end
  kStep = 1u << 7,         ///< step
  kScalar = 1u << 8,       ///< scalar
  kDType = 1u << 9,        ///< dtype
  kTransposeA = 1u << 10,  ///< transpose_a
  kTransposeB = 1u << 11,  ///< transpose_b
  kKernel = 1u << 12,      ///< kernel: a pooling window's [height, width]
  kStride = 1u << 13,      ///< stride: [along height, along width]
  kPadding = 1u << 14,     ///< padding: zeros (or, for pooling, ignored cells) on each side, [h, w]
  kDilation = 1u << 15,    ///< dilation: spacing of a convolution's taps, [h, w]
  kGroups = 1u << 16,      ///< groups: a convolution's channel groups
};

/// Attribute values of one op application. Which fields matter is given by
/// the op's Attr flags; the rest keep their defaults.
struct OpAttrs {
  Shape dims;  ///< axes, permutation or target shape
  Shape kernel, stride, padding, dilation;  ///< windows of convolution and pooling (2 values each)
  int64_t groups = 1;
  int64_t axis = 0, start = 0, end = 0, step = 1;
  double scalar = 0;
  DType dtype = DType::kF32;
  bool keepdim = false, transpose_a = false, transpose_b = false;
  friend bool operator==(const OpAttrs&, const OpAttrs&) = default;
};

/// The text IR's spelling of each attribute, in printing order: one table for the printer, the
/// parser and the verifier. Flags (keepdim, transpose_*) are bare words printed when set; the
/// others are `name=value`.
struct AttrSpelling {
  Attr flag;
  std::string_view name;
};
inline constexpr AttrSpelling kAttrSpellings[] = {
    {kAxes, "axes"},   {kPerm, "perm"},     {kShape, "shape"},   {kAxis, "axis"},
    {kStart, "start"}, {kEnd, "end"},       {kStep, "step"},     {kScalar, "scalar"},
    {kDType, "dtype"}, {kKeepdim, "keepdim"}, {kTransposeA, "transpose_a"}, {kTransposeB, "transpose_b"},
    {kKernel, "kernel"}, {kStride, "stride"}, {kPadding, "padding"}, {kDilation, "dilation"}, {kGroups, "groups"},
};
/// True for the attributes written as a bare word.
constexpr bool is_flag_attr(Attr a) { return a == kKeepdim || a == kTransposeA || a == kTransposeB; }
/// True if attribute `a` of `attrs` holds something other than its default.
bool attr_is_set(const OpAttrs& attrs, Attr a);
/// The attributes set in `attrs` that op `op` does not read ("perm, axis"); empty if none.
std::string unread_attrs(uint32_t reads, const OpAttrs& attrs);

/// What the table says of one op.
struct OpInfo {
  std::string_view name;
  int arity;  ///< -1: variadic
  uint32_t traits;
  uint32_t attrs;
};

const OpInfo& op_info(OpKind op);
inline std::string_view op_name(OpKind op) { return op_info(op).name; }
inline bool has_trait(OpKind op, Trait t) { return (op_info(op).traits & t) != 0; }

}  // namespace bj::ir
